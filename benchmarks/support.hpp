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

// Times ctx's stream between two events.
class GpuTimer {
 public:
  explicit GpuTimer(const cumtl::Context& ctx)
      : start_(ctx.device().index(), /*timing=*/true), stop_(ctx.device().index(), /*timing=*/true) {}

  void start(cumtl::Context& ctx) { start_.record(ctx.stream()); }
  // Seconds since start(); waits for the stream.
  double stop(cumtl::Context& ctx) {
    stop_.record(ctx.stream());
    stop_.synchronize();
    return stop_.milliseconds_since(start_) / 1e3;
  }

 private:
  cumtl::detail::CudaEvent start_, stop_;
};

// Overwrites a buffer larger than any L2 cache, so the next kernel reads its
// inputs from device memory as it would in a training step.
inline void flush_l2(cumtl::Context& ctx) {
  static cumtl::Tensor scratch =
      cumtl::Tensor::empty(ctx, cumtl::Shape{std::int64_t(256) << 20}, cumtl::ScalarType::u8);
  scratch.set_zero(ctx);
}

// Device-to-device copy bandwidth (bytes read + written per second) of a 1 GiB
// copy, the best of 10: the practical peak a memory-bound kernel can approach.
inline double measured_peak_bandwidth(cumtl::Context& ctx) {
  static const double peak = [&] {
    const std::int64_t bytes = std::int64_t(1) << 30;
    cumtl::Tensor source = cumtl::Tensor::zeros(ctx, cumtl::Shape{bytes}, cumtl::ScalarType::u8);
    cumtl::Tensor target = cumtl::Tensor::empty(ctx, cumtl::Shape{bytes}, cumtl::ScalarType::u8);
    GpuTimer timer(ctx);
    double best = 0;
    for (int repeat = 0; repeat < 10; ++repeat) {
      timer.start(ctx);
      cumtl::detail::copy_bytes(ctx, target.raw_data(), ctx.device(), source.raw_data(), ctx.device(),
                                std::size_t(bytes));
      best = std::max(best, 2.0 * double(bytes) / timer.stop(ctx));
    }
    return best;
  }();
  return peak;
}

// The matrix math a kernel is held to: plain fp32 FMA, TF32 tensor cores on
// fp32 data, or bf16 / f16 tensor cores (fp32 accumulation) on 2-byte data.
enum class MatrixMath { fp32, tf32, bf16, fp16 };

inline const char* name_of(MatrixMath math) {
  constexpr const char* names[] = {"fp32", "TF32", "bf16", "fp16"};
  return names[int(math)];
}

// The matrix math of a pass on tensors of `type` with TF32 allowed or not.
inline MatrixMath matrix_math_of(cumtl::ScalarType type, bool allow_tf32) {
  if (type == cumtl::ScalarType::bf16) return MatrixMath::bf16;
  if (type == cumtl::ScalarType::f16) return MatrixMath::fp16;
  return allow_tf32 ? MatrixMath::tf32 : MatrixMath::fp32;
}

// The practical peak of this card's matrix math in one mode, in TFLOP/s: the
// best of five 8192×8192×8192 cuBLAS GEMMs (2·8192³ FLOPs each) after a
// warm-up, measured once per process and mode. Why measured and not a
// datasheet figure: what a convolution or a GEMM can reach depends on this
// card's sustained clocks and power limit, and a large square GEMM is the
// best-known way to approach it, so `fraction_of_peak_math` reads as "how far
// from the best this card does". fp32 is cuBLAS's default math (no tensor
// cores); TF32 is the peak to judge cuDNN convolutions by when ctx.numerics()
// allows TF32 (its default); bf16 and fp16 are cublasGemmEx on 2-byte
// operands with fp32 accumulation, as cumtl's mixed-precision layers run.
// cuBLAS is called directly, so this lives in cublas_peak.cu (nvcc).
double measured_peak_tflops(cumtl::Context& ctx, MatrixMath math);

// Whether ctx's cuBLAS handle (as the linear layers left it) may use TF32.
bool cublas_allows_tf32(cumtl::Context& ctx);

// A tensor of `type` on ctx's device with normal(0, stddev) values: drawn in
// float32 and, for a 2-byte type, rounded once.
inline cumtl::Tensor random_normal(cumtl::Context& ctx, const cumtl::Shape& shape, cumtl::ScalarType type,
                                   cumtl::Generator& generator, double stddev = 1) {
  cumtl::Tensor wide = cumtl::Tensor::empty(ctx, shape, cumtl::compute_type_of(type));
  cumtl::ops::normal(ctx, wide, generator, 0, stddev);
  if (wide.dtype() == type) return wide;
  cumtl::Tensor narrow = cumtl::Tensor::empty(ctx, shape, type);
  cumtl::ops::convert(ctx, wide, narrow);
  return narrow;
}

// Runs `launch` once per iteration with an L2 flush before it and CUDA-event
// timing around it, then reports bytes per second and the fraction of peak.
template <class Launch>
void time_gpu(benchmark::State& state, cumtl::Context& ctx, double bytes_per_iteration, Launch&& launch) {
  const double peak = measured_peak_bandwidth(ctx);
  launch();  // warm-up: plan caches, lazy module loading
  GpuTimer timer(ctx);
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

}  // namespace cumtl_bench
