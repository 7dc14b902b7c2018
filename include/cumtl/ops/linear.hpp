#pragma once
// The linear (fully connected) operation, row-major with weights [out, in] as
// PyTorch stores them.
//
//   linear_forward(ctx, x[N, in], weight[out, in], bias[out] or undefined, y[N, out])
//       y = x · weightᵀ (+ bias)
//   linear_backward(ctx, dy[N, out], x, weight, dx, dweight, dbias, mode)
//       dx = dy · weight (overwritten; skipped when dx is undefined, e.g. for a first layer)
//       dweight (+)= dyᵀ · x and dbias (+)= Σ_n dy (skipped when undefined), per GradientMode
//   add_bias(ctx, bias[C], y[rows, C])                 y += bias on every row (also a convolution's NHWC output)
//   bias_gradient(ctx, dy[rows, C], dbias[C], mode)    dbias (+)= Σ_rows dy
//
// float32, float64, bfloat16 or float16 tensors, all of one type, on ctx's
// device; CPU through CBLAS, CUDA through cuBLAS. The 2-byte types accumulate
// in fp32 and round each result once (cpu/linear.hpp says where).

#include "cumtl/core/modes.hpp"
#include "cumtl/cpu/linear.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl {

namespace detail {

// x is [N, in], weight [out, in]: returns {N, in, out}, or throws naming the shapes.
inline std::array<std::int64_t, 3> linear_extents(std::string_view operation, const Tensor& x, const Tensor& weight) {
  CUMTL_REQUIRE(x.shape().rank() == 2 && weight.shape().rank() == 2 && x.shape()[1] == weight.shape()[1], operation,
                ": x is ", x.description(), " and weight is ", weight.description(),
                ", expected x [N, in] and weight [out, in]");
  CUMTL_REQUIRE(x.dtype() == weight.dtype(), operation, ": x is ", x.description(), " but weight is ",
                weight.description());
  return {x.shape()[0], x.shape()[1], weight.shape()[0]};
}

}  // namespace detail

namespace ops {

inline void add_bias(Context& ctx, const Tensor& bias, Tensor& y) {
  constexpr std::string_view op = "ops::add_bias";
  detail::require_on_context(ctx, op, "bias", bias);
  detail::require_on_context(ctx, op, "y", y);
  CUMTL_REQUIRE(y.shape().rank() == 2, op, ": y is ", y.description(), ", expected [rows, C]");
  detail::require_shape(op, "bias", bias, Shape{y.shape()[1]}, y.dtype());
  dispatch_activation_type(y.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, add_bias, ctx, y.shape()[0], y.shape()[1], bias.data<T>(), y.data<T>());
  });
}

inline void bias_gradient(Context& ctx, const Tensor& dy, Tensor& dbias, GradientMode mode) {
  constexpr std::string_view op = "ops::bias_gradient";
  detail::require_on_context(ctx, op, "dy", dy);
  detail::require_on_context(ctx, op, "dbias", dbias);
  CUMTL_REQUIRE(dy.shape().rank() == 2, op, ": dy is ", dy.description(), ", expected [rows, C]");
  detail::require_shape(op, "dbias", dbias, Shape{dy.shape()[1]}, dy.dtype());
  dispatch_activation_type(dy.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, bias_gradient, ctx, dy.shape()[0], dy.shape()[1], dy.data<T>(), dbias.data<T>(), mode);
  });
}

inline void linear_forward(Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y) {
  constexpr std::string_view op = "ops::linear_forward";
  detail::require_on_context(ctx, op, {{"x", x}, {"weight", weight}, {"y", y}});
  const auto [n, in, out] = detail::linear_extents(op, x, weight);
  detail::require_shape(op, "y", y, Shape{n, out}, x.dtype());
  if (bias.defined()) {
    detail::require_on_context(ctx, op, "bias", bias);
    detail::require_shape(op, "bias", bias, Shape{out}, x.dtype());
  }
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, linear_forward, ctx, n, in, out, x.data<T>(), weight.data<T>(), y.data<T>());
  });
  if (bias.defined()) add_bias(ctx, bias, y);
}

inline void linear_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor& dx,
                            Tensor& dweight, Tensor& dbias, GradientMode mode) {
  constexpr std::string_view op = "ops::linear_backward";
  detail::require_on_context(ctx, op, {{"dy", dy}, {"x", x}, {"weight", weight}, {"dweight", dweight}});
  const auto [n, in, out] = detail::linear_extents(op, x, weight);
  detail::require_shape(op, "dy", dy, Shape{n, out}, x.dtype());
  detail::require_shape(op, "dweight", dweight, weight.shape(), x.dtype());
  if (dx.defined()) {
    detail::require_on_context(ctx, op, "dx", dx);
    detail::require_shape(op, "dx", dx, x.shape(), x.dtype());
  }
  if (dbias.defined()) {
    detail::require_on_context(ctx, op, "dbias", dbias);
    detail::require_shape(op, "dbias", dbias, Shape{out}, x.dtype());
  }
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    if (dx.defined())
      CUMTL_DISPATCH(ctx, T, linear_backward_data, ctx, n, in, out, dy.data<T>(), weight.data<T>(), dx.data<T>());
    CUMTL_DISPATCH(ctx, T, linear_backward_weight, ctx, n, in, out, dy.data<T>(), x.data<T>(), dweight.data<T>(), mode);
  });
  if (dbias.defined()) bias_gradient(ctx, dy, dbias, mode);
}

}  // namespace ops
}  // namespace cumtl
