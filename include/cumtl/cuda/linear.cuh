#pragma once
// CUDA twins of the linear layer's operations (nvcc only): cuBLAS for the
// products, kernels/bias.cuh for the bias. cuBLAS is column-major; a row-major
// [r, c] matrix is its column-major [c, r] transpose, so each row-major product
// below is issued as the transposed column-major one.
//
// bf16 and f16 go through cublasGemmEx with CUBLAS_COMPUTE_32F: 2-byte
// operands, fp32 accumulation, and α·AB + β·C formed in fp32 and rounded once
// into the 2-byte C (so an accumulated gradient is rounded once, with the old
// value added in fp32).

#include <algorithm>
#include <bit>
#include <cstdint>
#include <type_traits>

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

template <class T>
void add_bias(Context& ctx, std::int64_t rows, std::int64_t columns, const T* bias, T* y) {
  launch_elementwise(ctx, "cumtl::add_bias", kernels::add_bias_kernel<T>, rows * columns, rows * columns, columns, bias,
                     y);
}

// The tile of kernels/bias.cuh's column sums: TX columns × TY rows per block,
// column tiles × row blocks in the grid, and the rows each row block owns.
struct BiasGradientGrid {
  dim3 block;
  dim3 grid;
  std::int64_t rows_per_block = 0;
  std::int64_t row_blocks = 0;
};

// `resident` is how many blocks of the kernels fit on one multiprocessor. The
// row blocks make about one wave of them, so the device is busy with as few
// partials as that takes, but no more than leave each thread 16 rows, so a
// short column (a linear head's) is one block and needs no second pass.
inline BiasGradientGrid bias_gradient_grid(const Context& ctx, std::int64_t rows, std::int64_t columns, int resident) {
  constexpr std::int64_t min_rows_per_thread = 16;
  const std::int64_t tile = std::min<std::int64_t>(32, std::int64_t(std::bit_ceil(std::uint64_t(columns))));
  const std::int64_t tile_rows = kernels::bias_gradient_threads / tile;
  const std::int64_t column_tiles = (columns + tile - 1) / tile;
  const std::int64_t wave = std::int64_t(resident) * ctx.multiprocessor_count();
  const std::int64_t wanted = std::max<std::int64_t>(1, wave / column_tiles);
  const std::int64_t limit =
      std::min<std::int64_t>((rows + tile_rows * min_rows_per_thread - 1) / (tile_rows * min_rows_per_thread), 65535);
  const std::int64_t row_blocks = std::clamp<std::int64_t>(wanted, 1, std::max<std::int64_t>(limit, 1));
  BiasGradientGrid shape;
  shape.rows_per_block = std::max<std::int64_t>((rows + row_blocks - 1) / row_blocks, 1);
  shape.row_blocks = std::max<std::int64_t>((rows + shape.rows_per_block - 1) / shape.rows_per_block, 1);
  shape.block = dim3(unsigned(tile), unsigned(tile_rows));
  shape.grid = dim3(unsigned(column_tiles), unsigned(shape.row_blocks));
  return shape;
}

// The summation order, and so the tolerance against cpu::bias_gradient, is
// kernels/bias.cuh's. The partials live in ctx's workspace; nothing waits on
// the host.
template <class T>
void bias_gradient(Context& ctx, std::int64_t rows, std::int64_t columns, const T* dy, T* bias_gradient,
                   GradientMode mode) {
  if (columns == 0) return;
  const ProfileRange range("cumtl::bias_gradient");
  const ::cumtl::detail::DeviceGuard guard(ctx.device().index());
  // Cached for the process: the occupancy of a kernel depends only on the binary and the device model.
  static const int resident = [] {
    int rows_kernel = 0, finish_kernel = 0;
    CUMTL_CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&rows_kernel, kernels::bias_gradient_rows_kernel<T>,
                                                                   kernels::bias_gradient_threads, 0));
    CUMTL_CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &finish_kernel, kernels::bias_gradient_finish_kernel<T>, kernels::bias_gradient_threads, 0));
    return std::max(std::min(rows_kernel, finish_kernel), 1);
  }();
  const BiasGradientGrid shape = bias_gradient_grid(ctx, rows, columns, resident);
  const bool accumulate = mode == GradientMode::accumulate;
  double* partials = nullptr;
  if (shape.row_blocks > 1)
    partials = static_cast<double*>(
        ctx.workspace().reserve(sizeof(double) * std::size_t(shape.row_blocks) * std::size_t(columns)));
  kernels::bias_gradient_rows_kernel<T><<<shape.grid, shape.block, 0, ctx.stream()>>>(
      rows, columns, shape.rows_per_block, dy, partials, bias_gradient, accumulate);
  CUMTL_CHECK_LAUNCH(ctx, "bias_gradient_rows_kernel");
  if (shape.row_blocks == 1) return;
  kernels::bias_gradient_finish_kernel<T>
      <<<shape.grid.x, shape.block, 0, ctx.stream()>>>(columns, shape.row_blocks, partials, bias_gradient, accumulate);
  CUMTL_CHECK_LAUNCH(ctx, "bias_gradient_finish_kernel");
}

// y[n, out] = x[n, in] · weight[out, in]ᵀ  ⇔  column-major yᵀ[out, n] = weightᵀᵀ · xᵀ
template <class T>
void linear_forward(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* x, const T* weight,
                    T* y) {
  if (n == 0 || out == 0) return;
  const ProfileRange range("cumtl::linear_forward");
  const ::cumtl::detail::DeviceGuard guard(ctx.device().index());
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, cublas_extent(out), cublas_extent(n), cublas_extent(in),
              compute_t<T>(1), weight, cublas_extent(in), x, cublas_extent(in), compute_t<T>(0), y, cublas_extent(out));
}

// dx[n, in] = dy[n, out] · weight[out, in]  ⇔  dxᵀ[in, n] = weightᵀ[in, out] · dyᵀ[out, n]
template <class T>
void linear_backward_data(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* weight,
                          T* dx) {
  if (n == 0 || in == 0) return;
  const ProfileRange range("cumtl::linear_backward_data");
  const ::cumtl::detail::DeviceGuard guard(ctx.device().index());
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_N, CUBLAS_OP_N, cublas_extent(in), cublas_extent(n), cublas_extent(out),
              compute_t<T>(1), weight, cublas_extent(in), dy, cublas_extent(out), compute_t<T>(0), dx,
              cublas_extent(in));
}

// dweight[out, in] (+)= dy[n, out]ᵀ · x[n, in]  ⇔  dweightᵀ[in, out] (+)= xᵀ[in, n] · dy[n, out]
template <class T>
void linear_backward_weight(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* x,
                            T* dweight, GradientMode mode) {
  if (in == 0 || out == 0) return;
  const ProfileRange range("cumtl::linear_backward_weight");
  const ::cumtl::detail::DeviceGuard guard(ctx.device().index());
  cublas_gemm(cublas_handle(ctx), CUBLAS_OP_N, CUBLAS_OP_T, cublas_extent(in), cublas_extent(out), cublas_extent(n),
              compute_t<T>(1), x, cublas_extent(in), dy, cublas_extent(out),
              compute_t<T>(mode == GradientMode::accumulate ? 1 : 0), dweight, cublas_extent(in));
}

}  // namespace cumtl::cuda
