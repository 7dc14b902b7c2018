// Elementwise microbenchmarks: axpy (y = a·x + y) moves 12 bytes per float
// element (two reads, one write) and does 2 flops, so it measures how close an
// implementation gets to memory bandwidth. CPU benchmarks carry "cpu" in their
// names; GPU ones skip themselves, saying why, when no GPU is usable.
#include <cstdint>

#include "support.hpp"

namespace {

constexpr double axpy_bytes_per_element = 3 * sizeof(float);

struct AxpyOperands {
  cumtl::Tensor x, y;
  AxpyOperands(cumtl::Context& ctx, std::int64_t count)
      : x(cumtl::Tensor::empty(ctx, cumtl::Shape{count}, cumtl::ScalarType::f32)),
        y(cumtl::Tensor::empty(ctx, cumtl::Shape{count}, cumtl::ScalarType::f32)) {
    cumtl::Generator generator(1);
    cumtl::ops::uniform(ctx, x, generator, -1, 1);
    cumtl::ops::uniform(ctx, y, generator, -1, 1);
  }
};

void BM_axpy_cpu(benchmark::State& state) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  AxpyOperands operands(ctx, state.range(0));
  for (auto _ : state) {
    cumtl::ops::axpy(ctx, 0.5, operands.x, operands.y);
    benchmark::DoNotOptimize(operands.y.raw_data());
    benchmark::ClobberMemory();
  }
  cumtl_bench::report_bytes(state, double(state.range(0)) * axpy_bytes_per_element);
}
BENCHMARK(BM_axpy_cpu)->RangeMultiplier(16)->Range(1 << 12, 1 << 24);

void BM_axpy_cuda(benchmark::State& state) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  AxpyOperands operands(ctx, state.range(0));
  cumtl_bench::time_gpu(state, ctx, double(state.range(0)) * axpy_bytes_per_element,
                        [&] { cumtl::ops::axpy(ctx, 0.5, operands.x, operands.y); });
}
BENCHMARK(BM_axpy_cuda)->RangeMultiplier(16)->Range(1 << 12, 1 << 26)->UseManualTime();

}  // namespace

BENCHMARK_MAIN();
