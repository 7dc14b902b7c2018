#pragma once
// Launchers of the optimizer updates (nvcc only); same signatures as cpu::.

#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/optimizer.cuh"

namespace cumtl::cuda {

template <class T>
void sgd_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* buffer, const T* mask,
                const SgdStep& step) {
  launch_elementwise(ctx, "cumtl::sgd_update", kernels::sgd_update_kernel<T>, count, count, values, gradients, buffer,
                     mask, kernels::sgd_coefficients<T>(step));
}

template <class T>
void adamw_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* m, T* v, const T* mask,
                  const AdamWStep& step) {
  launch_elementwise(ctx, "cumtl::adamw_update", kernels::adamw_update_kernel<T>, count, count, values, gradients, m, v,
                     mask, kernels::adamw_coefficients<T>(step));
}

}  // namespace cumtl::cuda
