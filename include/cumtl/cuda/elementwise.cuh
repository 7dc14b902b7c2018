#pragma once
// Launchers of the elementwise kernels (nvcc only); same signatures as cpu::.

#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/elementwise.cuh"

namespace cumtl::cuda {

template <class T>
void fill(Context& ctx, T* out, std::int64_t count, T value) {
  launch_elementwise(ctx, "cumtl::fill", kernels::fill_kernel<T>, count, out, count, value);
}

template <class T>
void scale(Context& ctx, T* x, std::int64_t count, T alpha) {
  launch_elementwise(ctx, "cumtl::scale", kernels::scale_kernel<T>, count, x, count, alpha);
}

template <class T>
void axpy(Context& ctx, std::int64_t count, T alpha, const T* x, T* y) {
  launch_elementwise(ctx, "cumtl::axpy", kernels::axpy_kernel<T>, count, count, alpha, x, y);
}

template <class T>
void add(Context& ctx, std::int64_t count, const T* a, const T* b, T* out) {
  launch_elementwise(ctx, "cumtl::add", kernels::add_kernel<T>, count, count, a, b, out);
}

}  // namespace cumtl::cuda
