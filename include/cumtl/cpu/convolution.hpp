#pragma once
// CPU twin of the convolutions: im2col + GEMM over groups of images, the
// groups spread over the context's threads.
//
// In NHWC the C values of one input pixel are contiguous, and KRSC filters are
// rows of R·S·C values in (r, s, c) order. So unrolling each output pixel's
// receptive field into a row of R·S·C values (im2col, zeros where the window
// leaves the padded input) makes the forward pass one GEMM over the images of
// a group, Y[G·P·Q, K] = cols[G·P·Q, R·S·C] · Wᵀ, and the backward passes two
// more: dcols = dY · W, scattered back (col2im), and dW (+)= dYᵀ · cols. A 1×1
// convolution with stride 1 and no padding needs no unrolling at all. The
// unrolled images live in the context's workspace, one buffer per thread.
//
// bf16 and f16 run through the float twin: the 2-byte operands widened to
// float (exactly), the float GEMMs (fp32 accumulation), each result rounded
// once. Those are the rounding points of cuDNN's bf16 and f16 convolutions,
// whose engines cumtl keeps to those that read 2-byte operands, accumulate in
// fp32 and round the output (cuda/cudnn_conv.hpp's filters); a product of two
// 2-byte values is exact in float, so the devices differ only in the order of
// the fp32 sums.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/core/conv_shape.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/cpu/elementwise.hpp"
#include "cumtl/cpu/gemm.hpp"

namespace cumtl::cpu {

namespace detail {

inline bool is_pointwise(const ConvShape& shape) {
  return shape.r == 1 && shape.s == 1 && shape.stride_h == 1 && shape.stride_w == 1 && shape.pad_h == 0 &&
         shape.pad_w == 0;
}

// Where a filter row (fixed r, all s) lies inside the image and its taps are
// adjacent (dilation 1), its S pixels are S·C contiguous values both in the
// NHWC image and in the unrolled row: im2col and col2im move them as one block
// rather than S blocks of C, which matters when C is only 3 or 16.
inline bool row_is_contiguous(const ConvShape& shape, std::int64_t w_first) {
  return shape.dilation_w == 1 && w_first >= 0 && w_first + shape.s <= shape.w;
}

// cols[P·Q, R·S·C] from one NHWC image.
template <class T>
void im2col(const ConvShape& shape, const T* image, T* cols) {
  const std::int64_t p_count = shape.out_h(), q_count = shape.out_w(), row_size = shape.s * shape.c;
  for (std::int64_t p = 0; p < p_count; ++p)
    for (std::int64_t q = 0; q < q_count; ++q) {
      const std::int64_t w_first = q * shape.stride_w - shape.pad_w;
      T* row = cols + (p * q_count + q) * shape.r * row_size;
      for (std::int64_t r = 0; r < shape.r; ++r, row += row_size) {
        const std::int64_t h = p * shape.stride_h - shape.pad_h + r * shape.dilation_h;
        if (h < 0 || h >= shape.h) {
          std::fill_n(row, row_size, T(0));
        } else if (row_is_contiguous(shape, w_first)) {
          std::copy_n(image + (h * shape.w + w_first) * shape.c, row_size, row);
        } else {
          for (std::int64_t s = 0; s < shape.s; ++s) {
            const std::int64_t w = w_first + s * shape.dilation_w;
            if (w < 0 || w >= shape.w)
              std::fill_n(row + s * shape.c, shape.c, T(0));
            else
              std::copy_n(image + (h * shape.w + w) * shape.c, shape.c, row + s * shape.c);
          }
        }
      }
    }
}

// image (one NHWC image, zeroed by the caller) += the scatter of cols.
template <class T>
void col2im(const ConvShape& shape, const T* cols, T* image) {
  const std::int64_t p_count = shape.out_h(), q_count = shape.out_w(), row_size = shape.s * shape.c;
  for (std::int64_t p = 0; p < p_count; ++p)
    for (std::int64_t q = 0; q < q_count; ++q) {
      const std::int64_t w_first = q * shape.stride_w - shape.pad_w;
      const T* row = cols + (p * q_count + q) * shape.r * row_size;
      for (std::int64_t r = 0; r < shape.r; ++r, row += row_size) {
        const std::int64_t h = p * shape.stride_h - shape.pad_h + r * shape.dilation_h;
        if (h < 0 || h >= shape.h) continue;
        if (row_is_contiguous(shape, w_first)) {
          T* pixels = image + (h * shape.w + w_first) * shape.c;
          for (std::int64_t i = 0; i < row_size; ++i) pixels[i] += row[i];
          continue;
        }
        for (std::int64_t s = 0; s < shape.s; ++s) {
          const std::int64_t w = w_first + s * shape.dilation_w;
          if (w < 0 || w >= shape.w) continue;
          T* pixel = image + (h * shape.w + w) * shape.c;
          for (std::int64_t c = 0; c < shape.c; ++c) pixel[c] += row[s * shape.c + c];
        }
      }
    }
}

// The images one GEMM covers, which make one chunk of the thread pool's work:
// as many as fit their unrolled rows in unrolled_bytes_per_gemm (any number
// for a pointwise convolution, which unrolls nothing), at least one, and at
// most an eighth of the batch so that every core gets work. One GEMM over a
// group rather than one per image matters on a CPU: a 4×4 or 8×8 feature map
// makes a GEMM of 16 or 64 rows, too small to run well. The group depends on
// the shape alone, never on the threads (see core/thread_pool.hpp).
inline constexpr std::size_t unrolled_bytes_per_gemm = std::size_t(1) << 20;
inline constexpr std::int64_t min_chunks_per_batch = 8;

template <class T>
std::int64_t images_per_gemm(const ConvShape& shape) {
  const std::int64_t most = std::max<std::int64_t>((shape.n + min_chunks_per_batch - 1) / min_chunks_per_batch, 1);
  if (is_pointwise(shape)) return most;
  const std::int64_t bytes = std::int64_t(sizeof(T)) * shape.out_h() * shape.out_w() * shape.r * shape.s * shape.c;
  return std::clamp<std::int64_t>(std::int64_t(unrolled_bytes_per_gemm) / std::max<std::int64_t>(bytes, 1), 1, most);
}

// The batch cut into groups of images, with one unrolling buffer per thread.
struct ImageGroups {
  std::int64_t batch, size, count;
  std::int64_t unrolled_size;  // elements of one thread's buffer (0 for a pointwise convolution)

