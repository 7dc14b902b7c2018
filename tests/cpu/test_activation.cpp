// ReLU and dropout on the CPU: results against their formulas, the dropout
// mask's statistics and reproducibility, finite-difference gradients in double,
// and the contract errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include <cumtl/ops/activation.hpp>
#include "../support/gradcheck.hpp"
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl::ops::DropoutMask;

namespace {

// Values 0.01 apart in a shuffled order, none closer than 0.005 to ReLU's kink
// at 0, so a finite-difference step of 1e-6 stays on one side of it.
Tensor away_from_zero(const Shape& shape, std::uint64_t seed) {
  std::vector<double> values(static_cast<std::size_t>(shape.numel()));
  std::iota(values.begin(), values.end(), 0.0);
  Generator generator(seed);
  for (std::size_t i = values.size(); i > 1; --i)
    std::swap(values[i - 1], values[std::size_t(generator.uniform() * double(i))]);
  for (double& value : values) value = (value - double(values.size()) / 2 + 0.5) * 0.01;
  return Tensor::from_vector(values, shape);
}

}  // namespace

TEST_SUITE("activation") {
  TEST_CASE_TEMPLATE("activation: relu forward and backward match the formula", T, float, double) {
    Context ctx;
    const Tensor x = cumtl_test::random_tensor<T>(Shape{3, 5, 7, 3}, 1);
    const Tensor dy = cumtl_test::random_tensor<T>(x.shape(), 2);
    Tensor y = Tensor::empty(x.shape(), x.dtype());
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    cumtl::ops::relu_forward(ctx, x, y);
    cumtl::ops::relu_backward(ctx, dy, y, dx);
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const T value = x.data<T>()[i];
      CHECK(y.data<T>()[i] == (value > 0 ? value : T(0)));
      CHECK(dx.data<T>()[i] == (value > 0 ? dy.data<T>()[i] : T(0)));
    }

    // In place: y over x, dx over dy.
    Tensor in_place = cumtl_test::random_tensor<T>(x.shape(), 1);
    cumtl::ops::relu_forward(ctx, in_place, in_place);
    CHECK(in_place.to_vector<T>() == y.to_vector<T>());
    Tensor gradient = cumtl_test::random_tensor<T>(x.shape(), 2);
    cumtl::ops::relu_backward(ctx, gradient, y, gradient);
    CHECK(gradient.to_vector<T>() == dx.to_vector<T>());
  }

  TEST_CASE("activation: relu at the edges") {
    Context ctx;
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const Tensor x = Tensor::from_vector<float>({-inf, -1, 0, 2, inf, nan}, Shape{6});
    Tensor y = Tensor::empty(x.shape(), ScalarType::f32);
    cumtl::ops::relu_forward(ctx, x, y);
    const std::vector<float> values = y.to_vector<float>();
    CHECK(std::vector<float>(values.begin(), values.begin() + 5) == std::vector<float>{0, 0, 0, 2, inf});
    CHECK(std::isnan(values[5]));  // NaN propagates, as in PyTorch

    // The gradient is a select, not a product: an infinite dy where y = 0 still gives 0.
    const Tensor dy = Tensor::from_vector<float>({inf, nan, inf, 3, 4, 5}, Shape{6});
    Tensor dx = Tensor::empty(x.shape(), ScalarType::f32);
    cumtl::ops::relu_backward(ctx, dy, y, dx);
    CHECK(dx.to_vector<float>() == std::vector<float>{0, 0, 0, 3, 4, 0});

    Tensor empty = Tensor::empty(Shape{0, 3}, ScalarType::f32);
    cumtl::ops::relu_forward(ctx, empty, empty);
    cumtl::ops::relu_backward(ctx, empty, empty, empty);
  }

  TEST_CASE("gradcheck: relu") {
    Context ctx;
    Tensor x = away_from_zero(Shape{2, 3, 4, 5}, 10);
    const Tensor weights = cumtl_test::loss_weights(x.shape(), 11);
    Tensor y = Tensor::empty(x.shape(), ScalarType::f64);
    const auto loss = [&] {
      cumtl::ops::relu_forward(ctx, x, y);
      return cumtl_test::weighted_sum(y, weights);
    };
    const std::vector<double> numeric = cumtl_test::numeric_gradient(x, loss);
    loss();
    Tensor dx = Tensor::empty(x.shape(), ScalarType::f64);
    cumtl_test::fill(dx, std::numeric_limits<double>::infinity());
    cumtl::ops::relu_backward(ctx, weights, y, dx);
    cumtl_test::check_gradient("relu", dx, numeric);
  }

  TEST_CASE_TEMPLATE("activation: dropout keeps each element with probability 1 - p", T, float, double) {
    Context ctx;
    constexpr std::int64_t count = 100000;
    const Tensor ones = Tensor::from_vector(std::vector<T>(count, T(1)), Shape{count});
    Tensor y = Tensor::empty(ones.shape(), ones.dtype());
    for (double p : {0.1, 0.5, 0.8}) {
      CAPTURE(p);
      Generator generator(2024);
      cumtl::ops::dropout_forward(ctx, ones, p, generator, y);
      const T scale = T(1 / (1 - p));
      std::int64_t kept = 0, neither = 0;
      for (T value : y.to_vector<T>()) {
        kept += value == scale;
        neither += value != scale && value != T(0);
      }
      CHECK(neither == 0);
      // Five standard errors of a binomial proportion.
      const double rate = double(kept) / count, bound = 5 * std::sqrt(p * (1 - p) / count);
      CHECK(std::abs(rate - (1 - p)) < bound);
    }
  }

  TEST_CASE("activation: dropout keeps exactly where the Philox uniform is at least p") {
    Context ctx;
    const Tensor x = cumtl_test::random_tensor<float>(Shape{5000}, 3, 0.5, 1.5);  // never 0, so y = 0 means dropped
    Tensor y = Tensor::empty(x.shape(), ScalarType::f32);
    Generator generator(77, 1234);
    const DropoutMask mask = cumtl::ops::dropout_forward(ctx, x, 0.3, generator, y);
    CHECK(mask.seed == 77);
    CHECK(mask.offset == 1234);
    CHECK(mask.p == 0.3);
    CHECK(generator.offset() == 1234 + 5000);
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const bool keep = cumtl::kernels::uniform_element(77, 1234 + std::uint64_t(i), 0.0, 1.0) >= 0.3;
      CHECK(y.data<float>()[i] == (keep ? x.data<float>()[i] * float(1 / (1 - 0.3)) : 0.0f));
    }
  }

  TEST_CASE("activation: dropout with the same seed repeats its mask") {
    Context ctx;
    const Tensor x = cumtl_test::random_tensor<float>(Shape{4, 6, 6, 5}, 4);
    Tensor first = Tensor::empty(x.shape(), ScalarType::f32), again = Tensor::empty(x.shape(), ScalarType::f32);
    Generator generator(9), replay(9);
    const DropoutMask first_mask = cumtl::ops::dropout_forward(ctx, x, 0.5, generator, first);
    const DropoutMask replay_mask = cumtl::ops::dropout_forward(ctx, x, 0.5, replay, again);
    CHECK(first.to_vector<float>() == again.to_vector<float>());
    CHECK(first_mask.offset == replay_mask.offset);
    CHECK(generator == replay);

    // The next call continues the stream; another seed draws another mask.
    cumtl::ops::dropout_forward(ctx, x, 0.5, replay, again);
    CHECK(first.to_vector<float>() != again.to_vector<float>());
    Generator other(10);
    cumtl::ops::dropout_forward(ctx, x, 0.5, other, again);
    CHECK(first.to_vector<float>() != again.to_vector<float>());

    // In place gives what out of place gave.
    Tensor in_place = cumtl_test::random_tensor<float>(x.shape(), 4);
    Generator third(9);
    cumtl::ops::dropout_forward(ctx, in_place, 0.5, third, in_place);
    CHECK(in_place.to_vector<float>() == first.to_vector<float>());
  }

  TEST_CASE_TEMPLATE("activation: dropout backward applies the forward's mask", T, float, double) {
    Context ctx;
    const Tensor ones = Tensor::from_vector(std::vector<T>(3000, T(1)), Shape{10, 300});
    Tensor y = Tensor::empty(ones.shape(), ones.dtype());
    Generator generator(5, 17);
    const DropoutMask mask = cumtl::ops::dropout_forward(ctx, ones, 0.25, generator, y);
    // An unrelated draw in between must not matter: the mask is (seed, offset), not the generator.
    Tensor unrelated = Tensor::empty(ones.shape(), ones.dtype());
    cumtl::ops::dropout_forward(ctx, ones, 0.25, generator, unrelated);

    const Tensor dy = cumtl_test::random_tensor<T>(ones.shape(), 6);
    Tensor dx = Tensor::empty(ones.shape(), ones.dtype());
    cumtl::ops::dropout_backward(ctx, dy, mask, dx);
    const T scale = T(1 / 0.75);
    Generator replay(5, 17);
    Tensor kept = Tensor::empty(ones.shape(), ones.dtype());
    cumtl::ops::dropout_forward(ctx, ones, 0.25, replay, kept);
    for (std::int64_t i = 0; i < dy.numel(); ++i)
      CHECK(dx.data<T>()[i] == (kept.data<T>()[i] != T(0) ? dy.data<T>()[i] * scale : T(0)));

    Tensor in_place = cumtl_test::random_tensor<T>(ones.shape(), 6);
    cumtl::ops::dropout_backward(ctx, in_place, mask, in_place);
    CHECK(in_place.to_vector<T>() == dx.to_vector<T>());
  }

  TEST_CASE("activation: dropout with p = 0 is the identity") {
    Context ctx;
    const Tensor x = cumtl_test::random_tensor<double>(Shape{3, 4, 5, 2}, 7);
    Tensor y = Tensor::empty(x.shape(), ScalarType::f64);
    Generator generator(1);
    const DropoutMask mask = cumtl::ops::dropout_forward(ctx, x, 0.0, generator, y);
    CHECK(y.to_vector<double>() == x.to_vector<double>());
    CHECK(generator.offset() == std::uint64_t(x.numel()));  // counters are taken whatever p

    const Tensor dy = cumtl_test::random_tensor<double>(x.shape(), 8);
    Tensor dx = Tensor::empty(x.shape(), ScalarType::f64);
    cumtl::ops::dropout_backward(ctx, dy, mask, dx);
    CHECK(dx.to_vector<double>() == dy.to_vector<double>());
    Tensor in_place = cumtl_test::random_tensor<double>(x.shape(), 7);
    cumtl::ops::dropout_forward(ctx, in_place, 0.0, generator, in_place);
    CHECK(in_place.to_vector<double>() == x.to_vector<double>());
  }

  TEST_CASE("gradcheck: dropout") {
    Context ctx;
    Tensor x = cumtl_test::random_tensor<double>(Shape{2, 4, 4, 3}, 12);
    const Tensor weights = cumtl_test::loss_weights(x.shape(), 13);
    Tensor y = Tensor::empty(x.shape(), ScalarType::f64);
    // Every evaluation draws from the same generator state, hence the same mask.
    const auto loss = [&] {
      Generator generator(31, 8);
      cumtl::ops::dropout_forward(ctx, x, 0.4, generator, y);
      return cumtl_test::weighted_sum(y, weights);
    };
    const std::vector<double> numeric = cumtl_test::numeric_gradient(x, loss);
    Generator generator(31, 8);
    const DropoutMask mask = cumtl::ops::dropout_forward(ctx, x, 0.4, generator, y);
    Tensor dx = Tensor::empty(x.shape(), ScalarType::f64);
    cumtl_test::fill(dx, std::numeric_limits<double>::infinity());
    cumtl::ops::dropout_backward(ctx, weights, mask, dx);
    cumtl_test::check_gradient("dropout", dx, numeric);
  }

  TEST_CASE("activation: bad inputs are refused naming the op and the shapes") {
    Context ctx;
    const Tensor a = Tensor::zeros(Shape{2, 3}, ScalarType::f32);
    Tensor b = Tensor::zeros(Shape{3, 2}, ScalarType::f32);
    Tensor c = Tensor::zeros(Shape{2, 3}, ScalarType::f64);
    Tensor d = Tensor::zeros(Shape{2, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::relu_forward(ctx, a, b), "ops::relu_forward", "'x' is float32[2, 3] on cpu",
                     "'y' is float32[3, 2] on cpu");
    CHECK_ERROR_WITH(cumtl::ops::relu_forward(ctx, a, c), "ops::relu_forward", "'y' is float64[2, 3]");
    CHECK_ERROR_WITH(cumtl::ops::relu_backward(ctx, a, b, d), "ops::relu_backward", "'dy' is float32[2, 3]",
                     "'y' is float32[3, 2]");
    CHECK_ERROR_WITH(cumtl::ops::relu_backward(ctx, a, a, b), "ops::relu_backward", "'dx' is float32[3, 2]");
    Tensor undefined;
    CHECK_ERROR_WITH(cumtl::ops::relu_forward(ctx, a, undefined), "ops::relu_forward", "'y' is undefined");
    Tensor integers = Tensor::zeros(Shape{4}, ScalarType::i32);
    CHECK_ERROR_WITH(cumtl::ops::relu_forward(ctx, integers, integers), "ops::relu_forward",
                     "float32, float64, bfloat16 or float16", "int32");

    Generator generator(3);
    CHECK_ERROR_WITH(cumtl::ops::dropout_forward(ctx, a, 0.5, generator, b), "ops::dropout_forward",
                     "'x' is float32[2, 3] on cpu", "'y' is float32[3, 2] on cpu");
    for (double p : {1.0, -0.25, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
      CAPTURE(p);
      CHECK_ERROR_WITH(cumtl::ops::dropout_forward(ctx, a, p, generator, d), "ops::dropout_forward", "[0, 1)");
    }
    CHECK_ERROR_WITH(cumtl::ops::dropout_forward(ctx, integers, 0.5, generator, integers), "ops::dropout_forward",
                     "float32, float64, bfloat16 or float16");
    CHECK(generator.offset() == 0);  // a refused call takes no counters
    CHECK_ERROR_WITH(cumtl::ops::dropout_backward(ctx, a, DropoutMask{.seed = 1, .offset = 0, .p = 1.0}, d),
                     "ops::dropout_backward", "[0, 1)", "got 1");
    CHECK_ERROR_WITH(cumtl::ops::dropout_backward(ctx, a, DropoutMask{}, b), "ops::dropout_backward",
                     "'dy' is float32[2, 3]", "'dx' is float32[3, 2]");
  }

  // The 2-byte twins against the fp32 twins on the same (rounded) inputs. The
  // rounding points: ReLU selects an input, so it is exact; dropout computes
  // x·1/(1 − p) in float and add a + b in float, then round once to the half
  // type. So each half result must be, bit for bit, the fp32 twin's result
  // rounded to nearest even — no error bound is needed beyond that one rounding.
  TEST_CASE_TEMPLATE("activation: bf16 and f16 twins are the fp32 twins rounded once", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context ctx;
    const ScalarType half = cumtl::scalar_type_v<Half>;
    const Shape shape{3, 9, 11, 5};
    // Inputs wider than ±2 reach f16's coarser steps; the NaN and infinities check that specials pass as in fp32.
    Tensor x = cumtl_test::random_tensor<Half>(shape, 21, -300, 300), dy = cumtl_test::random_tensor<Half>(shape, 22);
    {
      std::vector<Half> values = x.to_vector<Half>();
      values[0] = Half(std::numeric_limits<float>::quiet_NaN());
      values[1] = Half(std::numeric_limits<float>::infinity());
      values[2] = Half(-std::numeric_limits<float>::infinity());
      values[3] = Half(-0.0f);
      x = Tensor::from_vector(values, shape);
    }
    const Tensor x32 = cumtl_test::widened(x), dy32 = cumtl_test::widened(dy);

    Tensor y = Tensor::empty(shape, half), y32 = Tensor::empty(shape, ScalarType::f32);
    cumtl::ops::relu_forward(ctx, x, y);
    cumtl::ops::relu_forward(ctx, x32, y32);
    CHECK(y.to_vector<Half>() == cumtl_test::rounded<Half>(y32));
    Tensor dx = Tensor::empty(shape, half), dx32 = Tensor::empty(shape, ScalarType::f32);
    cumtl::ops::relu_backward(ctx, dy, y, dx);
    cumtl::ops::relu_backward(ctx, dy32, y32, dx32);
    CHECK(dx.to_vector<Half>() == cumtl_test::rounded<Half>(dx32));

    for (double p : {0.0, 0.1, 0.3, 0.7}) {
      CAPTURE(p);
      Generator narrow_generator(77, 5), wide_generator(77, 5);
      const DropoutMask mask = cumtl::ops::dropout_forward(ctx, x, p, narrow_generator, y);
      const DropoutMask mask32 = cumtl::ops::dropout_forward(ctx, x32, p, wide_generator, y32);
      CHECK(mask.offset == mask32.offset);
      CHECK(narrow_generator == wide_generator);
      CHECK(y.to_vector<Half>() == cumtl_test::rounded<Half>(y32));
      cumtl::ops::dropout_backward(ctx, dy, mask, dx);
      cumtl::ops::dropout_backward(ctx, dy32, mask32, dx32);
      CHECK(dx.to_vector<Half>() == cumtl_test::rounded<Half>(dx32));
    }

    Tensor sum = Tensor::empty(shape, half), sum32 = Tensor::empty(shape, ScalarType::f32);
    cumtl::ops::add(ctx, x, dy, sum);
    cumtl::ops::add(ctx, x32, dy32, sum32);
    CHECK(sum.to_vector<Half>() == cumtl_test::rounded<Half>(sum32));
    // Rounding happened: some sums are not representable in the half type, so this test can tell a
    // half add from a copy of the fp32 result's bits.
    const std::vector<float> exact = sum32.to_vector<float>();
    CHECK(std::any_of(exact.begin(), exact.end(), [](float value) { return float(Half(value)) != value; }));
    cumtl::ops::add(ctx, x, dy, x);  // in place, as a residual add is
    CHECK(x.to_vector<Half>() == sum.to_vector<Half>());
  }

  TEST_CASE("activation: a bf16 ReLU keeps NaN's payload and the sign of zero, as the select it is") {
    Context ctx;
    const std::vector<cumtl::bfloat16_t> values{cumtl::bfloat16_t::from_bits(0x7fc1), cumtl::bfloat16_t::from_bits(0xffc0),
                                                cumtl::bfloat16_t::from_bits(0x8000), cumtl::bfloat16_t::from_bits(0x0001),
                                                cumtl::bfloat16_t::from_bits(0x8001)};
    const Tensor x = Tensor::from_vector(values, Shape{5});
    Tensor y = Tensor::empty(Shape{5}, ScalarType::bf16);
    cumtl::ops::relu_forward(ctx, x, y);
    const std::vector<cumtl::bfloat16_t> out = y.to_vector<cumtl::bfloat16_t>();
    CHECK(out[0].bits == 0x7fc1);
    CHECK(out[1].bits == 0xffc0);
    CHECK(out[2].bits == 0x8000);  // −0 is not < 0: the select keeps it
    CHECK(out[3].bits == 0x0001);
    CHECK(out[4].bits == 0x0000);  // the smallest negative subnormal is < 0
  }

}  // TEST_SUITE
