// The pooling layers of a ResNet: the stem's 3×3 stride-2 max pool (pad 1) on
// 112×112×64 activations, and the global average pool over the last 7×7×512
// feature map (ResNet-18's; ResNet-50's has 2048 channels). All memory-bound.
//
// Bytes per iteration at the least (float32 activations, int32 argmax):
//   max pool forward     read x, write y and argmax
//   max pool backward    read dy and argmax, write dx
//   global avg forward   read x, write y [N, C]
//   global avg backward  read dy [N, C], write dx
// GPU at batch 64; the CPU max pool at batch 4 to keep runs short.
#include <cstdint>

#include "support.hpp"

namespace {

constexpr cumtl::ops::Pool2d stem_pool{
    .kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};

// x (or dx) NHWC and everything its pooled output needs; inputs random and
// deterministic, outputs zeroed so that CPU first-touch page faults fall
// outside the timed loop. The forward runs once here, so the backward reads a
// real argmax.
struct MaxPool {
  cumtl::Tensor x, y, argmax, dy, dx;
  MaxPool(cumtl::Context& ctx, std::int64_t n, std::int64_t size, std::int64_t channels) {
    const cumtl::Shape in{n, size, size, channels};
    const cumtl::Shape out{n, stem_pool.out_h(size), stem_pool.out_w(size), channels};
    x = cumtl::Tensor::empty(ctx, in, cumtl::ScalarType::f32);
    dx = cumtl::Tensor::zeros(ctx, in, cumtl::ScalarType::f32);
    y = cumtl::Tensor::zeros(ctx, out, cumtl::ScalarType::f32);
    argmax = cumtl::Tensor::empty(ctx, out, cumtl::ScalarType::i32);
    dy = cumtl::Tensor::empty(ctx, out, cumtl::ScalarType::f32);
    cumtl::Generator generator(11);
    cumtl::ops::normal(ctx, x, generator, 0, 1);
    cumtl::ops::normal(ctx, dy, generator, 0, 1);
    forward(ctx);
  }
  void forward(cumtl::Context& ctx) { cumtl::ops::max_pool2d_forward(ctx, x, stem_pool, y, argmax); }
  void backward(cumtl::Context& ctx) { cumtl::ops::max_pool2d_backward(ctx, dy, argmax, stem_pool, dx); }
  // x and dx are alike, y, dy and argmax are alike (4 bytes each): each pass moves one of each, once.
  double bytes() const { return double(x.bytes()) + 2.0 * double(y.bytes()); }
};

struct GlobalAvgPool {
  cumtl::Tensor x, y, dy, dx;
  GlobalAvgPool(cumtl::Context& ctx, std::int64_t n, std::int64_t size, std::int64_t channels) {
    x = cumtl::Tensor::empty(ctx, cumtl::Shape{n, size, size, channels}, cumtl::ScalarType::f32);
    dx = cumtl::Tensor::zeros(ctx, x.shape(), cumtl::ScalarType::f32);
    y = cumtl::Tensor::zeros(ctx, cumtl::Shape{n, channels}, cumtl::ScalarType::f32);
    dy = cumtl::Tensor::empty(ctx, y.shape(), cumtl::ScalarType::f32);
    cumtl::Generator generator(12);
    cumtl::ops::normal(ctx, x, generator, 0, 1);
    cumtl::ops::normal(ctx, dy, generator, 0, 1);
  }
  void forward(cumtl::Context& ctx) { cumtl::ops::global_avg_pool_forward(ctx, x, y); }
  void backward(cumtl::Context& ctx) { cumtl::ops::global_avg_pool_backward(ctx, dy, dx); }
  double bytes() const { return double(x.bytes()) + double(y.bytes()); }
};

enum class Pass { forward, backward };

// Arguments: N, H (= W), C.
template <class Pool, Pass pass>
void run_cpu(benchmark::State& state) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  Pool pool(ctx, state.range(0), state.range(1), state.range(2));
  for (auto _ : state) {
    if constexpr (pass == Pass::forward) {
      pool.forward(ctx);
    } else {
      pool.backward(ctx);
    }
    benchmark::ClobberMemory();
  }
  cumtl_bench::report_bytes(state, pool.bytes());
}

template <class Pool, Pass pass>
void run_cuda(benchmark::State& state) {
  if (!cumtl_bench::require_gpu(state)) return;
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cuda(0));
  Pool pool(ctx, state.range(0), state.range(1), state.range(2));
  cumtl_bench::time_gpu(state, ctx, pool.bytes(), [&] {
    if constexpr (pass == Pass::forward) {
      pool.forward(ctx);
    } else {
      pool.backward(ctx);
    }
  });
}

void BM_max_pool_forward_cpu(benchmark::State& state) {
  run_cpu<MaxPool, Pass::forward>(state);
}
void BM_max_pool_backward_cpu(benchmark::State& state) {
  run_cpu<MaxPool, Pass::backward>(state);
}
void BM_global_avg_pool_forward_cpu(benchmark::State& state) {
  run_cpu<GlobalAvgPool, Pass::forward>(state);
}
void BM_global_avg_pool_backward_cpu(benchmark::State& state) {
  run_cpu<GlobalAvgPool, Pass::backward>(state);
}
void BM_max_pool_forward_cuda(benchmark::State& state) {
  run_cuda<MaxPool, Pass::forward>(state);
}
void BM_max_pool_backward_cuda(benchmark::State& state) {
  run_cuda<MaxPool, Pass::backward>(state);
}
void BM_global_avg_pool_forward_cuda(benchmark::State& state) {
  run_cuda<GlobalAvgPool, Pass::forward>(state);
}
void BM_global_avg_pool_backward_cuda(benchmark::State& state) {
  run_cuda<GlobalAvgPool, Pass::backward>(state);
}

// Arguments: N, H = W, C.
BENCHMARK(BM_max_pool_forward_cpu)->Args({4, 112, 64})->ArgNames({"N", "HW", "C"})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_max_pool_backward_cpu)->Args({4, 112, 64})->ArgNames({"N", "HW", "C"})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_global_avg_pool_forward_cpu)->Args({64, 7, 512})->ArgNames({"N", "HW", "C"});
BENCHMARK(BM_global_avg_pool_backward_cpu)->Args({64, 7, 512})->ArgNames({"N", "HW", "C"});
BENCHMARK(BM_max_pool_forward_cuda)->Args({64, 112, 64})->ArgNames({"N", "HW", "C"})->UseManualTime();
BENCHMARK(BM_max_pool_backward_cuda)->Args({64, 112, 64})->ArgNames({"N", "HW", "C"})->UseManualTime();
BENCHMARK(BM_global_avg_pool_forward_cuda)
    ->Args({64, 7, 512})
    ->Args({64, 7, 2048})
    ->ArgNames({"N", "HW", "C"})
    ->UseManualTime();
BENCHMARK(BM_global_avg_pool_backward_cuda)
    ->Args({64, 7, 512})
    ->Args({64, 7, 2048})
    ->ArgNames({"N", "HW", "C"})
    ->UseManualTime();

}  // namespace

BENCHMARK_MAIN();
