// Batch normalization on the CPU: forward train and eval against the direct
// formula, the running statistics on a hand-computed batch, statistics that
// stay sound for a large mean, finite-difference gradients of the plain, ReLU
// and residual + ReLU variants, aliasing, and the contract errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "cumtl/ops/batchnorm.hpp"

#include "../support/gradcheck.hpp"
#include "../support/testing.hpp"

using cumtl::Activation;
using cumtl::Context;
using cumtl::GradientMode;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

constexpr double infinity = std::numeric_limits<double>::infinity();

template <class T>
Tensor filled(const Shape& shape, double value) {
  Tensor tensor = Tensor::empty(shape, cumtl::scalar_type_v<T>);
  std::fill_n(tensor.data<T>(), tensor.numel(), T(value));
  return tensor;
}

Tensor copy_of(const Tensor& tensor) {
  return tensor.to(cumtl::Device::cpu());
}

std::int64_t channels_of(const Shape& shape) {
  return shape[shape.rank() - 1];
}

// What forward train reads and writes, on the CPU; residual is undefined without one.
struct Batch {
  Tensor x, gamma, beta, residual, running_mean, running_var, saved_mean, saved_invstd, y;
};

template <class T>
Batch random_batch(const Shape& shape, bool with_residual, std::uint64_t seed) {
  const Shape channels{channels_of(shape)};
  Batch batch;
  batch.x = cumtl_test::random_tensor<T>(shape, seed, -2, 3);
  batch.gamma = cumtl_test::random_tensor<T>(channels, seed + 1, 0.5, 1.5);
  batch.beta = cumtl_test::random_tensor<T>(channels, seed + 2, -0.5, 0.5);
  if (with_residual) batch.residual = cumtl_test::random_tensor<T>(shape, seed + 3, -1, 1);
  batch.running_mean = cumtl_test::random_tensor<T>(channels, seed + 4, -0.5, 0.5);
  batch.running_var = cumtl_test::random_tensor<T>(channels, seed + 5, 0.5, 2);
  batch.saved_mean = filled<T>(channels, infinity);
  batch.saved_invstd = filled<T>(channels, infinity);
  batch.y = filled<T>(shape, infinity);
  return batch;
}

void train(Batch& batch, Activation activation, double momentum, double eps) {
  Context cpu;
  cumtl::ops::batchnorm_forward_train(cpu, batch.x, batch.gamma, batch.beta, batch.residual, activation, momentum, eps,
                                      batch.running_mean, batch.running_var, batch.saved_mean, batch.saved_invstd,
                                      batch.y);
}

// What backward writes; dresidual is undefined without a residual.
struct Gradients {
  Tensor dx, dresidual, dgamma, dbeta;
};

// The direct formula in double, from the batch as it is before the call.
struct Expected {
  std::vector<double> y, mean, invstd, running_mean, running_var;
};

template <class T>
Expected train_formula(const Batch& batch, Activation activation, double momentum, double eps) {
  const std::int64_t channels = channels_of(batch.x.shape()), rows = batch.x.numel() / channels;
  const T* x = batch.x.data<T>();
  Expected expected;
  for (std::int64_t c = 0; c < channels; ++c) {
    double sum = 0;
    for (std::int64_t row = 0; row < rows; ++row) sum += double(x[row * channels + c]);
    const double mean = sum / double(rows);
    double squares = 0;
    for (std::int64_t row = 0; row < rows; ++row)
      squares += (double(x[row * channels + c]) - mean) * (double(x[row * channels + c]) - mean);
    const double variance = squares / double(rows);
    expected.mean.push_back(mean);
    expected.invstd.push_back(1 / std::sqrt(variance + eps));
    expected.running_mean.push_back((1 - momentum) * double(batch.running_mean.data<T>()[c]) + momentum * mean);
    expected.running_var.push_back((1 - momentum) * double(batch.running_var.data<T>()[c]) +
                                   momentum * squares / double(rows - 1));
  }
  for (std::int64_t i = 0; i < batch.x.numel(); ++i) {
    const std::int64_t c = i % channels;
    double pre = double(batch.gamma.data<T>()[c]) * (double(x[i]) - expected.mean[std::size_t(c)]) *
                     expected.invstd[std::size_t(c)] +
                 double(batch.beta.data<T>()[c]);
    if (batch.residual.defined()) pre += double(batch.residual.data<T>()[i]);
    expected.y.push_back(activation == Activation::relu ? std::max(pre, 0.0) : pre);
  }
  return expected;
}

