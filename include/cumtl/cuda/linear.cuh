#pragma once
// CUDA twins of the linear layer's operations (nvcc only): cuBLAS for the
// products, cuda/bias.cuh for the bias. cuBLAS is column-major; a row-major
// [r, c] matrix is its column-major [c, r] transpose, so each row-major product
// below is issued as the transposed column-major one.
//
// bf16 and f16 go through cublasGemmEx with CUBLAS_COMPUTE_32F: 2-byte
// operands, fp32 accumulation, and α·AB + β·C formed in fp32 and rounded once
// into the 2-byte C (so an accumulated gradient is rounded once, with the old
// value added in fp32).

#include <cstdint>
#include <type_traits>

#include "cumtl/core/modes.hpp"
#include "cumtl/cuda/bias.cuh"
#include "cumtl/cuda/launch.hpp"

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

template <class Half>
requires is_two_byte_float<Half>
void cublas_gemm(cublasHandle_t handle, cublasOperation_t transpose_a, cublasOperation_t transpose_b, int m, int n,
                 int k, float alpha, const Half* a, int lda, const Half* b, int ldb, float beta, Half* c, int ldc) {
  constexpr cudaDataType_t type = std::is_same_v<Half, bfloat16_t> ? CUDA_R_16BF : CUDA_R_16F;
  CUMTL_CHECK_CUBLAS(cublasGemmEx(handle, transpose_a, transpose_b, m, n, k, &alpha, a, type, lda, b, type, ldb, &beta,
                                  c, type, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

inline int cublas_extent(std::int64_t extent) {
  CUMTL_REQUIRE(extent >= 0 && extent <= INT32_MAX, "a matrix extent of ", extent, " is beyond cuBLAS's int range");
  return int(extent);
}

// y[n, out] = x[n, in] · weight[out, in]ᵀ  ⇔  column-major yᵀ[out, n] = weightᵀᵀ · xᵀ
template <class T>
void linear_forward(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* x, const T* weight,
                    T* y) {
  if (n == 0 || out == 0) return;
  const LaunchScope scope(ctx, "cumtl::linear_forward");
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, cublas_extent(out), cublas_extent(n), cublas_extent(in),
              compute_t<T>(1), weight, cublas_extent(in), x, cublas_extent(in), compute_t<T>(0), y, cublas_extent(out));
}

// dx[n, in] = dy[n, out] · weight[out, in]  ⇔  dxᵀ[in, n] = weightᵀ[in, out] · dyᵀ[out, n]
template <class T>
void linear_backward_data(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* weight,
                          T* dx) {
  if (n == 0 || in == 0) return;
  const LaunchScope scope(ctx, "cumtl::linear_backward_data");
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_N, CUBLAS_OP_N, cublas_extent(in), cublas_extent(n), cublas_extent(out),
              compute_t<T>(1), weight, cublas_extent(in), dy, cublas_extent(out), compute_t<T>(0), dx,
              cublas_extent(in));
}

// dweight[out, in] (+)= dy[n, out]ᵀ · x[n, in]  ⇔  dweightᵀ[in, out] (+)= xᵀ[in, n] · dy[n, out]
template <class T>
void linear_backward_weight(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* x,
                            T* dweight, GradientMode mode) {
  if (in == 0 || out == 0) return;
  const LaunchScope scope(ctx, "cumtl::linear_backward_weight");
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_N, CUBLAS_OP_T, cublas_extent(in), cublas_extent(out), cublas_extent(n),
              compute_t<T>(1), x, cublas_extent(in), dy, cublas_extent(out),
              compute_t<T>(mode == GradientMode::accumulate ? 1 : 0), dweight, cublas_extent(in));
}

}  // namespace cumtl::cuda
