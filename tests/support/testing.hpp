#pragma once
// Helpers shared by the test suites.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <cumtl/cumtl.hpp>

#include "checks.hpp"

namespace cumtl_test {

// A fresh folder under the system's temporary folder, removed with everything in it at the end of the test.
struct TemporaryFolder {
  std::filesystem::path path;
  TemporaryFolder() {
    path = std::filesystem::temp_directory_path() / ("cumtl-test-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path);
  }
  ~TemporaryFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TemporaryFolder(const TemporaryFolder&) = delete;
  TemporaryFolder& operator=(const TemporaryFolder&) = delete;
};

// A CPU tensor of values uniform in [low, high), the same for the same seed; a
// bf16 or f16 one holds the float32 draws rounded.
template <class T>
cumtl::Tensor random_tensor(const cumtl::Shape& shape, std::uint64_t seed, double low = -2, double high = 2) {
  cumtl::Context cpu;
  if constexpr (!std::is_same_v<cumtl::compute_t<T>, T>) {
    cumtl::Tensor narrow = cumtl::Tensor::empty(shape, cumtl::scalar_type_v<T>);
    cumtl::ops::convert(cpu, random_tensor<float>(shape, seed, low, high), narrow);
    return narrow;
  } else {
    cumtl::Tensor tensor = cumtl::Tensor::empty(shape, cumtl::scalar_type_v<T>);
    cumtl::Generator generator(seed);
    cumtl::ops::uniform(cpu, tensor, generator, low, high);
    return tensor;
  }
}

// A 2-byte tensor widened to float32 (exactly), and a float32 tensor rounded to
// the 2-byte type `Half` (to nearest even): the rounding points of the 2-byte
// twins, which their tests compare with the fp32 twins through.
inline cumtl::Tensor widened(const cumtl::Tensor& narrow) {
  cumtl::Context cpu;
  cumtl::Tensor wide = cumtl::Tensor::empty(narrow.shape(), cumtl::ScalarType::f32);
  cumtl::ops::convert(cpu, narrow, wide);
  return wide;
}

template <class Half>
cumtl::Tensor narrowed(const cumtl::Tensor& wide) {
  cumtl::Context cpu;
  cumtl::Tensor narrow = cumtl::Tensor::empty(wide.shape(), cumtl::scalar_type_v<Half>);
  cumtl::ops::convert(cpu, wide, narrow);
  return narrow;
}

template <class Half>
std::vector<Half> rounded(const cumtl::Tensor& wide) {
  return narrowed<Half>(wide).template to_vector<Half>();
}

// Whether some value of a float32 tensor is not representable in `Half`: a
// test that compares with rounded results needs such values to tell a
// rounding from a copy.
template <class Half>
bool any_rounded(const cumtl::Tensor& wide) {
  const std::vector<float> values = wide.to_vector<float>();
  return std::any_of(values.begin(), values.end(), [](float v) { return float(Half(v)) != v; });
}

// The same for a CPU float32 or float64 tensor.
template <class B>
double error_over_scale(const cumtl::Tensor& actual, const std::vector<B>& expected) {
  if (actual.dtype() == cumtl::ScalarType::f32) return error_over_scale(actual.to_vector<float>(), expected);
  return error_over_scale(actual.to_vector<double>(), expected);
}

}  // namespace cumtl_test
