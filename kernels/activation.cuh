#pragma once
// Elementwise activations: ReLU and inverted dropout, forward and backward.
//
// Layout. Any dense tensor, walked flat by a grid-stride loop with consecutive
// threads on consecutive elements (coalesced); the shape does not matter.
//
// Bytes moved per element, 4-byte T:
//   relu forward       4 read + 4 written
//   relu backward      8 read (dy, y) + 4 written; it tests y rather than x,
//                      so that the forward may write y over x
//   dropout (either)   4 read + 4 written, and no mask: a stored mask would add
//                      1 byte written in forward and 1 read in backward, and
//                      memory that lives from forward to backward. Element i is
//                      kept when the Philox uniform for counter offset + i is at
//                      least p, so backward recomputes the mask from (seed,
//                      offset) and the CPU and any GPU draw the same mask.
// Dropout spends one Philox4x32-10 block (ten rounds of two 32×32→64-bit
// multiplies) per element: by estimate, not measurement, about as much time as
// its 8 bytes of traffic on a current GPU. Using all four words of a block for
// four elements would be cheaper but would tie element i to counter
// offset + i/4, and the contract is one counter per element.

#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/core/half.hpp"
#include "cumtl/kernels/grid.cuh"
#include "cumtl/kernels/random.cuh"

namespace cumtl::kernels {

// `x < 0 ? 0 : x` rather than `x > 0 ? x : 0`: a NaN propagates, as in PyTorch.
// The selects return their inputs unchanged, so a 2-byte T needs no rounding.
template <class T>
CUMTL_HOST_DEVICE inline T relu_forward_element(T x) {
  return compute_t<T>(x) < compute_t<T>(0) ? T(compute_t<T>(0)) : x;
}

// dy·[y > 0] as a select, so that an infinite or NaN dy where y ≤ 0 still gives 0.
template <class T>
CUMTL_HOST_DEVICE inline T relu_backward_element(T dy, T y) {
  return compute_t<T>(y) > compute_t<T>(0) ? dy : T(compute_t<T>(0));
}

// Whether dropout keeps the element that uses counter `index`. The uniform is
// drawn in double (53 bits) whatever the tensor's type, so the mask does not
// depend on T and p is compared without rounding it to float.
CUMTL_HOST_DEVICE inline bool dropout_keeps(std::uint64_t seed, std::uint64_t index, double p) {
  return uniform_element(seed, index, 0.0, 1.0) >= p;
}

// Forward (x → y) and backward (dy → dx) alike: kept elements times 1/(1 − p),
// the others 0. The scale is in the compute type, so a 2-byte x is multiplied
// by float's 1/(1 − p), not by one rounded to 8 or 11 bits.
template <class T>
CUMTL_HOST_DEVICE inline T dropout_element(T x, std::uint64_t seed, std::uint64_t index, double p, compute_t<T> scale) {
  return dropout_keeps(seed, index, p) ? T(compute_t<T>(x) * scale) : T(compute_t<T>(0));
}

#if defined(CUMTL_KERNEL_CODE)
// No __restrict__: y may be x (in place).
template <class T>
__global__ void relu_forward_kernel(std::int64_t count, const T* x, T* y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] = relu_forward_element(x[i]);
}

// dx may be dy (in place).
template <class T>
__global__ void relu_backward_kernel(std::int64_t count, const T* dy, const T* y, T* dx) {
  CUMTL_GRID_STRIDE_LOOP(i, count) dx[i] = relu_backward_element(dy[i], y[i]);
}

// y may be x (in place).
template <class T>
__global__ void dropout_kernel(std::int64_t count, std::uint64_t seed, std::uint64_t offset, double p,
                               compute_t<T> scale, const T* x, T* y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] = dropout_element(x[i], seed, offset + std::uint64_t(i), p, scale);
}
#endif

}  // namespace cumtl::kernels
