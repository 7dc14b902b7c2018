#pragma once
// Image preprocessing: an 8-bit HWC batch [N, H, W, C] becomes the network's
// float input [N, H, W, C] (NHWC, no transpose),
//   out = (pixel / 255 − mean[c]) / std[c].
//
// The map is one affine function per channel, so it is folded on the host into
// out = fma(pixel, scale[c], shift[c]) with scale = 1 / (255·std) and
// shift = −mean / std. An explicit fma rounds once on both devices, so the
// kernel and its CPU twin agree bit for bit whatever contraction nvcc or the
// host compiler chooses; against the formula in exact arithmetic the result is
// within a few float ulps of the output's magnitude. A bf16 or f16 output is
// that float result rounded once (the map itself stays in float), so it is the
// fp32 output rounded, bit for bit, on both devices.
//
// Bytes: 1 read + 4 written per element (a 256×112×112×3 batch moves 48 MB),
// so the kernel is bound by memory bandwidth. The channel count is a template
// parameter: the channel of a flat index is then a remainder by a constant, a
// multiply and a shift, instead of a 64-bit division by a run-time value.

#include <array>
#include <cmath>
#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/core/half.hpp"
#include "cumtl/kernels/grid.cuh"

namespace cumtl::kernels {

inline constexpr int max_normalize_channels = 3;

// The per-channel affine map; passed to the kernel by value.
template <class T>
struct ChannelAffine {
  T scale[max_normalize_channels];
  T shift[max_normalize_channels];
};

// Folds a mean and a standard deviation per channel (of pixel / 255) into the
// affine map, in double and rounded once to T.
template <class T>
ChannelAffine<T> normalize_affine(const std::array<float, 3>& mean, const std::array<float, 3>& stddev) {
  ChannelAffine<T> affine{};
  for (int c = 0; c < max_normalize_channels; ++c) {
    affine.scale[c] = T(1.0 / (255.0 * double(stddev[std::size_t(c)])));
    affine.shift[c] = T(-double(mean[std::size_t(c)]) / double(stddev[std::size_t(c)]));
  }
  return affine;
}

template <class T>
CUMTL_HOST_DEVICE inline T normalize_pixel(std::uint8_t pixel, T scale, T shift) {
  return std::fma(T(pixel), scale, shift);
}

#if defined(CUMTL_KERNEL_CODE)
template <class T, int Channels>
__global__ void normalize_images_kernel(std::int64_t count, const std::uint8_t* __restrict__ pixels,
                                        ChannelAffine<compute_t<T>> affine, T* __restrict__ out) {
  CUMTL_GRID_STRIDE_LOOP(i, count) {
    const int c = int(i % Channels);
    out[i] = T(normalize_pixel(pixels[i], affine.scale[c], affine.shift[c]));
  }
}
#endif

}  // namespace cumtl::kernels
