// Image normalization, the last step of the input pipeline: an 8-bit NHWC RGB
// batch to the network's float input, (pixel / 255 − mean[c]) / std[c]. It
// reads 1 byte and writes 4 per element, so it is memory-bound and 5 bytes per
// element is its minimum traffic. GPU: a training batch of 256 images at
// 224×224; CPU: 64 images at 112×112, to keep runs short.
#include <cstdint>
#include <vector>

#include "support.hpp"

namespace {

constexpr double bytes_per_element = sizeof(std::uint8_t) + sizeof(float);

// Deterministic pixels spread over all 256 values (a multiplicative hash of
// the index: cheap for 38M elements, and the op's cost does not depend on
// the values), copied to ctx's device; the output is zeroed so that CPU
// first-touch page faults fall outside the timed loop.
struct Batch {
  cumtl::Tensor pixels, out;
  Batch(cumtl::Context& ctx, std::int64_t images, std::int64_t size) {
    const cumtl::Shape shape{images, size, size, 3};
    std::vector<std::uint8_t> host(std::size_t(shape.numel()));
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = std::uint8_t((std::uint32_t(i) * 2654435761u) >> 24);
    pixels = cumtl::Tensor::from_vector(host, shape).to(ctx, ctx.device());
    out = cumtl::Tensor::zeros(ctx, shape, cumtl::ScalarType::f32);
  }
};

double batch_bytes(const benchmark::State& state) {
  return double(state.range(0)) * double(state.range(1)) * double(state.range(1)) * 3 * bytes_per_element;
}

void BM_normalize_images_cpu(benchmark::State& state) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  Batch batch(ctx, state.range(0), state.range(1));
  for (auto _ : state) {
    cumtl::ops::normalize_images(ctx, batch.pixels, batch.out);
    benchmark::DoNotOptimize(batch.out.raw_data());
    benchmark::ClobberMemory();
  }
  cumtl_bench::report_bytes(state, batch_bytes(state));
  state.counters["images_per_second"] =
      benchmark::Counter(double(state.range(0)), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_normalize_images_cpu)->Args({64, 112})->ArgNames({"N", "size"})->Unit(benchmark::kMicrosecond);

void BM_normalize_images_cuda(benchmark::State& state) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  Batch batch(ctx, state.range(0), state.range(1));
  ctx.synchronize();  // the pixels' upload is not part of what is timed
  cumtl_bench::time_gpu(state, ctx, batch_bytes(state),
                        [&] { cumtl::ops::normalize_images(ctx, batch.pixels, batch.out); });
  state.counters["images_per_second"] =
      benchmark::Counter(double(state.range(0)), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_normalize_images_cuda)
    ->Args({256, 224})
    ->ArgNames({"N", "size"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
