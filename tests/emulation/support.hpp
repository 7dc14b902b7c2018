#pragma once
// Helpers of the kernel emulation tests: the CUDA launchers (cumtl::cuda::),
// compiled by the host compiler, run their kernels on CPU threads through the
// emulated launch layer; each test compares them with the CPU twins (cpu::).

#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/core/half.hpp"
#include "cumtl_emulation/execution_model.hpp"

#include "../support/checks.hpp"

namespace cumtl_emulation_test {

// The launchers' grids for a device of `multiprocessors` multiprocessors, for
// the scope: one (every launch a single wave of few blocks), a few, and an
// H100's 132 (a row block for every few rows).
class DeviceWithMultiprocessors {
 public:
  explicit DeviceWithMultiprocessors(int multiprocessors)
      : previous_(cumtl::emulation::device_model().multiprocessors) {
    cumtl::emulation::device_model().multiprocessors = multiprocessors;
  }
  ~DeviceWithMultiprocessors() { cumtl::emulation::device_model().multiprocessors = previous_; }
  DeviceWithMultiprocessors(const DeviceWithMultiprocessors&) = delete;
  DeviceWithMultiprocessors& operator=(const DeviceWithMultiprocessors&) = delete;

 private:
  int previous_;
};

inline constexpr int multiprocessor_counts[] = {3, 1, 132};

// ThreadSanitizer makes the emulation some hundred times slower, and a race
// shows at any size: under it, each list of cases is cut to its first, which
// every list puts first for that reason (a grid of several row blocks and
// tiles, so that every kernel of a launcher runs).
#if defined(__SANITIZE_THREAD__)
inline constexpr bool every_case = false;
#else
inline constexpr bool every_case = true;
#endif

template <class T, std::size_t N>
std::span<const T> cases(const T (&all)[N]) {
  return std::span<const T>(all, every_case ? N : 1);
}

// Values uniform in [low, high), the same for the same seed (2-byte types:
// float draws rounded).
template <class T>
std::vector<T> random_values(std::int64_t count, std::uint64_t seed, double low = -2, double high = 2) {
  std::mt19937_64 generator(seed);
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<T> values(static_cast<std::size_t>(count));
  for (T& value : values) {
    const double draw = distribution(generator);
    if constexpr (cumtl::is_two_byte_float<T>)
      value = T(float(draw));
    else
      value = T(draw);
  }
  return values;
}

// Integers uniform in [low, high), the same for the same seed.
template <class Integer>
std::vector<Integer> random_integers(std::int64_t count, std::uint64_t seed, std::int64_t low, std::int64_t high) {
  std::mt19937_64 generator(seed);
  std::uniform_int_distribution<std::int64_t> distribution(low, high - 1);
  std::vector<Integer> values(static_cast<std::size_t>(count));
  for (Integer& value : values) value = Integer(distribution(generator));
  return values;
}

template <class T>
bool bit_identical(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

}  // namespace cumtl_emulation_test
