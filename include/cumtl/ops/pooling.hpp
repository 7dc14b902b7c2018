#pragma once
// Pooling over NHWC activations of every activation type, on the CPU or a GPU.
//
//   max_pool2d_forward(ctx, x, pool, y, argmax)     y[n,p,q,c] = max of x over window (p, q);
//                                                   argmax = h·W + w of the chosen element in its (n, c) plane
//   max_pool2d_backward(ctx, dy, argmax, pool, dx)  dx = Σ dy over the windows whose argmax it is
//   avg_pool2d_forward(ctx, x, pool, y)             y = Σ window / window size, padding counted as zeros
//   avg_pool2d_backward(ctx, dy, pool, dx)          dx = Σ over covering windows of dy / window size
//   global_avg_pool_forward(ctx, x, y)              y[n,c] = mean of x[n,·,·,c]
//   global_avg_pool_backward(ctx, dy, dx)           dx[n,h,w,c] = dy[n,c] / (H·W)
//
// Windows follow PyTorch: floor-mode output sizes, padding at most half the
// window, max pooling never picks padding and breaks ties by the first maximum
// in row-major window order, average pooling divides by the whole window
// (count_include_pad). Backward passes overwrite dx and are deterministic: each
// dx element gathers from the windows that contain it, in a fixed order (no
// atomics). The GPU does the CPU twin's arithmetic in the same order, so max
// pooling, its argmax and its gradient equal the CPU's bit for bit.
//
// Every activation type: float32, float64, bfloat16 and float16; the 2-byte
// types sum in float32 and round once (kernels/pooling.cuh).
//
// Requires: x (or dx) a rank-4 NHWC tensor with a non-empty H×W plane; y, dy
// and argmax of the pooled shape; y, dy and dx of x's (dx's) scalar type,
// argmax int32; all on ctx's device; an output never sharing memory with an
// input. The work is enqueued on ctx's stream.

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "cumtl/cpu/pooling.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl::ops {

// A pooling window: its extent, its stride and the padding on each side.
struct Pool2d {
  int kernel_h, kernel_w, stride_h, stride_w, pad_h = 0, pad_w = 0;

  // ⌊(h + 2·pad − kernel) / stride⌋ + 1 (PyTorch's floor mode); 0 where the
  // window does not fit the padded input or is invalid, which the ops refuse
  // with the reason.
  std::int64_t out_h(std::int64_t h) const { return pooled_extent(h, kernel_h, stride_h, pad_h); }
  std::int64_t out_w(std::int64_t w) const { return pooled_extent(w, kernel_w, stride_w, pad_w); }

 private:
  static std::int64_t pooled_extent(std::int64_t extent, int kernel, int stride, int pad) {
    const std::int64_t span = extent + 2 * std::int64_t(pad) - kernel;
    return kernel <= 0 || stride <= 0 || pad < 0 || span < 0 ? 0 : span / stride + 1;
  }
};

}  // namespace cumtl::ops

