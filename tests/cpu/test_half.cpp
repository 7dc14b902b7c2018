// bf16 and f16 (core/half.hpp): exact round trips of every bit pattern, the
// rounding cases worked out by hand, and both directions against PyTorch's
// conversions (tests/fixtures/half_conversions.json, written by
// make_half_conversions.py beside it).
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <cumtl/core/half.hpp>
#include <cumtl/core/tensor.hpp>
#include <cumtl/io/safetensors.hpp>
#include <cumtl/ops/elementwise.hpp>

#include "../support/testing.hpp"

namespace cumtl {
namespace {

constexpr float from_bits(std::uint32_t bits) {
  return detail::float_from_bits(bits);
}

bool bf16_is_nan(std::uint16_t bits) {
  return (bits & 0x7f80) == 0x7f80 && (bits & 0x007f) != 0;
}
bool f16_is_nan(std::uint16_t bits) {
  return (bits & 0x7c00) == 0x7c00 && (bits & 0x03ff) != 0;
}

std::string hex(std::uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%x", static_cast<unsigned>(value));
  return text;
}

// 64-bit FNV-1a, fed little-endian, as the fixture's generator computes it.
struct Fnv1a {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  void add(std::uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) {
      hash ^= (value >> (8 * i)) & 0xff;
      hash *= 0x100000001b3ull;
    }
  }
  std::string hex() const {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
    return text;
  }
};

nlohmann::json fixture() {
  std::ifstream in(std::string(CUMTL_TEST_FIXTURES_DIR) + "/half_conversions.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

template <class Half>
void check_to_float_against_pytorch(const nlohmann::json& expected) {
  Fnv1a hash;
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    const std::uint32_t value = detail::float_bits(float(Half::from_bits(std::uint16_t(bits))));
    hash.add(std::isnan(detail::float_from_bits(value)) ? 0x7fffffffu : value, 4);
  }
  for (const auto& sample : expected["samples"]) {
    const std::uint16_t bits = sample[0].get<std::uint16_t>();
    const float value = float(Half::from_bits(bits)), reference = from_bits(sample[1].get<std::uint32_t>());
    CHECK_MESSAGE(
        (std::isnan(reference) ? std::isnan(value) : detail::float_bits(value) == detail::float_bits(reference)),
        "pattern ", hex(bits));
  }
  CHECK(expected["count"] == 65536);
  CHECK(hash.hex() == expected["fnv1a"].get<std::string>());
}

template <class Half>
void check_from_float_against_pytorch(const nlohmann::json& expected, const std::vector<std::uint32_t>& low,
                                      bool (*is_nan)(std::uint16_t)) {
  Fnv1a hash;
  std::size_t count = 0;
  for (std::uint32_t hi = 0; hi < 65536; ++hi)
    for (std::uint32_t lo : low) {
      const std::uint16_t bits = Half(from_bits((hi << 16) | lo)).bits;
      hash.add(is_nan(bits) ? 0x7fff : bits, 2);
      ++count;
    }
  // A NaN may come with any payload (PyTorch's own paths differ): it must be a NaN.
  for (const auto& sample : expected["samples"]) {
    const std::uint32_t input = sample[0].get<std::uint32_t>();
    const std::uint16_t bits = Half(from_bits(input)).bits, reference = sample[1].get<std::uint16_t>();
    CHECK_MESSAGE((is_nan(reference) ? is_nan(bits) : bits == reference), "float bits ", hex(input));
  }
  CHECK(expected["count"].get<std::size_t>() == count);
  CHECK(hash.hex() == expected["fnv1a"].get<std::string>());
}

}  // namespace

TEST_SUITE("half") {
  TEST_CASE("half: every bf16 and f16 pattern goes to float and back unchanged; NaN stays NaN with its sign") {
    for (std::uint32_t pattern = 0; pattern < 65536; ++pattern) {
      const auto bits = std::uint16_t(pattern);
      const float b = float(bfloat16_t::from_bits(bits)), h = float(float16_t::from_bits(bits));
      CHECK_MESSAGE(
          (bf16_is_nan(bits) ? std::isnan(b) && std::signbit(b) == bool(bits & 0x8000) : bfloat16_t(b).bits == bits),
          "bf16 ", hex(pattern));
      CHECK_MESSAGE(
          (f16_is_nan(bits) ? std::isnan(h) && std::signbit(h) == bool(bits & 0x8000) : float16_t(h).bits == bits),
          "f16 ", hex(pattern));
      if (bf16_is_nan(bits)) CHECK(bfloat16_t(b).bits == ((bits & 0x8000) | 0x7fc0));
      if (f16_is_nan(bits)) CHECK(float16_t(h).bits == ((bits & 0x8000) | 0x7e00));
    }
  }

  // Each value below is worked out from the formats: bf16 keeps 7 mantissa
  // bits (ulp at 1 is 2^-7), f16 keeps 10 (ulp at 1 is 2^-10; subnormal unit
  // 2^-24; largest finite 65504 = 0x7bff).
  TEST_CASE("half: rounding to nearest with ties to even, overflow, subnormals, zeros, infinities") {
    const float inf = INFINITY;
    struct Case {
      float input;
      std::uint16_t bits;
    };
    const std::array bf16_cases{
        Case{1.0f, 0x3f80},
        Case{1.0f + 0x1p-8f, 0x3f80},         // tie between 1 (even) and 1 + 2^-7: down
        Case{1.0f + 0x3p-8f, 0x3f82},         // tie between 1 + 2^-7 (odd) and 1 + 2^-6: up
        Case{from_bits(0x3f808001), 0x3f81},  // just past the tie: up
        Case{from_bits(0x3f807fff), 0x3f80},  // just short of it: down
        Case{-2.5f, 0xc020},
        Case{from_bits(0x7f7f7fff), 0x7f7f},  // below the halfway point past bf16's largest finite
        Case{from_bits(0x7f7f8000), 0x7f80},  // the tie, odd kept bit: up to infinity
        Case{3.4028235e38f, 0x7f80},          // float's largest rounds past bf16's
        Case{inf, 0x7f80},
        Case{-inf, 0xff80},
        Case{0.0f, 0x0000},
        Case{-0.0f, 0x8000},
        Case{from_bits(0x00000001), 0x0000},  // float's smallest subnormal: far below bf16's
        Case{from_bits(0x00008000), 0x0000},  // tie at bf16's smallest subnormal, even kept bit
        Case{from_bits(0x00018000), 0x0002},  // tie with an odd kept bit
        Case{std::nanf(""), 0x7fc0},
        Case{-std::nanf(""), 0xffc0},
    };
    for (const Case& c : bf16_cases) {
      CAPTURE(c.input);
      CHECK(bfloat16_t(c.input).bits == c.bits);
    }
    const std::array f16_cases{
        Case{1.0f, 0x3c00},
        Case{1.0f + 0x1p-11f, 0x3c00},  // tie, even kept bit: down
        Case{1.0f + 0x3p-11f, 0x3c02},  // tie, odd kept bit: up
        Case{65504.0f, 0x7bff},
        Case{65519.99f, 0x7bff},  // short of the halfway point 65520
        Case{65520.0f, 0x7c00},   // the tie, odd kept bit: up to infinity
        Case{-1e6f, 0xfc00},
        Case{0x1p-14f, 0x0400},               // smallest normal
        Case{0x1p-14f - 0x1p-25f, 0x0400},    // tie between 0x3ff (odd) and 0x400: up to the normal
        Case{0x1p-14f - 0x3p-25f, 0x03fe},    // tie between 0x3fe (even) and 0x3ff: down
        Case{0x1p-24f, 0x0001},               // smallest subnormal
        Case{0x1p-25f, 0x0000},               // tie between 0 (even) and 2^-24: down
        Case{from_bits(0x33000001), 0x0001},  // just past it: up
        Case{0x3p-25f, 0x0002},               // tie between 1 (odd) and 2 units: up
        Case{0x5p-26f, 0x0001},               // 1.25 units: down
        Case{-0x1p-30f, 0x8000},              // underflow keeps the sign
        Case{0.0f, 0x0000},
        Case{-0.0f, 0x8000},
        Case{inf, 0x7c00},
        Case{-inf, 0xfc00},
        Case{std::nanf(""), 0x7e00},
        Case{-std::nanf(""), 0xfe00},
    };
    for (const Case& c : f16_cases) {
      CAPTURE(c.input);
      CHECK(float16_t(c.input).bits == c.bits);
    }
  }

  // The branch-free float → bf16 against the rounding rule spelled out
  // (shift_right_rounded: drop 16 bits, to nearest, ties to even), at every
  // bf16 value's neighbourhood: each pattern of the kept half with the dropped
  // half at zero, one, just below, at and just above the midpoint, and all ones.
  TEST_CASE("half: float to bf16 is the rounding rule at every boundary") {
    std::size_t checked = 0, mismatches = 0;
    std::uint32_t first_mismatch = 0;
    for (std::uint32_t high = 0; high < 65536; ++high) {
      for (std::uint32_t low : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) {
        const std::uint32_t bits = (high << 16) | low;
        const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
        const auto expected = nan ? std::uint16_t(((bits >> 16) & 0x8000u) | 0x7fc0u)
                                  : std::uint16_t(detail::shift_right_rounded(bits, 16));
        ++checked;
        if (bfloat16_t(from_bits(bits)).bits != expected && mismatches++ == 0) first_mismatch = bits;
      }
    }
    CHECK(checked == 6 * 65536);
    CHECK_MESSAGE(mismatches == 0, mismatches, " mismatches, the first at float bits ", hex(first_mismatch));
  }

  TEST_CASE("half: both directions match PyTorch's conversions bit for bit") {
    const nlohmann::json expected = fixture();
    const std::vector<std::uint32_t> low = expected["low"].get<std::vector<std::uint32_t>>();
    REQUIRE(low.size() >= 8);
    check_to_float_against_pytorch<bfloat16_t>(expected["bf16_to_float"]);
    check_to_float_against_pytorch<float16_t>(expected["f16_to_float"]);
    check_from_float_against_pytorch<bfloat16_t>(expected["float_to_bf16"], low, bf16_is_nan);
    check_from_float_against_pytorch<float16_t>(expected["float_to_f16"], low, f16_is_nan);
  }

  TEST_CASE("half: ops::convert between float32/float64 and bf16/f16 tensors, element by element") {
    Context cpu;
    // Every bit pattern of each type, and back to it.
    std::vector<std::uint16_t> patterns(65536);
    for (std::size_t i = 0; i < patterns.size(); ++i) patterns[i] = std::uint16_t(i);
    for (ScalarType half : {ScalarType::bf16, ScalarType::f16}) {
      CAPTURE(name_of(half));
      const bool brain = half == ScalarType::bf16;
      Tensor halves = Tensor::empty(Shape{65536}, half);
      std::memcpy(halves.raw_data(), patterns.data(), halves.bytes());
      Tensor floats = Tensor::empty(Shape{65536}, ScalarType::f32),
             doubles = Tensor::empty(Shape{65536}, ScalarType::f64);
      ops::convert(cpu, halves, floats);
      ops::convert(cpu, halves, doubles);
      const float* f = floats.data<float>();
      const double* d = doubles.data<double>();
      std::size_t agree = 0;
      for (std::size_t i = 0; i < patterns.size(); ++i) {
        const float expected =
            brain ? float(bfloat16_t::from_bits(patterns[i])) : float(float16_t::from_bits(patterns[i]));
        agree += detail::float_bits(f[i]) == detail::float_bits(expected) &&
                 (std::isnan(expected) ? std::isnan(d[i]) : d[i] == double(expected));
      }
      CHECK(agree == patterns.size());

      Tensor back = Tensor::empty(Shape{65536}, half);
      ops::convert(cpu, floats, back);
      const auto* bits = static_cast<const std::uint16_t*>(back.raw_data());
      std::size_t kept = 0;
      for (std::size_t i = 0; i < patterns.size(); ++i) {
        const bool nan = brain ? bf16_is_nan(patterns[i]) : f16_is_nan(patterns[i]);
        kept += nan ? (brain ? bf16_is_nan(bits[i]) : f16_is_nan(bits[i])) : bits[i] == patterns[i];
      }
      CHECK(kept == patterns.size());
    }
    // float64 goes through float32: 1 + 2^-8 + 2^-40 is above bf16's tie, but
    // float32 rounds it onto the tie, which goes to the even neighbour 1.
    const Tensor wide = Tensor::from_vector<double>({1.0 + 0x1p-8 + 0x1p-40, -3.0}, Shape{2});
    Tensor narrow = Tensor::empty(Shape{2}, ScalarType::bf16);
    ops::convert(cpu, wide, narrow);
    CHECK(narrow.to_vector<bfloat16_t>() == std::vector<bfloat16_t>{bfloat16_t(1.0f), bfloat16_t(-3.0f)});

    Tensor same = Tensor::empty(Shape{2}, ScalarType::bf16);
    ops::convert(cpu, narrow, same);
    CHECK(same.to_vector<bfloat16_t>() == narrow.to_vector<bfloat16_t>());
    Tensor other = Tensor::empty(Shape{2}, ScalarType::f16), wrong_shape = Tensor::empty(Shape{3}, ScalarType::f32),
           integers = Tensor::empty(Shape{2}, ScalarType::i32);
    CHECK_ERROR_WITH(ops::convert(cpu, narrow, other), "from bfloat16 to float16", "through float32");
    CHECK_ERROR_WITH(ops::convert(cpu, narrow, wrong_shape), "ops::convert", "bfloat16[2] on cpu", "float32[3]");
    CHECK_ERROR_WITH(ops::convert(cpu, integers, narrow), "ops::convert", "got int32");
  }

  TEST_CASE("half: tensors hold bf16 and f16, and safetensors stores them as BF16 and F16") {
    CHECK(size_of(ScalarType::bf16) == 2);
    CHECK(size_of(ScalarType::f16) == 2);
    CHECK(name_of(ScalarType::bf16) == "bfloat16");
    CHECK(name_of(ScalarType::f16) == "float16");
    CHECK(io::safetensors_code(ScalarType::bf16) == "BF16");
    CHECK(io::scalar_type_from_safetensors_code("F16") == ScalarType::f16);

    const Tensor weights =
        Tensor::from_vector<bfloat16_t>({bfloat16_t(1.5f), bfloat16_t(-0.1f), bfloat16_t(3e38f)}, Shape{3});
    const Tensor scales = Tensor::from_vector<float16_t>({float16_t(0.5f), float16_t(65504.0f)}, Shape{2});
    CHECK(weights.bytes() == 6);
    CHECK(weights.description() == "bfloat16[3] on cpu");
    CHECK_ERROR_WITH(weights.data<float>(), "bfloat16[3] on cpu", "accessed as float32");

    cumtl_test::TemporaryFolder folder;
    const std::filesystem::path file = folder.path / "half.safetensors";
    Context cpu;
    io::write_safetensors(cpu, file, {{"w", weights}, {"s", scales}});
    const io::SafetensorsFile read = io::read_safetensors(file);
    const Tensor* w = read.find("w");
    const Tensor* s = read.find("s");
    REQUIRE(w != nullptr);
    REQUIRE(s != nullptr);
    CHECK(w->dtype() == ScalarType::bf16);
    CHECK(s->dtype() == ScalarType::f16);
    CHECK(w->to_vector<bfloat16_t>() == weights.to_vector<bfloat16_t>());
    CHECK(s->to_vector<float16_t>() == scales.to_vector<float16_t>());
    CHECK_ERROR_WITH(dispatch_floating(ScalarType::bf16, "ops::axpy", []<class T>() {}), "ops::axpy",
                     "float32 or float64", "got bfloat16");
  }
}

}  // namespace cumtl
