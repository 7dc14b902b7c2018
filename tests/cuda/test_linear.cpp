// The linear operations in bf16 and f16 on the GPU (cublasGemmEx, fp32
// accumulation; the bias kernels) against the CPU twin. Needs a GPU.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::GradientMode;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

struct LinearCase {
  std::int64_t n, in, out;
};

// Heads of the multi-task model, odd sizes, a large batch whose bias
// gradient takes several row blocks, and no rows.
const std::vector<LinearCase> linear_cases{{8, 512, 7}, {64, 2048, 12}, {5, 33, 12},
                                           {1, 3, 1},   {4096, 64, 40}, {0, 4, 3}};

template <class Half>
double error(Context& gpu, const Tensor& on_gpu, const Tensor& on_cpu) {
  return cumtl_test::error_over_scale(on_gpu.to_vector<Half>(gpu), on_cpu.to_vector<Half>());
}

}  // namespace

TEST_SUITE("linear") {
  // Each device rounds an fp32 (or, for the bias gradient, double and float)
  // sum once; the sums differ only in order, so results are at most one ulp
  // of the result's scale apart (2^-7 for bf16, 2^-10 for f16), plus the sums' own difference.
  TEST_CASE_TEMPLATE("linear: cuBLAS in bf16 and f16 matches the CPU twin", Half, cumtl::bfloat16_t, cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    const ScalarType half = cumtl::scalar_type_v<Half>;
    const double tolerance = (std::is_same_v<Half, cumtl::bfloat16_t> ? 0x1p-7 : 0x1p-10) + 1e-4;
    std::uint64_t seed = 600;
    for (const LinearCase& c : linear_cases) {
      CAPTURE(c.n);
      CAPTURE(c.in);
      CAPTURE(c.out);
      const Shape x_shape{c.n, c.in}, weight_shape{c.out, c.in}, y_shape{c.n, c.out};
      const Tensor x = cumtl_test::random_tensor<Half>(x_shape, seed++);
      const Tensor weight = cumtl_test::random_tensor<Half>(weight_shape, seed++);
      const Tensor bias = cumtl_test::random_tensor<Half>(Shape{c.out}, seed++);
      const Tensor dy = cumtl_test::random_tensor<Half>(y_shape, seed++);
      const Tensor initial = cumtl_test::random_tensor<Half>(weight_shape, seed++);
      const Tensor x_gpu = x.to(gpu, gpu.device()), weight_gpu = weight.to(gpu, gpu.device());
      const Tensor bias_gpu = bias.to(gpu, gpu.device()), dy_gpu = dy.to(gpu, gpu.device());

      Tensor y = Tensor::empty(y_shape, half), y_gpu = Tensor::empty(gpu, y_shape, half);
      cumtl::ops::linear_forward(cpu, x, weight, bias, y);
      cumtl::ops::linear_forward(gpu, x_gpu, weight_gpu, bias_gpu, y_gpu);
      CHECK(error<Half>(gpu, y_gpu, y) <= tolerance);

      Tensor dx = Tensor::empty(x_shape, half), dx_gpu = Tensor::empty(gpu, x_shape, half);
      Tensor dweight = initial.to(Device::cpu()), dweight_gpu = initial.to(gpu, gpu.device());
      Tensor dbias = Tensor::empty(Shape{c.out}, half), dbias_gpu = Tensor::empty(gpu, Shape{c.out}, half);
      cumtl::ops::linear_backward(cpu, dy, x, weight, dx, dweight, dbias, GradientMode::accumulate);
      cumtl::ops::linear_backward(gpu, dy_gpu, x_gpu, weight_gpu, dx_gpu, dweight_gpu, dbias_gpu,
                                  GradientMode::accumulate);
      CHECK(error<Half>(gpu, dx_gpu, dx) <= tolerance);
      CHECK(error<Half>(gpu, dweight_gpu, dweight) <= tolerance);

      cumtl::ops::bias_gradient(cpu, dy, dbias, GradientMode::overwrite);
      cumtl::ops::bias_gradient(gpu, dy_gpu, dbias_gpu, GradientMode::overwrite);
      CHECK(error<Half>(gpu, dbias_gpu, dbias) <= tolerance);
    }
  }
}