namespace cumtl::detail::pooling {

// "window 3x3, stride 2x2, padding 1x1"
inline std::string describe(const ops::Pool2d& pool) {
  return concat("window ", pool.kernel_h, "x", pool.kernel_w, ", stride ", pool.stride_h, "x", pool.stride_w,
                ", padding ", pool.pad_h, "x", pool.pad_w);
}

// `tensor` (called `name`) is on ctx, of an activation type, NHWC with a
// non-empty H×W plane small enough for int32 plane indices.
inline void require_plane(const Context& ctx, std::string_view op, std::string_view name, const Tensor& tensor) {
  require_on_context(ctx, op, name, tensor);
  const ScalarType type = tensor.dtype();
  CUMTL_REQUIRE(
      type == ScalarType::f32 || type == ScalarType::f64 || type == ScalarType::bf16 || type == ScalarType::f16, op,
      ": tensor '", name, "' is ", tensor.description(), ", expected float32, float64, bfloat16 or float16");
  CUMTL_REQUIRE(tensor.shape().rank() == 4, op, ": tensor '", name, "' is ", tensor.description(),
                " but must be NHWC (rank 4)");
  const std::int64_t h = tensor.shape()[1], w = tensor.shape()[2];
  CUMTL_REQUIRE(h > 0 && w > 0, op, ": tensor '", name, "' is ", tensor.description(),
                " but pooling needs a non-empty H×W plane");
  constexpr std::int64_t limit = std::numeric_limits<std::int32_t>::max();
  CUMTL_REQUIRE(h <= limit && w <= limit && h * w <= limit, op, ": tensor '", name, "' is ", tensor.description(),
                ": its H×W plane has more elements than an int32 index reaches");
}

// Checks `input` (x, or dx in a backward pass) and the window against each
// other and returns the geometry the kernels take.
inline kernels::PoolShape geometry(const Context& ctx, std::string_view op, std::string_view name, const Tensor& input,
                                   const ops::Pool2d& pool) {
  require_plane(ctx, op, name, input);
  CUMTL_REQUIRE(pool.kernel_h > 0 && pool.kernel_w > 0 && pool.stride_h > 0 && pool.stride_w > 0 && pool.pad_h >= 0 &&
                    pool.pad_w >= 0,
                op, ": ", describe(pool), ": the window and the stride must be positive, the padding non-negative");
  CUMTL_REQUIRE(pool.pad_h <= pool.kernel_h / 2 && pool.pad_w <= pool.kernel_w / 2, op, ": ", describe(pool),
                ": the padding must be at most half the window (as in PyTorch), else a window could hold only padding");
  const std::int64_t h = input.shape()[1], w = input.shape()[2];
  const std::int64_t padded_h = h + 2 * std::int64_t(pool.pad_h), padded_w = w + 2 * std::int64_t(pool.pad_w);
  CUMTL_REQUIRE(padded_h >= pool.kernel_h && padded_w >= pool.kernel_w, op, ": the ", describe(pool),
                " is larger than the padded input: tensor '", name, "' is ", input.description(), ", ", padded_h, "x",
                padded_w, " with its padding");
  CUMTL_REQUIRE(padded_h <= std::numeric_limits<int>::max() && padded_w <= std::numeric_limits<int>::max(), op,
                ": tensor '", name, "' is ", input.description(), ": with the ", describe(pool),
                " it is too large for int window arithmetic");
  return kernels::PoolShape{.batch = input.shape()[0],
                            .channels = input.shape()[3],
                            .in_h = int(h),
                            .in_w = int(w),
                            .out_h = int(pool.out_h(h)),
                            .out_w = int(pool.out_w(w)),
                            .kernel_h = pool.kernel_h,
                            .kernel_w = pool.kernel_w,
                            .stride_h = pool.stride_h,
                            .stride_w = pool.stride_w,
                            .pad_h = pool.pad_h,
                            .pad_w = pool.pad_w};
}

inline Shape pooled_shape(const kernels::PoolShape& s) {
  return Shape{s.batch, s.out_h, s.out_w, s.channels};
}

// `tensor` (called `name`) is on ctx with `dtype` and `shape`; `source()`
// says where that shape comes from, and is only called to say it.
template <class Source>
void require_shaped(const Context& ctx, std::string_view op, std::string_view name, const Tensor& tensor,
                    ScalarType dtype, const Shape& shape, Source&& source) {
  require_on_context(ctx, op, name, tensor);
  CUMTL_REQUIRE(tensor.dtype() == dtype && tensor.shape() == shape, op, ": tensor '", name, "' is ",
                tensor.description(), " but ", source(), " needs ", name_of(dtype), shape);
}

// An output that overlaps an input would be read after it was written.
inline void require_disjoint(std::string_view op, std::string_view name_a, const Tensor& a, std::string_view name_b,
                             const Tensor& b) {
  if (a.bytes() == 0 || b.bytes() == 0 || a.device() != b.device()) return;
  const auto begin_a = reinterpret_cast<std::uintptr_t>(a.raw_data());
  const auto begin_b = reinterpret_cast<std::uintptr_t>(b.raw_data());
  CUMTL_REQUIRE(begin_a + a.bytes() <= begin_b || begin_b + b.bytes() <= begin_a, op, ": tensors '", name_a, "' (",
                a.description(), ") and '", name_b, "' (", b.description(), ") share memory");
}

}  // namespace cumtl::detail::pooling

