// Layers on the CPU: forwards against direct formulas, finite-difference
// gradient checks in double, parameter names and counts, and bad input.
#include <cstdint>
#include <vector>

#include "../support/conv_cases.hpp"
#include "../support/gradcheck.hpp"

using cumtl::Context;
using cumtl::Generator;
using cumtl::GradientMode;
using cumtl::ParameterStore;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

struct ConvCase {
  std::int64_t n, h, w, c, k;
  cumtl::Conv2dOptions options;
};

const std::vector<ConvCase> conv_cases{
    {2, 7, 6, 3, 4, {.kernel = 3, .stride = 1, .padding = 1}},
    {1, 9, 9, 3, 5, {.kernel = 7, .stride = 2, .padding = 3}},
    {2, 5, 5, 6, 3, {.kernel = 1}},
    {2, 6, 6, 4, 2, {.kernel = 1, .stride = 2}},
    {1, 8, 7, 2, 3, {.kernel = 3, .stride = 2, .padding = 2, .dilation = 2}},
    {3, 1, 1, 5, 2, {.kernel = 1, .bias = true}},
    {1, 5, 5, 3, 2, {.kernel = 3, .stride = 1, .padding = 1, .bias = true}},
};

cumtl::ConvShape shape_of(const ConvCase& c) {
  return {.n = c.n,
          .h = c.h,
          .w = c.w,
          .c = c.c,
          .k = c.k,
          .r = c.options.kernel,
          .s = c.options.kernel,
          .pad_h = c.options.padding,
          .pad_w = c.options.padding,
          .stride_h = c.options.stride,
          .stride_w = c.options.stride,
          .dilation_h = c.options.dilation,
          .dilation_w = c.options.dilation};
}

}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("conv2d: forward matches a direct convolution") {
    for (const ConvCase& test : conv_cases) {
      const cumtl::ConvShape shape = shape_of(test);
      CAPTURE(shape.str());
      Context ctx;
      ParameterStore store;
      cumtl::Conv2d<double> conv(store, "conv", int(test.c), int(test.k), test.options);
      store.allocate(ctx, ScalarType::f64);
      Generator generator(3);
      conv.initialize(ctx, generator);
      if (test.options.bias) cumtl::ops::uniform(ctx, store.parameter("conv.bias").value, generator, -1, 1);
      const Tensor x = cumtl_test::random_tensor<double>(Shape{test.n, test.h, test.w, test.c}, 4);
      const Tensor y = conv.forward(ctx, x);
      CHECK(y.shape() == Shape{shape.n, shape.out_h(), shape.out_w(), shape.k});
      std::vector<double> expected = cumtl_test::direct_convolution(x, conv.weight().value, shape);
      if (test.options.bias) {
        const std::vector<double> bias = store.parameter("conv.bias").value.to_vector<double>();
        for (std::size_t i = 0; i < expected.size(); ++i) expected[i] += bias[i % std::size_t(shape.k)];
      }
      CHECK(cumtl_test::max_relative_error(y.to_vector<double>(), expected, 1e-3) < 1e-12);
    }
  }

  TEST_CASE("gradcheck: conv2d") {
    for (const ConvCase& test : conv_cases) {
      CAPTURE(shape_of(test).str());
      Context ctx;
      ParameterStore store;
      cumtl::Conv2d<double> conv(store, "conv", int(test.c), int(test.k), test.options);
      store.allocate(ctx, ScalarType::f64);
      Generator generator(5);
      conv.initialize(ctx, generator);
      Tensor x = cumtl_test::random_tensor<double>(Shape{test.n, test.h, test.w, test.c}, 6);
      const Tensor r = cumtl_test::loss_weights(conv.forward(ctx, x).shape(), 7);
      const auto loss = [&] { return cumtl_test::weighted_sum(conv.forward(ctx, x), r); };

      // Accumulate mode: the parameter gradients start at 0.25, which must survive.
      cumtl_test::fill(store.gradients(), 0.25);
      conv.forward(ctx, x);
      const Tensor dx = conv.backward(ctx, r, GradientMode::accumulate);
      std::vector<double> dw = conv.weight().gradient.to_vector<double>();
      for (double& value : dw) value -= 0.25;
      cumtl_test::check_gradient("x", dx, cumtl_test::numeric_gradient(x, loss));
      cumtl_test::check_gradient("weight", dw, cumtl_test::numeric_gradient(conv.weight().value, loss));
      if (test.options.bias) {
        std::vector<double> db = store.parameter("conv.bias").gradient.to_vector<double>();
        for (double& value : db) value -= 0.25;
        cumtl_test::check_gradient("bias", db, cumtl_test::numeric_gradient(store.parameter("conv.bias").value, loss));
      }
      // Overwrite mode from +inf: every element must be written.
      cumtl_test::fill(store.gradients(), INFINITY);
      conv.forward(ctx, x);
      conv.backward(ctx, r, GradientMode::overwrite, cumtl::InputGradient::skip);
      cumtl_test::check_gradient("weight (overwrite)", conv.weight().gradient,
                                 cumtl_test::numeric_gradient(conv.weight().value, loss));
    }
  }

  TEST_CASE("gradcheck: linear") {
    Context ctx;
    ParameterStore store;
    cumtl::Linear<double> linear(store, "fc", 5, 3);
    store.allocate(ctx, ScalarType::f64);
    Generator generator(8);
    linear.initialize(ctx, generator);
    Tensor x = cumtl_test::random_tensor<double>(Shape{4, 5}, 9);
    const Tensor y = linear.forward(ctx, x);
    // y = x·Wᵀ + b, by hand for one element.
    const double* xd = x.data<double>();
    const double* wd = store.parameter("fc.weight").value.data<double>();
    double expected = store.parameter("fc.bias").value.data<double>()[2];
    for (int i = 0; i < 5; ++i) expected += xd[5 + i] * wd[2 * 5 + i];
    CHECK(y.data<double>()[1 * 3 + 2] == doctest::Approx(expected).epsilon(1e-14));

    const Tensor r = cumtl_test::loss_weights(y.shape(), 10);
    const auto loss = [&] { return cumtl_test::weighted_sum(linear.forward(ctx, x), r); };
    cumtl_test::fill(store.gradients(), INFINITY);
    linear.forward(ctx, x);
    const Tensor dx = linear.backward(ctx, r, GradientMode::overwrite);
    cumtl_test::check_gradient("x", dx, cumtl_test::numeric_gradient(x, loss));
    cumtl_test::check_gradient("weight", store.parameter("fc.weight").gradient,
                               cumtl_test::numeric_gradient(store.parameter("fc.weight").value, loss));
    cumtl_test::check_gradient("bias", store.parameter("fc.bias").gradient,
                               cumtl_test::numeric_gradient(store.parameter("fc.bias").value, loss));
    // Accumulate: a second backward doubles the gradients.
    const std::vector<double> once = store.gradients().to_vector<double>();
    linear.forward(ctx, x);
    linear.backward(ctx, r, GradientMode::accumulate);
    const std::vector<double> twice = store.gradients().to_vector<double>();
    for (std::size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == doctest::Approx(2 * once[i]).epsilon(1e-14));
  }

  TEST_CASE("gradcheck: add") {
    Context ctx;
    cumtl::ResidualAdd<double> add("layer1.0.add");
    Tensor a = cumtl_test::random_tensor<double>(Shape{2, 3, 3, 4}, 30);
    Tensor b = cumtl_test::random_tensor<double>(Shape{2, 3, 3, 4}, 31);
    const Tensor r = cumtl_test::loss_weights(a.shape(), 32);
    const auto loss = [&] { return cumtl_test::weighted_sum(add.forward(ctx, a, b), r); };
    const Tensor& gradient = add.backward(r);
    cumtl_test::check_gradient("a", gradient, cumtl_test::numeric_gradient(a, loss));
    cumtl_test::check_gradient("b", gradient, cumtl_test::numeric_gradient(b, loss));
    CHECK_ERROR_WITH(add.forward(ctx, a, Tensor::zeros(Shape{2, 3, 3, 5}, ScalarType::f64)), "ops::add",
                     "float64[2, 3, 3, 5]");
  }

  TEST_CASE("layers: bad input names the layer and the shapes") {
    Context ctx;
    ParameterStore store;
    cumtl::Conv2d<float> conv(store, "layer1.0.conv1", 8, 8, {.kernel = 3, .padding = 1});
    cumtl::Linear<float> linear(store, "heads.emotion", 16, 7);
    store.allocate(ctx, ScalarType::f32);
    CHECK_ERROR_WITH(conv.forward(ctx, Tensor::zeros(Shape{2, 5, 5, 3}, ScalarType::f32)), "Conv2d 'layer1.0.conv1'",
                     "float32[2, 5, 5, 3]", "expected float32[N, H, W, 8]");
    CHECK_ERROR_WITH(conv.forward(ctx, Tensor::zeros(Shape{2, 5, 8}, ScalarType::f32)), "Conv2d 'layer1.0.conv1'",
                     "float32[2, 5, 8]");
    CHECK_ERROR_WITH(conv.forward(ctx, Tensor::zeros(Shape{0, 5, 5, 8}, ScalarType::f32)), "empty");
    CHECK_ERROR_WITH(conv.forward(ctx, Tensor::zeros(Shape{1, 5, 5, 8}, ScalarType::f64)), "float64[1, 5, 5, 8]");
    CHECK_ERROR_WITH(conv.backward(ctx, Tensor::zeros(Shape{1, 5, 5, 8}, ScalarType::f32)), "before forward");
    CHECK_ERROR_WITH(linear.forward(ctx, Tensor::zeros(Shape{4, 15}, ScalarType::f32)), "Linear 'heads.emotion'",
                     "float32[4, 15]", "expected float32[N, 16]");
    CHECK_ERROR_WITH(cumtl::Conv2d<float>(store, "late", 3, 3), "declared after allocate()");
  }
}  // TEST_SUITE
