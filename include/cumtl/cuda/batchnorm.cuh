#pragma once
// Launchers of batch normalization (nvcc only); same signatures as cpu::, with
// the parameters and statistics of compute_t<T> (float for bf16 and f16).
// Every pass runs on ctx's stream without a host synchronization; the
// per-(row block, channel) partials live in ctx's workspace. The row-block
// split depends only on the shape and the device (its multiprocessors and the
// kernels' occupancy on it), so repeated runs on one device sum in the same
// order and agree to the bit.

#include <algorithm>
#include <bit>
#include <cstdint>

#include "cumtl/core/modes.hpp"
#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/batchnorm.cuh"

namespace cumtl::cuda {

// The tile of kernels/batchnorm.cuh: TX channels × TY rows per block, channel
// tiles × row blocks in the grid, and the rows each row block owns.
struct BatchnormGrid {
  dim3 block;
  dim3 grid;
  std::int64_t rows_per_block = 0;
  std::int64_t row_blocks = 0;
};

// Blocks of `kernel` that fit on one multiprocessor at once.
template <class... Parameters>
int batchnorm_resident_blocks(void (*kernel)(Parameters...)) {
  int blocks = 0;
  CUMTL_CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kernels::batchnorm_threads, 0));
  return std::max(blocks, 1);
}

// `resident` is how many blocks of the launch's kernels fit on a multiprocessor: the grid is one full wave of them,
// so no tail of blocks waits for a second wave, and there are as few partials as keep the device busy.
inline BatchnormGrid batchnorm_grid(const Context& ctx, std::int64_t rows, std::int64_t channels, int resident) {
  const std::int64_t tile = std::min<std::int64_t>(32, std::int64_t(std::bit_ceil(std::uint64_t(channels))));
  const std::int64_t tile_rows = kernels::batchnorm_threads / tile;
  const std::int64_t channel_tiles = (channels + tile - 1) / tile;
  const std::int64_t wave = std::int64_t(resident) * ctx.multiprocessor_count();
  const std::int64_t wanted = std::max<std::int64_t>(1, wave / channel_tiles);
  const std::int64_t limit = std::min<std::int64_t>((rows + tile_rows - 1) / tile_rows, 65535);
  const std::int64_t row_blocks = std::clamp<std::int64_t>(wanted, 1, std::max<std::int64_t>(limit, 1));
  BatchnormGrid shape;
  shape.rows_per_block = std::max<std::int64_t>((rows + row_blocks - 1) / row_blocks, 1);
  shape.row_blocks = std::max<std::int64_t>((rows + shape.rows_per_block - 1) / shape.rows_per_block, 1);
  shape.block = dim3(unsigned(tile), unsigned(tile_rows));
  shape.grid = dim3(unsigned(channel_tiles), unsigned(shape.row_blocks));
  return shape;
}

template <class T>
void batchnorm_forward_train(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                             const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                             Activation activation, double momentum, double eps, compute_t<T>* running_mean,
                             compute_t<T>* running_var, compute_t<T>* saved_mean, compute_t<T>* saved_invstd, T* y) {
  const ProfileRange range("cumtl::batchnorm_forward_train");
  const detail::DeviceGuard guard(ctx.device().index());
  // Cached for the process: the occupancy of a kernel depends only on the binary and the device model.
  static const int resident = std::min(batchnorm_resident_blocks(kernels::batchnorm_statistics_kernel<T>),
                                       batchnorm_resident_blocks(kernels::batchnorm_apply_kernel<T>));
  const BatchnormGrid shape = batchnorm_grid(ctx, rows, channels, resident);
  auto* partials = static_cast<kernels::BatchnormPartialMoments*>(ctx.workspace().reserve(
      sizeof(kernels::BatchnormPartialMoments) * std::size_t(shape.row_blocks) * std::size_t(channels)));

  kernels::batchnorm_statistics_kernel<T>
      <<<shape.grid, shape.block, 0, ctx.stream()>>>(rows, channels, shape.rows_per_block, x, partials);
  CUMTL_CHECK_LAUNCH(ctx, "batchnorm_statistics_kernel");
  kernels::batchnorm_finish_statistics_kernel<compute_t<T>><<<shape.grid.x, shape.block, 0, ctx.stream()>>>(
      rows, channels, shape.rows_per_block, shape.row_blocks, partials, momentum, eps, running_mean, running_var,
      saved_mean, saved_invstd);
  CUMTL_CHECK_LAUNCH(ctx, "batchnorm_finish_statistics_kernel");
  kernels::batchnorm_apply_kernel<T><<<shape.grid, shape.block, 0, ctx.stream()>>>(
      rows, channels, shape.rows_per_block, x, residual, gamma, beta,
      kernels::BatchnormNormalization<compute_t<T>>{saved_mean, saved_invstd, nullptr, eps},
      activation == Activation::relu, y);
  CUMTL_CHECK_LAUNCH(ctx, "batchnorm_apply_kernel");
}

