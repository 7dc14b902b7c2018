#pragma once
// CPU twins of the elementwise operations: the test oracle for the CUDA
// kernels in kernels/elementwise.cuh, with the same signatures as cuda::.
// Ranges of elementwise_chunk elements run on the context's threads.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/core/dtype.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/kernels/elementwise.cuh"

namespace cumtl::cpu {

inline constexpr std::int64_t elementwise_chunk = std::int64_t(1) << 15;

template <class T>
void fill(Context& ctx, T* out, std::int64_t count, T value) {
  ctx.cpu_threads().run_ranges(count, elementwise_chunk,
                               [&](std::int64_t begin, std::int64_t end) { std::fill(out + begin, out + end, value); });
}

template <class T>
void scale(Context& ctx, T* x, std::int64_t count, T alpha) {
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) x[i] *= alpha;
  });
}

template <class T>
void axpy(Context& ctx, std::int64_t count, T alpha, const T* x, T* y) {
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) y[i] = alpha * x[i] + y[i];
  });
}

template <class T>
void add(Context& ctx, std::int64_t count, const T* a, const T* b, T* out) {
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) out[i] = kernels::add_element(a[i], b[i]);
  });
}

// *flag (zeroed by the caller) becomes 1 when x holds an infinity or a NaN.
template <class T>
void find_nonfinite(Context&, std::int64_t count, const T* x, std::int32_t* flag) {
  for (std::int64_t i = 0; i < count; ++i)
    if (kernels::is_nonfinite(x[i])) {
      *flag = 1;
      return;
    }
}

// `half` is ScalarType::bf16 or ScalarType::f16; the same conversions as the
// kernels (core/half.hpp), a float64 input rounded to float32 first.
template <class T>
void to_half(Context& ctx, std::int64_t count, const T* x, ScalarType half, std::uint16_t* y) {
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    if (half == ScalarType::bf16)
      for (std::int64_t i = begin; i < end; ++i) y[i] = bfloat16_t(float(x[i])).bits;
    else
      for (std::int64_t i = begin; i < end; ++i) y[i] = float16_t(float(x[i])).bits;
  });
}

template <class T>
void from_half(Context& ctx, std::int64_t count, ScalarType half, const std::uint16_t* x, T* y) {
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    if (half == ScalarType::bf16)
      for (std::int64_t i = begin; i < end; ++i) y[i] = T(float(bfloat16_t::from_bits(x[i])));
    else
      for (std::int64_t i = begin; i < end; ++i) y[i] = T(float(float16_t::from_bits(x[i])));
  });
}

// The CPU twins of mixed precision that compute in float: 2-byte values
// widened to float (exactly), and float results rounded to nearest even.
template <class Half>
std::vector<float> widened(Context& ctx, const Half* x, std::int64_t count) {
  std::vector<float> wide(static_cast<std::size_t>(count));
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) wide[std::size_t(i)] = float(x[i]);
  });
  return wide;
}

template <class Half>
void round_to(Context& ctx, const float* x, std::int64_t count, Half* y) {
  ctx.cpu_threads().run_ranges(count, elementwise_chunk, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) y[i] = Half(x[i]);
  });
}

// The 2-byte twin of an operation with two inputs and one output, through its
// float twin: a and b widened, float_twin(a32, b32, out32) (fp32
// accumulation), out rounded once. With GradientMode::accumulate, out32 starts
// as the old output widened, and the float twin adds to it before the rounding.
template <class Half, class FloatTwin>
void through_float(Context& ctx, const Half* a, std::int64_t a_count, const Half* b, std::int64_t b_count, Half* out,
                   std::int64_t out_count, GradientMode mode, FloatTwin&& float_twin) {
  const std::vector<float> a32 = widened(ctx, a, a_count), b32 = widened(ctx, b, b_count);
  std::vector<float> out32 = mode == GradientMode::accumulate ? widened(ctx, out, out_count)
                                                              : std::vector<float>(static_cast<std::size_t>(out_count));
  float_twin(a32.data(), b32.data(), out32.data());
  round_to(ctx, out32.data(), out_count, out);
}

}  // namespace cumtl::cpu
