// Elementwise microbenchmarks: axpy (y = a·x + y) moves 12 bytes per float
// element (two reads, one write) and does 2 flops, so it measures how close an
// implementation gets to memory bandwidth. CPU benchmarks carry "cpu" in their
// names; GPU ones are timed with CUDA events and skip themselves, saying why,
// when no GPU is usable.
#include <benchmark/benchmark.h>

#include <cstdint>

#include <cumtl/cumtl.hpp>

namespace {

constexpr double axpy_bytes_per_element = 3 * sizeof(float);

void bench_axpy(benchmark::State& state, cumtl::Context& ctx) {
  const std::int64_t count = state.range(0);
  cumtl::Tensor x = cumtl::Tensor::empty(ctx, cumtl::Shape{count}, cumtl::ScalarType::f32);
  cumtl::Tensor y = cumtl::Tensor::empty(ctx, cumtl::Shape{count}, cumtl::ScalarType::f32);
  cumtl::Generator generator(1);
  cumtl::ops::uniform(ctx, x, generator, -1, 1);
  cumtl::ops::uniform(ctx, y, generator, -1, 1);
  ctx.synchronize();
#if CUMTL_HAS_CUDA
  cudaEvent_t start = nullptr, stop = nullptr;
  if (ctx.device().is_cuda()) {
    CUMTL_CHECK_CUDA(cudaEventCreate(&start));
    CUMTL_CHECK_CUDA(cudaEventCreate(&stop));
  }
#endif
  for (auto _ : state) {
#if CUMTL_HAS_CUDA
    if (ctx.device().is_cuda()) {
      CUMTL_CHECK_CUDA(cudaEventRecord(start, ctx.stream()));
      cumtl::ops::axpy(ctx, 0.5, x, y);
      CUMTL_CHECK_CUDA(cudaEventRecord(stop, ctx.stream()));
      CUMTL_CHECK_CUDA(cudaEventSynchronize(stop));
      float milliseconds = 0;
      CUMTL_CHECK_CUDA(cudaEventElapsedTime(&milliseconds, start, stop));
      state.SetIterationTime(milliseconds / 1e3);
      continue;
    }
#endif
    cumtl::ops::axpy(ctx, 0.5, x, y);
    benchmark::DoNotOptimize(y.raw_data());
    benchmark::ClobberMemory();
  }
#if CUMTL_HAS_CUDA
  if (start != nullptr) (void)cudaEventDestroy(start);
  if (stop != nullptr) (void)cudaEventDestroy(stop);
#endif
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(double(count) * axpy_bytes_per_element));
  state.counters["elements"] = double(count);
}

void BM_axpy_cpu(benchmark::State& state) {
  bench_axpy(state, cumtl::Context::default_for(cumtl::Device::cpu()));
}
BENCHMARK(BM_axpy_cpu)->RangeMultiplier(16)->Range(1 << 12, 1 << 24);

void BM_axpy_cuda(benchmark::State& state) {
  if (!cumtl::cuda_available()) {
    state.SkipWithError(("no usable GPU: " + cumtl::cuda_unavailable_reason()).c_str());
    return;
  }
  bench_axpy(state, cumtl::Context::default_for(cumtl::Device::cuda(0)));
}
BENCHMARK(BM_axpy_cuda)->RangeMultiplier(16)->Range(1 << 12, 1 << 26)->UseManualTime();

}  // namespace

BENCHMARK_MAIN();
