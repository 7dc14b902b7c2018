#pragma once
// Pooling over NHWC activations: max pooling (with the argmax its backward
// needs), average pooling (padding counted in the divisor) and global average
// pooling, forward and backward.
//
// Layout. x is [N, H, W, C] and y is [N, P, Q, C] with the channel fastest, so
// one thread per output element, consecutive threads on consecutive channels,
// coalesces every load and store whatever the window: for C ≥ 32 the lanes of
// a warp read one tap of 32 consecutive channels, 128 contiguous bytes.
//
// Backward passes gather. One thread per dx element walks the few windows that
// can contain it (⌈k/s⌉ per axis) and sums their contributions in a fixed
// order (p, then q, ascending). Scattering from the windows instead would need
// floating-point atomics wherever windows overlap (3×3/2 in the ResNet stem),
// whose order, and so whose rounding, changes from run to run; the gather is
// deterministic, does the CPU twin's sums in the CPU twin's order, and writes
// each dx element exactly once, so dx needs no zeroing pass.
//
// Bytes moved, 4-byte T (windows overlap only by their border, so re-reads
// of x, dy and argmax hit L1/L2 and DRAM sees each tensor about once):
//   max forward      4·NHWC read + 4·NPQC (y) + 4·NPQC (argmax, int32) written
//   max backward     4·NPQC (dy) + 4·NPQC (argmax) read + 4·NHWC written
//   avg forward      4·NHWC read + 4·NPQC written
//   avg backward     4·NPQC read + 4·NHWC written
//   global forward   4·NHWC read + 4·NC written
//   global backward  4·NC read + 4·NHWC written
// All are memory-bound; the arithmetic that matters is unravelling a flat index
// into (n, row, column, channel), three integer divisions per element. Those are
// several times dearer in 64 bits than in 32, so the kernels are templates on
// the index type and the launchers use 32-bit indices whenever every offset
// fits (any activation under 2³¹ elements).
//
// Global average pooling gives one thread each (n, c) and walks the H·W plane
// with stride C: coalesced across c, deterministic (a fixed summation order),
// and parallel enough where it is used, at the end of a trunk (7×7 planes, N·C
// in the tens of thousands).
//
// Every activation type: float and double, and the 2-byte bf16 and f16 of
// mixed precision, whose sums run in float (compute_t) and are rounded once at
// the end, so a 2-byte result is the float result on the same inputs rounded
// (the byte counts above halve). Max pooling selects an input, in any type.

#include <cmath>
#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/core/half.hpp"
#include "cumtl/kernels/grid.cuh"

