#pragma once
// CPU twins of the linear layer's operations (row-major, weights [out, in]),
// through CBLAS; same signatures as the cuda:: twins.
//
// bf16 and f16 have cuBLAS's rounding points: the operands widened to float,
// the float GEMM (fp32 accumulation), and each result rounded once, an
// accumulated weight gradient with the old value added in float first. The
// bias is added in float and rounded; its gradient summed in float and rounded.

#include <cstdint>

#include "cumtl/core/context.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/cpu/elementwise.hpp"
#include "cumtl/cpu/gemm.hpp"
#include "cumtl/kernels/elementwise.cuh"

namespace cumtl::cpu {

// y[rows, columns] += bias[columns] broadcast over rows.
template <class T>
void add_bias(Context&, std::int64_t rows, std::int64_t columns, const T* bias, T* y) {
  for (std::int64_t row = 0; row < rows; ++row)
    for (std::int64_t column = 0; column < columns; ++column)
      y[row * columns + column] = kernels::add_element(y[row * columns + column], bias[column]);
}

// bias_gradient[columns] (+)= Σ_rows dy[rows, columns]
template <class T>
void bias_gradient(Context&, std::int64_t rows, std::int64_t columns, const T* dy, T* bias_gradient,
                   GradientMode mode) {
  using C = compute_t<T>;
  for (std::int64_t column = 0; column < columns; ++column) {
    C sum = 0;
    for (std::int64_t row = 0; row < rows; ++row) sum += C(dy[row * columns + column]);
    bias_gradient[column] = T(mode == GradientMode::accumulate ? C(bias_gradient[column]) + sum : sum);
  }
}

// y[n, out] = x[n, in] · weight[out, in]ᵀ
template <class T>
void linear_forward(Context&, std::int64_t n, std::int64_t in, std::int64_t out, const T* x, const T* weight, T* y) {
  gemm(false, true, n, out, in, T(1), x, in, weight, in, T(0), y, out);
}

// dx[n, in] = dy[n, out] · weight[out, in]
template <class T>
void linear_backward_data(Context&, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* weight,
                          T* dx) {
  gemm(false, false, n, in, out, T(1), dy, out, weight, in, T(0), dx, in);
}

// dweight[out, in] (+)= dy[n, out]ᵀ · x[n, in]
template <class T>
void linear_backward_weight(Context&, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* x,
                            T* dweight, GradientMode mode) {
  gemm(true, false, out, in, n, T(1), dy, out, x, in, mode == GradientMode::accumulate ? T(1) : T(0), dweight, in);
}

template <class Half>
requires is_two_byte_float<Half>
void linear_forward(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const Half* x, const Half* weight,
                    Half* y) {
  through_float(ctx, x, n * in, weight, out * in, y, n * out, GradientMode::overwrite,
                [&](const float* x32, const float* weight32, float* y32) {
                  linear_forward<float>(ctx, n, in, out, x32, weight32, y32);
                });
}

template <class Half>
requires is_two_byte_float<Half>
void linear_backward_data(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const Half* dy,
                          const Half* weight, Half* dx) {
  through_float(ctx, dy, n * out, weight, out * in, dx, n * in, GradientMode::overwrite,
                [&](const float* dy32, const float* weight32, float* dx32) {
                  linear_backward_data<float>(ctx, n, in, out, dy32, weight32, dx32);
                });
}

template <class Half>
requires is_two_byte_float<Half>
void linear_backward_weight(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const Half* dy,
                            const Half* x, Half* dweight, GradientMode mode) {
  through_float(ctx, dy, n * out, x, n * in, dweight, out * in, mode,
                [&](const float* dy32, const float* x32, float* dweight32) {
                  linear_backward_weight<float>(ctx, n, in, out, dy32, x32, dweight32, mode);
                });
}

}  // namespace cumtl::cpu
