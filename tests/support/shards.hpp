#pragma once
// One rank's shard of a batch, as the data-parallel loader cuts it, for tests
// that compare ranks with one process on the whole batch.

#include <cstdint>
#include <span>
#include <vector>

#include <cumtl/cumtl.hpp>

namespace cumtl_test {

// The rows p of `whole` (along its first extent) with p % count == index, on the CPU.
template <class T>
cumtl::Tensor shard_of(const cumtl::Tensor& whole, int index, int count) {
  cumtl::Context cpu;
  const std::int64_t rows = whole.shape()[0], width = whole.numel() / rows;
  const std::vector<T> values = whole.to_vector<T>(cpu);
  std::vector<T> picked;
  for (std::int64_t row = index; row < rows; row += count)
    picked.insert(picked.end(), values.begin() + row * width, values.begin() + (row + 1) * width);
  std::vector<std::int64_t> extents;
  for (int dim = 0; dim < whole.shape().rank(); ++dim) extents.push_back(whole.shape()[dim]);
  extents[0] = std::int64_t(picked.size()) / width;
  return cumtl::Tensor::from_vector(picked, cumtl::Shape(std::span<const std::int64_t>(extents)));
}

}  // namespace cumtl_test
