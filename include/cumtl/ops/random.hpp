#pragma once
// Random fills from a counter-based Generator. Each takes out.numel()
// counters from the generator, so consecutive fills differ, and element i is
// the same number on the CPU and on a GPU.
//
//   uniform(ctx, out, gen, low, high)    out[i] ~ U[low, high)
//   normal(ctx, out, gen, mean, stddev)  out[i] ~ N(mean, stddev²)

#include "cumtl/core/random.hpp"
#include "cumtl/cpu/random.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl::ops {

inline void uniform(Context& ctx, Tensor& out, Generator& generator, double low, double high) {
  detail::require_on_context(ctx, "ops::uniform", "out", out);
  CUMTL_REQUIRE(low <= high, "ops::uniform: low (", low, ") is above high (", high, ")");
  dispatch_floating(out.dtype(), "ops::uniform", [&]<class T>() {
    const std::uint64_t offset = generator.advance(std::uint64_t(out.numel()));
    CUMTL_DISPATCH(ctx, T, uniform, ctx, out.data<T>(), out.numel(), generator.seed(), offset, T(low), T(high));
  });
}

inline void normal(Context& ctx, Tensor& out, Generator& generator, double mean, double stddev) {
  detail::require_on_context(ctx, "ops::normal", "out", out);
  CUMTL_REQUIRE(stddev >= 0, "ops::normal: the standard deviation must be non-negative, got ", stddev);
  dispatch_floating(out.dtype(), "ops::normal", [&]<class T>() {
    const std::uint64_t offset = generator.advance(std::uint64_t(out.numel()));
    CUMTL_DISPATCH(ctx, T, normal, ctx, out.data<T>(), out.numel(), generator.seed(), offset, T(mean), T(stddev));
  });
}

}  // namespace cumtl::ops
