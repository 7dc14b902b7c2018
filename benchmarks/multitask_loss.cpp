// The fused multi-task loss on the flagship's heads (7 emotions, 12 AUs, 11
// compound expressions: 30 logits, 2 class columns, 12 binary columns per
// sample) with about a third of the labels missing.
//
// Bytes per iteration are what the kernel must move at the least: the logits
// read and the gradient written (4 bytes each per logit, 2 for the _bf16 rows'
// bf16 logits), the labels read twice (counting pass and loss pass), and the
// per-block sums. The CPU benchmarks are named with "cpu"; the CUDA ones
// report the fraction of the measured peak.
#include <cstdint>

#include "../tests/support/loss_batches.hpp"
#include "support.hpp"

namespace {

double loss_bytes(const cumtl::MultiTaskLoss& loss, std::int64_t rows, cumtl::ScalarType type) {
  const double logits = 2.0 * double(cumtl::size_of(type)) * double(rows) * loss.logit_columns();
  const double labels = 2.0 * (4.0 * loss.class_columns() + loss.binary_columns()) * double(rows);
  const double block_sums = 2.0 * 8 * double(loss.heads().size()) * double(rows) / 8;
  return logits + labels + block_sums;
}

struct LossProblem {
  cumtl::MultiTaskLoss loss{cumtl_test::flagship_heads()};
  cumtl::Tensor logits, gradient;
  cumtl::MultiTaskLabels labels;
  LossProblem(cumtl::Context& ctx, std::int64_t rows, cumtl::ScalarType type) {
    const cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, rows, 1).to(ctx);
    logits = cumtl::Tensor::empty(ctx, batch.logits.shape(), type);
    cumtl::ops::convert(ctx, batch.logits, logits);
    labels = batch.labels;
    gradient = cumtl::Tensor::empty(ctx, logits.shape(), type);
  }
  void run(cumtl::Context& ctx) { loss.compute(ctx, cumtl::LossMode::train, logits, labels, gradient); }
};

void run_cpu(benchmark::State& state, cumtl::ScalarType type) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  LossProblem problem(ctx, state.range(0), type);
  for (auto _ : state) {
    problem.run(ctx);
    benchmark::DoNotOptimize(problem.gradient.raw_data());
    benchmark::ClobberMemory();
  }
  cumtl_bench::report_bytes(state, loss_bytes(problem.loss, state.range(0), type));
}

void run_cuda(benchmark::State& state, cumtl::ScalarType type) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  LossProblem problem(ctx, state.range(0), type);
  cumtl_bench::time_gpu(state, ctx, loss_bytes(problem.loss, state.range(0), type), [&] { problem.run(ctx); });
}

void BM_multitask_loss_cpu(benchmark::State& state) {
  run_cpu(state, cumtl::ScalarType::f32);
}
void BM_multitask_loss_cpu_bf16(benchmark::State& state) {
  run_cpu(state, cumtl::ScalarType::bf16);
}
void BM_multitask_loss_cuda(benchmark::State& state) {
  run_cuda(state, cumtl::ScalarType::f32);
}
void BM_multitask_loss_cuda_bf16(benchmark::State& state) {
  run_cuda(state, cumtl::ScalarType::bf16);
}

BENCHMARK(BM_multitask_loss_cpu)->RangeMultiplier(16)->Range(256, 65536)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_multitask_loss_cpu_bf16)->RangeMultiplier(16)->Range(256, 65536)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_multitask_loss_cuda)
    ->RangeMultiplier(16)
    ->Range(256, 1 << 20)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_multitask_loss_cuda_bf16)
    ->RangeMultiplier(16)
    ->Range(256, 1 << 20)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
