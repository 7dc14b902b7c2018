#pragma once
// Launcher of the fused multi-task masked loss (nvcc only); same signature as
// cpu::multitask_loss. Three launches on ctx's stream, no host synchronization;
// the per-block sums live in ctx's workspace.

#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/multitask_loss.cuh"

namespace cumtl::cuda {

template <class T>
void multitask_loss(Context& ctx, const kernels::LossHeadTable& table, std::int64_t rows, const T* logits,
                    const std::int32_t* classes, const std::int8_t* binary, const compute_t<T>* positive_weights,
                    T* gradient, const kernels::LossOutputs<compute_t<T>>& outputs) {
  const ProfileRange range("cumtl::multitask_loss");
  const detail::DeviceGuard guard(ctx.device().index());
  CUMTL_CHECK_CUDA(cudaMemsetAsync(outputs.counts, 0, sizeof(std::int32_t) * 2 * table.count, ctx.stream()));
  // All-ones bytes: no_bad_row.
  CUMTL_CHECK_CUDA(cudaMemsetAsync(outputs.first_bad_row, 0xff, sizeof(unsigned long long), ctx.stream()));

  constexpr int count_threads = 256;
  const std::int64_t loss_blocks = (rows + kernels::loss_warps_per_block - 1) / kernels::loss_warps_per_block;
  auto* block_sums = static_cast<double*>(
      ctx.workspace().reserve(sizeof(double) * std::size_t(std::max<std::int64_t>(loss_blocks, 1)) * table.count));
  if (rows > 0) {
    kernels::count_loss_labels_kernel<>
        <<<unsigned((rows + count_threads - 1) / count_threads), count_threads, 0, ctx.stream()>>>(
            table, rows, classes, binary, outputs.counts, outputs.first_bad_row);
    CUMTL_CHECK_LAUNCH(ctx, "count_loss_labels_kernel");
    kernels::multitask_loss_kernel<T><<<unsigned(loss_blocks), 32 * kernels::loss_warps_per_block, 0, ctx.stream()>>>(
        table, rows, logits, classes, binary, positive_weights, gradient, outputs.counts, block_sums);
    CUMTL_CHECK_LAUNCH(ctx, "multitask_loss_kernel");
  }
  kernels::finish_multitask_loss_kernel<compute_t<T>><<<1, kernels::loss_finish_threads, 0, ctx.stream()>>>(
      table, rows, rows > 0 ? loss_blocks : 0, outputs.counts, block_sums, outputs.losses);
  CUMTL_CHECK_LAUNCH(ctx, "finish_multitask_loss_kernel");
}

}  // namespace cumtl::cuda
