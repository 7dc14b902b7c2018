// Optimizer updates over a whole model's flat parameter buffer, one launch per
// step: memory-bound, so the figure that matters is the fraction of the card's
// copy bandwidth. Sizes are ResNet-18's 11.7M and ResNet-50's 25.6M parameters
// (GPU) and 1M (CPU, to keep runs short).
//
// Bytes per parameter, float32, at the least:
//   SGD with momentum  reads w, g, momentum, mask; writes w, momentum  6 × 4 = 24
//   AdamW              reads w, g, m, v, mask;   writes w, m, v       8 × 4 = 32
// With mixed precision (the _bf16 rows), the same pass also writes the
// working copy, 2 bytes more per parameter: 26 and 34.
// SGD runs as a later step (first_step = false): the first step only writes
// the buffer, which would understate the traffic of every other step.
#include <cstdint>

#include "support.hpp"

namespace {

constexpr double sgd_bytes_per_parameter = 6 * sizeof(float);
constexpr double adamw_bytes_per_parameter = 8 * sizeof(float);
constexpr double working_copy_bytes_per_parameter = 2;

// The flat buffers an optimizer works on, with deterministic contents: weights
// and gradients random, state zero (AdamW's state becomes non-zero after the
// first timed step), and the decay mask 1 everywhere (which parameters are
// exempt does not change the traffic). `working` is the bf16 working copy of
// mixed precision; undefined when the update writes none.
struct State {
  cumtl::Tensor values, gradients, first, second, decay_mask, working;
  State(cumtl::Context& ctx, std::int64_t count, bool with_working_copy) {
    const cumtl::Shape shape{count};
    values = cumtl::Tensor::empty(ctx, shape, cumtl::ScalarType::f32);
    gradients = cumtl::Tensor::empty(ctx, shape, cumtl::ScalarType::f32);
    first = cumtl::Tensor::zeros(ctx, shape, cumtl::ScalarType::f32);
    second = cumtl::Tensor::zeros(ctx, shape, cumtl::ScalarType::f32);
    decay_mask = cumtl::Tensor::empty(ctx, shape, cumtl::ScalarType::f32);
    cumtl::Generator generator(5);
    cumtl::ops::normal(ctx, values, generator, 0, 0.05);
    cumtl::ops::normal(ctx, gradients, generator, 0, 0.01);
    cumtl::ops::fill(ctx, decay_mask, 1);
    if (with_working_copy) working = cumtl::Tensor::empty(ctx, shape, cumtl::ScalarType::bf16);
  }
};

// ResNet training's usual SGD, as a later step of it.
constexpr cumtl::SgdStep sgd_step{
    .lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .nesterov = false, .first_step = false};

// AdamW with PyTorch's defaults; the step count only changes two scalars.
constexpr cumtl::AdamWStep adamw_step{
    .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01, .step = 10};

void sgd(cumtl::Context& ctx, State& s) {
  cumtl::ops::sgd_update(ctx, s.values, s.gradients, s.first, s.decay_mask, sgd_step, s.working);
}
void adamw(cumtl::Context& ctx, State& s) {
  cumtl::ops::adamw_update(ctx, s.values, s.gradients, s.first, s.second, s.decay_mask, adamw_step, s.working);
}

template <void (*update)(cumtl::Context&, State&)>
void run_cpu(benchmark::State& state, double bytes_per_parameter, bool with_working_copy = false) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  State buffers(ctx, state.range(0), with_working_copy);
  for (auto _ : state) {
    update(ctx, buffers);
    benchmark::DoNotOptimize(buffers.values.raw_data());
    benchmark::ClobberMemory();
  }
  cumtl_bench::report_bytes(
      state,
      double(state.range(0)) * (bytes_per_parameter + (with_working_copy ? working_copy_bytes_per_parameter : 0)));
}

template <void (*update)(cumtl::Context&, State&)>
void run_cuda(benchmark::State& state, double bytes_per_parameter, bool with_working_copy = false) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  State buffers(ctx, state.range(0), with_working_copy);
  if (with_working_copy) bytes_per_parameter += working_copy_bytes_per_parameter;
  cumtl_bench::time_gpu(state, ctx, double(state.range(0)) * bytes_per_parameter, [&] { update(ctx, buffers); });
}

void BM_sgd_update_cpu(benchmark::State& state) {
  run_cpu<sgd>(state, sgd_bytes_per_parameter);
}
void BM_adamw_update_cpu(benchmark::State& state) {
  run_cpu<adamw>(state, adamw_bytes_per_parameter);
}
void BM_sgd_update_cuda(benchmark::State& state) {
  run_cuda<sgd>(state, sgd_bytes_per_parameter);
}
void BM_adamw_update_cuda(benchmark::State& state) {
  run_cuda<adamw>(state, adamw_bytes_per_parameter);
}
void BM_sgd_update_cpu_bf16(benchmark::State& state) {
  run_cpu<sgd>(state, sgd_bytes_per_parameter, true);
}
void BM_adamw_update_cpu_bf16(benchmark::State& state) {
  run_cpu<adamw>(state, adamw_bytes_per_parameter, true);
}
void BM_sgd_update_cuda_bf16(benchmark::State& state) {
  run_cuda<sgd>(state, sgd_bytes_per_parameter, true);
}
void BM_adamw_update_cuda_bf16(benchmark::State& state) {
  run_cuda<adamw>(state, adamw_bytes_per_parameter, true);
}

constexpr std::int64_t cpu_parameters = 1'000'000;
constexpr std::int64_t resnet18_parameters = 11'689'512;  // torchvision resnet18, 1000 classes
constexpr std::int64_t resnet50_parameters = 25'557'032;  // torchvision resnet50, 1000 classes

BENCHMARK(BM_sgd_update_cpu)->Arg(cpu_parameters)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_adamw_update_cpu)->Arg(cpu_parameters)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sgd_update_cpu_bf16)->Arg(cpu_parameters)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_adamw_update_cpu_bf16)->Arg(cpu_parameters)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sgd_update_cuda)
    ->Arg(resnet18_parameters)
    ->Arg(resnet50_parameters)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_adamw_update_cuda)
    ->Arg(resnet18_parameters)
    ->Arg(resnet50_parameters)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sgd_update_cuda_bf16)
    ->Arg(resnet18_parameters)
    ->Arg(resnet50_parameters)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_adamw_update_cuda_bf16)
    ->Arg(resnet18_parameters)
    ->Arg(resnet50_parameters)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