  ImageGroups(const ConvShape& shape, std::int64_t images_per_group)
      : batch(shape.n),
        size(images_per_group),
        count((shape.n + size - 1) / size),
        unrolled_size(is_pointwise(shape) ? 0 : size * shape.out_h() * shape.out_w() * shape.r * shape.s * shape.c) {}

  std::int64_t first(std::int64_t group) const { return group * size; }
  std::int64_t images(std::int64_t group) const { return std::min(size, batch - first(group)); }
};

// The filter gradient's groups: those of images_per_gemm, made larger where
// their partial gradients would take more than partial_gradient_bytes (a wide
// layer of a large network).
inline constexpr std::size_t partial_gradient_bytes = std::size_t(32) << 20;

template <class T>
std::int64_t images_per_filter_gradient(const ConvShape& shape) {
  const std::int64_t filter_bytes = std::int64_t(sizeof(T)) * shape.k * shape.r * shape.s * shape.c;
  const std::int64_t most_groups =
      std::max<std::int64_t>(std::int64_t(partial_gradient_bytes) / std::max<std::int64_t>(filter_bytes, 1), 1);
  return std::max(images_per_gemm<T>(shape), (shape.n + most_groups - 1) / most_groups);
}

// The unrolled rows of images [first, first + count) in `buffer`, or the input itself for a pointwise convolution.
template <class T>
const T* unrolled(const ConvShape& shape, const T* x, std::int64_t first, std::int64_t count, T* buffer) {
  const std::int64_t image_size = shape.h * shape.w * shape.c;
  if (is_pointwise(shape)) return x + first * image_size;
  const std::int64_t rows_size = shape.out_h() * shape.out_w() * shape.r * shape.s * shape.c;
  for (std::int64_t i = 0; i < count; ++i) im2col(shape, x + (first + i) * image_size, buffer + i * rows_size);
  return buffer;
}

}  // namespace detail

// y[N, P, Q, K] = x ⋆ w
template <class T>
void conv_forward(Context& ctx, const ConvShape& shape, const T* x, const T* w, T* y) {
  const std::int64_t pixels = shape.out_h() * shape.out_w(), window = shape.r * shape.s * shape.c;
  const detail::ImageGroups groups(shape, detail::images_per_gemm<T>(shape));
  ThreadPool& threads = ctx.cpu_threads();
  T* buffers = static_cast<T*>(ctx.workspace().reserve(sizeof(T) * std::size_t(threads.size() * groups.unrolled_size)));
  threads.run(groups.count, [&](std::int64_t group, int slot) {
    const std::int64_t first = groups.first(group), count = groups.images(group);
    const T* cols = detail::unrolled(shape, x, first, count, buffers + slot * groups.unrolled_size);
    gemm(false, true, count * pixels, shape.k, window, T(1), cols, window, w, window, T(0),
         y + first * pixels * shape.k, shape.k);
  });
}

// dx[N, H, W, C] = the input gradient (overwritten)
template <class T>
void conv_backward_data(Context& ctx, const ConvShape& shape, const T* dy, const T* w, T* dx) {
  const std::int64_t pixels = shape.out_h() * shape.out_w(), window = shape.r * shape.s * shape.c;
  const std::int64_t image_size = shape.h * shape.w * shape.c;
  const detail::ImageGroups groups(shape, detail::images_per_gemm<T>(shape));
  ThreadPool& threads = ctx.cpu_threads();
  T* buffers = static_cast<T*>(ctx.workspace().reserve(sizeof(T) * std::size_t(threads.size() * groups.unrolled_size)));
  threads.run(groups.count, [&](std::int64_t group, int slot) {
    const std::int64_t first = groups.first(group), count = groups.images(group);
    const T* dy_rows = dy + first * pixels * shape.k;
    if (detail::is_pointwise(shape)) {
      gemm(false, false, count * pixels, window, shape.k, T(1), dy_rows, shape.k, w, window, T(0),
           dx + first * image_size, window);
      return;
    }
    T* cols = buffers + slot * groups.unrolled_size;
    gemm(false, false, count * pixels, window, shape.k, T(1), dy_rows, shape.k, w, window, T(0), cols, window);
    std::fill_n(dx + first * image_size, count * image_size, T(0));
    for (std::int64_t i = 0; i < count; ++i)
      detail::col2im(shape, cols + i * pixels * window, dx + (first + i) * image_size);
  });
}

// dw[K, R, S, C] (+)= the filter gradient, summed over the batch. Each group of
// images makes its own partial gradient; their sum is taken in group order.
template <class T>
void conv_backward_filter(Context& ctx, const ConvShape& shape, const T* x, const T* dy, T* dw, GradientMode mode) {
  const std::int64_t pixels = shape.out_h() * shape.out_w(), window = shape.r * shape.s * shape.c;
  const std::int64_t filter_size = shape.k * window;
  const detail::ImageGroups groups(shape, detail::images_per_filter_gradient<T>(shape));
  ThreadPool& threads = ctx.cpu_threads();
  const std::int64_t unrolled_total = threads.size() * groups.unrolled_size;
  T* buffers =
      static_cast<T*>(ctx.workspace().reserve(sizeof(T) * std::size_t(unrolled_total + groups.count * filter_size)));
  T* partials = buffers + unrolled_total;
  threads.run(groups.count, [&](std::int64_t group, int slot) {
    const std::int64_t first = groups.first(group), count = groups.images(group);
    const T* cols = detail::unrolled(shape, x, first, count, buffers + slot * groups.unrolled_size);
    gemm(true, false, shape.k, window, count * pixels, T(1), dy + first * pixels * shape.k, shape.k, cols, window, T(0),
         partials + group * filter_size, window);
  });
  threads.run_ranges(filter_size, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    if (mode == GradientMode::overwrite) std::fill(dw + begin, dw + end, T(0));
    for (std::int64_t group = 0; group < groups.count; ++group) {
      const T* partial = partials + group * filter_size;
      for (std::int64_t i = begin; i < end; ++i) dw[i] += partial[i];
    }
  });
}

