#pragma once
// Dynamic loss scaling for float16 training, as PyTorch's GradScaler does it.
//
// float16 flushes values below 2^-24 to zero and overflows above 65504, and a
// network's activation gradients are mostly far below one. The gradient of
// the loss is multiplied by the scale before backward, which lifts the
// gradients that flow through the float16 trunk out of the range that would
// underflow; before the optimizer step, the float32 gradients are divided by
// it again. When the scaled gradients overflowed (an infinity or a NaN
// anywhere in them), the step is skipped, the weights left untouched, and the
// scale halved; after `growth_interval` steps in a row without one, it is
// doubled. The check reads one flag back from the device: a host
// synchronization per step, as in GradScaler.
//
// Usage, one step:
//   ops::scale(ctx, dlogits, scaler.scale());
//   model.backward(ctx, dlogits, ...);
//   if (scaler.unscale(ctx, store.gradients())) optimizer.step(ctx, lr);
//   (unscale also updates the scale and counts a skipped step)

#include <cstdint>

#include "cumtl/core/error.hpp"
#include "cumtl/core/tensor.hpp"
#include "cumtl/ops/elementwise.hpp"

namespace cumtl::optim {

struct LossScaleOptions {
  double initial = 65536;  // 2^16, GradScaler's
  double growth_factor = 2;
  double backoff_factor = 0.5;
  std::int64_t growth_interval = 2000;  // finite steps in a row before the scale grows
};

// What a checkpoint keeps of a DynamicLossScale, so that a resumed run scales as the uninterrupted one.
struct LossScaleState {
  double scale = 0;
  std::int64_t finite_steps = 0;  // in a row, since the last change of scale
  std::int64_t skipped_steps = 0;

  friend bool operator==(const LossScaleState&, const LossScaleState&) = default;
};

class DynamicLossScale {
 public:
  explicit DynamicLossScale(LossScaleOptions options = {}) : options_(options) {
    CUMTL_REQUIRE(options.initial > 0 && options.growth_factor > 1 && options.backoff_factor > 0 &&
                      options.backoff_factor < 1 && options.growth_interval > 0,
                  "DynamicLossScale: initial scale ", options.initial, ", growth ", options.growth_factor, ", backoff ",
                  options.backoff_factor, " and interval ", options.growth_interval,
                  " are out of range (positive, growth > 1, 0 < backoff < 1)");
    state_.scale = options.initial;
  }

  double scale() const noexcept { return state_.scale; }
  std::int64_t skipped_steps() const noexcept { return state_.skipped_steps; }
  const LossScaleState& state() const noexcept { return state_; }
  void set_state(const LossScaleState& state) {
    CUMTL_REQUIRE(state.scale > 0 && state.finite_steps >= 0 && state.skipped_steps >= 0,
                  "DynamicLossScale: a state with scale ", state.scale, " is not one it can have");
    state_ = state;
  }

  // Divides the gradients of the scaled loss by the scale when they are all
  // finite and returns true (take the step); otherwise leaves them, halves the
  // scale, counts a skipped step and returns false (skip it).
  bool unscale(Context& ctx, Tensor& gradients) {
    if (!ops::all_finite(ctx, gradients)) {
      state_.scale *= options_.backoff_factor;
      state_.finite_steps = 0;
      ++state_.skipped_steps;
      return false;
    }
    ops::scale(ctx, gradients, 1 / state_.scale);
    if (++state_.finite_steps == options_.growth_interval) {
      state_.scale *= options_.growth_factor;
      state_.finite_steps = 0;
    }
    return true;
  }

 private:
  LossScaleOptions options_;
  LossScaleState state_;
};

}  // namespace cumtl::optim
