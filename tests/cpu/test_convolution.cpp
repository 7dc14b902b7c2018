// Convolutions in bf16 and f16 on the CPU: the rounding points of mixed
// precision (2-byte operands, fp32 accumulation, each result rounded once)
// against the fp32 twin and against an exact convolution.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../support/conv_cases.hpp"
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::ConvShape;
using cumtl::GradientMode;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl_test::ConvOpCase;

namespace {

// Padded and strided windows, a pointwise convolution (no unrolling), a
// dilated one, and the 3-channel stem of the models.
const std::vector<ConvOpCase> conv_cases{
    {Shape{2, 7, 6, 5}, Shape{4, 3, 3, 5}, {.pad_h = 1, .pad_w = 1}},
    {Shape{1, 9, 9, 3}, Shape{6, 7, 7, 3}, {.stride_h = 2, .stride_w = 2, .pad_h = 3, .pad_w = 3}},
    {Shape{3, 5, 4, 8}, Shape{7, 1, 1, 8}, {}},
    {Shape{1, 8, 7, 4}, Shape{3, 3, 3, 4}, {.stride_h = 2, .stride_w = 1, .pad_h = 2, .pad_w = 2, .dilation_h = 2}},
    {Shape{2, 16, 16, 3}, Shape{16, 3, 3, 3}, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}},
};

// Half a unit in the last place, relative: what one rounding to nearest may cost.
template <class Half>
double half_ulp() {
  return std::is_same_v<Half, cumtl::bfloat16_t> ? 0x1p-8 : 0x1p-11;
}

}  // namespace

TEST_SUITE("convolution") {
  // Every 2-byte result must be, bit for bit, the fp32 twin's result on the
  // same (widened) operands rounded once to nearest even: the twin has no
  // other rounding point. The forward is also checked against the exact
  // convolution, within the one rounding (half an ulp of the result) and the
  // fp32 accumulation's error, bounded by 1e-5 of the result's scale here.
  TEST_CASE_TEMPLATE("convolution: bf16 and f16 twins are the fp32 twins rounded once", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context ctx;
    const ScalarType half = cumtl::scalar_type_v<Half>;
    std::uint64_t seed = 40;
    bool rounding_happened = false;
    for (const ConvOpCase& c : conv_cases) {
      CAPTURE(c.x);
      CAPTURE(c.w);
      const Tensor x = cumtl_test::random_tensor<Half>(c.x, seed++);
      const Tensor w = cumtl_test::random_tensor<Half>(c.w, seed++);
      const Tensor x32 = cumtl_test::widened(x), w32 = cumtl_test::widened(w);
      const ConvShape shape = cumtl::ops::conv_shape("test", x, w, c.geometry);
      const Shape y_shape = cumtl::ops::conv_output_shape(shape);

      Tensor y = Tensor::empty(y_shape, half), y32 = Tensor::empty(y_shape, ScalarType::f32);
      cumtl::ops::conv2d_forward(ctx, x, w, c.geometry, y);
      cumtl::ops::conv2d_forward(ctx, x32, w32, c.geometry, y32);
      CHECK(y.to_vector<Half>() == cumtl_test::rounded<Half>(y32));
      rounding_happened |= cumtl_test::any_rounded<Half>(y32);
      Tensor x64 = Tensor::empty(c.x, ScalarType::f64), w64 = Tensor::empty(c.w, ScalarType::f64);
      cumtl::ops::convert(ctx, x, x64);
      cumtl::ops::convert(ctx, w, w64);
      const std::vector<double> exact = cumtl_test::direct_convolution(x64, w64, shape);
      CHECK(cumtl_test::error_over_scale(cumtl_test::widened(y).to_vector<float>(), exact) <= half_ulp<Half>() + 1e-5);

      const Tensor dy = cumtl_test::random_tensor<Half>(y_shape, seed++);
      const Tensor dy32 = cumtl_test::widened(dy);
      Tensor dx = Tensor::empty(c.x, half), dx32 = Tensor::empty(c.x, ScalarType::f32);
      cumtl::ops::conv2d_backward_data(ctx, dy, w, c.geometry, dx);
      cumtl::ops::conv2d_backward_data(ctx, dy32, w32, c.geometry, dx32);
      CHECK(dx.to_vector<Half>() == cumtl_test::rounded<Half>(dx32));

      Tensor dw = Tensor::empty(c.w, half), dw32 = Tensor::empty(c.w, ScalarType::f32);
      cumtl::ops::conv2d_backward_filter(ctx, x, dy, c.geometry, dw, GradientMode::overwrite);
      cumtl::ops::conv2d_backward_filter(ctx, x32, dy32, c.geometry, dw32, GradientMode::overwrite);
      const std::vector<Half> fresh = cumtl_test::rounded<Half>(dw32);
      CHECK(dw.to_vector<Half>() == fresh);

      // Accumulated: the fresh gradient rounded, then added to the old value in float and rounded again.
      const Tensor initial = cumtl_test::random_tensor<Half>(c.w, seed++);
      Tensor accumulated = initial.to(cumtl::Device::cpu());
      cumtl::ops::conv2d_backward_filter(ctx, x, dy, c.geometry, accumulated, GradientMode::accumulate);
      const std::vector<Half> before = initial.to_vector<Half>(), after = accumulated.to_vector<Half>();
      for (std::size_t i = 0; i < after.size(); ++i) CHECK(after[i] == Half(float(before[i]) + float(fresh[i])));
    }
    // Some results are not representable in the half type, so a twin that
    // skipped the rounding (or rounded the wrong values) would be seen.
    CHECK(rounding_happened);
  }

  TEST_CASE("convolution: operands of different scalar types are refused") {
    Context ctx;
    const Tensor x = Tensor::zeros(Shape{1, 4, 4, 2}, ScalarType::bf16);
    const Tensor w = Tensor::zeros(Shape{3, 3, 3, 2}, ScalarType::f32);
    Tensor y = Tensor::empty(Shape{1, 2, 2, 3}, ScalarType::bf16);
    CHECK_ERROR_WITH(cumtl::ops::conv2d_forward(ctx, x, w, {}, y), "ops::conv2d_forward", "bfloat16", "float32");
  }
}
