#pragma once
// Learning-rate schedules: lr(step) as a pure function of the 0-based step
// about to be taken, so a resumed run reproduces the original exactly from the
// step count alone.
//
// Warm-up (warmup_steps = W > 0): lr(s) = base_lr · (s + 1) / W for s < W, so
// the first step already moves and step W − 1 reaches base_lr. The decay then
// counts t = s − W steps from the end of the warm-up:
//   constant   base_lr
//   step       base_lr · gamma^floor(t / step_size)
//   cosine     min_lr + (base_lr − min_lr) · (1 + cos(π · min(t, T) / T)) / 2,
//              T = total_steps − W; min_lr from step total_steps on.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "cumtl/core/error.hpp"

namespace cumtl::optim {

struct Schedule {
  enum class Kind : std::uint8_t { constant, step, cosine };

  Kind kind = Kind::constant;
  double base_lr = 0.1;
  std::int64_t warmup_steps = 0;
  std::int64_t step_size = 1;  // step decay: steps between multiplications by gamma
  double gamma = 0.1;
  std::int64_t total_steps = 0;  // cosine: warm-up included
  double min_lr = 0;             // cosine: the floor

  static Schedule constant(double lr, std::int64_t warmup_steps = 0) {
    return Schedule{Kind::constant, lr, warmup_steps, 1, 1, 0, 0};
  }
  static Schedule step_decay(double lr, std::int64_t step_size, double gamma, std::int64_t warmup_steps = 0) {
    return Schedule{Kind::step, lr, warmup_steps, step_size, gamma, 0, 0};
  }
  static Schedule cosine(double lr, std::int64_t total_steps, double min_lr = 0, std::int64_t warmup_steps = 0) {
    return Schedule{Kind::cosine, lr, warmup_steps, 1, 1, total_steps, min_lr};
  }

  double lr(std::int64_t step) const {
    CUMTL_REQUIRE(step >= 0, "Schedule: step must be >= 0, got ", step);
    CUMTL_REQUIRE(base_lr >= 0 && std::isfinite(base_lr), "Schedule: base_lr must be finite and >= 0, got ", base_lr);
    CUMTL_REQUIRE(warmup_steps >= 0, "Schedule: warmup_steps must be >= 0, got ", warmup_steps);
    if (step < warmup_steps) return base_lr * double(step + 1) / double(warmup_steps);
    const std::int64_t t = step - warmup_steps;
    switch (kind) {
      case Kind::constant: return base_lr;
      case Kind::step:
        CUMTL_REQUIRE(step_size > 0, "Schedule: step_size must be > 0, got ", step_size);
        CUMTL_REQUIRE(gamma >= 0, "Schedule: gamma must be >= 0, got ", gamma);
        return base_lr * std::pow(gamma, double(t / step_size));
      case Kind::cosine: {
        CUMTL_REQUIRE(total_steps > warmup_steps, "Schedule: cosine needs total_steps (", total_steps,
                      ") > warmup_steps (", warmup_steps, ")");
        CUMTL_REQUIRE(min_lr >= 0 && min_lr <= base_lr, "Schedule: min_lr must be in [0, base_lr], got ", min_lr);
        const double span = double(total_steps - warmup_steps);
        const double progress = double(std::min<std::int64_t>(t, total_steps - warmup_steps)) / span;
        return min_lr + (base_lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
      }
    }
    CUMTL_FAIL("Schedule: unknown kind");
  }
};

}  // namespace cumtl::optim
