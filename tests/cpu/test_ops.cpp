// The ops facade on the CPU: results against their formulas, contracts, and
// the counter-based random fills.
#include <cmath>
#include <cstdint>
#include <vector>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

TEST_SUITE("ops") {
  TEST_CASE_TEMPLATE("ops: elementwise results match their formulas", T, float, double) {
    Context ctx;
    const std::vector<T> x_values{1, -2, 3.5, 0, 1e6, -7};
    const std::vector<T> y_values{0.5, 4, -1, 2, 3, 1e-3};
    const Tensor x = Tensor::from_vector(x_values, Shape{2, 3});
    Tensor y = Tensor::from_vector(y_values, Shape{2, 3});
    Tensor out = Tensor::empty(Shape{2, 3}, cumtl::scalar_type_v<T>);

    cumtl::ops::fill(ctx, out, 2.5);
    CHECK(out.to_vector<T>() == std::vector<T>(6, T(2.5)));

    cumtl::ops::add(ctx, x, y, out);
    for (std::size_t i = 0; i < 6; ++i) CHECK(out.data<T>()[i] == x_values[i] + y_values[i]);

    cumtl::ops::axpy(ctx, -3.0, x, y);
    for (std::size_t i = 0; i < 6; ++i) CHECK(y.data<T>()[i] == T(-3) * x_values[i] + y_values[i]);

    cumtl::ops::scale(ctx, out, 0.5);
    for (std::size_t i = 0; i < 6; ++i) CHECK(out.data<T>()[i] == (x_values[i] + y_values[i]) * T(0.5));
  }

  TEST_CASE("ops: add may write over one of its inputs") {
    Context ctx;
    Tensor a = Tensor::from_vector<float>({1, 2, 3}, Shape{3});
    const Tensor b = Tensor::from_vector<float>({10, 20, 30}, Shape{3});
    cumtl::ops::add(ctx, a, b, a);
    CHECK(a.to_vector<float>() == std::vector<float>{11, 22, 33});
  }

  TEST_CASE("ops: empty tensors are a no-op") {
    Context ctx;
    Tensor empty = Tensor::empty(Shape{0, 4}, ScalarType::f32);
    cumtl::ops::fill(ctx, empty, 1);
    cumtl::ops::add(ctx, empty, empty, empty);
    CHECK(empty.numel() == 0);
  }

  TEST_CASE("ops: contract violations name the operation and both tensors") {
    Context ctx;
    const Tensor a = Tensor::zeros(Shape{2, 3}, ScalarType::f32);
    const Tensor b = Tensor::zeros(Shape{3, 2}, ScalarType::f32);
    const Tensor c = Tensor::zeros(Shape{2, 3}, ScalarType::f64);
    Tensor out = Tensor::zeros(Shape{2, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::add(ctx, a, b, out), "ops::add", "'a' is float32[2, 3]", "'b' is float32[3, 2]");
    CHECK_ERROR_WITH(cumtl::ops::axpy(ctx, 1, c, out), "ops::axpy", "float64[2, 3]", "float32[2, 3]");
    Tensor undefined;
    CHECK_ERROR_WITH(cumtl::ops::fill(ctx, undefined, 0), "ops::fill", "'out' is undefined");
    Tensor integers = Tensor::zeros(Shape{2}, ScalarType::i32);
    CHECK_ERROR_WITH(cumtl::ops::scale(ctx, integers, 2), "ops::scale", "float32 or float64", "int32");
    CHECK_ERROR_WITH(cumtl::ops::copy(ctx, out, b), "ops::copy", "'dst' is float32[2, 3]", "'src' is float32[3, 2]");
  }

  TEST_CASE("ops: copy between CPU tensors") {
    Context ctx;
    const Tensor source = Tensor::from_vector<double>({1, 2, 3, 4}, Shape{2, 2});
    Tensor destination = Tensor::zeros(Shape{2, 2}, ScalarType::f64);
    cumtl::ops::copy(ctx, destination, source);
    CHECK(destination.to_vector<double>() == source.to_vector<double>());
  }

  TEST_CASE("random: Philox4x32-10 gives the Random123 known answers") {
    using cumtl::kernels::philox4x32_10;
    using cumtl::kernels::PhiloxBlock;
    const auto words = [](PhiloxBlock block) { return std::vector<std::uint32_t>(block.word, block.word + 4); };
    CHECK(words(philox4x32_10(PhiloxBlock{{0, 0, 0, 0}}, 0, 0)) ==
          std::vector<std::uint32_t>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
    CHECK(words(philox4x32_10(PhiloxBlock{{~0u, ~0u, ~0u, ~0u}}, ~0u, ~0u)) ==
          std::vector<std::uint32_t>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
    CHECK(words(philox4x32_10(PhiloxBlock{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0)) ==
          std::vector<std::uint32_t>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
  }

  TEST_CASE("random: the same seed repeats and fills advance the stream") {
    Context ctx;
    Tensor first = Tensor::empty(Shape{1000}, ScalarType::f32);
    Tensor again = Tensor::empty(Shape{1000}, ScalarType::f32);
    Generator generator(42);
    cumtl::ops::uniform(ctx, first, generator, -1, 1);
    CHECK(generator.offset() == 1000);
    Generator replay(42);
    cumtl::ops::uniform(ctx, again, replay, -1, 1);
    CHECK(first.to_vector<float>() == again.to_vector<float>());

    cumtl::ops::uniform(ctx, again, replay, -1, 1);  // the next fill continues the stream
    CHECK(first.to_vector<float>() != again.to_vector<float>());
    Generator other_seed(43);
    cumtl::ops::uniform(ctx, again, other_seed, -1, 1);
    CHECK(first.to_vector<float>() != again.to_vector<float>());
  }

  TEST_CASE("random: a fill in two parts equals one fill over the whole") {
    Context ctx;
    Tensor whole = Tensor::empty(Shape{10, 7}, ScalarType::f64);
    Generator generator(7, 123);
    cumtl::ops::normal(ctx, whole, generator, 0, 1);

    Tensor parts = Tensor::empty(Shape{10, 7}, ScalarType::f64);
    Generator replay(7, 123);
    Tensor head = parts.slice(0, 4), tail = parts.slice(4, 10);
    cumtl::ops::normal(ctx, head, replay, 0, 1);
    cumtl::ops::normal(ctx, tail, replay, 0, 1);
    CHECK(parts.to_vector<double>() == whole.to_vector<double>());
  }

  TEST_CASE_TEMPLATE("random: uniform and normal have the requested moments", T, float, double) {
    Context ctx;
    constexpr std::int64_t count = 200000;
    Tensor values = Tensor::empty(Shape{count}, cumtl::scalar_type_v<T>);
    Generator generator(2024);

    cumtl::ops::uniform(ctx, values, generator, 2, 5);
    double sum = 0, low = INFINITY, high = -INFINITY;
    for (T value : values.to_vector<T>()) {
      sum += value;
      low = std::min(low, double(value));
      high = std::max(high, double(value));
    }
    CHECK(low >= 2.0);
    CHECK(high < 5.0);
    // The mean of 200,000 U[2,5) draws has a standard error of 0.0019.
    CHECK(sum / count == doctest::Approx(3.5).epsilon(0.003));

    cumtl::ops::normal(ctx, values, generator, -1, 3);
    double mean = 0, square = 0;
    for (T value : values.to_vector<T>()) {
      mean += value;
      square += double(value) * value;
    }
    mean /= count;
    const double stddev = std::sqrt(square / count - mean * mean);
    CHECK(std::abs(mean + 1) < 0.035);  // about five standard errors (3 / sqrt(200000) = 0.0067)
    CHECK(std::abs(stddev - 3) < 0.025);
    CHECK_ERROR_WITH(cumtl::ops::normal(ctx, values, generator, 0, -1), "ops::normal", "non-negative");
    CHECK_ERROR_WITH(cumtl::ops::uniform(ctx, values, generator, 1, 0), "ops::uniform", "above high");
  }

  TEST_CASE("random: host draws take one counter each") {
    Generator generator(5);
    const double first = generator.uniform();
    CHECK(generator.offset() == 1);
    CHECK(first >= 0.0);
    CHECK(first < 1.0);
    Generator replay(5);
    CHECK(replay.uniform() == first);
    CHECK(replay.uniform() != first);
  }

}  // TEST_SUITE
