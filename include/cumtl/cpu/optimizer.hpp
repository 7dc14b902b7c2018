#pragma once
// CPU twins of the optimizer updates: the test oracle for kernels/optimizer.cuh,
// with the same signatures as cuda::. Ranges of parameters run on the
// context's threads.

#include <cstdint>

#include "cumtl/core/context.hpp"
#include "cumtl/cpu/elementwise.hpp"
#include "cumtl/kernels/optimizer.cuh"

namespace cumtl::cpu {

template <class T>
void sgd_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* buffer, const T* mask,
                const SgdStep& step) {
  const auto c = kernels::sgd_coefficients<T>(step);
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) kernels::sgd_element(values[i], gradients[i], buffer[i], mask[i], c);
  });
}

template <class T>
void adamw_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* m, T* v, const T* mask,
                  const AdamWStep& step) {
  const auto c = kernels::adamw_coefficients<T>(step);
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) kernels::adamw_element(values[i], gradients[i], m[i], v[i], mask[i], c);
  });
}

}  // namespace cumtl::cpu
