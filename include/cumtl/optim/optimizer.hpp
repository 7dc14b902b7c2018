#pragma once
// Optimizers over a ParameterStore: SGD and AdamW with PyTorch's semantics.
//
// Each update is one launch over the store's flat parameter buffer. Which
// parameters decay is a per-element mask (1 or 0) built once from
// Parameter::decay, so exempting BN affine parameters and biases costs no extra
// launch. The learning rate is an argument of step(), taken from a Schedule,
// so the optimizer holds no schedule state and resuming needs only steps() and
// the state tensors.
//
//   ops::sgd_update(ctx, values, gradients, momentum_buffer, decay_mask, SgdStep)
//     g = grad + wd·mask·w;  buf = first_step ? g : momentum·buf + g
//     w −= lr · (nesterov ? g + momentum·buf : buf)
//   ops::adamw_update(ctx, values, gradients, m, v, decay_mask, AdamWStep)
//     w −= lr·wd·mask·w;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//     w −= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps)
//
// Requires: tensors defined, on ctx's device, alike in scalar type and shape
// (float32 or float64); the state and values are updated in place on ctx's stream.
// With mixed precision, `working` (a bf16 or f16 tensor of the values' shape,
// for float32 values) receives the updated values rounded, in the same pass:
// a ParameterStore's working copy is made by the step that changes it.

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cumtl/core/tensor.hpp"
#include "cumtl/cpu/optimizer.hpp"
#include "cumtl/layers/parameters.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl::detail {

// `working` is undefined, or a bf16 or f16 tensor of the shape of float32 `values`.
inline void require_working_copy(const Context& ctx, std::string_view operation, const Tensor& values,
                                 const Tensor& working) {
  if (!working.defined()) return;
  require_on_context(ctx, operation, "working", working);
  CUMTL_REQUIRE(values.dtype() == ScalarType::f32 &&
                    (working.dtype() == ScalarType::bf16 || working.dtype() == ScalarType::f16) &&
                    working.shape() == values.shape(),
                operation, ": the working copy is ", working.description(), " for values ", values.description(),
                "; expected a bfloat16 or float16 copy of float32 values");
}

inline std::uint16_t* working_bits(const Tensor& working) {
  return working.defined() ? static_cast<std::uint16_t*>(working.raw_data()) : nullptr;
}

}  // namespace cumtl::detail

namespace cumtl::ops {

inline void sgd_update(Context& ctx, Tensor& values, const Tensor& gradients, Tensor& momentum_buffer,
                       const Tensor& decay_mask, const SgdStep& step, Tensor& working) {
  constexpr const char* operation = "ops::sgd_update";
  detail::require_on_context(ctx, operation, "values", values);
  detail::require_on_context(ctx, operation, "gradients", gradients);
  detail::require_on_context(ctx, operation, "momentum_buffer", momentum_buffer);
  detail::require_on_context(ctx, operation, "decay_mask", decay_mask);
  detail::require_alike(operation, "values", values, "gradients", gradients);
  detail::require_alike(operation, "values", values, "momentum_buffer", momentum_buffer);
  detail::require_alike(operation, "values", values, "decay_mask", decay_mask);
  detail::require_working_copy(ctx, operation, values, working);
  CUMTL_REQUIRE(std::isfinite(step.lr) && step.lr >= 0, operation, ": lr must be finite and >= 0, got ", step.lr);
  CUMTL_REQUIRE(step.momentum >= 0 && step.momentum <= 1, operation, ": momentum must be in [0, 1], got ",
                step.momentum);
  CUMTL_REQUIRE(std::isfinite(step.weight_decay) && step.weight_decay >= 0, operation,
                ": weight_decay must be finite and >= 0, got ", step.weight_decay);
  CUMTL_REQUIRE(!step.nesterov || step.momentum > 0, operation, ": Nesterov momentum needs momentum > 0");
  dispatch_floating(values.dtype(), operation, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, sgd_update, ctx, values.numel(), values.data<T>(), gradients.data<T>(),
                   momentum_buffer.data<T>(), decay_mask.data<T>(), step, working.dtype(),
                   detail::working_bits(working));
  });
}

inline void sgd_update(Context& ctx, Tensor& values, const Tensor& gradients, Tensor& momentum_buffer,
                       const Tensor& decay_mask, const SgdStep& step) {
  Tensor no_working_copy;
  sgd_update(ctx, values, gradients, momentum_buffer, decay_mask, step, no_working_copy);
}