template <class T>
std::vector<double> eval_formula(const Batch& batch, Activation activation, double eps) {
  const std::int64_t channels = channels_of(batch.x.shape());
  std::vector<double> y;
  for (std::int64_t i = 0; i < batch.x.numel(); ++i) {
    const std::int64_t c = i % channels;
    double pre = double(batch.gamma.data<T>()[c]) *
                     (double(batch.x.data<T>()[i]) - double(batch.running_mean.data<T>()[c])) /
                     std::sqrt(double(batch.running_var.data<T>()[c]) + eps) +
                 double(batch.beta.data<T>()[c]);
    if (batch.residual.defined()) pre += double(batch.residual.data<T>()[i]);
    y.push_back(activation == Activation::relu ? std::max(pre, 0.0) : pre);
  }
  return y;
}

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 2e-6 : 1e-13;
}

const std::vector<Shape> formula_shapes{Shape{2, 3, 3, 4}, Shape{4, 1, 1, 7}, Shape{3, 2, 5, 3},
                                        Shape{2, 4, 5},    Shape{6, 5},       Shape{1, 1, 2, 6}};

// A finite-difference check of every gradient of batchnorm_backward at a random
// point of the given shape, with the overwrite and accumulate traps.
void gradcheck(Activation activation, bool with_residual, const Shape& shape, std::uint64_t seed) {
  const double eps = 1e-5;
  const Shape channels{channels_of(shape)};
  Batch batch;
  // With a ReLU, finite differences need every pre-activation value away from the kink: redraw until they are,
  // with both signs present so that the mask matters.
  for (;; seed += 100) {
    batch = random_batch<double>(shape, with_residual, seed);
    if (activation == Activation::none) break;
    Batch probe = batch;
    probe.y = filled<double>(shape, 0);
    probe.running_mean = copy_of(batch.running_mean);
    probe.running_var = copy_of(batch.running_var);
    train(probe, Activation::none, 0.1, eps);
    const std::vector<double> pre = probe.y.to_vector<double>();
    bool clear = true;
    int positive = 0;
    for (double value : pre) {
      clear = clear && std::abs(value) >= 1e-3;
      positive += value > 0;
    }
    if (clear && positive > 0 && positive < int(pre.size())) break;
  }
  const Tensor weights = cumtl_test::loss_weights(shape, seed + 7);

  const auto loss = [&] {
    Batch scratch = batch;  // handles: x, gamma, beta and residual are the perturbed tensors
    scratch.running_mean = copy_of(batch.running_mean);
    scratch.running_var = copy_of(batch.running_var);
    scratch.saved_mean = filled<double>(channels, 0);
    scratch.saved_invstd = filled<double>(channels, 0);
    scratch.y = filled<double>(shape, 0);
    train(scratch, activation, 0.1, eps);
    return cumtl_test::weighted_sum(scratch.y, weights);
  };
  const std::vector<double> numeric_x = cumtl_test::numeric_gradient(batch.x, loss);
  const std::vector<double> numeric_gamma = cumtl_test::numeric_gradient(batch.gamma, loss);
  const std::vector<double> numeric_beta = cumtl_test::numeric_gradient(batch.beta, loss);
  const std::vector<double> numeric_residual =
      with_residual ? cumtl_test::numeric_gradient(batch.residual, loss) : std::vector<double>{};

  train(batch, activation, 0.1, eps);
  const cumtl_test::Tolerance tolerance{.relative = 1e-5, .absolute = 1e-7};
  for (GradientMode mode : {GradientMode::overwrite, GradientMode::accumulate}) {
    CAPTURE(int(mode));
    const bool accumulate = mode == GradientMode::accumulate;
    Tensor dx = filled<double>(shape, infinity);
    Tensor dresidual = with_residual ? filled<double>(shape, infinity) : Tensor();
    // Known values to accumulate into, or +inf that an overwrite must never read.
    std::vector<double> gamma_prefill, beta_prefill;
    for (std::int64_t c = 0; c < channels[0]; ++c) {
      gamma_prefill.push_back(accumulate ? 0.25 + 0.5 * double(c) : infinity);
      beta_prefill.push_back(accumulate ? -1.5 + 0.75 * double(c) : infinity);
    }
    Tensor dgamma = Tensor::from_vector(gamma_prefill, channels);
    Tensor dbeta = Tensor::from_vector(beta_prefill, channels);
    Context cpu;
    cumtl::ops::batchnorm_backward(cpu, weights, batch.x, batch.y, batch.gamma, batch.saved_mean, batch.saved_invstd,
                                   activation, dx, dresidual, dgamma, dbeta, mode);

    std::vector<double> expected_gamma = numeric_gamma, expected_beta = numeric_beta;
    if (accumulate)
      for (std::size_t c = 0; c < expected_gamma.size(); ++c) {
        expected_gamma[c] += gamma_prefill[c];
        expected_beta[c] += beta_prefill[c];
      }
    cumtl_test::check_gradient("x", dx, numeric_x, tolerance);
    cumtl_test::check_gradient("gamma", dgamma, expected_gamma, tolerance);
    cumtl_test::check_gradient("beta", dbeta, expected_beta, tolerance);
    if (with_residual) cumtl_test::check_gradient("residual", dresidual, numeric_residual, tolerance);
  }
}

}  // namespace