template <class Half>
requires is_two_byte_float<Half>
void conv_forward(Context& ctx, const ConvShape& shape, const Half* x, const Half* w, Half* y) {
  through_float(
      ctx, x, shape.x_count(), w, shape.w_count(), y, shape.y_count(), GradientMode::overwrite,
      [&](const float* x32, const float* w32, float* y32) { conv_forward<float>(ctx, shape, x32, w32, y32); });
}

template <class Half>
requires is_two_byte_float<Half>
void conv_backward_data(Context& ctx, const ConvShape& shape, const Half* dy, const Half* w, Half* dx) {
  through_float(ctx, dy, shape.y_count(), w, shape.w_count(), dx, shape.x_count(), GradientMode::overwrite,
                [&](const float* dy32, const float* w32, float* dx32) {
                  conv_backward_data<float>(ctx, shape, dy32, w32, dx32);
                });
}

// An accumulated gradient is rounded, then added to dw and rounded again: the
// GPU path computes the fresh gradient into 2-byte scratch memory and adds it.
template <class Half>
requires is_two_byte_float<Half>
void conv_backward_filter(Context& ctx, const ConvShape& shape, const Half* x, const Half* dy, Half* dw,
                          GradientMode mode) {
  std::vector<Half> fresh(mode == GradientMode::accumulate ? std::size_t(shape.w_count()) : 0);
  through_float(ctx, x, shape.x_count(), dy, shape.y_count(), fresh.empty() ? dw : fresh.data(), shape.w_count(),
                GradientMode::overwrite, [&](const float* x32, const float* dy32, float* dw32) {
                  conv_backward_filter<float>(ctx, shape, x32, dy32, dw32, GradientMode::overwrite);
                });
  if (!fresh.empty()) add(ctx, shape.w_count(), dw, fresh.data(), dw);
}

}  // namespace cumtl::cpu
