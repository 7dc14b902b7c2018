#pragma once
// Launchers of batch normalization (nvcc only); same signatures as cpu::, with
// the parameters and statistics of compute_t<T> (float for bf16 and f16).
// Every pass runs on ctx's stream without a host synchronization; the
// per-(row block, channel) partials live in ctx's workspace. The row-block
// split depends only on the shape and the device (its multiprocessors and the
// kernels' occupancy on it), so repeated runs on one device sum in the same
// order and agree to the bit.

#include <algorithm>
#include <cstdint>

#include "cumtl/core/modes.hpp"
#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/batchnorm.cuh"

namespace cumtl::cuda {

// The tile of kernels/batchnorm.cuh. Its row blocks may leave a thread as little
// as one row: the statistics need every row block before the apply can start.
inline ColumnSumGrid batchnorm_grid(const Context& ctx, std::int64_t rows, std::int64_t channels, int resident) {
  return column_sum_grid(ctx, rows, channels, kernels::batchnorm_threads, resident, 1);
}

template <class T>
void batchnorm_forward_train(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                             const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                             Activation activation, double momentum, double eps, compute_t<T>* running_mean,
                             compute_t<T>* running_var, compute_t<T>* saved_mean, compute_t<T>* saved_invstd, T* y) {
  const LaunchScope scope(ctx, "cumtl::batchnorm_forward_train");
  // Cached for the process: the occupancy of a kernel depends only on the binary and the device model.
  static const int resident =
      std::min(resident_blocks(kernels::batchnorm_statistics_kernel<T>, kernels::batchnorm_threads),
               resident_blocks(kernels::batchnorm_apply_kernel<T>, kernels::batchnorm_threads));
  const ColumnSumGrid shape = batchnorm_grid(ctx, rows, channels, resident);
  auto* partials = static_cast<kernels::BatchnormPartialMoments*>(ctx.workspace().reserve(
      sizeof(kernels::BatchnormPartialMoments) * std::size_t(shape.row_blocks) * std::size_t(channels)));

  launch(ctx, "batchnorm_statistics_kernel", kernels::batchnorm_statistics_kernel<T>, shape.grid, shape.block, rows,
         channels, shape.rows_per_block, x, partials);
  launch(ctx, "batchnorm_finish_statistics_kernel", kernels::batchnorm_finish_statistics_kernel<compute_t<T>>,
         dim3(shape.grid.x), shape.block, rows, channels, shape.rows_per_block, shape.row_blocks, partials, momentum,
         eps, running_mean, running_var, saved_mean, saved_invstd);
  launch(ctx, "batchnorm_apply_kernel", kernels::batchnorm_apply_kernel<T>, shape.grid, shape.block, rows, channels,
         shape.rows_per_block, x, residual, gamma, beta,
         kernels::BatchnormNormalization<compute_t<T>>{saved_mean, saved_invstd, nullptr, eps},
         activation == Activation::relu, y);
}

template <class T>
void batchnorm_forward_eval(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                            const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                            Activation activation, double eps, const compute_t<T>* running_mean,
                            const compute_t<T>* running_var, T* y) {
  if (rows == 0) return;
  const LaunchScope scope(ctx, "cumtl::batchnorm_forward_eval");
  static const int resident = resident_blocks(kernels::batchnorm_apply_kernel<T>, kernels::batchnorm_threads);
  const ColumnSumGrid shape = batchnorm_grid(ctx, rows, channels, resident);
  launch(ctx, "batchnorm_apply_kernel", kernels::batchnorm_apply_kernel<T>, shape.grid, shape.block, rows, channels,
         shape.rows_per_block, x, residual, gamma, beta,
         kernels::BatchnormNormalization<compute_t<T>>{running_mean, nullptr, running_var, eps},
         activation == Activation::relu, y);
}

template <class T>
void batchnorm_backward(Context& ctx, std::int64_t rows, std::int64_t channels, const T* dy, const T* x, const T* y,
                        const compute_t<T>* gamma, const compute_t<T>* saved_mean, const compute_t<T>* saved_invstd,
                        Activation activation, T* dx, T* dresidual, compute_t<T>* dgamma, compute_t<T>* dbeta,
                        GradientMode mode) {
  const LaunchScope scope(ctx, "cumtl::batchnorm_backward");
  static const int resident =
      std::min(resident_blocks(kernels::batchnorm_backward_reduce_kernel<T>, kernels::batchnorm_threads),
               resident_blocks(kernels::batchnorm_backward_apply_kernel<T>, kernels::batchnorm_threads));
  const ColumnSumGrid shape = batchnorm_grid(ctx, rows, channels, resident);
  const bool relu = activation == Activation::relu;
  // One reservation for both arrays: a second reserve() could free the first block.
  const std::size_t partial_bytes =
      sizeof(kernels::BatchnormPartialGradient) * std::size_t(shape.row_blocks) * std::size_t(channels);
  auto* scratch = static_cast<char*>(
      ctx.workspace().reserve(partial_bytes + sizeof(kernels::BatchnormChannelGradient) * std::size_t(channels)));
  auto* partials = reinterpret_cast<kernels::BatchnormPartialGradient*>(scratch);
  auto* sums = reinterpret_cast<kernels::BatchnormChannelGradient*>(scratch + partial_bytes);

  launch(ctx, "batchnorm_backward_reduce_kernel", kernels::batchnorm_backward_reduce_kernel<T>, shape.grid, shape.block,
         rows, channels, shape.rows_per_block, dy, x, y, relu, saved_mean, partials);
  launch(ctx, "batchnorm_finish_backward_kernel", kernels::batchnorm_finish_backward_kernel<compute_t<T>>,
         dim3(shape.grid.x), shape.block, channels, shape.row_blocks, partials, saved_invstd,
         mode == GradientMode::accumulate, dgamma, dbeta, sums);
  launch(ctx, "batchnorm_backward_apply_kernel", kernels::batchnorm_backward_apply_kernel<T>, shape.grid, shape.block,
         rows, channels, shape.rows_per_block, dy, x, y, relu, gamma, saved_mean, saved_invstd, sums, dx, dresidual);
}

}  // namespace cumtl::cuda
