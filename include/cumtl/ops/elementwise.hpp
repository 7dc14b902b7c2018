#pragma once
// Elementwise operations on floating-point tensors of one device.
//
//   fill(ctx, out, value)     out[i] = value
//   copy(ctx, dst, src)       dst[i] = src[i]; any devices, ctx on the GPU side if any
//   scale(ctx, x, alpha)      x[i] = alpha * x[i]
//   axpy(ctx, alpha, x, y)    y[i] = alpha * x[i] + y[i]
//   add(ctx, a, b, out)       out[i] = a[i] + b[i]; out may be a or b; also on
//                             bfloat16 and float16, summed in float and rounded once
//   all_finite(ctx, x)        whether no x[i] is infinite or NaN; waits for ctx
//                             (one flag read back), so it is a host synchronization
//   convert(ctx, from, to)    to[i] = from[i] in to's scalar type: float32 or
//                             float64 to and from bfloat16 or float16
//                             (core/half.hpp: round to nearest even; a float64
//                             goes through float32, as in PyTorch), or a copy
//                             when the types are the same
//
// Requires: tensors defined, alike in scalar type (but for convert) and shape,
// and (but for copy) on ctx's device. The work is enqueued on ctx's stream.

#include "cumtl/cpu/elementwise.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl::ops {

inline void fill(Context& ctx, Tensor& out, double value) {
  detail::require_on_context(ctx, "ops::fill", "out", out);
  dispatch_floating(out.dtype(), "ops::fill",
                    [&]<class T>() { CUMTL_DISPATCH(ctx, T, fill, ctx, out.data<T>(), out.numel(), T(value)); });
}

inline void copy(Context& ctx, Tensor& dst, const Tensor& src) {
  CUMTL_REQUIRE(dst.defined() && src.defined(), "ops::copy: undefined tensor");
  detail::require_alike("ops::copy", "dst", dst, "src", src);
  detail::copy_bytes(ctx, dst.raw_data(), dst.device(), src.raw_data(), src.device(), src.bytes());
}

inline void scale(Context& ctx, Tensor& x, double alpha) {
  detail::require_on_context(ctx, "ops::scale", "x", x);
  dispatch_floating(x.dtype(), "ops::scale",
                    [&]<class T>() { CUMTL_DISPATCH(ctx, T, scale, ctx, x.data<T>(), x.numel(), T(alpha)); });
}

inline bool all_finite(Context& ctx, const Tensor& x) {
  detail::require_on_context(ctx, "ops::all_finite", "x", x);
  Tensor flag = Tensor::zeros(ctx, Shape{1}, ScalarType::i32);
  dispatch_floating(x.dtype(), "ops::all_finite", [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, find_nonfinite, ctx, x.numel(), x.data<T>(), flag.data<std::int32_t>());
  });
  return flag.to_vector<std::int32_t>(ctx)[0] == 0;
}

inline void axpy(Context& ctx, double alpha, const Tensor& x, Tensor& y) {
  detail::require_on_context(ctx, "ops::axpy", "x", x);
  detail::require_on_context(ctx, "ops::axpy", "y", y);
  detail::require_alike("ops::axpy", "x", x, "y", y);
  dispatch_floating(y.dtype(), "ops::axpy", [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, axpy, ctx, y.numel(), T(alpha), x.data<T>(), y.data<T>());
  });
}

inline void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& out) {
  detail::require_on_context(ctx, "ops::add", "a", a);
  detail::require_on_context(ctx, "ops::add", "b", b);
  detail::require_on_context(ctx, "ops::add", "out", out);
  detail::require_alike("ops::add", "a", a, "b", b);
  detail::require_alike("ops::add", "a", a, "out", out);
  dispatch_activation_type(out.dtype(), "ops::add", [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, add, ctx, out.numel(), a.data<T>(), b.data<T>(), out.data<T>());
  });
}

inline void convert(Context& ctx, const Tensor& from, Tensor& to) {
  detail::require_on_context(ctx, "ops::convert", {{"from", from}, {"to", to}});
  CUMTL_REQUIRE(from.shape() == to.shape(), "ops::convert: 'from' is ", from.description(), " but 'to' is ",
                to.description());
  if (from.dtype() == to.dtype()) {
    copy(ctx, to, from);
    return;
  }
  const auto is_half = [](ScalarType type) { return type == ScalarType::bf16 || type == ScalarType::f16; };
  CUMTL_REQUIRE(is_half(from.dtype()) != is_half(to.dtype()), "ops::convert: from ", name_of(from.dtype()), " to ",
                name_of(to.dtype()), " is not offered; convert through float32");
  if (is_half(to.dtype())) {
    dispatch_floating(from.dtype(), "ops::convert", [&]<class T>() {
      CUMTL_DISPATCH(ctx, T, to_half, ctx, from.numel(), from.data<T>(), to.dtype(),
                     static_cast<std::uint16_t*>(to.raw_data()));
    });
  } else {
    dispatch_floating(to.dtype(), "ops::convert", [&]<class T>() {
      CUMTL_DISPATCH(ctx, T, from_half, ctx, from.numel(), from.dtype(),
                     static_cast<const std::uint16_t*>(from.raw_data()), to.data<T>());
    });
  }
}

}  // namespace cumtl::ops
