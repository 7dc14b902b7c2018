// Batch normalization over NHWC float activations, as a ResNet block uses it:
// plain (before a convolution's residual branch ends), with a fused ReLU, and
// with a fused residual add and ReLU (the block's tail). Each of training's
// forward, evaluation's forward and the backward.
//
// Bytes per iteration are the minimum traffic, E = N·H·W·C floats (the [C]
// parameters and statistics are negligible):
//   forward (train or eval)  read x (+ residual), write y           (2 + r)·4E
//   backward                 read dy, x (+ y for the ReLU mask),
//                            write dx (+ dresidual)                 (3 + relu + r)·4E
// Training's forward and the backward need per-channel sums before they can
// write anything, so an implementation that reads its inputs twice (a
// statistics pass, then an apply pass) stays well below fraction_of_peak 1:
// that gap is what a single-pass or cache-resident design would win.
//
// GPU: batch 64 at ResNet shapes, 56×56×64 (stage 1) and 14×14×256 (stage 3);
// CPU: batch 8 at 28×28×64, to keep runs short. Names read
// BM_batchnorm_<pass>_<device>/<fusion>/NxHxWxC.
#include <array>
#include <cstdint>
#include <string>

#include "support.hpp"

namespace {

enum class Pass { forward_train, forward_eval, backward };
enum class Fusion { plain, relu, residual_relu };

using Nhwc = std::array<std::int64_t, 4>;

constexpr double momentum = 0.1, eps = 1e-5;

struct Problem {
  Fusion fusion;
  cumtl::Activation activation;
  cumtl::Tensor x, residual, y, dy, dx, dresidual;  // residual and dresidual undefined unless fused
  cumtl::Tensor gamma, beta, running_mean, running_var, saved_mean, saved_invstd, dgamma, dbeta;

  // Deterministic random inputs; outputs zeroed so that CPU first-touch page
  // faults fall outside the timed loop. One training forward runs here, so the
  // backward reads real statistics and a real ReLU mask.
  Problem(cumtl::Context& ctx, const Nhwc& nhwc, Fusion fused)
      : fusion(fused), activation(fused == Fusion::plain ? cumtl::Activation::none : cumtl::Activation::relu) {
    const cumtl::Shape shape{nhwc[0], nhwc[1], nhwc[2], nhwc[3]}, channels{nhwc[3]};
    const auto f32 = cumtl::ScalarType::f32;
    cumtl::Generator generator(13);
    const auto random = [&](const cumtl::Shape& s, double mean, double stddev) {
      cumtl::Tensor t = cumtl::Tensor::empty(ctx, s, f32);
      cumtl::ops::normal(ctx, t, generator, mean, stddev);
      return t;
    };
    x = random(shape, 0.5, 2);
    dy = random(shape, 0, 1);
    if (fusion == Fusion::residual_relu) {
      residual = random(shape, 0, 1);
      dresidual = cumtl::Tensor::zeros(ctx, shape, f32);
    }
    y = cumtl::Tensor::zeros(ctx, shape, f32);
    dx = cumtl::Tensor::zeros(ctx, shape, f32);
    gamma = random(channels, 1, 0.1);
    beta = random(channels, 0, 0.1);
    running_mean = cumtl::Tensor::zeros(ctx, channels, f32);
    running_var = cumtl::Tensor::empty(ctx, channels, f32);
    cumtl::ops::fill(ctx, running_var, 1);
    saved_mean = cumtl::Tensor::zeros(ctx, channels, f32);
    saved_invstd = cumtl::Tensor::zeros(ctx, channels, f32);
    dgamma = cumtl::Tensor::zeros(ctx, channels, f32);
    dbeta = cumtl::Tensor::zeros(ctx, channels, f32);
    run(ctx, Pass::forward_train);
  }

  void run(cumtl::Context& ctx, Pass pass) {
    switch (pass) {
      case Pass::forward_train:
        cumtl::ops::batchnorm_forward_train(ctx, x, gamma, beta, residual, activation, momentum, eps, running_mean,
                                            running_var, saved_mean, saved_invstd, y);
        break;
      case Pass::forward_eval:
        cumtl::ops::batchnorm_forward_eval(ctx, x, gamma, beta, residual, activation, eps, running_mean, running_var,
                                           y);
        break;
      case Pass::backward: {
        // Without a ReLU the backward needs no y; pass none, as a layer would.
        const cumtl::Tensor mask = activation == cumtl::Activation::relu ? y : cumtl::Tensor();
        cumtl::ops::batchnorm_backward(ctx, dy, x, mask, gamma, saved_mean, saved_invstd, activation, dx, dresidual,
                                       dgamma, dbeta, cumtl::GradientMode::overwrite);
        break;
      }
    }
  }

  double bytes(Pass pass) const {
    const double tensor = double(x.bytes());
    const double with_residual = fusion == Fusion::residual_relu ? 1 : 0;
    if (pass != Pass::backward) return (2 + with_residual) * tensor;
    const double with_mask = activation == cumtl::Activation::relu ? 1 : 0;
    return (3 + with_mask + with_residual) * tensor;
  }
};

void run_cpu(benchmark::State& state, Pass pass, Fusion fusion, Nhwc shape) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  Problem problem(ctx, shape, fusion);
  for (auto _ : state) {
    problem.run(ctx, pass);
    benchmark::ClobberMemory();
  }
  cumtl_bench::report_bytes(state, problem.bytes(pass));
}

void run_cuda(benchmark::State& state, [[maybe_unused]] Pass pass, [[maybe_unused]] Fusion fusion,
              [[maybe_unused]] Nhwc shape) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  Problem problem(ctx, shape, fusion);
  cumtl_bench::time_gpu(state, ctx, problem.bytes(pass), [&] { problem.run(ctx, pass); });
}

std::string name(Pass pass, const char* device, Fusion fusion, const Nhwc& s) {
  static constexpr const char* passes[] = {"forward_train", "forward_eval", "backward"};
  static constexpr const char* fusions[] = {"plain", "relu", "residual_relu"};
  return std::string("BM_batchnorm_") + passes[int(pass)] + "_" + device + "/" + fusions[int(fusion)] + "/" +
         std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]) + "x" + std::to_string(s[3]);
}

constexpr std::array<Nhwc, 1> cpu_shapes{{{8, 28, 28, 64}}};
constexpr std::array<Nhwc, 2> gpu_shapes{{{64, 56, 56, 64}, {64, 14, 14, 256}}};

// Registered at start-up rather than by BENCHMARK macros so that each name
// spells out its pass, fusion and shape.
[[maybe_unused]] const bool registered = [] {
  for (Pass pass : {Pass::forward_train, Pass::forward_eval, Pass::backward}) {
    for (Fusion fusion : {Fusion::plain, Fusion::relu, Fusion::residual_relu}) {
      for (const Nhwc& shape : cpu_shapes)
        benchmark::RegisterBenchmark(name(pass, "cpu", fusion, shape).c_str(), run_cpu, pass, fusion, shape)
            ->Unit(benchmark::kMicrosecond);
      for (const Nhwc& shape : gpu_shapes)
        benchmark::RegisterBenchmark(name(pass, "cuda", fusion, shape).c_str(), run_cuda, pass, fusion, shape)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
