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
  const LaunchScope scope(ctx, "cumtl::multitask_loss");
  memset_async(ctx, outputs.counts, 0, sizeof(std::int32_t) * 2 * std::size_t(table.count));
  // All-ones bytes: no_bad_row.
  memset_async(ctx, outputs.first_bad_row, 0xff, sizeof(unsigned long long));

  constexpr int count_threads = 256;
  const std::int64_t loss_blocks = (rows + kernels::loss_warps_per_block - 1) / kernels::loss_warps_per_block;
  auto* block_sums = static_cast<double*>(
      ctx.workspace().reserve(sizeof(double) * std::size_t(std::max<std::int64_t>(loss_blocks, 1)) * table.count));
  if (rows > 0) {
    launch(ctx, "count_loss_labels_kernel", kernels::count_loss_labels_kernel<>,
           dim3(unsigned((rows + count_threads - 1) / count_threads)), dim3(count_threads), table, rows, classes,
           binary, outputs.counts, outputs.first_bad_row);
    launch(ctx, "multitask_loss_kernel", kernels::multitask_loss_kernel<T>, dim3(unsigned(loss_blocks)),
           dim3(32 * kernels::loss_warps_per_block), table, rows, logits, classes, binary, positive_weights, gradient,
           outputs.counts, block_sums);
  }
  launch(ctx, "finish_multitask_loss_kernel", kernels::finish_multitask_loss_kernel<compute_t<T>>, dim3(1),
         dim3(kernels::loss_finish_threads), table, rows, rows > 0 ? loss_blocks : 0, outputs.counts, block_sums,
         outputs.losses);
}

}  // namespace cumtl::cuda
