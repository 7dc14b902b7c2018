#pragma once
// CPU twins of the linear layer's operations (row-major, weights [out, in]),
// through CBLAS; same signatures as the cuda:: twins.

#include <cstdint>

#include "cumtl/core/context.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/cpu/gemm.hpp"

namespace cumtl::cpu {

// y[rows, columns] += bias[columns] broadcast over rows.
template <class T>
void add_bias(Context&, std::int64_t rows, std::int64_t columns, const T* bias, T* y) {
  for (std::int64_t row = 0; row < rows; ++row)
    for (std::int64_t column = 0; column < columns; ++column) y[row * columns + column] += bias[column];
}

// bias_gradient[columns] (+)= Σ_rows dy[rows, columns]
template <class T>
void bias_gradient(Context&, std::int64_t rows, std::int64_t columns, const T* dy, T* bias_gradient,
                   GradientMode mode) {
  for (std::int64_t column = 0; column < columns; ++column) {
    T sum = 0;
    for (std::int64_t row = 0; row < rows; ++row) sum += dy[row * columns + column];
    bias_gradient[column] = mode == GradientMode::accumulate ? bias_gradient[column] + sum : sum;
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

}  // namespace cumtl::cpu
