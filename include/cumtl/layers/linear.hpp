#pragma once
// Linear: y = x · Wᵀ + b, weight "<name>.weight" [out, in] and bias
// "<name>.bias" [out], as PyTorch's nn.Linear. T is the activation type: with
// bf16 or f16 (mixed precision) the layer multiplies by the store's working
// copy of its weights and widens its gradients into the float32 master ones.

#include <cmath>
#include <optional>
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
    CUMTL_REQUIRE(in_features > 0 && out_features > 0, label(), ": ", in_features, " -> ", out_features, " features");
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
    ops::linear_forward(ctx, x, weight_->working, bias_ != nullptr ? bias_->working : Tensor(), y);
    return y;
  }

  Tensor backward(Context& ctx, const Tensor& dy, GradientMode mode = GradientMode::accumulate,
                  InputGradient input_gradient = InputGradient::compute) {
    detail::require_forward_ran(label(), input_);
    Tensor dx =
        input_gradient == InputGradient::compute ? Tensor::empty(ctx, input_.shape(), scalar_type_v<T>) : Tensor();
    detail::ActivationTypeGradient dweight(ctx, *weight_, scalar_type_v<T>, mode);
    Tensor no_bias;
    std::optional<detail::ActivationTypeGradient> dbias;
    if (bias_ != nullptr) dbias.emplace(ctx, *bias_, scalar_type_v<T>, mode);
    // One store: the weight and the bias are both temporaries, or neither is, and share a mode.
    ops::linear_backward(ctx, dy, input_, weight_->working, dx, dweight.tensor(), dbias ? dbias->tensor() : no_bias,
                         dweight.mode());
    dweight.finish(ctx);
    if (dbias) dbias->finish(ctx);
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
