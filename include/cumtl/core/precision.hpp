#pragma once
// What a model computes in, named as `--precision` names it:
//
//   name   activations and     master weights   fp32 library math
//          working weights     and gradients
//   fp32   float32             float32          fp32 (no tensor-core rounding)
//   tf32   float32             float32          TF32: cuDNN and cuBLAS may round
//                                               fp32 operands to 10 mantissa bits
//   bf16   bfloat16            float32          fp32
//   fp16   float16             float32          fp32, with dynamic loss scaling
//
// TF32 is a GPU math mode: the CPU twins compute fp32, so tf32 is refused on
// the CPU rather than silently meaning fp32 there. bf16 and fp16 compute their
// convolutions in the 2-byte type with fp32 accumulation on both devices; the
// fp32 left in them (the heads, docs/layers.md) stays strict fp32, so a bf16
// run on the CPU is the oracle of the same run on a GPU. fp16 trains with
// dynamic loss scaling (optim/loss_scale.hpp).

#include <array>
#include <cstdint>
#include <string_view>

#include "cumtl/core/device.hpp"
#include "cumtl/core/dtype.hpp"
#include "cumtl/core/error.hpp"
#include "cumtl/core/modes.hpp"

namespace cumtl {

enum class MathMode : std::uint8_t { fp32, tf32 };

struct Precision {
  std::string_view name;
  ScalarType activations = ScalarType::f32;  // activations and the working copy of the weights
  ScalarType master = ScalarType::f32;       // master weights, gradients, optimizer state
  MathMode math = MathMode::fp32;

  // Activations narrower than the master weights: the optimizer keeps an fp32 copy.
  constexpr bool mixed() const noexcept { return activations != master; }
  friend constexpr bool operator==(const Precision&, const Precision&) = default;
};

inline constexpr Precision precision_fp32{"fp32", ScalarType::f32, ScalarType::f32, MathMode::fp32};
inline constexpr Precision precision_tf32{"tf32", ScalarType::f32, ScalarType::f32, MathMode::tf32};
inline constexpr Precision precision_bf16{"bf16", ScalarType::bf16, ScalarType::f32, MathMode::fp32};
inline constexpr Precision precision_fp16{"fp16", ScalarType::f16, ScalarType::f32, MathMode::fp32};
inline constexpr std::array<Precision, 4> precisions{precision_fp32, precision_tf32, precision_bf16, precision_fp16};

// The precision `text` names: fp32, tf32, bf16 or fp16 ("auto" is choose_precision's).
inline Precision parse_precision(std::string_view text) {
  for (const Precision& precision : precisions)
    if (precision.name == text) return precision;
  CUMTL_FAIL("not a precision: '", text, "' (expected auto, fp32, tf32, bf16 or fp16)");
}

// The first compute capability (major * 10 + minor) whose tensor cores
// multiply bfloat16, and TF32 too: sm_80, Ampere.
inline constexpr int bf16_tensor_cores_since = 80;

// What auto means on a device of `compute_capability` (0 for the CPU): bf16
// on a GPU whose tensor cores multiply it, fp32 everywhere else. A GPU before
// sm_80 has no TF32 tensor cores either, so tf32 there would be fp32 under
// another name. With `deterministic` auto stays fp32: a run that must repeat
// bit for bit is most often one being compared, and fp32 is the precision
// every other is checked against.
inline constexpr Precision auto_precision(int compute_capability, bool deterministic) noexcept {
  return compute_capability >= bf16_tensor_cores_since && !deterministic ? precision_bf16 : precision_fp32;
}

// The precision a run on `device` uses for `text`: auto_precision's for
// auto. An explicit tf32 stays tf32 with `deterministic`: determinism only
// narrows the engines.
inline Precision choose_precision(std::string_view text, Device device, bool deterministic = false) {
  if (text == "auto")
    return auto_precision(device.is_cuda() ? detail::cuda_backend().compute_capability(device.index()) : 0,
                          deterministic);
  const Precision precision = parse_precision(text);
  CUMTL_REQUIRE(precision.math == MathMode::fp32 || device.is_cuda(), "precision ", precision.name,
                " is a GPU math mode (TF32 tensor cores), but the device is ", device,
                ", which computes in fp32: use fp32 or auto");
  return precision;
}

// Makes library calls on a context use `precision`'s math mode.
inline void apply_math_mode(const Precision& precision, NumericsPolicy& numerics) noexcept {
  numerics.allow_tf32 = precision.math == MathMode::tf32;
}

}  // namespace cumtl
