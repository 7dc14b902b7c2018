#pragma once
// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011), the generator cuRAND and the major
// frameworks use. A draw is a pure function of (seed, counter), so element i of
// a fill uses counter offset + i on whichever device computes it: the CPU and
// the GPU produce the same numbers for the same seed, in any thread order, and
// a generator's whole state is two integers (easy to checkpoint).
//
// Each element spends one 10-round block (about 40 integer multiply-adds) and
// writes one value, so a fill is bound by memory bandwidth on a GPU; spending a
// whole block per element keeps the element-to-counter mapping trivial.

#include <cmath>
#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/kernels/grid.cuh"

namespace cumtl::kernels {

struct PhiloxBlock {
  std::uint32_t word[4];
};

CUMTL_HOST_DEVICE inline PhiloxBlock philox4x32_10(PhiloxBlock counter, std::uint32_t key0, std::uint32_t key1) {
  constexpr std::uint32_t multiplier0 = 0xD2511F53u, multiplier1 = 0xCD9E8D57u;
  constexpr std::uint32_t weyl0 = 0x9E3779B9u, weyl1 = 0xBB67AE85u;
  std::uint32_t* c = counter.word;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += weyl0;
      key1 += weyl1;
    }
    const std::uint64_t product0 = std::uint64_t(multiplier0) * c[0];
    const std::uint64_t product1 = std::uint64_t(multiplier1) * c[2];
    const std::uint32_t hi0 = std::uint32_t(product0 >> 32), lo0 = std::uint32_t(product0);
    const std::uint32_t hi1 = std::uint32_t(product1 >> 32), lo1 = std::uint32_t(product1);
    const PhiloxBlock next{{hi1 ^ c[1] ^ key0, lo1, hi0 ^ c[3] ^ key1, lo0}};
    counter = next;
  }
  return counter;
}

// The block for the element that uses counter `index` under `seed`.
CUMTL_HOST_DEVICE inline PhiloxBlock philox_at(std::uint64_t seed, std::uint64_t index) {
  return philox4x32_10(PhiloxBlock{{std::uint32_t(index), std::uint32_t(index >> 32), 0u, 0u}}, std::uint32_t(seed),
                       std::uint32_t(seed >> 32));
}

// a*b + c rounded once, on both sides, so that no compiler's contraction
// choice makes the CPU and the GPU round differently.
template <class T>
CUMTL_HOST_DEVICE inline T fused_multiply_add(T a, T b, T c) {
  return std::fma(a, b, c);
}

// Uniform in [0, 1) from the top 24 bits (float) or 53 bits (double), exact in T.
template <class T>
CUMTL_HOST_DEVICE inline T unit_uniform(std::uint32_t high, std::uint32_t low) {
  if constexpr (sizeof(T) == 4) {
    return T(high >> 8) * T(1.0 / 16777216.0);
  } else {
    const std::uint64_t bits = ((std::uint64_t(high) << 32) | low) >> 11;
    return T(bits) * T(1.0 / 9007199254740992.0);
  }
}

template <class T>
CUMTL_HOST_DEVICE inline T uniform_element(std::uint64_t seed, std::uint64_t index, T low, T high) {
  const PhiloxBlock block = philox_at(seed, index);
  return fused_multiply_add(high - low, unit_uniform<T>(block.word[0], block.word[1]), low);
}

// Box-Muller in double for both T, so a float result is the double one rounded:
// identical on both devices except where their log or cos differ in the last
// bit of a double.
template <class T>
CUMTL_HOST_DEVICE inline T normal_element(std::uint64_t seed, std::uint64_t index, T mean, T stddev) {
  const PhiloxBlock block = philox_at(seed, index);
  const double u1 = 1.0 - unit_uniform<double>(block.word[0], block.word[1]);  // (0, 1]: log is finite
  const double u2 = unit_uniform<double>(block.word[2], block.word[3]);
  const double standard = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
  return fused_multiply_add(stddev, T(standard), mean);
}

#if defined(CUMTL_KERNEL_CODE)
template <class T>
__global__ void uniform_kernel(T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T low, T high) {
  CUMTL_GRID_STRIDE_LOOP(i, count) out[i] = uniform_element(seed, offset + std::uint64_t(i), low, high);
}

template <class T>
__global__ void normal_kernel(T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T mean, T stddev) {
  CUMTL_GRID_STRIDE_LOOP(i, count) out[i] = normal_element(seed, offset + std::uint64_t(i), mean, stddev);
}
#endif

}  // namespace cumtl::kernels
