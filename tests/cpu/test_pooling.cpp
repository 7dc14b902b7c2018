// Pooling on the CPU: max, average and global average pooling against direct
// formulas, PyTorch's window semantics, finite-difference gradients in double,
// and the contract errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include <cumtl/ops/pooling.hpp>
#include "../support/gradcheck.hpp"
#include "../support/pool_cases.hpp"
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl::ops::Pool2d;

using cumtl_test::PoolCase;
using cumtl_test::pooled;

namespace {

// The ResNet stem's 3×3/2 pad 1, the common 2×2/2, odd sizes whose last row
// and column no window reaches, rectangular windows, C = 1, 3, 5.
const std::vector<PoolCase> pool_cases{
    {Shape{2, 7, 9, 3}, Pool2d{3, 3, 2, 2, 1, 1}}, {Shape{1, 8, 8, 1}, Pool2d{2, 2, 2, 2}},
    {Shape{3, 5, 7, 5}, Pool2d{2, 2, 2, 2}},       {Shape{2, 6, 5, 3}, Pool2d{3, 2, 1, 2, 1, 1}},
    {Shape{1, 1, 1, 5}, Pool2d{3, 3, 2, 2, 1, 1}}, {Shape{2, 4, 6, 1}, Pool2d{1, 1, 1, 1}},
    {Shape{1, 9, 4, 3}, Pool2d{4, 2, 3, 1, 2, 0}},
};

// Values 0.01 apart in a shuffled order: no ties, and a finite-difference step
// of 1e-6 never changes which element is a window's maximum.
Tensor distinct_values(const Shape& shape, std::uint64_t seed) {
  std::vector<double> values(static_cast<std::size_t>(shape.numel()));
  std::iota(values.begin(), values.end(), 0.0);
  Generator generator(seed);
  for (std::size_t i = values.size(); i > 1; --i)
    std::swap(values[i - 1], values[std::size_t(generator.uniform() * double(i))]);
  for (double& value : values) value = (value - double(values.size()) / 2) * 0.01;
  return Tensor::from_vector(values, shape);
}

template <class T>
T at(const Tensor& t, std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t c) {
  const Shape& s = t.shape();
  return t.data<T>()[((n * s[1] + h) * s[2] + w) * s[3] + c];
}

// Max pooling straight from its definition: padding is −∞, and a later equal
// element does not replace an earlier one.
template <class T>
void direct_max_pool(const Tensor& x, const Pool2d& pool, std::vector<T>& y, std::vector<std::int32_t>& argmax) {
  const Shape& s = x.shape();
  const std::int64_t P = pool.out_h(s[1]), Q = pool.out_w(s[2]);
  y.clear();
  argmax.clear();
  for (std::int64_t n = 0; n < s[0]; ++n)
    for (std::int64_t p = 0; p < P; ++p)
      for (std::int64_t q = 0; q < Q; ++q)
        for (std::int64_t c = 0; c < s[3]; ++c) {
          T best = -std::numeric_limits<T>::infinity();
          std::int32_t index = -1;
          for (std::int64_t i = 0; i < pool.kernel_h; ++i)
            for (std::int64_t j = 0; j < pool.kernel_w; ++j) {
              const std::int64_t h = p * pool.stride_h - pool.pad_h + i, w = q * pool.stride_w - pool.pad_w + j;
              if (h < 0 || h >= s[1] || w < 0 || w >= s[2]) continue;
              if (at<T>(x, n, h, w, c) > best) {
                best = at<T>(x, n, h, w, c);
                index = std::int32_t(h * s[2] + w);
              }
            }
          y.push_back(best);
          argmax.push_back(index);
        }
}

// Average pooling from its definition with count_include_pad: the sum of the
// window's input elements over the whole window's size (in floor mode no
// window reaches past the padding).
template <class T>
std::vector<T> direct_avg_pool(const Tensor& x, const Pool2d& pool) {
  const Shape& s = x.shape();
  std::vector<T> y;
  for (std::int64_t n = 0; n < s[0]; ++n)
    for (std::int64_t p = 0; p < pool.out_h(s[1]); ++p)
      for (std::int64_t q = 0; q < pool.out_w(s[2]); ++q)
        for (std::int64_t c = 0; c < s[3]; ++c) {
          double sum = 0;
          for (std::int64_t i = 0; i < pool.kernel_h; ++i)
            for (std::int64_t j = 0; j < pool.kernel_w; ++j) {
              const std::int64_t h = p * pool.stride_h - pool.pad_h + i, w = q * pool.stride_w - pool.pad_w + j;
              if (h >= 0 && h < s[1] && w >= 0 && w < s[2]) sum += double(at<T>(x, n, h, w, c));
            }
          y.push_back(T(sum / double(pool.kernel_h * pool.kernel_w)));
        }
  return y;
}

template <class T>
void check_close(const std::vector<T>& actual, const std::vector<T>& expected) {
  CHECK(cumtl_test::max_relative_error(actual, expected, 1.0) < (sizeof(T) == 4 ? 2e-6 : 1e-14));
}

}  // namespace

