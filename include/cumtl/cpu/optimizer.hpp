#pragma once
// CPU twins of the optimizer updates: the test oracle for kernels/optimizer.cuh,
// with the same signatures as cuda::. Ranges of parameters run on the
// context's threads.

#include <cstdint>

#include "cumtl/core/context.hpp"
#include "cumtl/cpu/elementwise.hpp"
#include "cumtl/kernels/optimizer.cuh"

namespace cumtl::cpu {

// `working`, when not null, receives the updated values rounded to `working_type` (bf16 or f16).
template <class T>
void sgd_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* buffer, const T* mask,
                const SgdStep& step, ScalarType working_type, std::uint16_t* working) {
  const auto c = kernels::sgd_coefficients<T>(step);
  kernels::with_working_copy(working_type, working, [&]<class Working>(Working* copy) {
    ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        kernels::sgd_element(values[i], gradients[i], buffer[i], mask[i], c);
        kernels::store_working(copy, i, values[i]);
      }
    });
  });
}

template <class T>
void adamw_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* m, T* v, const T* mask,
                  const AdamWStep& step, ScalarType working_type, std::uint16_t* working) {
  const auto c = kernels::adamw_coefficients<T>(step);
  kernels::with_working_copy(working_type, working, [&]<class Working>(Working* copy) {
    ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        kernels::adamw_element(values[i], gradients[i], m[i], v[i], mask[i], c);
        kernels::store_working(copy, i, values[i]);
      }
    });
  });
}

}  // namespace cumtl::cpu
