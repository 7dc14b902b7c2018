#pragma once
// CPU twins of the activation kernels (kernels/activation.cuh): the same
// per-element functions, so ReLU and the dropout mask equal the GPU's bit for
// bit. Same signatures as the cuda:: launchers. Outputs may be their inputs.

#include <cstdint>

#include "cumtl/core/context.hpp"
#include "cumtl/kernels/activation.cuh"

namespace cumtl::cpu {

template <class T>
void relu_forward(Context&, std::int64_t count, const T* x, T* y) {
  for (std::int64_t i = 0; i < count; ++i) y[i] = kernels::relu_forward_element(x[i]);
}

template <class T>
void relu_backward(Context&, std::int64_t count, const T* dy, const T* y, T* dx) {
  for (std::int64_t i = 0; i < count; ++i) dx[i] = kernels::relu_backward_element(dy[i], y[i]);
}

// y[i] = x[i]·scale where the uniform for counter offset + i is ≥ p, else 0;
// dropout's forward (x → y) and its backward (dy → dx) both.
template <class T>
void dropout(Context&, std::int64_t count, std::uint64_t seed, std::uint64_t offset, double p, compute_t<T> scale,
             const T* x, T* y) {
  for (std::int64_t i = 0; i < count; ++i)
    y[i] = kernels::dropout_element(x[i], seed, offset + std::uint64_t(i), p, scale);
}

}  // namespace cumtl::cpu
