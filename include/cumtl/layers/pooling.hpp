#pragma once
// Pooling layers over NHWC activations: MaxPool2d, AvgPool2d and
// GlobalAvgPool (N×H×W×C → N×C, the step from a trunk to its heads).

#include <string>

#include "cumtl/layers/layer_checks.hpp"
#include "cumtl/ops/pooling.hpp"

namespace cumtl {

template <class T>
class MaxPool2d {
 public:
  MaxPool2d(std::string name, ops::Pool2d window) : name_(std::move(name)), window_(window) {}

  Tensor forward(Context& ctx, const Tensor& x) {
    detail::require_activation(label(), x, -1, scalar_type_v<T>);
    const Shape out{x.shape()[0], window_.out_h(x.shape()[1]), window_.out_w(x.shape()[2]), x.shape()[3]};
    Tensor y = Tensor::empty(ctx, out, scalar_type_v<T>);
    argmax_ = Tensor::empty(ctx, out, ScalarType::i32);
    ops::max_pool2d_forward(ctx, x, window_, y, argmax_);
    input_shape_ = x.shape();
    return y;
  }

  Tensor backward(Context& ctx, const Tensor& dy) {
    detail::require_forward_ran(label(), argmax_);
    Tensor dx = Tensor::empty(ctx, input_shape_, scalar_type_v<T>);
    ops::max_pool2d_backward(ctx, dy, argmax_, window_, dx);
    argmax_ = Tensor();
    return dx;
  }

 private:
  std::string label() const { return "MaxPool2d '" + name_ + "'"; }

  std::string name_;
  ops::Pool2d window_;
  Tensor argmax_;
  Shape input_shape_;
};

template <class T>
class AvgPool2d {
 public:
  AvgPool2d(std::string name, ops::Pool2d window) : name_(std::move(name)), window_(window) {}

  Tensor forward(Context& ctx, const Tensor& x) {
    detail::require_activation(label(), x, -1, scalar_type_v<T>);
    Tensor y = Tensor::empty(
        ctx, Shape{x.shape()[0], window_.out_h(x.shape()[1]), window_.out_w(x.shape()[2]), x.shape()[3]},
        scalar_type_v<T>);
    ops::avg_pool2d_forward(ctx, x, window_, y);
    input_shape_ = x.shape();
    return y;
  }

  Tensor backward(Context& ctx, const Tensor& dy) {
    CUMTL_REQUIRE(input_shape_.rank() == 4, label(), ": backward() called before forward()");
    Tensor dx = Tensor::empty(ctx, input_shape_, scalar_type_v<T>);
    ops::avg_pool2d_backward(ctx, dy, window_, dx);
    return dx;
  }

 private:
  std::string label() const { return "AvgPool2d '" + name_ + "'"; }

  std::string name_;
  ops::Pool2d window_;
  Shape input_shape_;
};

template <class T>
class GlobalAvgPool {
 public:
  explicit GlobalAvgPool(std::string name) : name_(std::move(name)) {}

  Tensor forward(Context& ctx, const Tensor& x) {
    detail::require_activation(label(), x, -1, scalar_type_v<T>);
    Tensor y = Tensor::empty(ctx, Shape{x.shape()[0], x.shape()[3]}, scalar_type_v<T>);
    ops::global_avg_pool_forward(ctx, x, y);
    input_shape_ = x.shape();
    return y;
  }

  Tensor backward(Context& ctx, const Tensor& dy) {
    CUMTL_REQUIRE(input_shape_.rank() == 4, label(), ": backward() called before forward()");
    Tensor dx = Tensor::empty(ctx, input_shape_, scalar_type_v<T>);
    ops::global_avg_pool_backward(ctx, dy, dx);
    return dx;
  }

 private:
  std::string label() const { return "GlobalAvgPool '" + name_ + "'"; }

  std::string name_;
  Shape input_shape_;
};

}  // namespace cumtl
