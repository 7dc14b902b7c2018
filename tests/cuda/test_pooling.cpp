// Pooling on the GPU against the CPU twin: max pooling and its argmax and
// gradient bit for bit (the gather does the same sums in the same order),
// average and global average pooling to a relative 1e-6. Needs a GPU.
#include <cstdint>
#include <type_traits>
#include <vector>

#include <cumtl/ops/pooling.hpp>
#include "../support/pool_cases.hpp"
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl::ops::Pool2d;

using cumtl_test::PoolCase;
using cumtl_test::pooled;

namespace {

// 1×1 spatial, batch 1, C not a multiple of 4, an empty batch, odd sizes, and
// the ResNet stem's pooling at full size (112×112×64).
const std::vector<PoolCase> pool_cases{
    {Shape{1, 1, 1, 3}, Pool2d{3, 3, 2, 2, 1, 1}},
    {Shape{1, 1, 1, 1}, Pool2d{1, 1, 1, 1}},
    {Shape{2, 7, 9, 5}, Pool2d{3, 3, 2, 2, 1, 1}},
    {Shape{3, 8, 8, 3}, Pool2d{2, 2, 2, 2}},
    {Shape{1, 13, 11, 7}, Pool2d{3, 2, 2, 1, 1, 1}},
    {Shape{2, 9, 4, 33}, Pool2d{4, 2, 3, 1, 2, 0}},
    {Shape{0, 4, 4, 3}, Pool2d{2, 2, 2, 2}},
    {Shape{2, 56, 56, 67}, Pool2d{2, 2, 2, 2}},
    {Shape{4, 112, 112, 64}, Pool2d{3, 3, 2, 2, 1, 1}},
};

// The sums' last bits may differ between the GPU and the CPU; a 2-byte result, rounded from such a float, may then
// be one unit in its last place off (2^-7 relative for bfloat16, 2^-10 for float16).
template <class T>
double relative_tolerance() {
  if constexpr (std::is_same_v<T, cumtl::bfloat16_t>) return 0x1p-7;
  if constexpr (std::is_same_v<T, cumtl::float16_t>) return 0x1p-10;
  return sizeof(T) == 4 ? 1e-6 : 1e-14;
}

}  // namespace