TEST_SUITE("pooling") {
  TEST_CASE("pooling: output sizes follow PyTorch's floor mode") {
    const Pool2d stem{3, 3, 2, 2, 1, 1}, halve{2, 2, 2, 2}, unpadded{3, 3, 2, 2}, same{3, 3, 1, 1, 1, 1};
    CHECK(stem.out_h(224) == 112);
    CHECK(stem.out_w(112) == 56);
    CHECK(stem.out_h(7) == 4);
    CHECK(stem.out_h(1) == 1);
    CHECK(stem.out_h(2) == 1);
    CHECK(halve.out_h(7) == 3);
    CHECK(halve.out_w(8) == 4);
    CHECK(unpadded.out_h(7) == 3);
    CHECK(unpadded.out_h(6) == 2);
    CHECK(same.out_h(5) == 5);
    CHECK(Pool2d{1, 1, 2, 2}.out_h(5) == 3);
    CHECK(Pool2d{4, 2, 3, 1, 2, 0}.out_h(9) == 4);
    // A window that does not fit, or an invalid one, gives 0; the ops refuse both with the reason.
    CHECK(halve.out_h(1) == 0);
    CHECK(Pool2d{2, 2, 0, 0}.out_h(4) == 0);
  }

  TEST_CASE_TEMPLATE("pooling: max pool forward matches the direct formula", T, float, double) {
    Context ctx;
    std::uint64_t seed = 1;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      const Tensor x = cumtl_test::random_tensor<T>(c.x, seed++);
      Tensor y = Tensor::empty(pooled(c), cumtl::scalar_type_v<T>);
      Tensor argmax = Tensor::empty(pooled(c), ScalarType::i32);
      cumtl::ops::max_pool2d_forward(ctx, x, c.pool, y, argmax);
      std::vector<T> expected;
      std::vector<std::int32_t> expected_argmax;
      direct_max_pool(x, c.pool, expected, expected_argmax);
      CHECK(y.to_vector<T>() == expected);
      CHECK(argmax.to_vector<std::int32_t>() == expected_argmax);
    }
  }

  TEST_CASE("pooling: argmax is the first maximum in row-major window order") {
    Context ctx;
    // Two 2×2 windows: {1, 3; 3, 0} has its maximum twice, {2, 2; 2, 1} three times.
    const Tensor x = Tensor::from_vector<float>({1, 3, 2, 2, 3, 0, 2, 1}, Shape{1, 2, 4, 1});
    Tensor y = Tensor::empty(Shape{1, 1, 2, 1}, ScalarType::f32);
    Tensor argmax = Tensor::empty(Shape{1, 1, 2, 1}, ScalarType::i32);
    cumtl::ops::max_pool2d_forward(ctx, x, Pool2d{2, 2, 2, 2}, y, argmax);
    CHECK(y.to_vector<float>() == std::vector<float>{3, 2});
    CHECK(argmax.to_vector<std::int32_t>() == std::vector<std::int32_t>{1, 2});

    // A constant input: every window picks its top-left element inside the input, never the padding.
    const Pool2d stem{3, 3, 2, 2, 1, 1};
    const Tensor ones = Tensor::from_vector(std::vector<double>(5 * 5 * 2, 1.0), Shape{1, 5, 5, 2});
    Tensor pooled_ones = Tensor::empty(Shape{1, 3, 3, 2}, ScalarType::f64);
    Tensor ones_argmax = Tensor::empty(Shape{1, 3, 3, 2}, ScalarType::i32);
    cumtl::ops::max_pool2d_forward(ctx, ones, stem, pooled_ones, ones_argmax);
    CHECK(pooled_ones.to_vector<double>() == std::vector<double>(18, 1.0));
    for (int p = 0; p < 3; ++p)
      for (int q = 0; q < 3; ++q)
        for (int c = 0; c < 2; ++c)
          CHECK(ones_argmax.data<std::int32_t>()[(p * 3 + q) * 2 + c] ==
                std::max(0, 2 * p - 1) * 5 + std::max(0, 2 * q - 1));

    // Backward sends each window's gradient to its argmax only: the first of the tied maxima.
    const Tensor dy = Tensor::from_vector<float>({10, 20}, Shape{1, 1, 2, 1});
    Tensor dx = Tensor::empty(x.shape(), ScalarType::f32);
    cumtl::ops::max_pool2d_backward(ctx, dy, argmax, Pool2d{2, 2, 2, 2}, dx);
    CHECK(dx.to_vector<float>() == std::vector<float>{0, 10, 20, 0, 0, 0, 0, 0});
  }

  TEST_CASE("pooling: a NaN in a window propagates") {
    Context ctx;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const Tensor x = Tensor::from_vector<float>({1, nan, 5, 2}, Shape{1, 2, 2, 1});
    Tensor y = Tensor::empty(Shape{1, 1, 1, 1}, ScalarType::f32);
    Tensor argmax = Tensor::empty(Shape{1, 1, 1, 1}, ScalarType::i32);
    cumtl::ops::max_pool2d_forward(ctx, x, Pool2d{2, 2, 2, 2}, y, argmax);
    CHECK(std::isnan(y.to_vector<float>()[0]));
    CHECK(argmax.to_vector<std::int32_t>()[0] == 1);
  }

  TEST_CASE_TEMPLATE("pooling: max pool backward equals scattering dy to the argmax", T, float, double) {
    Context ctx;
    std::uint64_t seed = 20;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      const Tensor x = cumtl_test::random_tensor<T>(c.x, seed++);
      Tensor y = Tensor::empty(pooled(c), cumtl::scalar_type_v<T>);
      Tensor argmax = Tensor::empty(pooled(c), ScalarType::i32);
      cumtl::ops::max_pool2d_forward(ctx, x, c.pool, y, argmax);
      const Tensor dy = cumtl_test::random_tensor<T>(pooled(c), seed++);
      Tensor dx = Tensor::empty(c.x, cumtl::scalar_type_v<T>);
      cumtl::ops::max_pool2d_backward(ctx, dy, argmax, c.pool, dx);

      // Within a (n, c) plane the scatter visits windows in the order the gather sums them: equal bit for bit.
      std::vector<T> expected(std::size_t(c.x.numel()), T(0));
      const std::int64_t plane = c.x[1] * c.x[2], channels = c.x[3], windows = pooled(c)[1] * pooled(c)[2];
      for (std::int64_t o = 0; o < dy.numel(); ++o) {
        const std::int64_t channel = o % channels, n = o / (windows * channels);
        expected[std::size_t((n * plane + argmax.data<std::int32_t>()[o]) * channels + channel)] += dy.data<T>()[o];
      }
      CHECK(dx.to_vector<T>() == expected);
    }
  }

  TEST_CASE_TEMPLATE("pooling: avg pool forward matches the direct formula", T, float, double) {
    Context ctx;
    std::uint64_t seed = 40;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      const Tensor x = cumtl_test::random_tensor<T>(c.x, seed++);
      Tensor y = Tensor::empty(pooled(c), cumtl::scalar_type_v<T>);
      cumtl::ops::avg_pool2d_forward(ctx, x, c.pool, y);
      check_close(y.to_vector<T>(), direct_avg_pool<T>(x, c.pool));
    }
  }

  TEST_CASE("pooling: avg pool counts the padding in the divisor") {
    Context ctx;
    const Tensor ones = Tensor::from_vector(std::vector<double>(16, 1.0), Shape{1, 4, 4, 1});
    Tensor y = Tensor::empty(Shape{1, 2, 2, 1}, ScalarType::f64);
    cumtl::ops::avg_pool2d_forward(ctx, ones, Pool2d{3, 3, 2, 2, 1, 1}, y);
    // Window (0, 0) covers 2×2 input elements of its 3×3, window (1, 1) all 9.
    CHECK(y.to_vector<double>() == std::vector<double>{4.0 / 9, 6.0 / 9, 6.0 / 9, 1.0});
  }

  TEST_CASE_TEMPLATE("pooling: avg pool backward equals spreading dy over each window", T, float, double) {
    Context ctx;
    std::uint64_t seed = 60;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      const Tensor dy = cumtl_test::random_tensor<T>(pooled(c), seed++);
      Tensor dx = Tensor::empty(c.x, cumtl::scalar_type_v<T>);
      cumtl::ops::avg_pool2d_backward(ctx, dy, c.pool, dx);

      std::vector<double> expected(std::size_t(c.x.numel()), 0.0);
      const Shape out = pooled(c);
      const double size = double(c.pool.kernel_h * c.pool.kernel_w);
      for (std::int64_t n = 0; n < out[0]; ++n)
        for (std::int64_t p = 0; p < out[1]; ++p)
          for (std::int64_t q = 0; q < out[2]; ++q)
            for (std::int64_t ch = 0; ch < out[3]; ++ch)
              for (std::int64_t i = 0; i < c.pool.kernel_h; ++i)
                for (std::int64_t j = 0; j < c.pool.kernel_w; ++j) {
                  const std::int64_t h = p * c.pool.stride_h - c.pool.pad_h + i;
                  const std::int64_t w = q * c.pool.stride_w - c.pool.pad_w + j;
                  if (h >= 0 && h < c.x[1] && w >= 0 && w < c.x[2])
                    expected[std::size_t(((n * c.x[1] + h) * c.x[2] + w) * c.x[3] + ch)] +=
                        double(at<T>(dy, n, p, q, ch)) / size;
                }
      check_close(dx.to_vector<T>(), std::vector<T>(expected.begin(), expected.end()));
    }
  }

  TEST_CASE_TEMPLATE("pooling: global average pool is the mean over H and W", T, float, double) {
    Context ctx;
    for (const Shape& shape : {Shape{2, 7, 7, 5}, Shape{1, 1, 1, 3}, Shape{3, 4, 9, 1}}) {
      CAPTURE(shape);
      const Tensor x = cumtl_test::random_tensor<T>(shape, std::uint64_t(shape[3]));
      Tensor y = Tensor::empty(Shape{shape[0], shape[3]}, cumtl::scalar_type_v<T>);
      cumtl::ops::global_avg_pool_forward(ctx, x, y);
      std::vector<T> expected;
      for (std::int64_t n = 0; n < shape[0]; ++n)
        for (std::int64_t c = 0; c < shape[3]; ++c) {
          double sum = 0;
          for (std::int64_t h = 0; h < shape[1]; ++h)
            for (std::int64_t w = 0; w < shape[2]; ++w) sum += double(at<T>(x, n, h, w, c));
          expected.push_back(T(sum / double(shape[1] * shape[2])));
        }
      check_close(y.to_vector<T>(), expected);

      const Tensor dy = cumtl_test::random_tensor<T>(y.shape(), 99);
      Tensor dx = Tensor::empty(shape, cumtl::scalar_type_v<T>);
      cumtl::ops::global_avg_pool_backward(ctx, dy, dx);
      std::vector<T> spread;
      for (std::int64_t n = 0; n < shape[0]; ++n)
        for (std::int64_t hw = 0; hw < shape[1] * shape[2]; ++hw)
          for (std::int64_t c = 0; c < shape[3]; ++c)
            spread.push_back(dy.data<T>()[n * shape[3] + c] / T(shape[1] * shape[2]));
      CHECK(dx.to_vector<T>() == spread);
    }
  }

  // The 2-byte twins against the fp32 twins on the same (rounded) inputs. The
  // rounding points: max pooling selects an input (and its gradient adds the
  // dy that chose it, in float); average pooling sums in float and divides
  // there; each rounds once, at the output. So every half result must be, bit
  // for bit, the fp32 twin's result rounded to nearest even, and the argmax the
  // same; no error bound is needed beyond that one rounding.
  TEST_CASE_TEMPLATE("pooling: bf16 and f16 twins are the fp32 twins rounded once", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context ctx;
    const ScalarType half = cumtl::scalar_type_v<Half>;
    std::uint64_t seed = 300;
    bool rounding_happened = false;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      const Tensor x = cumtl_test::random_tensor<Half>(c.x, seed++, -300, 300);
      const Tensor dy = cumtl_test::random_tensor<Half>(pooled(c), seed++);
      const Tensor x32 = cumtl_test::widened(x), dy32 = cumtl_test::widened(dy);

      Tensor y = Tensor::empty(pooled(c), half), y32 = Tensor::empty(pooled(c), ScalarType::f32);
      Tensor argmax = Tensor::empty(pooled(c), ScalarType::i32), argmax32 = Tensor::empty(pooled(c), ScalarType::i32);
      Tensor dx = Tensor::empty(c.x, half), dx32 = Tensor::empty(c.x, ScalarType::f32);
      cumtl::ops::max_pool2d_forward(ctx, x, c.pool, y, argmax);
      cumtl::ops::max_pool2d_forward(ctx, x32, c.pool, y32, argmax32);
      CHECK(y.to_vector<Half>() == cumtl_test::rounded<Half>(y32));
      CHECK(argmax.to_vector<std::int32_t>() == argmax32.to_vector<std::int32_t>());
      cumtl::ops::max_pool2d_backward(ctx, dy, argmax, c.pool, dx);
      cumtl::ops::max_pool2d_backward(ctx, dy32, argmax32, c.pool, dx32);
      CHECK(dx.to_vector<Half>() == cumtl_test::rounded<Half>(dx32));

      cumtl::ops::avg_pool2d_forward(ctx, x, c.pool, y);
      cumtl::ops::avg_pool2d_forward(ctx, x32, c.pool, y32);
      CHECK(y.to_vector<Half>() == cumtl_test::rounded<Half>(y32));
      rounding_happened |= cumtl_test::any_rounded<Half>(y32);
      cumtl::ops::avg_pool2d_backward(ctx, dy, c.pool, dx);
      cumtl::ops::avg_pool2d_backward(ctx, dy32, c.pool, dx32);
      CHECK(dx.to_vector<Half>() == cumtl_test::rounded<Half>(dx32));

      const Shape features{c.x[0], c.x[3]};
      Tensor mean = Tensor::empty(features, half), mean32 = Tensor::empty(features, ScalarType::f32);
      cumtl::ops::global_avg_pool_forward(ctx, x, mean);
      cumtl::ops::global_avg_pool_forward(ctx, x32, mean32);
      CHECK(mean.to_vector<Half>() == cumtl_test::rounded<Half>(mean32));
      const Tensor dmean = cumtl_test::random_tensor<Half>(features, seed++);
      cumtl::ops::global_avg_pool_backward(ctx, dmean, dx);
      cumtl::ops::global_avg_pool_backward(ctx, cumtl_test::widened(dmean), dx32);
      CHECK(dx.to_vector<Half>() == cumtl_test::rounded<Half>(dx32));
    }
    // The averages are not all representable in the half type, so the test can tell float sums rounded once
    // from sums rounded at every step or copied.
    CHECK(rounding_happened);
  }

  TEST_CASE("pooling: an empty batch or no channels is a no-op") {
    Context ctx;
    for (const Shape& shape : {Shape{0, 4, 4, 3}, Shape{2, 4, 4, 0}}) {
      const Tensor x = Tensor::empty(shape, ScalarType::f32);
      const Shape out{shape[0], 2, 2, shape[3]};
      Tensor y = Tensor::empty(out, ScalarType::f32), argmax = Tensor::empty(out, ScalarType::i32);
      Tensor dx = Tensor::empty(shape, ScalarType::f32);
      cumtl::ops::max_pool2d_forward(ctx, x, Pool2d{2, 2, 2, 2}, y, argmax);
      cumtl::ops::max_pool2d_backward(ctx, y, argmax, Pool2d{2, 2, 2, 2}, dx);
      cumtl::ops::avg_pool2d_forward(ctx, x, Pool2d{2, 2, 2, 2}, y);
      Tensor pooled_channels = Tensor::empty(Shape{shape[0], shape[3]}, ScalarType::f32);
      cumtl::ops::global_avg_pool_forward(ctx, x, pooled_channels);
      CHECK(y.numel() == 0);
    }
  }

  TEST_CASE("gradcheck: maxpool") {
    Context ctx;
    std::uint64_t seed = 100;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      Tensor x = distinct_values(c.x, seed++);
      const Tensor weights = cumtl_test::loss_weights(pooled(c), seed++);
      Tensor y = Tensor::empty(pooled(c), ScalarType::f64), argmax = Tensor::empty(pooled(c), ScalarType::i32);
      const auto loss = [&] {
        cumtl::ops::max_pool2d_forward(ctx, x, c.pool, y, argmax);
        return cumtl_test::weighted_sum(y, weights);
      };
      const std::vector<double> numeric = cumtl_test::numeric_gradient(x, loss);
      loss();
      Tensor dx = Tensor::empty(c.x, ScalarType::f64);
      cumtl_test::fill(dx, std::numeric_limits<double>::infinity());
      cumtl::ops::max_pool2d_backward(ctx, weights, argmax, c.pool, dx);
      cumtl_test::check_gradient("maxpool", dx, numeric);
    }
  }

  TEST_CASE("gradcheck: avgpool") {
    Context ctx;
    std::uint64_t seed = 200;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      Tensor x = cumtl_test::random_tensor<double>(c.x, seed++);
      const Tensor weights = cumtl_test::loss_weights(pooled(c), seed++);
      Tensor y = Tensor::empty(pooled(c), ScalarType::f64);
      const auto loss = [&] {
        cumtl::ops::avg_pool2d_forward(ctx, x, c.pool, y);
        return cumtl_test::weighted_sum(y, weights);
      };
      const std::vector<double> numeric = cumtl_test::numeric_gradient(x, loss);
      Tensor dx = Tensor::empty(c.x, ScalarType::f64);
      cumtl_test::fill(dx, std::numeric_limits<double>::infinity());
      cumtl::ops::avg_pool2d_backward(ctx, weights, c.pool, dx);
      cumtl_test::check_gradient("avgpool", dx, numeric);
    }
  }

  TEST_CASE("gradcheck: global_avg_pool") {
    Context ctx;
    for (const Shape& shape : {Shape{2, 3, 5, 4}, Shape{1, 1, 1, 3}, Shape{3, 2, 2, 1}}) {
      CAPTURE(shape);
      Tensor x = cumtl_test::random_tensor<double>(shape, 300);
      const Tensor weights = cumtl_test::loss_weights(Shape{shape[0], shape[3]}, 301);
      Tensor y = Tensor::empty(weights.shape(), ScalarType::f64);
      const auto loss = [&] {
        cumtl::ops::global_avg_pool_forward(ctx, x, y);
        return cumtl_test::weighted_sum(y, weights);
      };
      const std::vector<double> numeric = cumtl_test::numeric_gradient(x, loss);
      Tensor dx = Tensor::empty(shape, ScalarType::f64);
      cumtl_test::fill(dx, std::numeric_limits<double>::infinity());
      cumtl::ops::global_avg_pool_backward(ctx, weights, dx);
      cumtl_test::check_gradient("global_avg_pool", dx, numeric);
    }
  }

  TEST_CASE("pooling: bad inputs are refused naming the op and the shapes") {
    Context ctx;
    const Pool2d stem{3, 3, 2, 2, 1, 1};
    const Tensor x = Tensor::zeros(Shape{2, 7, 7, 3}, ScalarType::f32);
    Tensor y = Tensor::zeros(Shape{2, 4, 4, 3}, ScalarType::f32);
    Tensor argmax = Tensor::zeros(Shape{2, 4, 4, 3}, ScalarType::i32);
    Tensor dx = Tensor::zeros(Shape{2, 7, 7, 3}, ScalarType::f32);

    const Tensor rank3 = Tensor::zeros(Shape{7, 7, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(ctx, rank3, stem, y, argmax), "ops::max_pool2d_forward",
                     "'x' is float32[7, 7, 3] on cpu", "NHWC (rank 4)");
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(ctx, x, Pool2d{10, 10, 1, 1, 1, 1}, y, argmax),
                     "ops::max_pool2d_forward", "window 10x10", "larger than the padded input", "float32[2, 7, 7, 3]",
                     "9x9 with its padding");
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(ctx, x, Pool2d{3, 3, 2, 2, 2, 1}, y, argmax),
                     "ops::max_pool2d_forward", "padding 2x1", "at most half the window");
    CHECK_ERROR_WITH(cumtl::ops::avg_pool2d_forward(ctx, x, Pool2d{3, 3, 0, 2}, y), "ops::avg_pool2d_forward",
                     "stride 0x2", "must be positive");
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(ctx, x, Pool2d{2, 2, 2, 2}, y, argmax), "ops::max_pool2d_forward",
                     "'y' is float32[2, 4, 4, 3] on cpu", "'x' float32[2, 7, 7, 3] on cpu pooled with window 2x2",
                     "needs float32[2, 3, 3, 3]");
    Tensor float_argmax = Tensor::zeros(Shape{2, 4, 4, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(ctx, x, stem, y, float_argmax), "ops::max_pool2d_forward",
                     "'argmax' is float32[2, 4, 4, 3]", "needs int32[2, 4, 4, 3]");
    Tensor double_y = Tensor::zeros(Shape{2, 4, 4, 3}, ScalarType::f64);
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(ctx, x, stem, double_y, argmax), "ops::max_pool2d_forward",
                     "'y' is float64[2, 4, 4, 3]", "needs float32[2, 4, 4, 3]");
    const Tensor integers = Tensor::zeros(Shape{2, 7, 7, 3}, ScalarType::i32);
    CHECK_ERROR_WITH(cumtl::ops::avg_pool2d_forward(ctx, integers, stem, y), "ops::avg_pool2d_forward",
                     "int32[2, 7, 7, 3]", "float32, float64, bfloat16 or float16");
    const Tensor flat = Tensor::zeros(Shape{2, 0, 7, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::avg_pool2d_forward(ctx, flat, stem, y), "ops::avg_pool2d_forward",
                     "float32[2, 0, 7, 3]", "non-empty");
    Tensor undefined;
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(ctx, x, stem, undefined, argmax), "ops::max_pool2d_forward",
                     "'y' is undefined");
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(ctx, x, stem, dx, argmax), "ops::max_pool2d_forward", "'y' is");

    const Tensor wrong_dy = Tensor::zeros(Shape{2, 3, 3, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_backward(ctx, wrong_dy, argmax, stem, dx), "ops::max_pool2d_backward",
                     "'dy' is float32[2, 3, 3, 3] on cpu", "'dx' float32[2, 7, 7, 3] on cpu pooled with window 3x3",
                     "needs float32[2, 4, 4, 3]");
    const Tensor wrong_argmax = Tensor::zeros(Shape{2, 4, 4, 2}, ScalarType::i32);
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_backward(ctx, y, wrong_argmax, stem, dx), "ops::max_pool2d_backward",
                     "'argmax' is int32[2, 4, 4, 2]", "needs int32[2, 4, 4, 3]");
    Tensor dx_rank2 = Tensor::zeros(Shape{2, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::avg_pool2d_backward(ctx, y, stem, dx_rank2), "ops::avg_pool2d_backward",
                     "'dx' is float32[2, 3] on cpu", "NHWC (rank 4)");
    CHECK_ERROR_WITH(cumtl::ops::avg_pool2d_backward(ctx, wrong_dy, stem, dx), "ops::avg_pool2d_backward",
                     "'dy' is float32[2, 3, 3, 3]", "needs float32[2, 4, 4, 3]");

    Tensor means = Tensor::zeros(Shape{3, 2}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::global_avg_pool_forward(ctx, x, means), "ops::global_avg_pool_forward",
                     "'y' is float32[3, 2] on cpu", "'x' float32[2, 7, 7, 3] on cpu", "needs float32[2, 3]");
    CHECK_ERROR_WITH(cumtl::ops::global_avg_pool_backward(ctx, means, dx), "ops::global_avg_pool_backward",
                     "'dy' is float32[3, 2] on cpu", "needs float32[2, 3]");
    CHECK_ERROR_WITH(cumtl::ops::global_avg_pool_forward(ctx, rank3, means), "ops::global_avg_pool_forward",
                     "'x' is float32[7, 7, 3]", "NHWC (rank 4)");

    // An output sharing memory with an input would be read after being written.
    Tensor square = Tensor::zeros(Shape{1, 4, 4, 1}, ScalarType::f32);
    Tensor same_memory = square.view(Shape{1, 4, 4, 1});
    CHECK_ERROR_WITH(cumtl::ops::avg_pool2d_forward(ctx, square, Pool2d{1, 1, 1, 1}, same_memory),
                     "ops::avg_pool2d_forward", "'x'", "'y'", "share memory");
  }

}  // TEST_SUITE
