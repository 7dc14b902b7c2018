#pragma once
// Conv2d: a 2-D convolution layer (NHWC input, KRSC weight as [K, R, S, C]),
// optionally with a bias. Its weight is named "<name>.weight" as in PyTorch,
// but laid out KRSC; files exchanged with PyTorch convert to and from KCRS.
// T is the activation type: with bf16 or f16 (mixed precision) the layer
// convolves with the store's working copy of its weights and widens its
// weight gradient into the float32 master gradient.

#include <cmath>
#include <string>

#include "cumtl/core/random.hpp"
#include "cumtl/layers/layer_checks.hpp"
#include "cumtl/layers/parameters.hpp"
#include "cumtl/ops/convolution.hpp"
#include "cumtl/ops/linear.hpp"
#include "cumtl/ops/random.hpp"

namespace cumtl {

struct Conv2dOptions {
  int kernel = 3;
  int stride = 1;
  int padding = 0;
  int dilation = 1;
  bool bias = false;
};

template <class T>
class Conv2d {
 public:
  Conv2d(ParameterStore& store, std::string name, int in_channels, int out_channels, Conv2dOptions options = {})
      : name_(std::move(name)), in_channels_(in_channels), out_channels_(out_channels), options_(options) {
    CUMTL_REQUIRE(in_channels > 0 && out_channels > 0 && options.kernel > 0 && options.stride > 0 &&
                      options.padding >= 0 && options.dilation > 0,
                  label(), ": invalid configuration (", in_channels, " -> ", out_channels, " channels, kernel ",
                  options.kernel, ", stride ", options.stride, ", padding ", options.padding, ")");
    weight_ =
        store.add_parameter(name_ + ".weight", Shape{out_channels, options.kernel, options.kernel, in_channels}, true);
    if (options.bias) bias_ = store.add_parameter(name_ + ".bias", Shape{out_channels}, false);
  }

  // He initialization for ReLU networks in torchvision's ResNet form: normal with
  // std = sqrt(2 / fan_out), fan_out = K·R·S; a bias starts at zero.
  void initialize(Context& ctx, Generator& generator) {
    const double fan_out = double(out_channels_) * options_.kernel * options_.kernel;
    ops::normal(ctx, weight_->value, generator, 0.0, std::sqrt(2.0 / fan_out));
    if (bias_ != nullptr) bias_->value.set_zero(ctx);
  }

  Tensor forward(Context& ctx, const Tensor& x) {
    detail::require_activation(label(), x, in_channels_, scalar_type_v<T>);
    input_ = x;
    const ConvShape shape = ops::conv_shape(label(), x, weight_->working, geometry());
    Tensor y = Tensor::empty(ctx, ops::conv_output_shape(shape), scalar_type_v<T>);
    ops::conv2d_forward(ctx, x, weight_->working, geometry(), y);
    if (bias_ != nullptr) {
      Tensor rows = y.view(Shape{y.numel() / out_channels_, out_channels_});
      ops::add_bias(ctx, bias_->working, rows);
    }
    return y;
  }

  // Adds (or writes, per `mode`) the parameter gradients and returns dx, or an
  // undefined tensor with InputGradient::skip.
  Tensor backward(Context& ctx, const Tensor& dy, GradientMode mode = GradientMode::accumulate,
                  InputGradient input_gradient = InputGradient::compute) {
    detail::require_forward_ran(label(), input_);
    detail::ActivationTypeGradient dweight(ctx, *weight_, scalar_type_v<T>, mode);
    ops::conv2d_backward_filter(ctx, input_, dy, geometry(), dweight.tensor(), dweight.mode());
    dweight.finish(ctx);
    if (bias_ != nullptr) {
      detail::ActivationTypeGradient dbias(ctx, *bias_, scalar_type_v<T>, mode);
      ops::bias_gradient(ctx, dy.view(Shape{dy.numel() / out_channels_, out_channels_}), dbias.tensor(), dbias.mode());
      dbias.finish(ctx);
    }
    Tensor dx;
    if (input_gradient == InputGradient::compute) {
      dx = Tensor::empty(ctx, input_.shape(), scalar_type_v<T>);
      ops::conv2d_backward_data(ctx, dy, weight_->working, geometry(), dx);
    }
    input_ = Tensor();
    return dx;
  }

  const std::string& name() const noexcept { return name_; }
  int out_channels() const noexcept { return out_channels_; }
  Parameter& weight() const noexcept { return *weight_; }

 private:
  std::string label() const { return "Conv2d '" + name_ + "'"; }
  ops::ConvGeometry geometry() const {
    return {.stride_h = options_.stride,
            .stride_w = options_.stride,
            .pad_h = options_.padding,
            .pad_w = options_.padding,
            .dilation_h = options_.dilation,
            .dilation_w = options_.dilation};
  }

  std::string name_;
  int in_channels_, out_channels_;
  Conv2dOptions options_;
  Parameter* weight_ = nullptr;
  Parameter* bias_ = nullptr;
  Tensor input_;
};

}  // namespace cumtl