TEST_SUITE("batchnorm") {
  TEST_CASE_TEMPLATE("batchnorm: forward train matches the formula", T, float, double) {
    std::uint64_t seed = 10;
    for (const Shape& shape : formula_shapes)
      for (Activation activation : {Activation::none, Activation::relu})
        for (bool with_residual : {false, true}) {
          CAPTURE(shape);
          CAPTURE(int(activation));
          CAPTURE(with_residual);
          Batch batch = random_batch<T>(shape, with_residual, seed += 10);
          const Expected expected = train_formula<T>(batch, activation, 0.1, 1e-5);
          train(batch, activation, 0.1, 1e-5);
          CHECK(cumtl_test::error_over_scale(batch.y, expected.y) < tolerance<T>());
          CHECK(cumtl_test::max_relative_error(batch.saved_mean.to_vector<T>(),
                                               std::vector<T>(expected.mean.begin(), expected.mean.end()),
                                               1e-3) < tolerance<T>());
          CHECK(cumtl_test::max_relative_error(batch.saved_invstd.to_vector<T>(),
                                               std::vector<T>(expected.invstd.begin(), expected.invstd.end())) <
                tolerance<T>());
          CHECK(cumtl_test::error_over_scale(batch.running_mean, expected.running_mean) < tolerance<T>());
          CHECK(cumtl_test::error_over_scale(batch.running_var, expected.running_var) < tolerance<T>());
          if (activation == Activation::relu) {
            const std::vector<T> y = batch.y.to_vector<T>();
            CHECK(*std::min_element(y.begin(), y.end()) == T(0));
          }
        }
  }

  // The 2-byte twins against the fp32 twins on the same activations (widened)
  // and the same float parameters. The statistics are sums in double of values
  // that float holds exactly, so they must equal the fp32 twin's to the bit; y
  // and dx are computed in float as the fp32 twin computes them and rounded
  // once; dresidual selects dy; dγ and dβ stay float. The fp32 backward reads
  // the 2-byte forward's y (widened) as its ReLU mask, so both select alike.
  TEST_CASE_TEMPLATE("batchnorm: bf16 and f16 twins are the fp32 twins rounded once", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context cpu;
    std::uint64_t seed = 900;
    bool rounding_happened = false;
    for (const Shape& shape : {Shape{2, 5, 5, 3}, Shape{3, 4, 4, 70}, Shape{1, 1, 2, 5}})
      for (Activation activation : {Activation::none, Activation::relu})
        for (bool with_residual : {false, true}) {
          CAPTURE(shape);
          CAPTURE(int(activation));
          CAPTURE(with_residual);
          Batch wide = random_batch<float>(shape, with_residual, seed += 10);
          Batch half = wide;
          half.x = cumtl_test::narrowed<Half>(wide.x);
          wide.x = cumtl_test::widened(half.x);
          if (with_residual) {
            half.residual = cumtl_test::narrowed<Half>(wide.residual);
            wide.residual = cumtl_test::widened(half.residual);
          }
          half.running_mean = copy_of(wide.running_mean);
          half.running_var = copy_of(wide.running_var);
          half.saved_mean = copy_of(wide.saved_mean);
          half.saved_invstd = copy_of(wide.saved_invstd);
          half.y = Tensor::empty(shape, cumtl::scalar_type_v<Half>);

          train(wide, activation, 0.1, 1e-5);
          train(half, activation, 0.1, 1e-5);
          CHECK(half.y.to_vector<Half>() == cumtl_test::rounded<Half>(wide.y));
          rounding_happened |= cumtl_test::any_rounded<Half>(wide.y);
          CHECK(half.saved_mean.to_vector<float>() == wide.saved_mean.to_vector<float>());
          CHECK(half.saved_invstd.to_vector<float>() == wide.saved_invstd.to_vector<float>());
          CHECK(half.running_mean.to_vector<float>() == wide.running_mean.to_vector<float>());
          CHECK(half.running_var.to_vector<float>() == wide.running_var.to_vector<float>());

          const Tensor dy = cumtl_test::random_tensor<Half>(shape, seed + 7, -1, 1);
          const Tensor initial_dgamma = cumtl_test::random_tensor<float>(Shape{channels_of(shape)}, seed + 8);
          const Tensor initial_dbeta = cumtl_test::random_tensor<float>(Shape{channels_of(shape)}, seed + 9);
          const auto backward = [&](const Batch& batch, const Tensor& dy_in, const Tensor& y, ScalarType type) {
            Gradients out{Tensor::empty(shape, type), with_residual ? Tensor::empty(shape, type) : Tensor(),
                          copy_of(initial_dgamma), copy_of(initial_dbeta)};
            cumtl::ops::batchnorm_backward(cpu, dy_in, batch.x, y, batch.gamma, batch.saved_mean, batch.saved_invstd,
                                           activation, out.dx, out.dresidual, out.dgamma, out.dbeta,
                                           GradientMode::accumulate);
            return out;
          };
          const Gradients narrow = backward(half, dy, half.y, cumtl::scalar_type_v<Half>);
          const Gradients reference =
              backward(wide, cumtl_test::widened(dy), cumtl_test::widened(half.y), ScalarType::f32);
          CHECK(narrow.dx.to_vector<Half>() == cumtl_test::rounded<Half>(reference.dx));
          if (with_residual)
            CHECK(narrow.dresidual.to_vector<Half>() == cumtl_test::rounded<Half>(reference.dresidual));
          CHECK(narrow.dgamma.to_vector<float>() == reference.dgamma.to_vector<float>());
          CHECK(narrow.dbeta.to_vector<float>() == reference.dbeta.to_vector<float>());

          Tensor y_eval = Tensor::empty(shape, cumtl::scalar_type_v<Half>);
          Tensor y_eval32 = Tensor::empty(shape, ScalarType::f32);
          cumtl::ops::batchnorm_forward_eval(cpu, half.x, half.gamma, half.beta, half.residual, activation, 1e-5,
                                             half.running_mean, half.running_var, y_eval);
          cumtl::ops::batchnorm_forward_eval(cpu, wide.x, wide.gamma, wide.beta, wide.residual, activation, 1e-5,
                                             wide.running_mean, wide.running_var, y_eval32);
          CHECK(y_eval.to_vector<Half>() == cumtl_test::rounded<Half>(y_eval32));
        }
    // Outputs that the half type cannot hold exist, so a twin that skipped the rounding would be seen.
    CHECK(rounding_happened);
  }

  TEST_CASE("batchnorm: bf16 activations take float32 parameters and statistics") {
    Context cpu;
    const Shape shape{2, 3, 3, 4};
    Batch batch = random_batch<float>(shape, false, 55);
    batch.x = cumtl_test::narrowed<cumtl::bfloat16_t>(batch.x);
    batch.y = Tensor::empty(shape, ScalarType::bf16);
    Batch wrong = batch;
    wrong.gamma = cumtl_test::narrowed<cumtl::bfloat16_t>(batch.gamma);
    CHECK_ERROR_WITH(train(wrong, Activation::none, 0.1, 1e-5), "ops::batchnorm_forward_train", "'gamma'",
                     "must be float32[4]", "bfloat16[4]");
    wrong = batch;
    wrong.y = Tensor::empty(shape, ScalarType::f32);
    CHECK_ERROR_WITH(train(wrong, Activation::none, 0.1, 1e-5), "ops::batchnorm_forward_train", "'y'");
  }

  TEST_CASE("batchnorm: running statistics follow the hand-computed update") {
    // Three rows of two channels: channel 0 holds 1, 2, 3 and channel 1 holds 10, 20, 60.
    //   channel 0: mean 2, squared deviations 1 + 0 + 1 = 2, biased variance 2/3, unbiased 1;
    //   channel 1: mean 30, squared deviations 400 + 100 + 900 = 1400, biased 1400/3, unbiased 700.
    // With momentum 0.1 from running_mean (0, 5) and running_var (1, 100):
    //   running_mean = (0.9·0 + 0.1·2, 0.9·5 + 0.1·30) = (0.2, 7.5);
    //   running_var  = (0.9·1 + 0.1·1, 0.9·100 + 0.1·700) = (1, 160).
    Context cpu;
    const Tensor x = Tensor::from_vector<double>({1, 10, 2, 20, 3, 60}, Shape{3, 1, 1, 2});
    const Tensor gamma = Tensor::from_vector<double>({2, 1}, Shape{2});
    const Tensor beta = Tensor::from_vector<double>({0.5, -1}, Shape{2});
    Tensor running_mean = Tensor::from_vector<double>({0, 5}, Shape{2});
    Tensor running_var = Tensor::from_vector<double>({1, 100}, Shape{2});
    Tensor saved_mean = Tensor::empty(Shape{2}, ScalarType::f64);
    Tensor saved_invstd = Tensor::empty(Shape{2}, ScalarType::f64);
    Tensor y = Tensor::empty(x.shape(), ScalarType::f64);
    const double eps = 1e-5;
    cumtl::ops::batchnorm_forward_train(cpu, x, gamma, beta, Tensor(), Activation::none, 0.1, eps, running_mean,
                                        running_var, saved_mean, saved_invstd, y);
    CHECK(running_mean.data<double>()[0] == doctest::Approx(0.2).epsilon(1e-14));
    CHECK(running_mean.data<double>()[1] == doctest::Approx(7.5).epsilon(1e-14));
    CHECK(running_var.data<double>()[0] == doctest::Approx(1.0).epsilon(1e-14));
    CHECK(running_var.data<double>()[1] == doctest::Approx(160.0).epsilon(1e-14));
    CHECK(saved_mean.to_vector<double>() == std::vector<double>{2, 30});
    const double invstd0 = 1 / std::sqrt(2.0 / 3 + eps), invstd1 = 1 / std::sqrt(1400.0 / 3 + eps);
    CHECK(saved_invstd.data<double>()[0] == doctest::Approx(invstd0).epsilon(1e-14));
    CHECK(saved_invstd.data<double>()[1] == doctest::Approx(invstd1).epsilon(1e-14));
    // Row 0: 2·(1 − 2)·invstd0 + 0.5 and 1·(10 − 30)·invstd1 − 1.
    CHECK(y.data<double>()[0] == doctest::Approx(-2 * invstd0 + 0.5).epsilon(1e-14));
    CHECK(y.data<double>()[1] == doctest::Approx(-20 * invstd1 - 1).epsilon(1e-14));

    // Evaluation uses the running statistics, not the batch's, and leaves them alone.
    Tensor eval_y = Tensor::empty(x.shape(), ScalarType::f64);
    cumtl::ops::batchnorm_forward_eval(cpu, x, gamma, beta, Tensor(), Activation::none, eps, running_mean, running_var,
                                       eval_y);
    CHECK(eval_y.data<double>()[0] == doctest::Approx(2 * (1 - 0.2) / std::sqrt(1 + eps) + 0.5).epsilon(1e-14));
    CHECK(eval_y.data<double>()[5] == doctest::Approx((60 - 7.5) / std::sqrt(160 + eps) - 1).epsilon(1e-14));
    CHECK(running_mean.data<double>()[1] == doctest::Approx(7.5).epsilon(1e-14));
    CHECK(running_var.data<double>()[1] == doctest::Approx(160.0).epsilon(1e-14));
  }

  TEST_CASE_TEMPLATE("batchnorm: eval uses the running statistics", T, float, double) {
    std::uint64_t seed = 500;
    for (const Shape& shape : formula_shapes)
      for (Activation activation : {Activation::none, Activation::relu})
        for (bool with_residual : {false, true}) {
          CAPTURE(shape);
          CAPTURE(int(activation));
          CAPTURE(with_residual);
          Batch batch = random_batch<T>(shape, with_residual, seed += 10);
          const std::vector<double> expected = eval_formula<T>(batch, activation, 1e-3);
          const std::vector<T> running_mean = batch.running_mean.to_vector<T>();
          const std::vector<T> running_var = batch.running_var.to_vector<T>();
          Context cpu;
          cumtl::ops::batchnorm_forward_eval(cpu, batch.x, batch.gamma, batch.beta, batch.residual, activation, 1e-3,
                                             batch.running_mean, batch.running_var, batch.y);
          CHECK(cumtl_test::error_over_scale(batch.y, expected) < tolerance<T>());
          CHECK(batch.running_mean.to_vector<T>() == running_mean);
          CHECK(batch.running_var.to_vector<T>() == running_var);

          // Training on the same batch normalizes with the batch's own statistics instead.
          const Expected trained = train_formula<T>(batch, activation, 0.1, 1e-3);
          train(batch, activation, 0.1, 1e-3);
          CHECK(cumtl_test::error_over_scale(batch.y, trained.y) < tolerance<T>());
          CHECK(cumtl_test::error_over_scale(batch.y, expected) > 1e-3);
        }

    // One sample of 1×1 has no variance to train on, but evaluation needs none.
    Batch single = random_batch<T>(Shape{1, 1, 1, 4}, false, 7);
    Context cpu;
    cumtl::ops::batchnorm_forward_eval(cpu, single.x, single.gamma, single.beta, single.residual, Activation::relu,
                                       1e-5, single.running_mean, single.running_var, single.y);
    CHECK(cumtl_test::error_over_scale(single.y, eval_formula<T>(single, Activation::relu, 1e-5)) < tolerance<T>());

    // An empty batch evaluates to nothing.
    Batch empty = random_batch<T>(Shape{0, 3, 3, 4}, true, 8);
    cumtl::ops::batchnorm_forward_eval(cpu, empty.x, empty.gamma, empty.beta, empty.residual, Activation::none, 1e-5,
                                       empty.running_mean, empty.running_var, empty.y);
    CHECK(empty.y.numel() == 0);
  }

  TEST_CASE("batchnorm: statistics stay sound for a large mean") {
    // A channel at 1e4 with standard deviation 1e-2 in float: E[x²] − E[x]² in float would lose all of the
    // variance (E[x²] = 1e8 has a float spacing of 8). A channel at 1e8 with 1e-3 defeats it in double too.
    const auto check_unit_variance = [](auto zero, double mean, double stddev) {
      using T = decltype(zero);
      const Shape shape{4, 8, 8, 3};
      Context cpu;
      Batch batch = random_batch<T>(shape, false, 99);
      cumtl::Generator generator(123);
      cumtl::ops::normal(cpu, batch.x, generator, mean, stddev);
      std::fill_n(batch.gamma.data<T>(), 3, T(1));
      std::fill_n(batch.beta.data<T>(), 3, T(0));
      train(batch, Activation::none, 0.1, 1e-12);
      const std::int64_t rows = batch.x.numel() / 3;
      for (std::int64_t c = 0; c < 3; ++c) {
        double x_sum = 0, sum = 0, squares = 0;
        for (std::int64_t row = 0; row < rows; ++row) x_sum += double(batch.x.data<T>()[row * 3 + c]);
        for (std::int64_t row = 0; row < rows; ++row) sum += double(batch.y.data<T>()[row * 3 + c]);
        for (std::int64_t row = 0; row < rows; ++row) {
          const double deviation = double(batch.y.data<T>()[row * 3 + c]) - sum / double(rows);
          squares += deviation * deviation;
        }
        CAPTURE(c);
        CHECK(std::abs(squares / double(rows) - 1) < 1e-3);
        // y is centred on saved_mean, the batch mean rounded to T (up to half a unit in the last place, 5e-4 for
        // 1e4 in float, i.e. 0.05 standard deviations here), which is what backward differentiates.
        const double saved_mean = double(batch.saved_mean.data<T>()[c]);
        CHECK(saved_mean == doctest::Approx(x_sum / double(rows)).epsilon(1e-7));
        const double offset = (x_sum / double(rows) - saved_mean) * double(batch.saved_invstd.data<T>()[c]);
        CHECK(std::abs(sum / double(rows) - offset) < 1e-3);
      }
    };
    check_unit_variance(0.0f, 1e4, 1e-2);
    check_unit_variance(0.0, 1e8, 1e-3);
  }

  TEST_CASE("gradcheck: batchnorm") {
    gradcheck(Activation::none, false, Shape{2, 3, 2, 5}, 1000);
    gradcheck(Activation::none, false, Shape{4, 1, 1, 3}, 2000);
  }

  TEST_CASE("gradcheck: bn_relu") {
    gradcheck(Activation::relu, false, Shape{2, 3, 2, 5}, 3000);
    gradcheck(Activation::relu, false, Shape{4, 1, 1, 3}, 4000);
  }

  TEST_CASE("gradcheck: bn_add_relu") {
    gradcheck(Activation::relu, true, Shape{2, 3, 2, 5}, 5000);
    gradcheck(Activation::relu, true, Shape{4, 1, 1, 3}, 6000);
  }

  TEST_CASE("batchnorm: y may be the residual and dresidual may be dy") {
    Context cpu;
    const Shape shape{2, 3, 3, 5};
    Batch batch = random_batch<float>(shape, true, 77);
    Batch in_place = batch;
    in_place.residual = copy_of(batch.residual);
    in_place.running_mean = copy_of(batch.running_mean);
    in_place.running_var = copy_of(batch.running_var);
    in_place.saved_mean = copy_of(batch.saved_mean);
    in_place.saved_invstd = copy_of(batch.saved_invstd);
    in_place.y = in_place.residual;
    train(batch, Activation::relu, 0.1, 1e-5);
    train(in_place, Activation::relu, 0.1, 1e-5);
    CHECK(in_place.y.to_vector<float>() == batch.y.to_vector<float>());

    const Tensor dy = cumtl_test::random_tensor<float>(shape, 78, -1, 1);
    Tensor dx = Tensor::empty(shape, ScalarType::f32), dresidual = Tensor::empty(shape, ScalarType::f32);
    Tensor dgamma = Tensor::empty(Shape{5}, ScalarType::f32), dbeta = Tensor::empty(Shape{5}, ScalarType::f32);
    cumtl::ops::batchnorm_backward(cpu, dy, batch.x, batch.y, batch.gamma, batch.saved_mean, batch.saved_invstd,
                                   Activation::relu, dx, dresidual, dgamma, dbeta, GradientMode::overwrite);
    Tensor dy_in_place = copy_of(dy);
    Tensor dx2 = Tensor::empty(shape, ScalarType::f32);
    Tensor dgamma2 = Tensor::empty(Shape{5}, ScalarType::f32), dbeta2 = Tensor::empty(Shape{5}, ScalarType::f32);
    cumtl::ops::batchnorm_backward(cpu, dy_in_place, batch.x, batch.y, batch.gamma, batch.saved_mean,
                                   batch.saved_invstd, Activation::relu, dx2, dy_in_place, dgamma2, dbeta2,
                                   GradientMode::overwrite);
    CHECK(dx2.to_vector<float>() == dx.to_vector<float>());
    CHECK(dy_in_place.to_vector<float>() == dresidual.to_vector<float>());
    CHECK(dgamma2.to_vector<float>() == dgamma.to_vector<float>());
    CHECK(dbeta2.to_vector<float>() == dbeta.to_vector<float>());

    // Without a ReLU, y is not needed by backward.
    cumtl::ops::batchnorm_backward(cpu, dy, batch.x, Tensor(), batch.gamma, batch.saved_mean, batch.saved_invstd,
                                   Activation::none, dx, dresidual, dgamma, dbeta, GradientMode::overwrite);
    CHECK(dresidual.to_vector<float>() == dy.to_vector<float>());
  }

  TEST_CASE("batchnorm: contract errors name the operation and the tensors") {
    Context cpu;
    const Shape shape{2, 3, 3, 5};
    Batch batch = random_batch<float>(shape, true, 31);
    const auto train_with = [&](const Batch& b) {
      Batch copy = b;
      train(copy, Activation::relu, 0.1, 1e-5);
    };
    constexpr const char* op = "ops::batchnorm_forward_train";

    Batch bad = batch;
    bad.gamma = filled<float>(Shape{4}, 1);
    CHECK_ERROR_WITH(train_with(bad), op, "'gamma'", "float32[5]", "float32[4]", "float32[2, 3, 3, 5]");
    bad = batch;
    bad.beta = filled<double>(Shape{5}, 0);
    CHECK_ERROR_WITH(train_with(bad), op, "'beta'", "float32[5]", "float64[5]");
    bad = batch;
    bad.running_var = filled<float>(Shape{1, 5}, 1);
    CHECK_ERROR_WITH(train_with(bad), op, "'running_var'", "float32[1, 5]");
    bad = batch;
    bad.residual = filled<float>(Shape{2, 3, 5, 3}, 0);
    CHECK_ERROR_WITH(train_with(bad), op, "'residual' is float32[2, 3, 5, 3]", "'x' is float32[2, 3, 3, 5]");
    bad = batch;
    bad.y = filled<double>(shape, 0);
    CHECK_ERROR_WITH(train_with(bad), op, "'y' is float64[2, 3, 3, 5]", "'x' is float32[2, 3, 3, 5]");
    bad = batch;
    bad.x = filled<float>(Shape{5}, 0);
    CHECK_ERROR_WITH(train_with(bad), op, "rank 2 or more", "float32[5]");
    bad = batch;
    bad.saved_mean = Tensor();
    CHECK_ERROR_WITH(train_with(bad), op, "'saved_mean' is undefined");

    // Another device: the tensor is only described, never read.
    std::vector<float> storage(5);
    bad = batch;
    bad.gamma = Tensor::wrap(storage.data(), Shape{5}, ScalarType::f32, cumtl::Device::cuda(0));
    CHECK_ERROR_WITH(train_with(bad), op, "'gamma' is float32[5] on cuda:0", "context is on cpu");

    // One value per channel: no variance.
    Batch single = random_batch<float>(Shape{1, 1, 1, 5}, false, 32);
    CHECK_ERROR_WITH(train_with(single), op, "float32[1, 1, 1, 5]", "at least 2 values per channel", "variance");

    Batch integers;
    integers.x = Tensor::zeros(Shape{2, 2, 2, 3}, ScalarType::i32);
    integers.gamma = integers.beta = Tensor::zeros(Shape{3}, ScalarType::i32);
    integers.running_mean = Tensor::zeros(Shape{3}, ScalarType::i32);
    integers.running_var = Tensor::zeros(Shape{3}, ScalarType::i32);
    integers.saved_mean = Tensor::zeros(Shape{3}, ScalarType::i32);
    integers.saved_invstd = Tensor::zeros(Shape{3}, ScalarType::i32);
    integers.y = Tensor::zeros(Shape{2, 2, 2, 3}, ScalarType::i32);
    CHECK_ERROR_WITH(train_with(integers), op, "float32, float64, bfloat16 or float16", "int32");

    Batch aliased = batch;
    aliased.y = batch.x;
    CHECK_ERROR_WITH(train_with(aliased), op, "'y'", "overlaps 'x'");
    aliased = batch;
    aliased.saved_mean = aliased.running_mean;
    CHECK_ERROR_WITH(train_with(aliased), op, "'saved_mean'", "overlaps 'running_mean'");

    CHECK_ERROR_WITH(cumtl::ops::batchnorm_forward_train(
                         cpu, batch.x, batch.gamma, batch.beta, batch.residual, Activation::none, 1.5, 1e-5,
                         batch.running_mean, batch.running_var, batch.saved_mean, batch.saved_invstd, batch.y),
                     op, "momentum", "1.5");
    CHECK_ERROR_WITH(cumtl::ops::batchnorm_forward_train(
                         cpu, batch.x, batch.gamma, batch.beta, batch.residual, Activation::none, 0.1, 0,
                         batch.running_mean, batch.running_var, batch.saved_mean, batch.saved_invstd, batch.y),
                     op, "eps");

    const Tensor wrong_var = filled<float>(Shape{6}, 1);
    CHECK_ERROR_WITH(cumtl::ops::batchnorm_forward_eval(cpu, batch.x, batch.gamma, batch.beta, batch.residual,
                                                        Activation::none, 1e-5, batch.running_mean, wrong_var, batch.y),
                     "ops::batchnorm_forward_eval", "'running_var'", "float32[5]", "float32[6]");

    // Backward.
    train(batch, Activation::relu, 0.1, 1e-5);
    constexpr const char* backward = "ops::batchnorm_backward";
    Tensor dy = cumtl_test::random_tensor<float>(shape, 33, -1, 1);
    Tensor dx = Tensor::empty(shape, ScalarType::f32), dresidual = Tensor::empty(shape, ScalarType::f32);
    Tensor dgamma = Tensor::empty(Shape{5}, ScalarType::f32), dbeta = Tensor::empty(Shape{5}, ScalarType::f32);
    CHECK_ERROR_WITH(
        cumtl::ops::batchnorm_backward(cpu, dy, batch.x, batch.y, batch.gamma, batch.saved_mean, batch.saved_invstd,
                                       Activation::relu, dy, dresidual, dgamma, dbeta, GradientMode::overwrite),
        backward, "'dx'", "overlaps 'dy'");
    Tensor narrow = Tensor::empty(Shape{2, 3, 3, 4}, ScalarType::f32);
    CHECK_ERROR_WITH(
        cumtl::ops::batchnorm_backward(cpu, dy, batch.x, batch.y, batch.gamma, batch.saved_mean, batch.saved_invstd,
                                       Activation::relu, dx, narrow, dgamma, dbeta, GradientMode::overwrite),
        backward, "'dresidual' is float32[2, 3, 3, 4]", "'x' is float32[2, 3, 3, 5]");
    Tensor wide_gamma = Tensor::empty(Shape{6}, ScalarType::f32);
    CHECK_ERROR_WITH(
        cumtl::ops::batchnorm_backward(cpu, dy, batch.x, batch.y, batch.gamma, batch.saved_mean, batch.saved_invstd,
                                       Activation::relu, dx, dresidual, wide_gamma, dbeta, GradientMode::overwrite),
        backward, "'dgamma'", "float32[5]", "float32[6]");
    CHECK_ERROR_WITH(
        cumtl::ops::batchnorm_backward(cpu, dy, batch.x, Tensor(), batch.gamma, batch.saved_mean, batch.saved_invstd,
                                       Activation::relu, dx, dresidual, dgamma, dbeta, GradientMode::overwrite),
        backward, "'y' is undefined");
    const Tensor one_row = filled<float>(Shape{1, 5}, 0);
    Tensor one_row_dx = filled<float>(Shape{1, 5}, 0);
    Tensor no_residual;
    CHECK_ERROR_WITH(cumtl::ops::batchnorm_backward(cpu, one_row, one_row, one_row, batch.gamma, batch.saved_mean,
                                                    batch.saved_invstd, Activation::relu, one_row_dx, no_residual,
                                                    dgamma, dbeta, GradientMode::overwrite),
                     backward, "float32[1, 5]", "variance");
  }
}  // TEST_SUITE
