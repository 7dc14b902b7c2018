// Elementwise activations and the residual add, the cheapest kernels of a
// ResNet step and purely memory-bound: relu forward reads x and writes y (8
// bytes per float), relu backward reads dy and y and writes dx (12), add reads
// a and b and writes out (12). How close each gets to the card's copy bandwidth
// is the whole story. CPU benchmarks carry "cpu" in their names; GPU ones skip
// themselves, saying why, when no GPU is usable.
#include <cstdint>

#include "support.hpp"

namespace {

constexpr double relu_forward_bytes = 2 * sizeof(float);
constexpr double relu_backward_bytes = 3 * sizeof(float);
constexpr double add_bytes = 3 * sizeof(float);

// Three tensors of `count` floats: the inputs uniform in [-1, 1) so half the
// elements are negative and ReLU's mask is as mixed as in a network. The
// output is zeroed here so that first-touch page faults (CPU) fall outside the
// timed loop.
struct Operands {
  cumtl::Tensor a, b, out;
  Operands(cumtl::Context& ctx, std::int64_t count)
      : a(cumtl::Tensor::empty(ctx, cumtl::Shape{count}, cumtl::ScalarType::f32)),
        b(cumtl::Tensor::empty(ctx, cumtl::Shape{count}, cumtl::ScalarType::f32)),
        out(cumtl::Tensor::zeros(ctx, cumtl::Shape{count}, cumtl::ScalarType::f32)) {
    cumtl::Generator generator(3);
    cumtl::ops::uniform(ctx, a, generator, -1, 1);
    cumtl::ops::uniform(ctx, b, generator, -1, 1);
  }
};

enum class Op { relu_forward, relu_backward, add };

double bytes_per_element(Op op) {
  switch (op) {
    case Op::relu_forward: return relu_forward_bytes;
    case Op::relu_backward: return relu_backward_bytes;
    case Op::add: return add_bytes;
  }
  return 0;
}

// relu_backward takes a as dy and b as y (only b's sign matters).
void run(cumtl::Context& ctx, Op op, Operands& operands) {
  switch (op) {
    case Op::relu_forward: cumtl::ops::relu_forward(ctx, operands.a, operands.out); break;
    case Op::relu_backward: cumtl::ops::relu_backward(ctx, operands.a, operands.b, operands.out); break;
    case Op::add: cumtl::ops::add(ctx, operands.a, operands.b, operands.out); break;
  }
}

template <Op op>
void BM_cpu(benchmark::State& state) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  Operands operands(ctx, state.range(0));
  for (auto _ : state) {
    run(ctx, op, operands);
    benchmark::DoNotOptimize(operands.out.raw_data());
    benchmark::ClobberMemory();
  }
  cumtl_bench::report_bytes(state, double(state.range(0)) * bytes_per_element(op));
}

template <Op op>
void BM_cuda(benchmark::State& state) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  Operands operands(ctx, state.range(0));
  cumtl_bench::time_gpu(state, ctx, double(state.range(0)) * bytes_per_element(op), [&] { run(ctx, op, operands); });
}

// 2^24 floats (64 MiB per tensor) is larger than any L2 and about one ResNet-18
// activation at batch 64 (64·56·56·64 = 12.8M); the CPU stays at 2^22 to keep
// runs short on a small machine.
constexpr std::int64_t gpu_elements = std::int64_t(1) << 24;
constexpr std::int64_t cpu_elements = std::int64_t(1) << 22;

void BM_relu_forward_cpu(benchmark::State& state) {
  BM_cpu<Op::relu_forward>(state);
}
void BM_relu_backward_cpu(benchmark::State& state) {
  BM_cpu<Op::relu_backward>(state);
}
void BM_add_cpu(benchmark::State& state) {
  BM_cpu<Op::add>(state);
}
void BM_relu_forward_cuda(benchmark::State& state) {
  BM_cuda<Op::relu_forward>(state);
}
void BM_relu_backward_cuda(benchmark::State& state) {
  BM_cuda<Op::relu_backward>(state);
}
void BM_add_cuda(benchmark::State& state) {
  BM_cuda<Op::add>(state);
}

BENCHMARK(BM_relu_forward_cpu)->Arg(cpu_elements)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_relu_backward_cpu)->Arg(cpu_elements)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_add_cpu)->Arg(cpu_elements)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_relu_forward_cuda)->Arg(gpu_elements)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_relu_backward_cuda)->Arg(gpu_elements)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_add_cuda)->Arg(gpu_elements)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
