// The linear (fully connected) layer, y = x·Wᵀ + b, forward and backward (dx,
// dW and db), through CBLAS on the CPU and cuBLAS on a GPU. Shapes are the
// multi-task heads on ResNet-18's 512 features (7 + 11 = 18 outputs, all heads
// as one GEMM, as MultiHeadModel runs them) and a 1000-class classifier on
// ResNet-50's 2048 features, at batch 256 on the GPU and 64 on the CPU; in
// fp32 and in bf16 (cublasGemmEx with fp32 accumulation on the GPU; the CPU
// twin widens, multiplies in fp32 and rounds once).
//
// FLOPs per iteration: forward 2·N·in·out (one GEMM), backward 4·N·in·out (dx
// and dW); the bias adds N·out, which is negligible and not counted. Bytes are
// the minimum traffic: forward reads x, W, b and writes y; backward reads dy,
// x, W and writes dx, dW, db, each in the layer's type. The 18-output head is
// memory- and launch-bound, the 1000-class one is math-bound: both counters
// are reported, the FLOPs against the measured peak of the same matrix math.
#include <cstdint>
#include <string>

#include "support.hpp"

namespace {

enum class Pass { forward, backward };

struct Layer {
  std::int64_t n, in, out;
  cumtl::Tensor x, weight, bias, y, dy, dx, dweight, dbias;
  // Deterministic random inputs; outputs zeroed so that CPU first-touch page
  // faults fall outside the timed loop.
  Layer(cumtl::Context& ctx, std::int64_t batch, std::int64_t inputs, std::int64_t outputs, cumtl::ScalarType type)
      : n(batch), in(inputs), out(outputs) {
    cumtl::Generator generator(17);
    x = cumtl_bench::random_normal(ctx, cumtl::Shape{n, in}, type, generator);
    weight = cumtl_bench::random_normal(ctx, cumtl::Shape{out, in}, type, generator, 0.02);
    bias = cumtl_bench::random_normal(ctx, cumtl::Shape{out}, type, generator, 0.02);
    dy = cumtl_bench::random_normal(ctx, cumtl::Shape{n, out}, type, generator);
    y = cumtl::Tensor::zeros(ctx, dy.shape(), type);
    dx = cumtl::Tensor::zeros(ctx, x.shape(), type);
    dweight = cumtl::Tensor::zeros(ctx, weight.shape(), type);
    dbias = cumtl::Tensor::zeros(ctx, bias.shape(), type);
  }

  void run(cumtl::Context& ctx, Pass pass) {
    if (pass == Pass::forward) {
      cumtl::ops::linear_forward(ctx, x, weight, bias, y);
    } else {
      cumtl::ops::linear_backward(ctx, dy, x, weight, dx, dweight, dbias, cumtl::GradientMode::overwrite);
    }
  }

  double flops(Pass pass) const { return (pass == Pass::forward ? 2.0 : 4.0) * double(n) * double(in) * double(out); }
  // Either pass moves one x-sized, one W-sized, one y-sized and one b-sized tensor.
  double bytes() const { return double(x.bytes() + weight.bytes() + y.bytes() + bias.bytes()); }
};

// Printed as "FLOP=1.23T/s": FLOPs per iteration over the measured seconds.
void report_flops(benchmark::State& state, double flops) {
  state.counters["FLOP"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// Arguments: N, in, out.
template <Pass pass, cumtl::ScalarType type>
void run_cpu(benchmark::State& state) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  Layer layer(ctx, state.range(0), state.range(1), state.range(2), type);
  for (auto _ : state) {
    layer.run(ctx, pass);
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(cumtl::name_of(type)));
  cumtl_bench::report_bytes(state, layer.bytes());
  report_flops(state, layer.flops(pass));
}

template <Pass pass, cumtl::ScalarType type>
void run_cuda(benchmark::State& state) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  Layer layer(ctx, state.range(0), state.range(1), state.range(2), type);
  cumtl_bench::time_gpu(state, ctx, layer.bytes(), [&] { layer.run(ctx, pass); });
#if CUMTL_BENCH_CUDA  // the matrix peak is measured with cuBLAS itself (cublas_peak.cu)
  // The numeric mode of fp32 is read from the cuBLAS handle the layer ran on,
  // after it ran, rather than assumed from ctx.numerics(): what cuBLAS was
  // allowed to do decides which peak the layer is held to.
  const cumtl_bench::MatrixMath math = cumtl_bench::matrix_math_of(type, cumtl_bench::cublas_allows_tf32(ctx));
  state.SetLabel(std::string("cuBLAS ") + cumtl_bench::name_of(math) +
                 (type == cumtl::ScalarType::f32 ? " math" : " tensor-op math, fp32 accumulation"));
  const double peak = cumtl_bench::measured_peak_tflops(ctx, math);
  report_flops(state, layer.flops(pass));
  state.counters["fraction_of_peak_math"] =
      benchmark::Counter(layer.flops(pass) / 1e12 / peak, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_TFLOPS"] = peak;
#endif
}

constexpr cumtl::ScalarType f32 = cumtl::ScalarType::f32, bf16 = cumtl::ScalarType::bf16;

void BM_linear_forward_cpu(benchmark::State& state) {
  run_cpu<Pass::forward, f32>(state);
}
void BM_linear_backward_cpu(benchmark::State& state) {
  run_cpu<Pass::backward, f32>(state);
}
void BM_linear_forward_cpu_bf16(benchmark::State& state) {
  run_cpu<Pass::forward, bf16>(state);
}
void BM_linear_backward_cpu_bf16(benchmark::State& state) {
  run_cpu<Pass::backward, bf16>(state);
}
void BM_linear_forward_cuda(benchmark::State& state) {
  run_cuda<Pass::forward, f32>(state);
}
void BM_linear_backward_cuda(benchmark::State& state) {
  run_cuda<Pass::backward, f32>(state);
}
void BM_linear_forward_cuda_bf16(benchmark::State& state) {
  run_cuda<Pass::forward, bf16>(state);
}
void BM_linear_backward_cuda_bf16(benchmark::State& state) {
  run_cuda<Pass::backward, bf16>(state);
}

// Real time on the CPU: the BLAS runs on threads of its own, which the main
// thread's CPU time misses.
BENCHMARK(BM_linear_forward_cpu)
    ->Args({64, 512, 18})
    ->Args({64, 2048, 1000})
    ->ArgNames({"N", "in", "out"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_backward_cpu)
    ->Args({64, 512, 18})
    ->Args({64, 2048, 1000})
    ->ArgNames({"N", "in", "out"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_forward_cpu_bf16)
    ->Args({64, 512, 18})
    ->Args({64, 2048, 1000})
    ->ArgNames({"N", "in", "out"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_backward_cpu_bf16)
    ->Args({64, 512, 18})
    ->Args({64, 2048, 1000})
    ->ArgNames({"N", "in", "out"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_forward_cuda)
    ->Args({256, 512, 18})
    ->Args({256, 2048, 1000})
    ->ArgNames({"N", "in", "out"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_backward_cuda)
    ->Args({256, 512, 18})
    ->Args({256, 2048, 1000})
    ->ArgNames({"N", "in", "out"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_forward_cuda_bf16)
    ->Args({256, 512, 18})
    ->Args({256, 2048, 1000})
    ->ArgNames({"N", "in", "out"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_backward_cuda_bf16)
    ->Args({256, 512, 18})
    ->Args({256, 2048, 1000})
    ->ArgNames({"N", "in", "out"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