inline void adamw_update(Context& ctx, Tensor& values, const Tensor& gradients, Tensor& exp_avg, Tensor& exp_avg_sq,
                         const Tensor& decay_mask, const AdamWStep& step, Tensor& working) {
  constexpr const char* operation = "ops::adamw_update";
  detail::require_on_context(ctx, operation, "values", values);
  detail::require_on_context(ctx, operation, "gradients", gradients);
  detail::require_on_context(ctx, operation, "exp_avg", exp_avg);
  detail::require_on_context(ctx, operation, "exp_avg_sq", exp_avg_sq);
  detail::require_on_context(ctx, operation, "decay_mask", decay_mask);
  detail::require_alike(operation, "values", values, "gradients", gradients);
  detail::require_alike(operation, "values", values, "exp_avg", exp_avg);
  detail::require_alike(operation, "values", values, "exp_avg_sq", exp_avg_sq);
  detail::require_alike(operation, "values", values, "decay_mask", decay_mask);
  detail::require_working_copy(ctx, operation, values, working);
  CUMTL_REQUIRE(std::isfinite(step.lr) && step.lr >= 0, operation, ": lr must be finite and >= 0, got ", step.lr);
  CUMTL_REQUIRE(step.beta1 >= 0 && step.beta1 < 1 && step.beta2 >= 0 && step.beta2 < 1, operation,
                ": betas must be in [0, 1), got (", step.beta1, ", ", step.beta2, ")");
  CUMTL_REQUIRE(step.eps > 0, operation, ": eps must be > 0, got ", step.eps);
  CUMTL_REQUIRE(std::isfinite(step.weight_decay) && step.weight_decay >= 0, operation,
                ": weight_decay must be finite and >= 0, got ", step.weight_decay);
  CUMTL_REQUIRE(step.step >= 1, operation, ": step is 1-based, got 0");
  dispatch_floating(values.dtype(), operation, [&]<class T>() {
    CUMTL_DISPATCH(ctx, T, adamw_update, ctx, values.numel(), values.data<T>(), gradients.data<T>(), exp_avg.data<T>(),
                   exp_avg_sq.data<T>(), decay_mask.data<T>(), step, working.dtype(), detail::working_bits(working));
  });
}

inline void adamw_update(Context& ctx, Tensor& values, const Tensor& gradients, Tensor& exp_avg, Tensor& exp_avg_sq,
                         const Tensor& decay_mask, const AdamWStep& step) {
  Tensor no_working_copy;
  adamw_update(ctx, values, gradients, exp_avg, exp_avg_sq, decay_mask, step, no_working_copy);
}

}  // namespace cumtl::ops

namespace cumtl::optim {

// state() names each state tensor as PyTorch does; the handles share the
// optimizer's memory, so a checkpoint restores them with ops::copy.
using cumtl::NamedTensor;

namespace detail {

// 1 where weight decay applies, else 0, over the store's flat parameter buffer.
inline Tensor decay_mask(Context& ctx, ParameterStore& store, bool exempt_bn_and_bias) {
  CUMTL_REQUIRE(store.allocated(), "optimizer: the ParameterStore must be allocated first");
  CUMTL_REQUIRE(store.values().device() == ctx.device(), "optimizer: the parameters are ", store.values().description(),
                " but the context is on ", ctx.device());
  std::vector<double> mask;
  mask.reserve(std::size_t(store.parameter_count()));
  for (const auto& parameter : store.parameters())
    mask.insert(mask.end(), std::size_t(parameter->shape.numel()), parameter->decay || !exempt_bn_and_bias ? 1.0 : 0.0);
  Tensor result;
  dispatch_floating(store.values().dtype(), "optimizer", [&]<class T>() {
    const Tensor host = Tensor::from_vector(std::vector<T>(mask.begin(), mask.end()), Shape{std::int64_t(mask.size())});
    result = host.to(ctx, ctx.device());
  });
  return result;
}

// The tensor an update writes the working copy into: the store's, with mixed
// precision; none (undefined) when the working copy is the values themselves.
inline Tensor working_copy_of(ParameterStore& store) {
  return store.mixed() ? store.working_values() : Tensor();
}

}  // namespace detail

struct SgdOptions {
  double lr = 0.1;  // used by step(ctx); step(ctx, lr) takes the schedule's instead
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  bool exempt_bn_and_bias = true;
};

class Sgd {
 public:
  Sgd(Context& ctx, ParameterStore& store, SgdOptions options)
      : store_(&store), options_(options), decay_mask_(detail::decay_mask(ctx, store, options.exempt_bn_and_bias)) {
    // Checked here as well as per step, so a bad option fails at construction.
    CUMTL_REQUIRE(options.momentum >= 0 && options.momentum <= 1, "Sgd: momentum must be in [0, 1], got ",
                  options.momentum);
    CUMTL_REQUIRE(options.weight_decay >= 0, "Sgd: weight_decay must be >= 0, got ", options.weight_decay);
    CUMTL_REQUIRE(!options.nesterov || options.momentum > 0, "Sgd: Nesterov momentum needs momentum > 0");
    momentum_buffer_ = Tensor::zeros(ctx, store.values().shape(), store.values().dtype());
  }

