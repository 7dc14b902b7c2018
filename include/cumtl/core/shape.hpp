#pragma once
// The extents of a tensor. Tensors are dense and row-major over their shape,
// so the shape alone fixes the memory layout; activations are N×H×W×C
// (channels-last), convolution filters K×R×S×C, linear weights out×in.

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <string>

#include "cumtl/core/error.hpp"

namespace cumtl {

class Shape {
 public:
  static constexpr int max_rank = 8;

  // Rank 0: a scalar with one element.
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> extents) : Shape(std::span(extents.begin(), extents.size())) {}
  explicit Shape(std::span<const std::int64_t> extents) {
    CUMTL_REQUIRE(extents.size() <= max_rank, "a shape has at most ", max_rank, " dimensions, got ", extents.size());
    for (std::int64_t extent : extents) CUMTL_REQUIRE(extent >= 0, "shape extents must be non-negative, got ", extent);
    rank_ = static_cast<int>(extents.size());
    std::copy(extents.begin(), extents.end(), extents_.begin());
  }

  // An activation shape: batch, height, width, channels.
  static Shape nhwc(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t c) { return Shape{n, h, w, c}; }

  int rank() const noexcept { return rank_; }
  std::span<const std::int64_t> extents() const noexcept { return {extents_.data(), std::size_t(rank_)}; }

  std::int64_t operator[](int dim) const {
    CUMTL_REQUIRE(dim >= 0 && dim < rank_, "dimension ", dim, " is out of range for shape ", str());
    return extents_[std::size_t(dim)];
  }

  std::int64_t numel() const noexcept {
    std::int64_t count = 1;
    for (int dim = 0; dim < rank_; ++dim) count *= extents_[std::size_t(dim)];
    return count;
  }

  // The same extents with the first one replaced (a batch slice).
  Shape with_leading(std::int64_t extent) const {
    CUMTL_REQUIRE(rank_ > 0, "a scalar shape has no leading dimension");
    Shape result = *this;
    result.extents_[0] = extent;
    return result;
  }

  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    return a.rank_ == b.rank_ && std::equal(a.extents_.begin(), a.extents_.begin() + a.rank_, b.extents_.begin());
  }

  std::string str() const {
    std::string text = "[";
    for (int dim = 0; dim < rank_; ++dim) {
      if (dim > 0) text += ", ";
      text += std::to_string(extents_[std::size_t(dim)]);
    }
    return text + "]";
  }

 private:
  std::array<std::int64_t, max_rank> extents_{};
  int rank_ = 0;
};

inline std::ostream& operator<<(std::ostream& stream, const Shape& shape) {
  return stream << shape.str();
}

}  // namespace cumtl
