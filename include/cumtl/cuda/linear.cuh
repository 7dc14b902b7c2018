#pragma once
// CUDA twins of the linear layer's operations (nvcc only): cuBLAS for the
// products, kernels/bias.cuh for the bias. cuBLAS is column-major; a row-major
// [r, c] matrix is its column-major [c, r] transpose, so each row-major product
// below is issued as the transposed column-major one.

#include <cstdint>

#include "cumtl/core/modes.hpp"
#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/bias.cuh"

namespace cumtl::cuda {

inline void cublas_gemm(cublasHandle_t handle, cublasOperation_t transpose_a, cublasOperation_t transpose_b, int m,
                        int n, int k, float alpha, const float* a, int lda, const float* b, int ldb, float beta,
                        float* c, int ldc) {
  CUMTL_CHECK_CUBLAS(cublasSgemm(handle, transpose_a, transpose_b, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc));
}

inline void cublas_gemm(cublasHandle_t handle, cublasOperation_t transpose_a, cublasOperation_t transpose_b, int m,
                        int n, int k, double alpha, const double* a, int lda, const double* b, int ldb, double beta,
                        double* c, int ldc) {
  CUMTL_CHECK_CUBLAS(cublasDgemm(handle, transpose_a, transpose_b, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc));
}

inline int cublas_extent(std::int64_t extent) {
  CUMTL_REQUIRE(extent >= 0 && extent <= INT32_MAX, "a matrix extent of ", extent, " is beyond cuBLAS's int range");
  return int(extent);
}

template <class T>
void add_bias(Context& ctx, std::int64_t rows, std::int64_t columns, const T* bias, T* y) {
  launch_elementwise(ctx, "cumtl::add_bias", kernels::add_bias_kernel<T>, rows * columns, rows * columns, columns, bias,
                     y);
}

template <class T>
void bias_gradient(Context& ctx, std::int64_t rows, std::int64_t columns, const T* dy, T* bias_gradient,
                   GradientMode mode) {
  launch_elementwise(ctx, "cumtl::bias_gradient", kernels::bias_gradient_kernel<T>, columns, columns, rows, dy,
                     bias_gradient, mode == GradientMode::accumulate);
}

// y[n, out] = x[n, in] · weight[out, in]ᵀ  ⇔  column-major yᵀ[out, n] = weightᵀᵀ · xᵀ
template <class T>
void linear_forward(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* x, const T* weight,
                    T* y) {
  if (n == 0 || out == 0) return;
  const ProfileRange range("cumtl::linear_forward");
  const ::cumtl::detail::DeviceGuard guard(ctx.device().index());
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, cublas_extent(out), cublas_extent(n), cublas_extent(in),
              T(1), weight, cublas_extent(in), x, cublas_extent(in), T(0), y, cublas_extent(out));
}

// dx[n, in] = dy[n, out] · weight[out, in]  ⇔  dxᵀ[in, n] = weightᵀ[in, out] · dyᵀ[out, n]
template <class T>
void linear_backward_data(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* weight,
                          T* dx) {
  if (n == 0 || in == 0) return;
  const ProfileRange range("cumtl::linear_backward_data");
  const ::cumtl::detail::DeviceGuard guard(ctx.device().index());
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_N, CUBLAS_OP_N, cublas_extent(in), cublas_extent(n), cublas_extent(out),
              T(1), weight, cublas_extent(in), dy, cublas_extent(out), T(0), dx, cublas_extent(in));
}

// dweight[out, in] (+)= dy[n, out]ᵀ · x[n, in]  ⇔  dweightᵀ[in, out] (+)= xᵀ[in, n] · dy[n, out]
template <class T>
void linear_backward_weight(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* x,
                            T* dweight, GradientMode mode) {
  if (in == 0 || out == 0) return;
  const ProfileRange range("cumtl::linear_backward_weight");
  const ::cumtl::detail::DeviceGuard guard(ctx.device().index());
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_N, CUBLAS_OP_T, cublas_extent(in), cublas_extent(out), cublas_extent(n),
              T(1), x, cublas_extent(in), dy, cublas_extent(out), mode == GradientMode::accumulate ? T(1) : T(0),
              dweight, cublas_extent(in));
}

}  // namespace cumtl::cuda
