// 2-D convolutions, forward, backward-data and backward-filter, at every
// distinct convolution shape of ResNet-18 and ResNet-50 on 224-pixel images,
// batch 64, on the GPU (cuDNN graph plans, with ctx.numerics() left at its
// defaults: TF32 allowed, non-deterministic algorithms allowed), in fp32 and in
// bf16 (2-byte tensors, fp32 accumulation, as a mixed-precision trunk runs);
// on the CPU (im2col + BLAS) two ResNet-18 3×3 shapes at batch 8 keep runs
// short, with the bf16 twin (widen, compute in fp32, round) beside fp32.
//
// Each pass does 2·N·P·Q·K·C·R·S FLOPs; the minimum bytes are one x-sized,
// one w-sized and one y-sized tensor of the pass's type (forward reads x and w
// and writes y; backward-data reads dy and w and writes dx; backward-filter
// reads x and dy and writes dw), so a bf16 pass moves half the bytes.
// fraction_of_peak_math is against the measured cuBLAS peak of the same matrix
// math (TF32 when ctx.numerics() allows it, bf16 for bf16), which is the label.
// In bf16 the RGB stem also runs with its 3 channels zero-padded to 4 and to 8
// (`stem-padded`), the same work with aligned channels: the comparison that
// decides whether the stem should pad its input for tensor cores.
// Names read BM_conv2d_<pass>_<device>[_bf16][/<networks>]/NxHxWxC_k<K>_<R>x<S>_s<stride>_p<pad>.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

using cumtl::ConvShape;
using cumtl::square_conv;

// The convolutions of ResNet-18 and ResNet-50 at 224 px, batch 64 (the plan tests list the same at batch 8).
const cumtl::ResNetConvLayout resnet18{64, 224, 64, 7, 2, 3, true, false, {64, 128, 256, 512}, {2, 2, 2, 2}};
const cumtl::ResNetConvLayout resnet50{64, 224, 64, 7, 2, 3, true, true, {64, 128, 256, 512}, {3, 4, 6, 3}};

enum class Pass { forward, backward_data, backward_filter };

// The tensors of one shape's three passes in `type` (float32 or bfloat16),
// deterministic random inputs and zeroed outputs (so that CPU first-touch page
// faults fall outside the timed loop).
struct Problem {
  ConvShape shape;
  cumtl::ops::ConvGeometry geometry;
  cumtl::Tensor x, w, y, dy, dx, dw;
  Problem(cumtl::Context& ctx, const ConvShape& s, cumtl::ScalarType type)
      : shape(s), geometry{.stride_h = s.stride_h, .stride_w = s.stride_w, .pad_h = s.pad_h, .pad_w = s.pad_w} {
    const cumtl::Shape input{s.n, s.h, s.w, s.c}, filters{s.k, s.r, s.s, s.c}, output{s.n, s.out_h(), s.out_w(), s.k};
    cumtl::Generator generator(19);
    x = cumtl_bench::random_normal(ctx, input, type, generator);
    w = cumtl_bench::random_normal(ctx, filters, type, generator);
    dy = cumtl_bench::random_normal(ctx, output, type, generator);
    y = cumtl::Tensor::zeros(ctx, output, type);
    dx = cumtl::Tensor::zeros(ctx, input, type);
    dw = cumtl::Tensor::zeros(ctx, filters, type);
  }

  void run(cumtl::Context& ctx, Pass pass) {
    switch (pass) {
      case Pass::forward: cumtl::ops::conv2d_forward(ctx, x, w, geometry, y); break;
      case Pass::backward_data: cumtl::ops::conv2d_backward_data(ctx, dy, w, geometry, dx); break;
      case Pass::backward_filter:
        cumtl::ops::conv2d_backward_filter(ctx, x, dy, geometry, dw, cumtl::GradientMode::overwrite);
        break;
    }
  }

  double flops() const {
    return 2.0 * double(shape.n) * double(shape.out_h()) * double(shape.out_w()) * double(shape.k) * double(shape.c) *
           double(shape.r) * double(shape.s);
  }
  double bytes() const { return double(x.bytes() + w.bytes() + y.bytes()); }
};

