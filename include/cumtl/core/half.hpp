#pragma once
// bfloat16_t and float16_t: the two 2-byte floating-point storage types of
// mixed precision (ScalarType::bf16 and ScalarType::f16), named as C++23 names
// its own (std::bfloat16_t, std::float16_t), which need compiler support.
//
// Both are storage only: arithmetic converts to float, works there, and rounds
// back. The conversions are written with integer operations on the bit
// patterns, so they give the same bits with any compiler and need no extension
// (_Float16, __bf16) or CUDA header, and they are constexpr:
//  - to float: exact (every bf16 and f16 value is a float); NaN payloads kept;
//  - from float: IEEE round-to-nearest, ties to even, as the GPU's
//    __float2bfloat16_rn and __float2half_rn; f16 has subnormals (down to
//    2^-24) and overflows to infinity from 65520 on (the halfway point past
//    65504, its largest finite value, rounds to the even neighbour: infinity);
//    a NaN becomes a quiet NaN with its sign (0x7FC0 and 0x7E00 when positive).

#include <bit>
#include <cstdint>

namespace cumtl {

namespace detail {

inline constexpr std::uint32_t float_bits(float value) noexcept {
  return std::bit_cast<std::uint32_t>(value);
}
inline constexpr float float_from_bits(std::uint32_t bits) noexcept {
  return std::bit_cast<float>(bits);
}

// Drops the low `shift` bits of `value` (1 <= shift < 32), rounding to nearest, ties to even.
inline constexpr std::uint32_t shift_right_rounded(std::uint32_t value, unsigned shift) noexcept {
  const std::uint32_t kept = value >> shift, dropped = value & ((std::uint32_t(1) << shift) - 1),
                      half = std::uint32_t(1) << (shift - 1);
  return kept + ((dropped > half || (dropped == half && (kept & 1))) ? 1 : 0);
}

// Round to nearest even by adding 0x7fff plus the lowest kept bit: the sum
// carries into the kept bits exactly when the dropped half is above the
// midpoint, or at it with an odd kept part (shift_right_rounded(bits, 16),
// checked equal on every float). A carry out of the mantissa raises the
// exponent, up to infinity: what rounding should do. Written without branches
// (the NaN case is a select), so loops of conversions vectorize.
inline constexpr std::uint16_t bf16_bits_from_float(float value) noexcept {
  const std::uint32_t bits = float_bits(value);
  const std::uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const std::uint32_t quiet_nan = ((bits >> 16) & 0x8000u) | 0x7fc0u;
  return std::uint16_t((bits & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

inline constexpr float float_from_bf16_bits(std::uint16_t bits) noexcept {
  return float_from_bits(std::uint32_t(bits) << 16);
}

inline constexpr std::uint16_t f16_bits_from_float(float value) noexcept {
  const std::uint32_t bits = float_bits(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);   // NaN
  if (magnitude >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // >= 65520: infinity
  if (magnitude >= 0x38800000u)                                        // >= 2^-14: normal
    return std::uint16_t(sign | shift_right_rounded(magnitude - ((127u - 15u) << 23), 13));
  if (magnitude <= 0x33000000u) return std::uint16_t(sign);  // <= 2^-25: zero
  // Subnormal: |value| / 2^-24 rounded, from the float's significand
  // m·2^(e-150) with the implicit bit: m·2^(e-126) in units of 2^-24. A result
  // of 0x400 is the smallest normal's encoding, as it should be.
  const std::uint32_t exponent = magnitude >> 23, significand = (magnitude & 0x7fffffu) | 0x800000u;
  return std::uint16_t(sign | shift_right_rounded(significand, 126u - exponent));
}

inline constexpr float float_from_f16_bits(std::uint16_t bits) noexcept {
  const std::uint32_t sign = std::uint32_t(bits & 0x8000u) << 16, exponent = (bits >> 10) & 0x1fu,
                      mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) return float_from_bits(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  if (exponent != 0) return float_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return float_from_bits(sign);
  // Subnormal m·2^-24: normalize so the leading bit becomes the implicit one.
  const int leading = std::bit_width(mantissa) - 1;  // 0..9
  return float_from_bits(sign | (std::uint32_t(leading + 103) << 23) | ((mantissa << (23 - leading)) & 0x7fffffu));
}

// The two formats, as TwoByteFloat takes them.
struct BFloat16Format {
  static constexpr std::uint16_t narrow(float value) noexcept { return bf16_bits_from_float(value); }
  static constexpr float widen(std::uint16_t bits) noexcept { return float_from_bf16_bits(bits); }
};
struct Float16Format {
  static constexpr std::uint16_t narrow(float value) noexcept { return f16_bits_from_float(value); }
  static constexpr float widen(std::uint16_t bits) noexcept { return float_from_f16_bits(bits); }
};
}  // namespace detail

// A 2-byte float of one format: its bit pattern, converted explicitly.
template <class Format>
struct TwoByteFloat {
  std::uint16_t bits = 0;

  constexpr TwoByteFloat() = default;
  constexpr explicit TwoByteFloat(float value) noexcept : bits(Format::narrow(value)) {}
  static constexpr TwoByteFloat from_bits(std::uint16_t pattern) noexcept {
    TwoByteFloat value;
    value.bits = pattern;
    return value;
  }
  constexpr explicit operator float() const noexcept { return Format::widen(bits); }
  friend constexpr bool operator==(TwoByteFloat, TwoByteFloat) = default;  // bit patterns, not IEEE equality
};

// bfloat16: float's sign and 8-bit exponent, 7 mantissa bits.
using bfloat16_t = TwoByteFloat<detail::BFloat16Format>;
// IEEE binary16: 5-bit exponent, 10 mantissa bits, subnormals.
using float16_t = TwoByteFloat<detail::Float16Format>;

// The type arithmetic on a T is done in: float for the 2-byte types, T itself
// otherwise. An elementwise kernel on a 2-byte type widens its inputs, computes
// one operation in float and rounds once: for +, −, × and ÷ that equals the
// correctly rounded result, since float's 24 bits are at least 2p + 2 for a
// p-bit half (p = 8 for bf16, 11 for f16), so the double rounding is harmless.
template <class T>
struct compute_type {
  using type = T;
};
template <class Format>
struct compute_type<TwoByteFloat<Format>> {
  using type = float;
};
template <class T>
using compute_t = typename compute_type<T>::type;

// Whether T is one of the 2-byte storage types.
template <class T>
inline constexpr bool is_two_byte_float = false;
template <class Format>
inline constexpr bool is_two_byte_float<TwoByteFloat<Format>> = true;

static_assert(sizeof(bfloat16_t) == 2 && sizeof(float16_t) == 2);
static_assert(bfloat16_t(1.0f).bits == 0x3f80 && float16_t(1.0f).bits == 0x3c00);
static_assert(float(float16_t::from_bits(0x0001)) == 0x1p-24f && float(float16_t::from_bits(0x7bff)) == 65504.0f);

}  // namespace cumtl
