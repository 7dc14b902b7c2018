#pragma once
// BatchNorm2d over the channels of an NHWC activation, with an optional fused
// ReLU and an optional fused residual addition before it (the end of a
// residual block: relu(bn(x) + shortcut) in one pass over memory).
// Parameters "<name>.weight" (γ) and "<name>.bias" (β), buffers
// "<name>.running_mean" and "<name>.running_var", as PyTorch names them.
// In data-parallel training it normalizes with each rank's own batch, or, once
// synchronize_statistics() names the ranks, with the whole batch's statistics
// (PyTorch's SyncBatchNorm; ops/batchnorm.hpp says what is summed).
// T is the activation type; γ, β and the statistics are of compute_t<T>
// (float32 master values for bf16 or f16 activations).

#include <string>

#include "cumtl/layers/layer_checks.hpp"
#include "cumtl/layers/parameters.hpp"
#include "cumtl/ops/batchnorm.hpp"

namespace cumtl {

struct BatchNormOptions {
  Activation activation = Activation::none;
  double momentum = 0.1;  // PyTorch's: running = (1 − momentum)·running + momentum·batch
  double eps = 1e-5;
};

template <class T>
class BatchNorm2d {
 public:
  struct Gradients {
    Tensor input;     // dL/dx
    Tensor residual;  // dL/dresidual, when forward had one
  };

  BatchNorm2d(ParameterStore& store, std::string name, int channels, BatchNormOptions options = {})
      : name_(std::move(name)), channels_(channels), options_(options) {
    CUMTL_REQUIRE(channels > 0, label(), ": ", channels, " channels");
    CUMTL_REQUIRE(options.momentum >= 0 && options.momentum <= 1 && options.eps > 0, label(), ": momentum ",
                  options.momentum, " and eps ", options.eps, " are out of range");
    gamma_ = store.add_parameter(name_ + ".weight", Shape{channels}, false);
    beta_ = store.add_parameter(name_ + ".bias", Shape{channels}, false);
    running_mean_ = store.add_buffer(name_ + ".running_mean", Shape{channels}, 0.0);
    running_var_ = store.add_buffer(name_ + ".running_var", Shape{channels}, 1.0);
  }

  // γ = 1, β = 0 (the running statistics start at 0 and 1 when the store allocates them).
  void initialize(Context& ctx) {
    ops::fill(ctx, gamma_->value, 1.0);
    beta_->value.set_zero(ctx);
  }

  // act(bn(x) [+ residual]); batch statistics in Phase::train, running ones in Phase::eval.
  Tensor forward(Context& ctx, const Tensor& x, Phase phase, const Tensor& residual = Tensor()) {
    detail::require_activation(label(), x, channels_, scalar_type_v<T>);
    Tensor y = Tensor::empty(ctx, x.shape(), scalar_type_v<T>);
    if (phase == Phase::eval) {
      ops::batchnorm_forward_eval(ctx, x, gamma_->value, beta_->value, residual, options_.activation, options_.eps,
                                  running_mean_->value, running_var_->value, y);
      input_ = Tensor();
      return y;
    }
    saved_mean_ = Tensor::empty(ctx, Shape{channels_}, scalar_type_v<compute_t<T>>);
    saved_invstd_ = Tensor::empty(ctx, Shape{channels_}, scalar_type_v<compute_t<T>>);
    ops::batchnorm_forward_train(ctx, x, gamma_->value, beta_->value, residual, options_.activation, options_.momentum,
                                 options_.eps, running_mean_->value, running_var_->value, saved_mean_, saved_invstd_, y,
                                 synchronize_over_);
    input_ = x;
    output_ = y;
    had_residual_ = residual.defined();
    return y;
  }

  Gradients backward(Context& ctx, const Tensor& dy, GradientMode mode = GradientMode::accumulate) {
    detail::require_forward_ran(label(), input_);
    Gradients gradients{Tensor::empty(ctx, input_.shape(), scalar_type_v<T>), Tensor()};
    if (had_residual_) gradients.residual = Tensor::empty(ctx, input_.shape(), scalar_type_v<T>);
    ops::batchnorm_backward(ctx, dy, input_, output_, gamma_->value, saved_mean_, saved_invstd_, options_.activation,
                            gradients.input, gradients.residual, gamma_->gradient, beta_->gradient, mode,
                            synchronize_over_);
    input_ = output_ = saved_mean_ = saved_invstd_ = Tensor();
    return gradients;
  }

  // Training statistics over the whole batch of `ranks` (null: this process's batch alone). The communicator must
  // outlive the layer's use of it.
  void synchronize_statistics(distributed::Communicator* ranks) noexcept { synchronize_over_ = ranks; }

  const std::string& name() const noexcept { return name_; }

 private:
  std::string label() const { return "BatchNorm2d '" + name_ + "'"; }

  std::string name_;
  int channels_;
  BatchNormOptions options_;
  Parameter* gamma_ = nullptr;
  Parameter* beta_ = nullptr;
  Buffer* running_mean_ = nullptr;
  Buffer* running_var_ = nullptr;
  Tensor input_, output_, saved_mean_, saved_invstd_;
  bool had_residual_ = false;
  distributed::Communicator* synchronize_over_ = nullptr;
};

}  // namespace cumtl
