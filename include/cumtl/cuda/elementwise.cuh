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

// *flag (zeroed by the caller) becomes 1 when x holds an infinity or a NaN.
template <class T>
void find_nonfinite(Context& ctx, std::int64_t count, const T* x, std::int32_t* flag) {
  launch_elementwise(ctx, "cumtl::find_nonfinite", kernels::find_nonfinite_kernel<T>, count, count, x, flag);
}

// `half` is ScalarType::bf16 or ScalarType::f16 (the facade checks).
template <class T>
void to_half(Context& ctx, std::int64_t count, const T* x, ScalarType half, std::uint16_t* y) {
  if (half == ScalarType::bf16)
    launch_elementwise(ctx, "cumtl::to_half", kernels::to_half_kernel<T, bfloat16_t>, count, count, x,
                       reinterpret_cast<bfloat16_t*>(y));
  else
    launch_elementwise(ctx, "cumtl::to_half", kernels::to_half_kernel<T, float16_t>, count, count, x,
                       reinterpret_cast<float16_t*>(y));
}

template <class T>
void from_half(Context& ctx, std::int64_t count, ScalarType half, const std::uint16_t* x, T* y) {
  if (half == ScalarType::bf16)
    launch_elementwise(ctx, "cumtl::from_half", kernels::from_half_kernel<T, bfloat16_t>, count, count,
                       reinterpret_cast<const bfloat16_t*>(x), y);
  else
    launch_elementwise(ctx, "cumtl::from_half", kernels::from_half_kernel<T, float16_t>, count, count,
                       reinterpret_cast<const float16_t*>(x), y);
}

}  // namespace cumtl::cuda