namespace cumtl::ops {

inline void max_pool2d_forward(Context& ctx, const Tensor& x, const Pool2d& pool, Tensor& y, Tensor& argmax) {
  constexpr std::string_view op = "ops::max_pool2d_forward";
  namespace check = detail::pooling;
  const kernels::PoolShape shape = check::geometry(ctx, op, "x", x, pool);
  const auto source = [&] { return detail::concat("'x' ", x.description(), " pooled with ", check::describe(pool)); };
  check::require_shaped(ctx, op, "y", y, x.dtype(), check::pooled_shape(shape), source);
  check::require_shaped(ctx, op, "argmax", argmax, ScalarType::i32, check::pooled_shape(shape), source);
  check::require_disjoint(op, "x", x, "y", y);
  check::require_disjoint(op, "x", x, "argmax", argmax);
  check::require_disjoint(op, "y", y, "argmax", argmax);
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, max_pool2d_forward, ctx, shape, x.data<T>(), y.data<T>(), argmax.data<std::int32_t>());
  });
}

inline void max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& argmax, const Pool2d& pool, Tensor& dx) {
  constexpr std::string_view op = "ops::max_pool2d_backward";
  namespace check = detail::pooling;
  const kernels::PoolShape shape = check::geometry(ctx, op, "dx", dx, pool);
  const auto source = [&] { return detail::concat("'dx' ", dx.description(), " pooled with ", check::describe(pool)); };
  check::require_shaped(ctx, op, "dy", dy, dx.dtype(), check::pooled_shape(shape), source);
  check::require_shaped(ctx, op, "argmax", argmax, ScalarType::i32, check::pooled_shape(shape), source);
  check::require_disjoint(op, "dy", dy, "dx", dx);
  check::require_disjoint(op, "argmax", argmax, "dx", dx);
  dispatch_activation_type(dx.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, max_pool2d_backward, ctx, shape, dy.data<T>(), argmax.data<std::int32_t>(), dx.data<T>());
  });
}

inline void avg_pool2d_forward(Context& ctx, const Tensor& x, const Pool2d& pool, Tensor& y) {
  constexpr std::string_view op = "ops::avg_pool2d_forward";
  namespace check = detail::pooling;
  const kernels::PoolShape shape = check::geometry(ctx, op, "x", x, pool);
  check::require_shaped(ctx, op, "y", y, x.dtype(), check::pooled_shape(shape), [&] {
    return detail::concat("'x' ", x.description(), " pooled with ", check::describe(pool));
  });
  check::require_disjoint(op, "x", x, "y", y);
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, avg_pool2d_forward, ctx, shape, x.data<T>(), y.data<T>());
  });
}

inline void avg_pool2d_backward(Context& ctx, const Tensor& dy, const Pool2d& pool, Tensor& dx) {
  constexpr std::string_view op = "ops::avg_pool2d_backward";
  namespace check = detail::pooling;
  const kernels::PoolShape shape = check::geometry(ctx, op, "dx", dx, pool);
  check::require_shaped(ctx, op, "dy", dy, dx.dtype(), check::pooled_shape(shape), [&] {
    return detail::concat("'dx' ", dx.description(), " pooled with ", check::describe(pool));
  });
  check::require_disjoint(op, "dy", dy, "dx", dx);
  dispatch_activation_type(dx.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, avg_pool2d_backward, ctx, shape, dy.data<T>(), dx.data<T>());
  });
}

inline void global_avg_pool_forward(Context& ctx, const Tensor& x, Tensor& y) {
  constexpr std::string_view op = "ops::global_avg_pool_forward";
  namespace check = detail::pooling;
  check::require_plane(ctx, op, "x", x);
  const Shape& s = x.shape();
  check::require_shaped(ctx, op, "y", y, x.dtype(), Shape{s[0], s[3]},
                        [&] { return detail::concat("'x' ", x.description(), " averaged over H×W"); });
  check::require_disjoint(op, "x", x, "y", y);
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, global_avg_pool_forward, ctx, s[0], s[1] * s[2], s[3], x.data<T>(), y.data<T>());
  });
}

inline void global_avg_pool_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  constexpr std::string_view op = "ops::global_avg_pool_backward";
  namespace check = detail::pooling;
  check::require_plane(ctx, op, "dx", dx);
  const Shape& s = dx.shape();
  check::require_shaped(ctx, op, "dy", dy, dx.dtype(), Shape{s[0], s[3]},
                        [&] { return detail::concat("'dx' ", dx.description(), " averaged over H×W"); });
  check::require_disjoint(op, "dy", dy, "dx", dx);
  dispatch_activation_type(dx.dtype(), op, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, global_avg_pool_backward, ctx, s[0], s[1] * s[2], s[3], dy.data<T>(), dx.data<T>());
  });
}

}  // namespace cumtl::ops
