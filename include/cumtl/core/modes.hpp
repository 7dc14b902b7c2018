#pragma once
// Small enums that change what an operation computes. They are explicit
// arguments, never conventions or bools, so a call reads as what it does.

#include <cstdint>

#include "cumtl/core/config.hpp"

namespace cumtl {

// Whether a backward pass adds into a gradient tensor or replaces its content.
// Parameter gradients accumulate over a step (a parameter may be used twice,
// or gradients summed over micro-batches); input gradients usually overwrite.
enum class GradientMode : std::uint8_t { overwrite, accumulate };

// An activation fused into the operation that precedes it.
enum class Activation : std::uint8_t { none, relu };

// Training uses batch statistics and random masks; evaluation uses running
// statistics and is deterministic.
enum class Phase : std::uint8_t { train, eval };

}  // namespace cumtl

namespace cumtl {

// How much numerical latitude GPU library calls get. TF32 tensor cores make
// fp32 convolutions several times faster at about 1e-3 relative error;
// deterministic mode keeps only algorithms without atomics, so two runs on one
// GPU are bit-identical. CPU code is deterministic and full precision anyway.
struct NumericsPolicy {
  bool allow_tf32 = true;
  bool deterministic = false;
};

}  // namespace cumtl

namespace cumtl {

// Whether a layer's backward computes the gradient of its input. The first
// layer of a network has no use for it, and skipping it saves a whole pass.
enum class InputGradient : std::uint8_t { compute, skip };

}  // namespace cumtl