// Printed as "FLOP=1.23T/s": FLOPs per iteration over the measured seconds.
void report_flops(benchmark::State& state, double flops) {
  state.counters["FLOP"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

void run_cpu(benchmark::State& state, Pass pass, ConvShape shape, cumtl::ScalarType type) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  Problem problem(ctx, shape, type);
  for (auto _ : state) {
    problem.run(ctx, pass);
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(cumtl::name_of(type)) + ", im2col + BLAS" +
                 (type == cumtl::ScalarType::f32 ? "" : " on the widened operands, each result rounded once"));
  cumtl_bench::report_bytes(state, problem.bytes());
  report_flops(state, problem.flops());
}

void run_cuda(benchmark::State& state, [[maybe_unused]] Pass pass, [[maybe_unused]] ConvShape shape,
              [[maybe_unused]] cumtl::ScalarType type) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  Problem problem(ctx, shape, type);
  cumtl_bench::time_gpu(state, ctx, problem.bytes(), [&] { problem.run(ctx, pass); });
#if CUMTL_BENCH_CUDA  // the matrix peak is measured with cuBLAS itself (cublas_peak.cu)
  const cumtl::NumericsPolicy& numerics = ctx.numerics();
  const cumtl_bench::MatrixMath math = cumtl_bench::matrix_math_of(type, numerics.allow_tf32);
  state.SetLabel(std::string("cuDNN, ") + std::string(cumtl::name_of(type)) +
                 (type != cumtl::ScalarType::f32 ? " with fp32 accumulation"
                  : numerics.allow_tf32          ? ", TF32 allowed"
                                                 : ", fp32 strict") +
                 (numerics.deterministic ? ", deterministic" : ""));
  const double peak = cumtl_bench::measured_peak_tflops(ctx, math);
  report_flops(state, problem.flops());
  state.counters["fraction_of_peak_math"] =
      benchmark::Counter(problem.flops() / 1e12 / peak, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_TFLOPS"] = peak;
#endif
}

std::string shape_name(const ConvShape& s) {
  const auto text = [](std::int64_t v) { return std::to_string(v); };
  return text(s.n) + "x" + text(s.h) + "x" + text(s.w) + "x" + text(s.c) + "_k" + text(s.k) + "_" + text(s.r) + "x" +
         text(s.s) + "_s" + text(s.stride_h) + "_p" + text(s.pad_h);
}

constexpr const char* pass_names[] = {"forward", "backward_data", "backward_filter"};

// Registered at start-up so that each name spells out its shape and which of
// the two networks has it.
[[maybe_unused]] const bool registered = [] {
  const std::vector<ConvShape> r18 = cumtl::resnet_convolutions(resnet18), r50 = cumtl::resnet_convolutions(resnet50);
  std::vector<ConvShape> gpu_shapes = r18;
  for (const ConvShape& s : r50)
    if (std::find(r18.begin(), r18.end(), s) == r18.end()) gpu_shapes.push_back(s);
  const std::vector<ConvShape> cpu_shapes{square_conv(8, 56, 64, 64, 3, 1), square_conv(8, 14, 256, 256, 3, 1)};

  for (const cumtl::ScalarType type : {cumtl::ScalarType::f32, cumtl::ScalarType::bf16}) {
    const std::string suffix = type == cumtl::ScalarType::f32 ? "" : "_bf16";
    for (Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_filter}) {
      const std::string prefix = std::string("BM_conv2d_") + pass_names[int(pass)];
      for (const ConvShape& s : cpu_shapes)
        // Real time: the BLAS runs on threads of its own, which the main thread's CPU time misses.
        benchmark::RegisterBenchmark((prefix + "_cpu" + suffix + "/" + shape_name(s)).c_str(), run_cpu, pass, s, type)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      for (const ConvShape& s : gpu_shapes) {
        const bool in18 = std::find(r18.begin(), r18.end(), s) != r18.end();
        const bool in50 = std::find(r50.begin(), r50.end(), s) != r50.end();
        const std::string networks = in18 && in50 ? "r18+r50" : in18 ? "r18" : "r50";
        benchmark::RegisterBenchmark((prefix + "_cuda" + suffix + "/" + networks + "/" + shape_name(s)).c_str(),
                                     run_cuda, pass, s, type)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
        // The RGB stem with its channels zero-padded to 4 and 8, against C = 3 above: whether
        // padding pays on tensor cores (its input gradient is never computed in training).
        if (type == cumtl::ScalarType::bf16 && s.c == 3 && pass != Pass::backward_data)
          for (const std::int64_t padded : {4, 8}) {
            ConvShape wider = s;
            wider.c = padded;
            benchmark::RegisterBenchmark((prefix + "_cuda" + suffix + "/stem-padded/" + shape_name(wider)).c_str(),
                                         run_cuda, pass, wider, type)
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
          }
      }
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
