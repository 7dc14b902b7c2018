#pragma once
// Scalar types a tensor can hold, chosen at run time and checked at every
// typed access. Layers and kernels are templates on the scalar type; the
// dispatch helpers below turn a run-time ScalarType into that template argument.
// bf16 and f16 (cumtl::bfloat16_t, cumtl::float16_t, core/half.hpp) are
// storage types: they convert to float to compute.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cumtl/core/error.hpp"
#include "cumtl/core/half.hpp"

namespace cumtl {

enum class ScalarType : std::uint8_t { f32, f64, i32, i64, i8, u8, bf16, f16 };

inline constexpr std::size_t size_of(ScalarType type) {
  switch (type) {
    case ScalarType::f32: return 4;
    case ScalarType::f64: return 8;
    case ScalarType::i32: return 4;
    case ScalarType::i64: return 8;
    case ScalarType::i8: return 1;
    case ScalarType::u8: return 1;
    case ScalarType::bf16: return 2;
    case ScalarType::f16: return 2;
  }
  return 0;
}

// Names as PyTorch and safetensors spell them.
inline constexpr std::string_view name_of(ScalarType type) {
  switch (type) {
    case ScalarType::f32: return "float32";
    case ScalarType::f64: return "float64";
    case ScalarType::i32: return "int32";
    case ScalarType::i64: return "int64";
    case ScalarType::i8: return "int8";
    case ScalarType::u8: return "uint8";
    case ScalarType::bf16: return "bfloat16";
    case ScalarType::f16: return "float16";
  }
  return "unknown";
}

template <class T>
struct scalar_type_of {
  static_assert(sizeof(T) == 0,
                "cumtl: this C++ type has no cumtl::ScalarType; use float, double, "
                "std::int32_t, std::int64_t, std::int8_t, std::uint8_t, cumtl::bfloat16_t or cumtl::float16_t");
};
template <>
struct scalar_type_of<float> {
  static constexpr ScalarType value = ScalarType::f32;
};
template <>
struct scalar_type_of<double> {
  static constexpr ScalarType value = ScalarType::f64;
};
template <>
struct scalar_type_of<std::int32_t> {
  static constexpr ScalarType value = ScalarType::i32;
};
template <>
struct scalar_type_of<std::int64_t> {
  static constexpr ScalarType value = ScalarType::i64;
};
template <>
struct scalar_type_of<std::int8_t> {
  static constexpr ScalarType value = ScalarType::i8;
};
template <>
struct scalar_type_of<std::uint8_t> {
  static constexpr ScalarType value = ScalarType::u8;
};

template <>
struct scalar_type_of<bfloat16_t> {
  static constexpr ScalarType value = ScalarType::bf16;
};
template <>
struct scalar_type_of<float16_t> {
  static constexpr ScalarType value = ScalarType::f16;
};

template <class T>
inline constexpr ScalarType scalar_type_v = scalar_type_of<T>::value;

// The scalar type arithmetic on `type` is done in (compute_t): float32 for
// bf16 and f16, `type` itself otherwise. Mixed-precision operations keep
// their parameters and statistics in it.
inline constexpr ScalarType compute_type_of(ScalarType type) {
  return type == ScalarType::bf16 || type == ScalarType::f16 ? ScalarType::f32 : type;
}

// Calls fn.template operator()<T>() with T the floating-point type that
// `type` names; any other type is an error naming the operation.
template <class Fn>
void dispatch_floating(ScalarType type, std::string_view operation, Fn&& fn) {
  switch (type) {
    case ScalarType::f32: fn.template operator()<float>(); return;
    case ScalarType::f64: fn.template operator()<double>(); return;
    default: CUMTL_FAIL(operation, ": expects a float32 or float64 tensor, got ", name_of(type));
  }
}

// As dispatch_floating, with bfloat16 and float16 too: for the operations
// that run in the activation type of mixed precision as well (core/precision.hpp).
template <class Fn>
void dispatch_activation_type(ScalarType type, std::string_view operation, Fn&& fn) {
  switch (type) {
    case ScalarType::f32: fn.template operator()<float>(); return;
    case ScalarType::f64: fn.template operator()<double>(); return;
    case ScalarType::bf16: fn.template operator()<bfloat16_t>(); return;
    case ScalarType::f16: fn.template operator()<float16_t>(); return;
    default: CUMTL_FAIL(operation, ": expects a float32, float64, bfloat16 or float16 tensor, got ", name_of(type));
  }
}

}  // namespace cumtl
