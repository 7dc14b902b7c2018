// Convolutions through the ops facade on the GPU (cuDNN) against the CPU twin,
// in bf16 and f16: both read 2-byte operands, accumulate in fp32 and round
// each result once. Needs a GPU.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../support/conv_cases.hpp"
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::ConvShape;
using cumtl::Device;
using cumtl::GradientMode;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl_test::ConvOpCase;

namespace {

// Odd shapes, a pointwise and a dilated convolution, the RGB stems of the
// CPU models and of ResNet-18/50 (3 channels, run unpadded: docs/layers.md),
// and a body convolution of ResNet-18 at 112 pixels.
const std::vector<ConvOpCase> conv_cases{
    {Shape{2, 7, 6, 5}, Shape{4, 3, 3, 5}, {.pad_h = 1, .pad_w = 1}},
    {Shape{3, 5, 4, 8}, Shape{7, 1, 1, 8}, {}},
    {Shape{1, 8, 7, 4}, Shape{3, 3, 3, 4}, {.stride_h = 2, .stride_w = 1, .pad_h = 2, .pad_w = 2, .dilation_h = 2}},
    {Shape{8, 64, 64, 3}, Shape{16, 3, 3, 3}, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}},
    {Shape{4, 112, 112, 3}, Shape{64, 7, 7, 3}, {.stride_h = 2, .stride_w = 2, .pad_h = 3, .pad_w = 3}},
    {Shape{8, 28, 28, 64}, Shape{64, 3, 3, 64}, {.pad_h = 1, .pad_w = 1}},
    {Shape{8, 14, 14, 128}, Shape{256, 1, 1, 128}, {.stride_h = 2, .stride_w = 2}},
};

// Each device rounds its fp32 sum once; the sums differ only in the order of
// the fp32 additions, so two results are at most one unit in the last place
// of the largest result apart (2^-7 of it for bf16, 2^-10 for f16), plus the
// fp32 sums' own difference.
template <class Half>
double tolerance() {
  return (std::is_same_v<Half, cumtl::bfloat16_t> ? 0x1p-7 : 0x1p-10) + 1e-4;
}

template <class Half>
double error(Context& gpu, const Tensor& on_gpu, const Tensor& on_cpu) {
  return cumtl_test::error_over_scale(cumtl_test::widened(on_gpu.to(gpu, Device::cpu())).to_vector<float>(),
                                      cumtl_test::widened(on_cpu).to_vector<float>());
}

}  // namespace

TEST_SUITE("convolution") {
  TEST_CASE_TEMPLATE("convolution: cuDNN in bf16 and f16 matches the CPU twin", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    const ScalarType half = cumtl::scalar_type_v<Half>;
    std::uint64_t seed = 70;
    for (const ConvOpCase& c : conv_cases) {
      CAPTURE(c.x);
      CAPTURE(c.w);
      const Tensor x = cumtl_test::random_tensor<Half>(c.x, seed++);
      const Tensor w = cumtl_test::random_tensor<Half>(c.w, seed++);
      const ConvShape shape = cumtl::ops::conv_shape("test", x, w, c.geometry);
      const Shape y_shape = cumtl::ops::conv_output_shape(shape);
      const Tensor dy = cumtl_test::random_tensor<Half>(y_shape, seed++);
      const Tensor initial = cumtl_test::random_tensor<Half>(c.w, seed++);
      const Tensor x_gpu = x.to(gpu, gpu.device()), w_gpu = w.to(gpu, gpu.device()), dy_gpu = dy.to(gpu, gpu.device());

      Tensor y = Tensor::empty(y_shape, half), y_gpu = Tensor::empty(gpu, y_shape, half);
      cumtl::ops::conv2d_forward(cpu, x, w, c.geometry, y);
      cumtl::ops::conv2d_forward(gpu, x_gpu, w_gpu, c.geometry, y_gpu);
      CHECK(error<Half>(gpu, y_gpu, y) <= tolerance<Half>());

      Tensor dx = Tensor::empty(c.x, half), dx_gpu = Tensor::empty(gpu, c.x, half);
      cumtl::ops::conv2d_backward_data(cpu, dy, w, c.geometry, dx);
      cumtl::ops::conv2d_backward_data(gpu, dy_gpu, w_gpu, c.geometry, dx_gpu);
      CHECK(error<Half>(gpu, dx_gpu, dx) <= tolerance<Half>());

      Tensor dw = Tensor::empty(c.w, half), dw_gpu = Tensor::empty(gpu, c.w, half);
      cumtl::ops::conv2d_backward_filter(cpu, x, dy, c.geometry, dw, GradientMode::overwrite);
      cumtl::ops::conv2d_backward_filter(gpu, x_gpu, dy_gpu, c.geometry, dw_gpu, GradientMode::overwrite);
      CHECK(error<Half>(gpu, dw_gpu, dw) <= tolerance<Half>());

      Tensor accumulated = initial.to(Device::cpu()), accumulated_gpu = initial.to(gpu, gpu.device());
      cumtl::ops::conv2d_backward_filter(cpu, x, dy, c.geometry, accumulated, GradientMode::accumulate);
      cumtl::ops::conv2d_backward_filter(gpu, x_gpu, dy_gpu, c.geometry, accumulated_gpu, GradientMode::accumulate);
      CHECK(error<Half>(gpu, accumulated_gpu, accumulated) <= 2 * tolerance<Half>());
    }
  }

  TEST_CASE("convolution: float64 on the GPU is refused with the types cuDNN takes") {
    Context gpu(Device::cuda(0));
    const Tensor x = Tensor::zeros(gpu, Shape{1, 4, 4, 2}, ScalarType::f64);
    const Tensor w = Tensor::zeros(gpu, Shape{3, 3, 3, 2}, ScalarType::f64);
    Tensor y = Tensor::empty(gpu, Shape{1, 2, 2, 3}, ScalarType::f64);
    CHECK_ERROR_WITH(cumtl::ops::conv2d_forward(gpu, x, w, {}, y), "ops::conv2d_forward",
                     "float32, bfloat16 or float16", "float64");
  }
}
