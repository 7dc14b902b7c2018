#pragma once
// Launchers of the optimizer updates (nvcc only); same signatures as cpu::.

#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/optimizer.cuh"

namespace cumtl::cuda {

template <class T>
void sgd_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* buffer, const T* mask,
                const SgdStep& step, ScalarType working_type, std::uint16_t* working) {
  kernels::with_working_copy(working_type, working, [&]<class Working>(Working* copy) {
    launch_elementwise(ctx, "cumtl::sgd_update", kernels::sgd_update_kernel<T, Working>, count, count, values,
                       gradients, buffer, mask, kernels::sgd_coefficients<T>(step), copy);
  });
}

template <class T>
void adamw_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* m, T* v, const T* mask,
                  const AdamWStep& step, ScalarType working_type, std::uint16_t* working) {
  kernels::with_working_copy(working_type, working, [&]<class Working>(Working* copy) {
    launch_elementwise(ctx, "cumtl::adamw_update", kernels::adamw_update_kernel<T, Working>, count, count, values,
                       gradients, m, v, mask, kernels::adamw_coefficients<T>(step), copy);
  });
}

}  // namespace cumtl::cuda
