#pragma once
// What the microbenchmarks share: GPU timing with CUDA events, an L2 flush
// between timed repeats, and the device's measured peak bandwidth, so each
// kernel reports bytes per second and the fraction of what this card can move.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include <cumtl/cumtl.hpp>

namespace cumtl_bench {

// Skips the benchmark, saying why, unless a GPU is usable.
inline bool require_gpu(benchmark::State& state) {
  if (cumtl::cuda_available()) return true;
  state.SkipWithError(("no usable GPU: " + cumtl::cuda_unavailable_reason()).c_str());
  return false;
}

inline void report_bytes(benchmark::State& state, double bytes_per_iteration) {
  state.SetBytesProcessed(std::int64_t(double(state.iterations()) * bytes_per_iteration));
  state.counters["bytes_per_iteration"] = bytes_per_iteration;
}

#if CUMTL_HAS_CUDA
// Times ctx's stream between two events.
class GpuTimer {
 public:
  GpuTimer() {
    CUMTL_CHECK_CUDA(cudaEventCreate(&start_));
    CUMTL_CHECK_CUDA(cudaEventCreate(&stop_));
  }
  ~GpuTimer() {
    (void)cudaEventDestroy(start_);
    (void)cudaEventDestroy(stop_);
  }
  GpuTimer(const GpuTimer&) = delete;
  GpuTimer& operator=(const GpuTimer&) = delete;

  void start(cumtl::Context& ctx) { CUMTL_CHECK_CUDA(cudaEventRecord(start_, ctx.stream())); }
  // Seconds since start(); waits for the stream.
  double stop(cumtl::Context& ctx) {
    CUMTL_CHECK_CUDA(cudaEventRecord(stop_, ctx.stream()));
    CUMTL_CHECK_CUDA(cudaEventSynchronize(stop_));
    float milliseconds = 0;
    CUMTL_CHECK_CUDA(cudaEventElapsedTime(&milliseconds, start_, stop_));
    return milliseconds / 1e3;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// Overwrites a buffer larger than any L2 cache, so the next kernel reads its
// inputs from device memory as it would in a training step.
inline void flush_l2(cumtl::Context& ctx) {
  static cumtl::Tensor scratch =
      cumtl::Tensor::empty(ctx, cumtl::Shape{std::int64_t(256) << 20}, cumtl::ScalarType::u8);
  CUMTL_CHECK_CUDA(cudaMemsetAsync(scratch.raw_data(), 0, scratch.bytes(), ctx.stream()));
}

// Device-to-device copy bandwidth (bytes read + written per second) of a 1 GiB
// copy, the best of 10: the practical peak a memory-bound kernel can approach.
inline double measured_peak_bandwidth(cumtl::Context& ctx) {
  static const double peak = [&] {
    const std::int64_t bytes = std::int64_t(1) << 30;
    cumtl::Tensor source = cumtl::Tensor::zeros(ctx, cumtl::Shape{bytes}, cumtl::ScalarType::u8);
    cumtl::Tensor target = cumtl::Tensor::empty(ctx, cumtl::Shape{bytes}, cumtl::ScalarType::u8);
    GpuTimer timer;
    double best = 0;
    for (int repeat = 0; repeat < 10; ++repeat) {
      timer.start(ctx);
      CUMTL_CHECK_CUDA(cudaMemcpyAsync(target.raw_data(), source.raw_data(), std::size_t(bytes),
                                       cudaMemcpyDeviceToDevice, ctx.stream()));
      best = std::max(best, 2.0 * double(bytes) / timer.stop(ctx));
    }
    return best;
  }();
  return peak;
}

// The practical peak of this card's fp32 math, in TFLOP/s: the best of five
// 8192×8192×8192 cuBLAS SGEMMs (2·8192³ FLOPs each) after a warm-up, measured
// once per process and mode. Why measured and not a datasheet figure: what a
// convolution or a GEMM can reach depends on this card's sustained clocks and
// power limit, and a large square SGEMM is the best-known way to approach it,
// so `fraction_of_peak_math` reads as "how far from the best this card does".
// tf32 = false leaves cuBLAS's default math (plain fp32 FMA, no tensor cores),
// which is what cumtl's cuBLAS calls use; tf32 = true allows TF32 tensor cores,
// which is the peak to judge cuDNN convolutions by when ctx.numerics() allows
// TF32 (its default). A handle of its own keeps ctx's cuBLAS settings untouched.
inline double measured_peak_tflops(cumtl::Context& ctx, bool tf32 = false) {
  const auto measure = [&ctx](bool tensor_cores) {
    constexpr int n = 8192;
    const cumtl::Shape square{n, n};
    cumtl::Tensor a = cumtl::Tensor::empty(ctx, square, cumtl::ScalarType::f32);
    cumtl::Tensor b = cumtl::Tensor::empty(ctx, square, cumtl::ScalarType::f32);
    cumtl::Tensor c = cumtl::Tensor::empty(ctx, square, cumtl::ScalarType::f32);
    // Random operands: tensor cores draw less power (and clock higher) on zeros.
    cumtl::Generator generator(8192);
    cumtl::ops::uniform(ctx, a, generator, -1, 1);
    cumtl::ops::uniform(ctx, b, generator, -1, 1);
    struct Handle {
      cublasHandle_t get = nullptr;
      Handle() { CUMTL_CHECK_CUBLAS(cublasCreate(&get)); }
      ~Handle() { (void)cublasDestroy(get); }
      Handle(const Handle&) = delete;
      Handle& operator=(const Handle&) = delete;
    } handle;
    CUMTL_CHECK_CUBLAS(cublasSetStream(handle.get, ctx.stream()));
    CUMTL_CHECK_CUBLAS(cublasSetMathMode(handle.get, tensor_cores ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    const float one = 1, zero = 0;
    const auto gemm = [&] {
      CUMTL_CHECK_CUBLAS(cublasSgemm(handle.get, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.data<float>(), n,
                                     b.data<float>(), n, &zero, c.data<float>(), n));
    };
    gemm();  // warm-up: cuBLAS picks and loads its kernel
    GpuTimer timer;
    double best = 0;
    for (int repeat = 0; repeat < 5; ++repeat) {
      timer.start(ctx);
      gemm();
      best = std::max(best, 2.0 * double(n) * double(n) * double(n) / timer.stop(ctx));
    }
    return best / 1e12;
  };
  if (tf32) {
    static const double tf32_peak = measure(true);
    return tf32_peak;
  }
  static const double fp32_peak = measure(false);
  return fp32_peak;
}

// Runs `launch` once per iteration with an L2 flush before it and CUDA-event
// timing around it, then reports bytes per second and the fraction of peak.
template <class Launch>
void time_gpu(benchmark::State& state, cumtl::Context& ctx, double bytes_per_iteration, Launch&& launch) {
  const double peak = measured_peak_bandwidth(ctx);
  launch();  // warm-up: plan caches, lazy module loading
  GpuTimer timer;
  for (auto _ : state) {
    flush_l2(ctx);
    timer.start(ctx);
    launch();
    state.SetIterationTime(timer.stop(ctx));
  }
  report_bytes(state, bytes_per_iteration);
  // (bytes / peak) per iteration over the measured seconds: achieved bandwidth / peak.
  state.counters["fraction_of_peak"] =
      benchmark::Counter(bytes_per_iteration / peak, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_GBps"] = peak / 1e9;
}
#endif

}  // namespace cumtl_bench
