#pragma once
// CPU twins of the random fills: the same per-element functions as the CUDA
// kernels (kernels/random.cuh), so both produce the same numbers.

#include <cstdint>

#include "cumtl/core/context.hpp"
#include "cumtl/kernels/random.cuh"

namespace cumtl::cpu {

template <class T>
void uniform(Context&, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T low, T high) {
  for (std::int64_t i = 0; i < count; ++i)
    out[i] = kernels::uniform_element(seed, offset + std::uint64_t(i), low, high);
}

template <class T>
void normal(Context&, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T mean, T stddev) {
  for (std::int64_t i = 0; i < count; ++i)
    out[i] = kernels::normal_element(seed, offset + std::uint64_t(i), mean, stddev);
}

}  // namespace cumtl::cpu
