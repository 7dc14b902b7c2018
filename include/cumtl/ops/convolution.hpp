#pragma once
// 2-D convolution (cross-correlation, as every framework computes it) in NHWC
// with KRSC filters.
//
//   conv2d_forward(ctx, x[N,H,W,C], w[K,R,S,C], geometry, y[N,P,Q,K])        y = x ⋆ w
//   conv2d_backward_data(ctx, dy[N,P,Q,K], w, geometry, dx[N,H,W,C])          dx overwritten
//   conv2d_backward_filter(ctx, x, dy, geometry, dw[K,R,S,C], GradientMode)   dw (+)= ∂L/∂w
//
// CUDA: the cuDNN graph API through cudnn-frontend (cuda/cudnn_conv.hpp,
// reached through the backend table), with ctx.numerics() deciding TF32 and determinism. CPU:
// im2col + GEMM (cpu/convolution.hpp).
//
// Scalar types: float32, bfloat16 and float16 on both devices, float64 on the
// CPU. The 2-byte types accumulate in fp32 and round each result once, on both
// devices; an accumulated filter gradient is rounded, then added (a second rounding).

#include "cumtl/core/conv_shape.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/cpu/convolution.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl::detail {

// cuDNN convolves float32, bfloat16 and float16 tensors for cumtl; float64 is the CPU's, for gradient checks.
inline void require_cuda_convolution_type(std::string_view operation, const Tensor& tensor) {
  const ScalarType type = tensor.dtype();
  CUMTL_REQUIRE(type == ScalarType::f32 || type == ScalarType::bf16 || type == ScalarType::f16, operation,
                ": CUDA convolutions take float32, bfloat16 or float16 tensors, got ", tensor.description());
}

}  // namespace cumtl::detail

namespace cumtl::ops {

struct ConvGeometry {
  std::int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
};

// The convolution of x by w with `geometry`, or an error naming the operation and the shapes.
inline ConvShape conv_shape(std::string_view operation, const Tensor& x, const Tensor& w,
                            const ConvGeometry& geometry) {
  CUMTL_REQUIRE(x.shape().rank() == 4 && w.shape().rank() == 4 && x.shape()[3] == w.shape()[3], operation, ": x is ",
                x.description(), " and w is ", w.description(),
                ", expected x [N, H, W, C] and w [K, R, S, C] with the same C");
  CUMTL_REQUIRE(x.dtype() == w.dtype(), operation, ": x is ", x.description(), " but w is ", w.description());
  CUMTL_REQUIRE(geometry.stride_h > 0 && geometry.stride_w > 0 && geometry.dilation_h > 0 && geometry.dilation_w > 0 &&
                    geometry.pad_h >= 0 && geometry.pad_w >= 0,
                operation, ": strides and dilations must be positive and paddings non-negative");
  const ConvShape shape{.n = x.shape()[0],
                        .h = x.shape()[1],
                        .w = x.shape()[2],
                        .c = x.shape()[3],
                        .k = w.shape()[0],
                        .r = w.shape()[1],
                        .s = w.shape()[2],
                        .pad_h = geometry.pad_h,
                        .pad_w = geometry.pad_w,
                        .stride_h = geometry.stride_h,
                        .stride_w = geometry.stride_w,
                        .dilation_h = geometry.dilation_h,
                        .dilation_w = geometry.dilation_w};
  CUMTL_REQUIRE(shape.out_h() > 0 && shape.out_w() > 0, operation, ": ", shape.str(),
                " has no output: the window is larger than the padded input");
  return shape;
}

inline Shape conv_output_shape(const ConvShape& shape) {
  return Shape{shape.n, shape.out_h(), shape.out_w(), shape.k};
}

inline void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const ConvGeometry& geometry, Tensor& y) {
  constexpr std::string_view op = "ops::conv2d_forward";
  detail::require_on_context(ctx, op, {{"x", x}, {"w", w}, {"y", y}});
  const ConvShape shape = conv_shape(op, x, w, geometry);
  detail::require_shape(op, "y", y, conv_output_shape(shape), x.dtype());
  if (ctx.device().is_cuda()) {
    detail::require_cuda_convolution_type(op, x);
    cumtl::detail::cuda_backend().conv_forward(ctx, shape, x.dtype(), x.raw_data(), w.raw_data(), y.raw_data());
    return;
  }
  dispatch_activation_type(x.dtype(), op,
                           [&]<class T>() { cpu::conv_forward(ctx, shape, x.data<T>(), w.data<T>(), y.data<T>()); });
}

inline void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, const ConvGeometry& geometry,
                                 Tensor& dx) {
  constexpr std::string_view op = "ops::conv2d_backward_data";
  detail::require_on_context(ctx, op, {{"dy", dy}, {"w", w}, {"dx", dx}});
  const ConvShape shape = conv_shape(op, dx, w, geometry);
  detail::require_shape(op, "dy", dy, conv_output_shape(shape), w.dtype());
  if (ctx.device().is_cuda()) {
    detail::require_cuda_convolution_type(op, w);
    cumtl::detail::cuda_backend().conv_backward_data(ctx, shape, w.dtype(), dy.raw_data(), w.raw_data(), dx.raw_data());
    return;
  }
  dispatch_activation_type(
      w.dtype(), op, [&]<class T>() { cpu::conv_backward_data(ctx, shape, dy.data<T>(), w.data<T>(), dx.data<T>()); });
}

inline void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, const ConvGeometry& geometry,
                                   Tensor& dw, GradientMode mode) {
  constexpr std::string_view op = "ops::conv2d_backward_filter";
  detail::require_on_context(ctx, op, {{"x", x}, {"dy", dy}, {"dw", dw}});
  const ConvShape shape = conv_shape(op, x, dw, geometry);
  detail::require_shape(op, "dy", dy, conv_output_shape(shape), x.dtype());
  if (ctx.device().is_cuda()) {
    detail::require_cuda_convolution_type(op, x);
    cumtl::detail::cuda_backend().conv_backward_filter(ctx, shape, x.dtype(), x.raw_data(), dy.raw_data(),
                                                       dw.raw_data(), mode);
    return;
  }
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    cpu::conv_backward_filter(ctx, shape, x.data<T>(), dy.data<T>(), dw.data<T>(), mode);
  });
}

}  // namespace cumtl::ops
