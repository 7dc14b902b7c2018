#pragma once
// Linear: y = x · Wᵀ + b, weight "<name>.weight" [out, in] and bias
// "<name>.bias" [out], as PyTorch's nn.Linear.

#include <cmath>
#include <string>

#include "cumtl/core/random.hpp"
#include "cumtl/layers/layer_checks.hpp"
#include "cumtl/layers/parameters.hpp"
#include "cumtl/ops/linear.hpp"
#include "cumtl/ops/random.hpp"

namespace cumtl {

template <class T>
class Linear {
 public:
  Linear(ParameterStore& store, std::string name, int in_features, int out_features, bool bias = true)
      : name_(std::move(name)), in_features_(in_features), out_features_(out_features) {
    CUMTL_REQUIRE(in_features > 0 && out_features > 0, label(), ": ", in_features, " -> ", out_features,
                  " features");
    weight_ = store.add_parameter(name_ + ".weight", Shape{out_features, in_features}, true);
    if (bias) bias_ = store.add_parameter(name_ + ".bias", Shape{out_features}, false);
  }

  // PyTorch's default: weight and bias uniform in ±1/sqrt(in_features).
  void initialize(Context& ctx, Generator& generator) {
    const double bound = 1.0 / std::sqrt(double(in_features_));
    ops::uniform(ctx, weight_->value, generator, -bound, bound);
    if (bias_ != nullptr) ops::uniform(ctx, bias_->value, generator, -bound, bound);
  }

  Tensor forward(Context& ctx, const Tensor& x) {
    detail::require_matrix(label(), x, in_features_, scalar_type_v<T>);
    input_ = x;
    Tensor y = Tensor::empty(ctx, Shape{x.shape()[0], out_features_}, scalar_type_v<T>);
    ops::linear_forward(ctx, x, weight_->value, bias_ != nullptr ? bias_->value : Tensor(), y);
    return y;
  }

  Tensor backward(Context& ctx, const Tensor& dy, GradientMode mode = GradientMode::accumulate,
                  InputGradient input_gradient = InputGradient::compute) {
    detail::require_forward_ran(label(), input_);
    Tensor dx = input_gradient == InputGradient::compute ? Tensor::empty(ctx, input_.shape(), scalar_type_v<T>)
                                                         : Tensor();
    Tensor no_bias;
    ops::linear_backward(ctx, dy, input_, weight_->value, dx, weight_->gradient,
                         bias_ != nullptr ? bias_->gradient : no_bias, mode);
    input_ = Tensor();
    return dx;
  }

  const std::string& name() const noexcept { return name_; }
  int out_features() const noexcept { return out_features_; }
  Parameter& weight() const noexcept { return *weight_; }

 private:
  std::string label() const { return "Linear '" + name_ + "'"; }

  std::string name_;
  int in_features_, out_features_;
  Parameter* weight_ = nullptr;
  Parameter* bias_ = nullptr;
  Tensor input_;
};

}  // namespace cumtl