template <class T>
void batchnorm_forward_eval(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                            const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                            Activation activation, double eps, const compute_t<T>* running_mean,
                            const compute_t<T>* running_var, T* y) {
  if (rows == 0) return;
  const ProfileRange range("cumtl::batchnorm_forward_eval");
  const detail::DeviceGuard guard(ctx.device().index());
  static const int resident = batchnorm_resident_blocks(kernels::batchnorm_apply_kernel<T>);
  const BatchnormGrid shape = batchnorm_grid(ctx, rows, channels, resident);
  kernels::batchnorm_apply_kernel<T><<<shape.grid, shape.block, 0, ctx.stream()>>>(
      rows, channels, shape.rows_per_block, x, residual, gamma, beta,
      kernels::BatchnormNormalization<compute_t<T>>{running_mean, nullptr, running_var, eps},
      activation == Activation::relu, y);
  CUMTL_CHECK_LAUNCH(ctx, "batchnorm_apply_kernel");
}

template <class T>
void batchnorm_backward(Context& ctx, std::int64_t rows, std::int64_t channels, const T* dy, const T* x, const T* y,
                        const compute_t<T>* gamma, const compute_t<T>* saved_mean, const compute_t<T>* saved_invstd,
                        Activation activation, T* dx, T* dresidual, compute_t<T>* dgamma, compute_t<T>* dbeta,
                        GradientMode mode) {
  const ProfileRange range("cumtl::batchnorm_backward");
  const detail::DeviceGuard guard(ctx.device().index());
  static const int resident = std::min(batchnorm_resident_blocks(kernels::batchnorm_backward_reduce_kernel<T>),
                                       batchnorm_resident_blocks(kernels::batchnorm_backward_apply_kernel<T>));
  const BatchnormGrid shape = batchnorm_grid(ctx, rows, channels, resident);
  const bool relu = activation == Activation::relu;
  // One reservation for both arrays: a second reserve() could free the first block.
  const std::size_t partial_bytes =
      sizeof(kernels::BatchnormPartialGradient) * std::size_t(shape.row_blocks) * std::size_t(channels);
  auto* scratch = static_cast<char*>(
      ctx.workspace().reserve(partial_bytes + sizeof(kernels::BatchnormChannelGradient) * std::size_t(channels)));
  auto* partials = reinterpret_cast<kernels::BatchnormPartialGradient*>(scratch);
  auto* sums = reinterpret_cast<kernels::BatchnormChannelGradient*>(scratch + partial_bytes);

  kernels::batchnorm_backward_reduce_kernel<T><<<shape.grid, shape.block, 0, ctx.stream()>>>(
      rows, channels, shape.rows_per_block, dy, x, y, relu, saved_mean, partials);
  CUMTL_CHECK_LAUNCH(ctx, "batchnorm_backward_reduce_kernel");
  kernels::batchnorm_finish_backward_kernel<compute_t<T>><<<shape.grid.x, shape.block, 0, ctx.stream()>>>(
      channels, shape.row_blocks, partials, saved_invstd, mode == GradientMode::accumulate, dgamma, dbeta, sums);
  CUMTL_CHECK_LAUNCH(ctx, "batchnorm_finish_backward_kernel");
  kernels::batchnorm_backward_apply_kernel<T><<<shape.grid, shape.block, 0, ctx.stream()>>>(
      rows, channels, shape.rows_per_block, dy, x, y, relu, gamma, saved_mean, saved_invstd, sums, dx, dresidual);
  CUMTL_CHECK_LAUNCH(ctx, "batchnorm_backward_apply_kernel");
}

}  // namespace cumtl::cuda