  // Also writes the store's working copy, in the same pass, when it has one.
  void step(Context& ctx, double lr) {
    Tensor working = detail::working_copy_of(*store_);
    ops::sgd_update(ctx, store_->values(), store_->gradients(), momentum_buffer_, decay_mask_,
                    SgdStep{lr, options_.momentum, options_.weight_decay, options_.nesterov, steps_ == 0}, working);
    store_->working_written();
    ++steps_;
  }
  void step(Context& ctx) { step(ctx, options_.lr); }

  std::uint64_t steps() const noexcept { return steps_; }
  // For resuming from a checkpoint, together with state().
  void set_steps(std::uint64_t steps) noexcept { steps_ = steps; }

  std::vector<NamedTensor> state() const { return {{"momentum_buffer", momentum_buffer_}}; }
  const Tensor& decay_mask() const noexcept { return decay_mask_; }
  const SgdOptions& options() const noexcept { return options_; }

 private:
  ParameterStore* store_;
  SgdOptions options_;
  Tensor decay_mask_, momentum_buffer_;
  std::uint64_t steps_ = 0;
};

struct AdamWOptions {
  double lr = 1e-3;  // used by step(ctx); step(ctx, lr) takes the schedule's instead
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool exempt_bn_and_bias = true;
};

class AdamW {
 public:
  AdamW(Context& ctx, ParameterStore& store, AdamWOptions options)
      : store_(&store), options_(options), decay_mask_(detail::decay_mask(ctx, store, options.exempt_bn_and_bias)) {
    CUMTL_REQUIRE(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
                  "AdamW: betas must be in [0, 1), got (", options.beta1, ", ", options.beta2, ")");
    CUMTL_REQUIRE(options.eps > 0, "AdamW: eps must be > 0, got ", options.eps);
    CUMTL_REQUIRE(options.weight_decay >= 0, "AdamW: weight_decay must be >= 0, got ", options.weight_decay);
    exp_avg_ = Tensor::zeros(ctx, store.values().shape(), store.values().dtype());
    exp_avg_sq_ = Tensor::zeros(ctx, store.values().shape(), store.values().dtype());
  }

  // Also writes the store's working copy, in the same pass, when it has one.
  void step(Context& ctx, double lr) {
    Tensor working = detail::working_copy_of(*store_);
    ops::adamw_update(ctx, store_->values(), store_->gradients(), exp_avg_, exp_avg_sq_, decay_mask_,
                      AdamWStep{lr, options_.beta1, options_.beta2, options_.eps, options_.weight_decay, steps_ + 1},
                      working);
    store_->working_written();
    ++steps_;
  }
  void step(Context& ctx) { step(ctx, options_.lr); }

  std::uint64_t steps() const noexcept { return steps_; }
  void set_steps(std::uint64_t steps) noexcept { steps_ = steps; }

  std::vector<NamedTensor> state() const { return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}}; }
  const Tensor& decay_mask() const noexcept { return decay_mask_; }
  const AdamWOptions& options() const noexcept { return options_; }

 private:
  ParameterStore* store_;
  AdamWOptions options_;
  Tensor decay_mask_, exp_avg_, exp_avg_sq_;
  std::uint64_t steps_ = 0;
};

// SGD or AdamW, chosen at run time (a program's --optimizer flag).
class AnyOptimizer {
 public:
  AnyOptimizer(Context& ctx, ParameterStore& store, SgdOptions options) { sgd_.emplace(ctx, store, options); }
  AnyOptimizer(Context& ctx, ParameterStore& store, AdamWOptions options) { adamw_.emplace(ctx, store, options); }

  void step(Context& ctx, double lr) {
    if (sgd_)
      sgd_->step(ctx, lr);
    else
      adamw_->step(ctx, lr);
  }
  void step(Context& ctx) { step(ctx, sgd_ ? sgd_->options().lr : adamw_->options().lr); }
  std::uint64_t steps() const noexcept { return sgd_ ? sgd_->steps() : adamw_->steps(); }
  void set_steps(std::uint64_t steps) noexcept {
    if (sgd_)
      sgd_->set_steps(steps);
    else
      adamw_->set_steps(steps);
  }
  std::vector<NamedTensor> state() const { return sgd_ ? sgd_->state() : adamw_->state(); }

 private:
  std::optional<Sgd> sgd_;  // exactly one of the two
  std::optional<AdamW> adamw_;
};

}  // namespace cumtl::optim