namespace cumtl::kernels {

// The geometry of one pooling: x is [batch, in_h, in_w, channels], y is
// [batch, out_h, out_w, channels]. Passed to kernels by value (no device copy).
// The facade guarantees in_h·in_w and in_h + 2·pad_h fit in an int32.
struct PoolShape {
  std::int64_t batch = 0, channels = 0;
  int in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};

CUMTL_HOST_DEVICE inline std::int64_t pool_input_count(const PoolShape& s) {
  return s.batch * s.in_h * s.in_w * s.channels;
}
CUMTL_HOST_DEVICE inline std::int64_t pool_output_count(const PoolShape& s) {
  return s.batch * s.out_h * s.out_w * s.channels;
}

CUMTL_HOST_DEVICE inline int pool_min(int a, int b) {
  return a < b ? a : b;
}
CUMTL_HOST_DEVICE inline int pool_max(int a, int b) {
  return a < b ? b : a;
}

// Where one element of an NHWC tensor sits.
template <class Index>
struct PoolPosition {
  Index n;
  int h, w;
  Index c;
};

template <class Index>
CUMTL_HOST_DEVICE inline PoolPosition<Index> pool_unravel(Index i, int height, int width, std::int64_t channels) {
  const Index c = i % Index(channels);
  i /= Index(channels);
  const int w = int(i % Index(width));
  i /= Index(width);
  const int h = int(i % Index(height));
  return {i / Index(height), h, w, c};
}

template <class Index>
CUMTL_HOST_DEVICE inline Index pool_offset(Index n, int h, int w, Index c, int height, int width,
                                           std::int64_t channels) {
  return ((n * Index(height) + Index(h)) * Index(width) + Index(w)) * Index(channels) + c;
}

// Window (p, q): its origin, which may lie in the padding, and the rows
// [h_begin, h_end) and columns [w_begin, w_end) it covers inside the input.
struct PoolWindow {
  int h0, w0, h_begin, h_end, w_begin, w_end;
};

CUMTL_HOST_DEVICE inline PoolWindow pool_window(const PoolShape& s, int p, int q) {
  const int h0 = p * s.stride_h - s.pad_h, w0 = q * s.stride_w - s.pad_w;
  return {
      h0, w0, pool_max(h0, 0), pool_min(h0 + s.kernel_h, s.in_h), pool_max(w0, 0), pool_min(w0 + s.kernel_w, s.in_w)};
}

// The windows [begin, end) along one axis that contain input coordinate x:
// those p with p·stride − pad ≤ x < p·stride − pad + kernel.
struct PoolRange {
  int begin, end;
};

CUMTL_HOST_DEVICE inline PoolRange pool_covering(int x, int kernel, int stride, int pad, int out) {
  const int lowest = x + pad - kernel + 1;  // p·stride ≥ lowest
  const int first = lowest <= 0 ? 0 : (lowest + stride - 1) / stride;
  const int last = (x + pad) / stride;  // x + pad ≥ 0
  return {first, pool_min(last + 1, out)};
}

// PyTorch's count_include_pad divisor: the window clipped to the padded input,
// not to the input, so padded taps count as zeros.
CUMTL_HOST_DEVICE inline int avg_pool_divisor(const PoolShape& s, int p, int q) {
  const int h0 = p * s.stride_h - s.pad_h, w0 = q * s.stride_w - s.pad_w;
  return (pool_min(h0 + s.kernel_h, s.in_h + s.pad_h) - h0) * (pool_min(w0 + s.kernel_w, s.in_w + s.pad_w) - w0);
}

template <class T>
struct PoolMax {
  T value;
  std::int32_t index;  // h·W + w within the (n, c) plane
};

// Output element i of max pooling. Strictly greater wins, so ties go to the
// first maximum in row-major window order (as in PyTorch); a NaN wins over
// any number, so it propagates. Padding never wins: it is skipped, not read
// as −∞, and every window holds at least one input element (pad ≤ kernel/2).
template <class T, class Index>
CUMTL_HOST_DEVICE inline PoolMax<T> max_pool2d_forward_element(Index i, const PoolShape& s, const T* x) {
  const PoolPosition<Index> o = pool_unravel(i, s.out_h, s.out_w, s.channels);
  const PoolWindow window = pool_window(s, o.h, o.w);
  const T* plane = x + pool_offset(o.n, 0, 0, o.c, s.in_h, s.in_w, s.channels);
  using C = compute_t<T>;
  PoolMax<T> best{T(C(-INFINITY)), -1};
  C best_value = C(-INFINITY);
  for (int h = window.h_begin; h < window.h_end; ++h) {
    for (int w = window.w_begin; w < window.w_end; ++w) {
      const std::int32_t index = h * s.in_w + w;
      const T value = plane[Index(index) * Index(s.channels)];
      const C wide = C(value);
      if (best.index < 0 || wide > best_value || (wide != wide && best_value == best_value)) {
        best = {value, index};
        best_value = wide;
      }
    }
  }
  return best;
}

// dx element i = Σ dy over the windows containing it whose argmax it is.
template <class T, class Index>
CUMTL_HOST_DEVICE inline T max_pool2d_backward_element(Index i, const PoolShape& s, const T* dy,
                                                       const std::int32_t* argmax) {
  const PoolPosition<Index> e = pool_unravel(i, s.in_h, s.in_w, s.channels);
  const PoolRange rows = pool_covering(e.h, s.kernel_h, s.stride_h, s.pad_h, s.out_h);
  const PoolRange columns = pool_covering(e.w, s.kernel_w, s.stride_w, s.pad_w, s.out_w);
  const std::int32_t self = e.h * s.in_w + e.w;
  compute_t<T> sum = 0;
  for (int p = rows.begin; p < rows.end; ++p) {
    for (int q = columns.begin; q < columns.end; ++q) {
      const Index o = pool_offset(e.n, p, q, e.c, s.out_h, s.out_w, s.channels);
      if (argmax[o] == self) sum += compute_t<T>(dy[o]);
    }
  }
  return T(sum);
}

template <class T, class Index>
CUMTL_HOST_DEVICE inline T avg_pool2d_forward_element(Index i, const PoolShape& s, const T* x) {
  const PoolPosition<Index> o = pool_unravel(i, s.out_h, s.out_w, s.channels);
  const PoolWindow window = pool_window(s, o.h, o.w);
  const T* plane = x + pool_offset(o.n, 0, 0, o.c, s.in_h, s.in_w, s.channels);
  using C = compute_t<T>;
  C sum = 0;
  for (int h = window.h_begin; h < window.h_end; ++h)
    for (int w = window.w_begin; w < window.w_end; ++w) sum += C(plane[Index(h * s.in_w + w) * Index(s.channels)]);
  return T(sum / C(avg_pool_divisor(s, o.h, o.w)));
}

// dx element i = Σ over the windows containing it of dy / (that window's divisor).
template <class T, class Index>
CUMTL_HOST_DEVICE inline T avg_pool2d_backward_element(Index i, const PoolShape& s, const T* dy) {
  const PoolPosition<Index> e = pool_unravel(i, s.in_h, s.in_w, s.channels);
  const PoolRange rows = pool_covering(e.h, s.kernel_h, s.stride_h, s.pad_h, s.out_h);
  const PoolRange columns = pool_covering(e.w, s.kernel_w, s.stride_w, s.pad_w, s.out_w);
  using C = compute_t<T>;
  C sum = 0;
  for (int p = rows.begin; p < rows.end; ++p)
    for (int q = columns.begin; q < columns.end; ++q)
      sum += C(dy[pool_offset(e.n, p, q, e.c, s.out_h, s.out_w, s.channels)]) / C(avg_pool_divisor(s, p, q));
  return T(sum);
}

// y element i = (n, c): the mean of x[n, ·, ·, c] over a plane of `plane` = H·W elements.
template <class T, class Index>
CUMTL_HOST_DEVICE inline T global_avg_pool_forward_element(Index i, std::int64_t plane, std::int64_t channels,
                                                           const T* x) {
  const Index n = i / Index(channels), c = i % Index(channels);
  const T* column = x + n * Index(plane) * Index(channels) + c;
  using C = compute_t<T>;
  C sum = 0;
  for (Index k = 0; k < Index(plane); ++k) sum += C(column[k * Index(channels)]);
  return T(sum / C(plane));
}

// dx element i = dy[n, c] / (H·W).
template <class T, class Index>
CUMTL_HOST_DEVICE inline T global_avg_pool_backward_element(Index i, std::int64_t plane, std::int64_t channels,
                                                            const T* dy) {
  const Index c = i % Index(channels), n = i / (Index(plane) * Index(channels));
  return T(compute_t<T>(dy[n * Index(channels) + c]) / compute_t<T>(plane));
}

#if defined(CUMTL_KERNEL_CODE)
template <class T, class Index>
__global__ void max_pool2d_forward_kernel(PoolShape shape, std::int64_t count, const T* __restrict__ x,
                                          T* __restrict__ y, std::int32_t* __restrict__ argmax) {
  CUMTL_GRID_STRIDE_LOOP(i, count) {
    const PoolMax<T> best = max_pool2d_forward_element(Index(i), shape, x);
    y[i] = best.value;
    argmax[i] = best.index;
  }
}

template <class T, class Index>
__global__ void max_pool2d_backward_kernel(PoolShape shape, std::int64_t count, const T* __restrict__ dy,
                                           const std::int32_t* __restrict__ argmax, T* __restrict__ dx) {
  CUMTL_GRID_STRIDE_LOOP(i, count) dx[i] = max_pool2d_backward_element(Index(i), shape, dy, argmax);
}

template <class T, class Index>
__global__ void avg_pool2d_forward_kernel(PoolShape shape, std::int64_t count, const T* __restrict__ x,
                                          T* __restrict__ y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] = avg_pool2d_forward_element(Index(i), shape, x);
}

template <class T, class Index>
__global__ void avg_pool2d_backward_kernel(PoolShape shape, std::int64_t count, const T* __restrict__ dy,
                                           T* __restrict__ dx) {
  CUMTL_GRID_STRIDE_LOOP(i, count) dx[i] = avg_pool2d_backward_element(Index(i), shape, dy);
}

template <class T, class Index>
__global__ void global_avg_pool_forward_kernel(std::int64_t count, std::int64_t plane, std::int64_t channels,
                                               const T* __restrict__ x, T* __restrict__ y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] = global_avg_pool_forward_element(Index(i), plane, channels, x);
}

template <class T, class Index>
__global__ void global_avg_pool_backward_kernel(std::int64_t count, std::int64_t plane, std::int64_t channels,
                                                const T* __restrict__ dy, T* __restrict__ dx) {
  CUMTL_GRID_STRIDE_LOOP(i, count) dx[i] = global_avg_pool_backward_element(Index(i), plane, channels, dy);
}
#endif

}  // namespace cumtl::kernels
