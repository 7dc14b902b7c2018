#pragma once
// Launchers of batch normalization (nvcc only); same signatures as cpu::, with
// the parameters and statistics of compute_t<T> (float for bf16 and f16).
// Every pass runs on ctx's stream without a host synchronization; the
// per-(row block, channel) partials live in ctx's workspace. The row-block
// split depends only on the shape and the device (its multiprocessors and the
// kernels' occupancy on it), so repeated runs on one device sum in the same
// order and agree to the bit.
//
// Synchronized batch norm (a ChannelSumsOverRanks given): forward train and
// backward sum the CPU twin's per-channel values over the ranks, in the same
// layout, on device memory between two kernels (three sums of C + 1, C and
// 2C + 1 doubles per layer and step). Those sums are the communicator's: the
// NCCL engine's wait for each on the host, under its timeout.

#include <algorithm>
#include <cstdint>
#include <span>

#include "cumtl/core/modes.hpp"
#include "cumtl/core/sums_over_ranks.hpp"
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
                             compute_t<T>* running_var, compute_t<T>* saved_mean, compute_t<T>* saved_invstd, T* y,
                             const ChannelSumsOverRanks* sum_over_ranks = nullptr) {
  const LaunchScope scope(ctx, "cumtl::batchnorm_forward_train");
  // Cached for the process: the occupancy of a kernel depends only on the binary and the device model.
  static const int resident =
      std::min(resident_blocks(kernels::batchnorm_statistics_kernel<T>, kernels::batchnorm_threads),
               resident_blocks(kernels::batchnorm_apply_kernel<T>, kernels::batchnorm_threads));
  const ColumnSumGrid shape = batchnorm_grid(ctx, rows, channels, resident);
  // One reservation for the partials and the moments over the ranks: a second reserve() could free the first block.
  const std::size_t partial_bytes =
      sizeof(kernels::BatchnormPartialMoments) * std::size_t(shape.row_blocks) * std::size_t(channels);
  const std::size_t rank_bytes =
      sum_over_ranks != nullptr ? sizeof(double) * std::size_t(kernels::BatchnormRankMoments::doubles(channels)) : 0;
  auto* scratch = static_cast<char*>(ctx.workspace().reserve(partial_bytes + rank_bytes));
  auto* partials = reinterpret_cast<kernels::BatchnormPartialMoments*>(scratch);

  launch(ctx, "batchnorm_statistics_kernel", kernels::batchnorm_statistics_kernel<T>, shape.grid, shape.block, rows,
         channels, shape.rows_per_block, x, partials);
  if (sum_over_ranks == nullptr) {
    launch(ctx, "batchnorm_finish_statistics_kernel", kernels::batchnorm_finish_statistics_kernel<compute_t<T>>,
           dim3(shape.grid.x), shape.block, rows, channels, shape.rows_per_block, shape.row_blocks, partials, momentum,
           eps, running_mean, running_var, saved_mean, saved_invstd);
  } else {
    // The CPU twin's merge over the ranks (cpu::detail::merge_moments_over_ranks), on the device.
    auto* moments = reinterpret_cast<double*>(scratch + partial_bytes);
    const kernels::BatchnormRankMoments rank = kernels::BatchnormRankMoments::in(moments, channels);
    launch(ctx, "batchnorm_rank_moments_kernel", kernels::batchnorm_rank_moments_kernel<>, dim3(shape.grid.x),
           shape.block, rows, channels, shape.rows_per_block, shape.row_blocks, partials, rank);
    (*sum_over_ranks)(std::span(rank.sums, std::size_t(channels) + 1));
    launch_elementwise(ctx, "batchnorm_merge_ranks_kernel", kernels::batchnorm_merge_ranks_kernel<>, channels, channels,
                       double(rows), rank);
    (*sum_over_ranks)(std::span(rank.m2, std::size_t(channels)));
    launch_elementwise(ctx, "batchnorm_store_over_ranks_kernel",
                       kernels::batchnorm_store_over_ranks_kernel<compute_t<T>>, channels, channels, rank, momentum,
                       eps, running_mean, running_var, saved_mean, saved_invstd);
  }
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
                        GradientMode mode, const ChannelSumsOverRanks* sum_over_ranks = nullptr) {
  const LaunchScope scope(ctx, "cumtl::batchnorm_backward");
  static const int resident =
      std::min(resident_blocks(kernels::batchnorm_backward_reduce_kernel<T>, kernels::batchnorm_threads),
               resident_blocks(kernels::batchnorm_backward_apply_kernel<T>, kernels::batchnorm_threads));
  const ColumnSumGrid shape = batchnorm_grid(ctx, rows, channels, resident);
  const bool relu = activation == Activation::relu;
  // One reservation for both arrays: a second reserve() could free the first block.
  const std::size_t partial_bytes =
      sizeof(kernels::BatchnormPartialGradient) * std::size_t(shape.row_blocks) * std::size_t(channels);
  const std::size_t sum_count = std::size_t(kernels::BatchnormGradientSums::doubles(channels));
  auto* scratch = static_cast<char*>(ctx.workspace().reserve(partial_bytes + sizeof(double) * sum_count));
  auto* partials = reinterpret_cast<kernels::BatchnormPartialGradient*>(scratch);
  auto* sums = reinterpret_cast<double*>(scratch + partial_bytes);

  launch(ctx, "batchnorm_backward_reduce_kernel", kernels::batchnorm_backward_reduce_kernel<T>, shape.grid, shape.block,
         rows, channels, shape.rows_per_block, dy, x, y, relu, saved_mean, partials);
  launch(ctx, "batchnorm_finish_backward_kernel", kernels::batchnorm_finish_backward_kernel<compute_t<T>>,
         dim3(shape.grid.x), shape.block, rows, channels, shape.row_blocks, partials, saved_invstd,
         mode == GradientMode::accumulate, dgamma, dbeta, sums);
  // Synchronized: dgamma and dbeta stay this rank's; dx subtracts the whole batch's means.
  if (sum_over_ranks != nullptr) (*sum_over_ranks)(std::span(sums, sum_count));
  launch(ctx, "batchnorm_backward_apply_kernel", kernels::batchnorm_backward_apply_kernel<T>, shape.grid, shape.block,
         rows, channels, shape.rows_per_block, dy, x, y, relu, gamma, saved_mean, saved_invstd,
         kernels::BatchnormGradientSums{sums, channels}, dx, dresidual);
}

}  // namespace cumtl::cuda
