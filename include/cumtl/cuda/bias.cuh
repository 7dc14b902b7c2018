#pragma once
// Launchers of the bias kernels (nvcc only); same signatures as cpu::.

#include <algorithm>
#include <cstdint>

#include "cumtl/core/modes.hpp"
#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/bias.cuh"

namespace cumtl::cuda {

template <class T>
void add_bias(Context& ctx, std::int64_t rows, std::int64_t columns, const T* bias, T* y) {
  launch_elementwise(ctx, "cumtl::add_bias", kernels::add_bias_kernel<T>, rows * columns, rows * columns, columns, bias,
                     y);
}

// The tile of kernels/bias.cuh. No row block leaves a thread fewer than 16
// rows, so a short column (a linear head's) is one block and needs no second pass.
inline ColumnSumGrid bias_gradient_grid(const Context& ctx, std::int64_t rows, std::int64_t columns, int resident) {
  return column_sum_grid(ctx, rows, columns, kernels::bias_gradient_threads, resident, 16);
}

// The summation order, and so the tolerance against cpu::bias_gradient, is
// kernels/bias.cuh's. The partials live in ctx's workspace; nothing waits on
// the host.
template <class T>
void bias_gradient(Context& ctx, std::int64_t rows, std::int64_t columns, const T* dy, T* bias_gradient,
                   GradientMode mode) {
  if (columns == 0) return;
  const LaunchScope scope(ctx, "cumtl::bias_gradient");
  // Cached for the process: the occupancy of a kernel depends only on the binary and the device model.
  static const int resident =
      std::min(resident_blocks(kernels::bias_gradient_rows_kernel<T>, kernels::bias_gradient_threads),
               resident_blocks(kernels::bias_gradient_finish_kernel<T>, kernels::bias_gradient_threads));
  const ColumnSumGrid shape = bias_gradient_grid(ctx, rows, columns, resident);
  const bool accumulate = mode == GradientMode::accumulate;
  double* partials = nullptr;
  if (shape.row_blocks > 1)
    partials = static_cast<double*>(
        ctx.workspace().reserve(sizeof(double) * std::size_t(shape.row_blocks) * std::size_t(columns)));
  launch(ctx, "bias_gradient_rows_kernel", kernels::bias_gradient_rows_kernel<T>, shape.grid, shape.block, rows,
         columns, shape.rows_per_block, dy, partials, bias_gradient, accumulate);
  if (shape.row_blocks == 1) return;
  launch(ctx, "bias_gradient_finish_kernel", kernels::bias_gradient_finish_kernel<T>, dim3(shape.grid.x), shape.block,
         columns, shape.row_blocks, partials, bias_gradient, accumulate);
}

}  // namespace cumtl::cuda
