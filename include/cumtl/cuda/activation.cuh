#pragma once
// Launchers of the activation kernels (nvcc only); same signatures as cpu::.

#include <cstdint>

#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/activation.cuh"

namespace cumtl::cuda {

template <class T>
void relu_forward(Context& ctx, std::int64_t count, const T* x, T* y) {
  launch_elementwise(ctx, "cumtl::relu_forward", kernels::relu_forward_kernel<T>, count, count, x, y);
}

template <class T>
void relu_backward(Context& ctx, std::int64_t count, const T* dy, const T* y, T* dx) {
  launch_elementwise(ctx, "cumtl::relu_backward", kernels::relu_backward_kernel<T>, count, count, dy, y, dx);
}

template <class T>
void dropout(Context& ctx, std::int64_t count, std::uint64_t seed, std::uint64_t offset, double p, compute_t<T> scale,
             const T* x, T* y) {
  launch_elementwise(ctx, "cumtl::dropout", kernels::dropout_kernel<T>, count, count, seed, offset, p, scale, x, y);
}

}  // namespace cumtl::cuda
