// The linear operations in bf16 and f16 on the CPU: cuBLAS's rounding points
// (2-byte operands, fp32 accumulation, each result rounded once) against the
// fp32 twin and against the exact product.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::GradientMode;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

struct LinearCase {
  std::int64_t n, in, out;
};

// A linear head (512 features, 7 outputs), odd sizes, one row, and no rows.
const std::vector<LinearCase> linear_cases{{8, 512, 7}, {5, 33, 12}, {1, 3, 1}, {0, 4, 3}};

// y = x · weightᵀ in double from the exact values.
std::vector<double> exact_product(const Tensor& x32, const Tensor& weight32, const LinearCase& c) {
  const std::vector<float> x = x32.to_vector<float>(), w = weight32.to_vector<float>();
  std::vector<double> y(static_cast<std::size_t>(c.n * c.out), 0.0);
  for (std::int64_t row = 0; row < c.n; ++row)
    for (std::int64_t o = 0; o < c.out; ++o)
      for (std::int64_t i = 0; i < c.in; ++i)
        y[std::size_t(row * c.out + o)] +=
            double(x[std::size_t(row * c.in + i)]) * double(w[std::size_t(o * c.in + i)]);
  return y;
}

}  // namespace

TEST_SUITE("linear") {
  // Every 2-byte result must be, bit for bit, the fp32 twin's on the widened
  // operands rounded once; the forward is also within half an ulp (plus the
  // fp32 sums' 1e-5) of the exact product. The bias is added in float to the
  // rounded product and rounded again, as the GPU adds it after cuBLAS.
  TEST_CASE_TEMPLATE("linear: bf16 and f16 twins are the fp32 twins rounded once", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context ctx;
    const ScalarType half = cumtl::scalar_type_v<Half>;
    const double half_ulp = std::is_same_v<Half, cumtl::bfloat16_t> ? 0x1p-8 : 0x1p-11;
    std::uint64_t seed = 500;
    bool rounding_happened = false;
    for (const LinearCase& c : linear_cases) {
      CAPTURE(c.n);
      CAPTURE(c.in);
      CAPTURE(c.out);
      const Shape x_shape{c.n, c.in}, weight_shape{c.out, c.in}, y_shape{c.n, c.out};
      const Tensor x = cumtl_test::random_tensor<Half>(x_shape, seed++);
      const Tensor weight = cumtl_test::random_tensor<Half>(weight_shape, seed++);
      const Tensor bias = cumtl_test::random_tensor<Half>(Shape{c.out}, seed++);
      const Tensor x32 = cumtl_test::widened(x), weight32 = cumtl_test::widened(weight);

      Tensor y = Tensor::empty(y_shape, half), y32 = Tensor::empty(y_shape, ScalarType::f32);
      cumtl::ops::linear_forward(ctx, x, weight, Tensor(), y);
      cumtl::ops::linear_forward(ctx, x32, weight32, Tensor(), y32);
      CHECK(y.to_vector<Half>() == cumtl_test::rounded<Half>(y32));
      rounding_happened |= cumtl_test::any_rounded<Half>(y32);
      CHECK(cumtl_test::error_over_scale(y.to_vector<Half>(), exact_product(x32, weight32, c)) <= half_ulp + 1e-5);

      const std::vector<Half> product = y.to_vector<Half>(), bias_values = bias.to_vector<Half>();
      cumtl::ops::add_bias(ctx, bias, y);
      const std::vector<Half> with_bias = y.to_vector<Half>();
      for (std::size_t i = 0; i < with_bias.size(); ++i)
        CHECK(with_bias[i] == Half(float(product[i]) + float(bias_values[i % std::size_t(c.out)])));

      const Tensor dy = cumtl_test::random_tensor<Half>(y_shape, seed++);
      const Tensor dy32 = cumtl_test::widened(dy);
      const Tensor initial = cumtl_test::random_tensor<Half>(weight_shape, seed++);
      Tensor dx = Tensor::empty(x_shape, half), dx32 = Tensor::empty(x_shape, ScalarType::f32);
      Tensor dweight = initial.to(cumtl::Device::cpu()), dweight32 = cumtl_test::widened(initial);
      Tensor dbias = Tensor::empty(Shape{c.out}, half), dbias32 = Tensor::empty(Shape{c.out}, ScalarType::f32);
      // Accumulated: the old value is added in fp32 before the one rounding, as cuBLAS's β = 1 does.
      cumtl::ops::linear_backward(ctx, dy, x, weight, dx, dweight, dbias, GradientMode::accumulate);
      cumtl::ops::linear_backward(ctx, dy32, x32, weight32, dx32, dweight32, dbias32, GradientMode::accumulate);
      CHECK(dx.to_vector<Half>() == cumtl_test::rounded<Half>(dx32));
      CHECK(dweight.to_vector<Half>() == cumtl_test::rounded<Half>(dweight32));

      // The bias gradient: the column sums in float, rounded once.
      cumtl::ops::bias_gradient(ctx, dy, dbias, GradientMode::overwrite);
      cumtl::ops::bias_gradient(ctx, dy32, dbias32, GradientMode::overwrite);
      CHECK(dbias.to_vector<Half>() == cumtl_test::rounded<Half>(dbias32));
    }
    CHECK(rounding_happened);
  }

  TEST_CASE("linear: operands of different scalar types are refused") {
    Context ctx;
    const Tensor x = Tensor::zeros(Shape{2, 3}, ScalarType::bf16);
    const Tensor weight = Tensor::zeros(Shape{4, 3}, ScalarType::f32);
    Tensor y = Tensor::empty(Shape{2, 4}, ScalarType::bf16);
    CHECK_ERROR_WITH(cumtl::ops::linear_forward(ctx, x, weight, Tensor(), y), "ops::linear_forward", "bfloat16",
                     "float32");
  }
}
