#pragma once
// Elementwise activations on float32, float64, bfloat16 or float16 tensors of
// any shape. On the 2-byte types ReLU is exact and dropout computes x·1/(1 − p)
// in float and rounds once (kernels/activation.cuh), on both devices alike.
//
//   relu_forward(ctx, x, y)                    y = max(x, 0); y may be x
//   relu_backward(ctx, dy, y, dx)              dx = dy where y > 0, else 0; dx may be dy
//   dropout_forward(ctx, x, p, generator, y)   y = x / (1 − p) where kept, else 0; y may be x
//   dropout_backward(ctx, dy, mask, dx)        dx = dy / (1 − p) where forward kept, else 0; dx may be dy
//
// Dropout's mask is never stored. Element i is kept when the Philox uniform
// (kernels/random.cuh: uniform_element, in double) for counter offset + i under
// the generator's seed is at least p; the forward takes x.numel() counters
// from the generator (whatever p, so the stream after it does not depend on p)
// and returns (seed, offset, p), from which the backward recomputes the same
// mask. The CPU and a GPU draw the same mask for the same generator state.
// p must be in [0, 1); p = 0 copies.
//
// Requires: tensors defined, on ctx's device, alike in scalar type and shape.
// The work is enqueued on ctx's stream.

#include <cmath>
#include <cstdint>
#include <string_view>

#include "cumtl/core/random.hpp"
#include "cumtl/cpu/activation.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl::ops {

// What dropout_backward needs to recompute a forward's mask.
struct DropoutMask {
  std::uint64_t seed = 0, offset = 0;
  double p = 0;
};

}  // namespace cumtl::ops

namespace cumtl::detail::activation {

inline void require_probability(std::string_view op, double p) {
  CUMTL_REQUIRE(p >= 0 && p < 1, op, ": the drop probability p must be in [0, 1), got ", p);
}

// out = in with the mask applied; a copy when nothing is dropped.
template <class T>
void apply_dropout(Context& ctx, const Tensor& in, const ops::DropoutMask& mask, Tensor& out) {
  if (mask.p == 0) {
    if (out.raw_data() != in.raw_data())
      copy_bytes(ctx, out.raw_data(), out.device(), in.raw_data(), in.device(), in.bytes());
    return;
  }
  const compute_t<T> scale = compute_t<T>(1 / (1 - mask.p));
  CUMTL_DISPATCH(ctx, T, dropout, ctx, in.numel(), mask.seed, mask.offset, mask.p, scale, in.data<T>(), out.data<T>());
}

}  // namespace cumtl::detail::activation

namespace cumtl::ops {

inline void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  constexpr std::string_view op = "ops::relu_forward";
  detail::require_on_context(ctx, op, "x", x);
  detail::require_on_context(ctx, op, "y", y);
  detail::require_alike(op, "x", x, "y", y);
  dispatch_activation_type(
      x.dtype(), op, [&]<class T>() { CUMTL_DISPATCH(ctx, T, relu_forward, ctx, x.numel(), x.data<T>(), y.data<T>()); });
}

inline void relu_backward(Context& ctx, const Tensor& dy, const Tensor& y, Tensor& dx) {
  constexpr std::string_view op = "ops::relu_backward";
  detail::require_on_context(ctx, op, "dy", dy);
  detail::require_on_context(ctx, op, "y", y);
  detail::require_on_context(ctx, op, "dx", dx);
  detail::require_alike(op, "dy", dy, "y", y);
  detail::require_alike(op, "dy", dy, "dx", dx);
  dispatch_activation_type(dx.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, relu_backward, ctx, dx.numel(), dy.data<T>(), y.data<T>(), dx.data<T>());
  });
}

inline DropoutMask dropout_forward(Context& ctx, const Tensor& x, double p, Generator& generator, Tensor& y) {
  constexpr std::string_view op = "ops::dropout_forward";
  detail::require_on_context(ctx, op, "x", x);
  detail::require_on_context(ctx, op, "y", y);
  detail::require_alike(op, "x", x, "y", y);
  detail::activation::require_probability(op, p);
  DropoutMask mask{.seed = generator.seed(), .offset = 0, .p = p};
  // Counters are taken only once the scalar type is known good: a refused call leaves the stream as it was.
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    mask.offset = generator.advance(std::uint64_t(x.numel()));
    detail::activation::apply_dropout<T>(ctx, x, mask, y);
  });
  return mask;
}

inline void dropout_backward(Context& ctx, const Tensor& dy, const DropoutMask& mask, Tensor& dx) {
  constexpr std::string_view op = "ops::dropout_backward";
  detail::require_on_context(ctx, op, "dy", dy);
  detail::require_on_context(ctx, op, "dx", dx);
  detail::require_alike(op, "dy", dy, "dx", dx);
  detail::activation::require_probability(op, mask.p);
  dispatch_activation_type(dx.dtype(), op,
                           [&]<class T>() { detail::activation::apply_dropout<T>(ctx, dy, mask, dx); });
}

}  // namespace cumtl::ops
