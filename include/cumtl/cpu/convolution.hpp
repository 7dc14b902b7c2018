#pragma once
// CPU twin of the convolutions: im2col + GEMM over groups of images.
//
// In NHWC the C values of one input pixel are contiguous, and KRSC filters are
// rows of R·S·C values in (r, s, c) order. So unrolling each output pixel's
// receptive field into a row of R·S·C values (im2col, zeros where the window
// leaves the padded input) makes the forward pass one GEMM over the images of
// a group, Y[G·P·Q, K] = cols[G·P·Q, R·S·C] · Wᵀ, and the backward passes two
// more: dcols = dY · W, scattered back (col2im), and dW (+)= dYᵀ · cols. A 1×1
// convolution with stride 1 and no padding needs no unrolling at all. The
// unrolled images live in the context's workspace.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cumtl/core/context.hpp"
#include "cumtl/core/conv_shape.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/cpu/gemm.hpp"

namespace cumtl::inline CUMTL_ABI::cpu {

namespace detail {

inline bool is_pointwise(const ConvShape& shape) {
  return shape.r == 1 && shape.s == 1 && shape.stride_h == 1 && shape.stride_w == 1 && shape.pad_h == 0 &&
         shape.pad_w == 0;
}

// cols[P·Q, R·S·C] from one NHWC image.
template <class T>
void im2col(const ConvShape& shape, const T* image, T* cols) {
  const std::int64_t p_count = shape.out_h(), q_count = shape.out_w();
  for (std::int64_t p = 0; p < p_count; ++p)
    for (std::int64_t q = 0; q < q_count; ++q) {
      T* row = cols + (p * q_count + q) * shape.r * shape.s * shape.c;
      for (std::int64_t r = 0; r < shape.r; ++r)
        for (std::int64_t s = 0; s < shape.s; ++s, row += shape.c) {
          const std::int64_t h = p * shape.stride_h - shape.pad_h + r * shape.dilation_h;
          const std::int64_t w = q * shape.stride_w - shape.pad_w + s * shape.dilation_w;
          if (h < 0 || h >= shape.h || w < 0 || w >= shape.w)
            std::fill_n(row, shape.c, T(0));
          else
            std::copy_n(image + (h * shape.w + w) * shape.c, shape.c, row);
        }
    }
}

// image (one NHWC image, zeroed by the caller) += the scatter of cols.
template <class T>
void col2im(const ConvShape& shape, const T* cols, T* image) {
  const std::int64_t p_count = shape.out_h(), q_count = shape.out_w();
  for (std::int64_t p = 0; p < p_count; ++p)
    for (std::int64_t q = 0; q < q_count; ++q) {
      const T* row = cols + (p * q_count + q) * shape.r * shape.s * shape.c;
      for (std::int64_t r = 0; r < shape.r; ++r)
        for (std::int64_t s = 0; s < shape.s; ++s, row += shape.c) {
          const std::int64_t h = p * shape.stride_h - shape.pad_h + r * shape.dilation_h;
          const std::int64_t w = q * shape.stride_w - shape.pad_w + s * shape.dilation_w;
          if (h < 0 || h >= shape.h || w < 0 || w >= shape.w) continue;
          T* pixel = image + (h * shape.w + w) * shape.c;
          for (std::int64_t c = 0; c < shape.c; ++c) pixel[c] += row[c];
        }
    }
}

// The images one GEMM covers: as many as fit their unrolled rows in
// unrolled_bytes_per_gemm (at least one), or all of them for a pointwise
// convolution, which unrolls nothing. One GEMM over a group rather than one
// per image matters on a CPU: a 4×4 or 8×8 feature map makes a GEMM of 16 or
// 64 rows, too small to pay for BLAS's threads.
inline constexpr std::size_t unrolled_bytes_per_gemm = std::size_t(1) << 20;

template <class T>
std::int64_t images_per_gemm(const ConvShape& shape) {
  if (is_pointwise(shape)) return std::max<std::int64_t>(shape.n, 1);
  const std::int64_t bytes = std::int64_t(sizeof(T)) * shape.out_h() * shape.out_w() * shape.r * shape.s * shape.c;
  return std::clamp<std::int64_t>(std::int64_t(unrolled_bytes_per_gemm) / std::max<std::int64_t>(bytes, 1), 1,
                                  std::max<std::int64_t>(shape.n, 1));
}

// The unrolled rows of images [first, first + count), or the input itself for a pointwise convolution.
template <class T>
const T* unrolled(Context& ctx, const ConvShape& shape, const T* x, std::int64_t first, std::int64_t count) {
  const std::int64_t image_size = shape.h * shape.w * shape.c;
  if (is_pointwise(shape)) return x + first * image_size;
  const std::int64_t rows_size = shape.out_h() * shape.out_w() * shape.r * shape.s * shape.c;
  T* cols = static_cast<T*>(ctx.workspace().reserve(sizeof(T) * std::size_t(count * rows_size)));
  for (std::int64_t i = 0; i < count; ++i) im2col(shape, x + (first + i) * image_size, cols + i * rows_size);
  return cols;
}

}  // namespace detail

// y[N, P, Q, K] = x ⋆ w
template <class T>
void conv_forward(Context& ctx, const ConvShape& shape, const T* x, const T* w, T* y) {
  const std::int64_t pixels = shape.out_h() * shape.out_w(), window = shape.r * shape.s * shape.c;
  const std::int64_t group = detail::images_per_gemm<T>(shape);
  for (std::int64_t n = 0; n < shape.n; n += group) {
    const std::int64_t count = std::min(group, shape.n - n);
    gemm(false, true, count * pixels, shape.k, window, T(1), detail::unrolled(ctx, shape, x, n, count), window, w,
         window, T(0), y + n * pixels * shape.k, shape.k);
  }
}

// dx[N, H, W, C] = the input gradient (overwritten)
template <class T>
void conv_backward_data(Context& ctx, const ConvShape& shape, const T* dy, const T* w, T* dx) {
  const std::int64_t pixels = shape.out_h() * shape.out_w(), window = shape.r * shape.s * shape.c;
  const std::int64_t image_size = shape.h * shape.w * shape.c;
  if (detail::is_pointwise(shape)) {
    gemm(false, false, shape.n * pixels, window, shape.k, T(1), dy, shape.k, w, window, T(0), dx, window);
    return;
  }
  const std::int64_t group = detail::images_per_gemm<T>(shape);
  for (std::int64_t n = 0; n < shape.n; n += group) {
    const std::int64_t count = std::min(group, shape.n - n);
    T* cols = static_cast<T*>(ctx.workspace().reserve(sizeof(T) * std::size_t(count * pixels * window)));
    gemm(false, false, count * pixels, window, shape.k, T(1), dy + n * pixels * shape.k, shape.k, w, window, T(0), cols,
         window);
    std::fill_n(dx + n * image_size, count * image_size, T(0));
    for (std::int64_t i = 0; i < count; ++i)
      detail::col2im(shape, cols + i * pixels * window, dx + (n + i) * image_size);
  }
}

// dw[K, R, S, C] (+)= the filter gradient, summed over the batch
template <class T>
void conv_backward_filter(Context& ctx, const ConvShape& shape, const T* x, const T* dy, T* dw, GradientMode mode) {
  const std::int64_t pixels = shape.out_h() * shape.out_w(), window = shape.r * shape.s * shape.c;
  if (shape.n == 0 && mode == GradientMode::overwrite) std::fill_n(dw, shape.k * window, T(0));
  const std::int64_t group = detail::images_per_gemm<T>(shape);
  for (std::int64_t n = 0; n < shape.n; n += group) {
    const std::int64_t count = std::min(group, shape.n - n);
    const T beta = n == 0 && mode == GradientMode::overwrite ? T(0) : T(1);
    gemm(true, false, shape.k, window, count * pixels, T(1), dy + n * pixels * shape.k, shape.k,
         detail::unrolled(ctx, shape, x, n, count), window, beta, dw, window);
  }
}

}  // namespace cumtl::inline CUMTL_ABI::cpu
