#pragma once
// Elementwise kernels: fill, scale, axpy, add, the conversions to and from
// the 2-byte types, and the search for a non-finite value, over contiguous
// arrays.
//
// Each moves one to three words per element and does at most one fused
// multiply-add, so all that matters is reaching DRAM bandwidth: coalesced
// grid-stride loops over a grid of a few blocks per multiprocessor (enough
// loads in flight).
// Vector loads would trim instruction count but not bytes, and these arrays are
// not guaranteed 16-byte aligned once sliced, so the scalar loop is kept.

#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/core/half.hpp"
#include "cumtl/kernels/grid.cuh"

namespace cumtl::kernels {

// Whether x is infinite or NaN; written without std::isfinite so that -ffast-math cannot fold it away.
template <class T>
CUMTL_HOST_DEVICE inline bool is_nonfinite(T x) {
  return !(x - x == T(0));
}

// One rounding for a 2-byte T (core/half.hpp: compute_t), none otherwise.
template <class T>
CUMTL_HOST_DEVICE inline T add_element(T a, T b) {
  return T(compute_t<T>(a) + compute_t<T>(b));
}

#if defined(CUMTL_KERNEL_CODE)
template <class T>
__global__ void fill_kernel(T* out, std::int64_t count, T value) {
  CUMTL_GRID_STRIDE_LOOP(i, count) out[i] = value;
}

template <class T>
__global__ void scale_kernel(T* x, std::int64_t count, T alpha) {
  CUMTL_GRID_STRIDE_LOOP(i, count) x[i] *= alpha;
}

template <class T>
__global__ void axpy_kernel(std::int64_t count, T alpha, const T* __restrict__ x, T* __restrict__ y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] = alpha * x[i] + y[i];
}

// out may alias a or b (an in-place add), so no __restrict__ here.
template <class T>
__global__ void add_kernel(std::int64_t count, const T* a, const T* b, T* out) {
  CUMTL_GRID_STRIDE_LOOP(i, count) out[i] = add_element(a[i], b[i]);
}

// Sets *flag to 1 when some element is infinite or NaN, and leaves it
// otherwise. Every writer writes the same value; the write is atomic only so
// that writers racing are not a data race in CUDA's memory model.
template <class T>
__global__ void find_nonfinite_kernel(std::int64_t count, const T* __restrict__ x, std::int32_t* flag) {
  bool found = false;
  CUMTL_GRID_STRIDE_LOOP(i, count) found |= is_nonfinite(x[i]);
  if (found) atomicExch(flag, 1);
}

// The CPU twins call the same functions (core/half.hpp), so both give the same
// bits; a float64 input is rounded to float32 first, as PyTorch's conversion does.
template <class T, class Half>
__global__ void to_half_kernel(std::int64_t count, const T* __restrict__ x, Half* __restrict__ y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] = Half(float(x[i]));
}

template <class T, class Half>
__global__ void from_half_kernel(std::int64_t count, const Half* __restrict__ x, T* __restrict__ y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] = T(float(x[i]));
}

#endif

}  // namespace cumtl::kernels