TEST_SUITE("pooling") {
  TEST_CASE_TEMPLATE("pooling: max pool on the GPU equals the CPU twin", T, float, double, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    std::uint64_t seed = 1;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      const Tensor x = cumtl_test::random_tensor<T>(c.x, seed++);
      const Tensor dy = cumtl_test::random_tensor<T>(pooled(c), seed++);
      Tensor y = Tensor::empty(pooled(c), x.dtype()), argmax = Tensor::empty(pooled(c), ScalarType::i32);
      Tensor dx = Tensor::empty(c.x, x.dtype());
      cumtl::ops::max_pool2d_forward(cpu, x, c.pool, y, argmax);
      cumtl::ops::max_pool2d_backward(cpu, dy, argmax, c.pool, dx);

      const Tensor x_gpu = x.to(gpu, gpu.device()), dy_gpu = dy.to(gpu, gpu.device());
      Tensor y_gpu = Tensor::empty(gpu, pooled(c), x.dtype());
      Tensor argmax_gpu = Tensor::empty(gpu, pooled(c), ScalarType::i32);
      Tensor dx_gpu = Tensor::empty(gpu, c.x, x.dtype());
      cumtl::ops::max_pool2d_forward(gpu, x_gpu, c.pool, y_gpu, argmax_gpu);
      cumtl::ops::max_pool2d_backward(gpu, dy_gpu, argmax_gpu, c.pool, dx_gpu);
      CHECK(y_gpu.to_vector<T>(gpu) == y.to_vector<T>());
      CHECK(argmax_gpu.to_vector<std::int32_t>(gpu) == argmax.to_vector<std::int32_t>());
      CHECK(dx_gpu.to_vector<T>(gpu) == dx.to_vector<T>());
    }
  }

  TEST_CASE("pooling: max pool ties pick the same element on the GPU") {
    Context cpu;
    Context gpu(Device::cuda(0));
    // Few distinct values: most windows hold their maximum several times.
    const Shape shape{2, 15, 17, 6};
    std::vector<float> values(std::size_t(shape.numel()));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = float((i * 7919) % 3);
    const Tensor x = Tensor::from_vector(values, shape);
    const Pool2d stem{3, 3, 2, 2, 1, 1};
    const Shape out{2, stem.out_h(15), stem.out_w(17), 6};
    Tensor y = Tensor::empty(out, ScalarType::f32), argmax = Tensor::empty(out, ScalarType::i32);
    cumtl::ops::max_pool2d_forward(cpu, x, stem, y, argmax);
    const Tensor x_gpu = x.to(gpu, gpu.device());
    Tensor y_gpu = Tensor::empty(gpu, out, ScalarType::f32), argmax_gpu = Tensor::empty(gpu, out, ScalarType::i32);
    cumtl::ops::max_pool2d_forward(gpu, x_gpu, stem, y_gpu, argmax_gpu);
    CHECK(argmax_gpu.to_vector<std::int32_t>(gpu) == argmax.to_vector<std::int32_t>());
    CHECK(y_gpu.to_vector<float>(gpu) == y.to_vector<float>());
  }

  TEST_CASE_TEMPLATE("pooling: avg pool on the GPU matches the CPU twin", T, float, double, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    std::uint64_t seed = 100;
    for (const PoolCase& c : pool_cases) {
      CAPTURE(c.x);
      CAPTURE(cumtl::detail::pooling::describe(c.pool));
      const Tensor x = cumtl_test::random_tensor<T>(c.x, seed++);
      const Tensor dy = cumtl_test::random_tensor<T>(pooled(c), seed++);
      Tensor y = Tensor::empty(pooled(c), x.dtype()), dx = Tensor::empty(c.x, x.dtype());
      cumtl::ops::avg_pool2d_forward(cpu, x, c.pool, y);
      cumtl::ops::avg_pool2d_backward(cpu, dy, c.pool, dx);

      const Tensor x_gpu = x.to(gpu, gpu.device()), dy_gpu = dy.to(gpu, gpu.device());
      Tensor y_gpu = Tensor::empty(gpu, pooled(c), x.dtype()), dx_gpu = Tensor::empty(gpu, c.x, x.dtype());
      cumtl::ops::avg_pool2d_forward(gpu, x_gpu, c.pool, y_gpu);
      cumtl::ops::avg_pool2d_backward(gpu, dy_gpu, c.pool, dx_gpu);
      CHECK(cumtl_test::max_relative_error(y_gpu.to_vector<T>(gpu), y.to_vector<T>(), 1.0) < relative_tolerance<T>());
      CHECK(cumtl_test::max_relative_error(dx_gpu.to_vector<T>(gpu), dx.to_vector<T>(), 1.0) < relative_tolerance<T>());
    }
  }

  TEST_CASE_TEMPLATE("pooling: global average pool on the GPU matches the CPU twin", T, float, double,
                     cumtl::bfloat16_t, cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    std::uint64_t seed = 200;
    for (const Shape& shape : {Shape{1, 1, 1, 3}, Shape{3, 5, 3, 1}, Shape{2, 7, 7, 2048}, Shape{1, 112, 112, 64},
                               Shape{0, 7, 7, 8}, Shape{5, 7, 7, 37}}) {
      CAPTURE(shape);
      const Shape pooled_shape{shape[0], shape[3]};
      const Tensor x = cumtl_test::random_tensor<T>(shape, seed++);
      const Tensor dy = cumtl_test::random_tensor<T>(pooled_shape, seed++);
      Tensor y = Tensor::empty(pooled_shape, x.dtype()), dx = Tensor::empty(shape, x.dtype());
      cumtl::ops::global_avg_pool_forward(cpu, x, y);
      cumtl::ops::global_avg_pool_backward(cpu, dy, dx);

      const Tensor x_gpu = x.to(gpu, gpu.device()), dy_gpu = dy.to(gpu, gpu.device());
      Tensor y_gpu = Tensor::empty(gpu, pooled_shape, x.dtype()), dx_gpu = Tensor::empty(gpu, shape, x.dtype());
      cumtl::ops::global_avg_pool_forward(gpu, x_gpu, y_gpu);
      cumtl::ops::global_avg_pool_backward(gpu, dy_gpu, dx_gpu);
      CHECK(cumtl_test::max_relative_error(y_gpu.to_vector<T>(gpu), y.to_vector<T>(), 1.0) < relative_tolerance<T>());
      CHECK(cumtl_test::max_relative_error(dx_gpu.to_vector<T>(gpu), dx.to_vector<T>(), 1.0) < relative_tolerance<T>());
    }
  }

  TEST_CASE("pooling: the GPU backward passes are deterministic") {
    Context gpu(Device::cuda(0));
    const PoolCase c{Shape{4, 112, 112, 64}, Pool2d{3, 3, 2, 2, 1, 1}};
    const Tensor x = cumtl_test::random_tensor<float>(c.x, 7).to(gpu, gpu.device());
    const Tensor dy = cumtl_test::random_tensor<float>(pooled(c), 8).to(gpu, gpu.device());
    Tensor y = Tensor::empty(gpu, pooled(c), ScalarType::f32), argmax = Tensor::empty(gpu, pooled(c), ScalarType::i32);
    cumtl::ops::max_pool2d_forward(gpu, x, c.pool, y, argmax);
    Tensor first = Tensor::empty(gpu, c.x, ScalarType::f32), second = Tensor::empty(gpu, c.x, ScalarType::f32);
    cumtl::ops::max_pool2d_backward(gpu, dy, argmax, c.pool, first);
    cumtl::ops::max_pool2d_backward(gpu, dy, argmax, c.pool, second);
    CHECK(first.to_vector<float>(gpu) == second.to_vector<float>(gpu));
    cumtl::ops::avg_pool2d_backward(gpu, dy, c.pool, first);
    cumtl::ops::avg_pool2d_backward(gpu, dy, c.pool, second);
    CHECK(first.to_vector<float>(gpu) == second.to_vector<float>(gpu));
  }

  TEST_CASE("pooling: tensors on another device than the context are refused") {
    Context gpu(Device::cuda(0));
    const Tensor host = Tensor::zeros(Shape{1, 4, 4, 3}, ScalarType::f32);
    Tensor y = Tensor::empty(gpu, Shape{1, 2, 2, 3}, ScalarType::f32);
    Tensor argmax = Tensor::empty(gpu, Shape{1, 2, 2, 3}, ScalarType::i32);
    CHECK_ERROR_WITH(cumtl::ops::max_pool2d_forward(gpu, host, Pool2d{2, 2, 2, 2}, y, argmax),
                     "ops::max_pool2d_forward", "'x' is float32[1, 4, 4, 3] on cpu", "context is on cuda:0");
    Tensor host_y = Tensor::zeros(Shape{1, 3}, ScalarType::f32);
    const Tensor device_x = Tensor::zeros(gpu, Shape{1, 4, 4, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::global_avg_pool_forward(gpu, device_x, host_y), "ops::global_avg_pool_forward",
                     "'y' is float32[1, 3] on cpu", "context is on cuda:0");
  }

}  // TEST_SUITE
