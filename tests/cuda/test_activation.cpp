// ReLU and dropout on the GPU against the CPU twin, bit for bit, in fp32,
// fp64, bf16 and f16: ReLU is a select, the dropout mask is a function of
// (seed, counter) on both devices, and a 2-byte dropout rounds x·scale once on
// both. Needs a GPU.
#include <cstdint>
#include <vector>

#include <cumtl/ops/activation.hpp>
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl::ops::DropoutMask;

namespace {

// Empty, tiny, around a block of 256, and the ResNet stem's activation (4×112×112×64).
const std::vector<Shape> awkward_shapes{Shape{0},
                                        Shape{1},
                                        Shape{7},
                                        Shape{1, 1, 1, 3},
                                        Shape{255},
                                        Shape{257},
                                        Shape{2, 13, 11, 5},
                                        Shape{(1 << 20) + 3},
                                        Shape{4, 112, 112, 64}};

}  // namespace

TEST_SUITE("activation") {
  TEST_CASE_TEMPLATE("activation: relu on the GPU equals the CPU twin", T, float, double, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    std::uint64_t seed = 1;
    for (const Shape& shape : awkward_shapes) {
      CAPTURE(shape);
      const Tensor x = cumtl_test::random_tensor<T>(shape, seed++), dy = cumtl_test::random_tensor<T>(shape, seed++);
      Tensor y = Tensor::empty(shape, x.dtype()), dx = Tensor::empty(shape, x.dtype());
      cumtl::ops::relu_forward(cpu, x, y);
      cumtl::ops::relu_backward(cpu, dy, y, dx);

      const Tensor x_gpu = x.to(gpu, gpu.device()), dy_gpu = dy.to(gpu, gpu.device());
      Tensor y_gpu = Tensor::empty(gpu, shape, x.dtype()), dx_gpu = Tensor::empty(gpu, shape, x.dtype());
      cumtl::ops::relu_forward(gpu, x_gpu, y_gpu);
      cumtl::ops::relu_backward(gpu, dy_gpu, y_gpu, dx_gpu);
      CHECK(y_gpu.to_vector<T>(gpu) == y.to_vector<T>());
      CHECK(dx_gpu.to_vector<T>(gpu) == dx.to_vector<T>());

      // In place on the GPU: y over x, then dx over dy.
      Tensor in_place = x.to(gpu, gpu.device()), gradient = dy.to(gpu, gpu.device());
      cumtl::ops::relu_forward(gpu, in_place, in_place);
      cumtl::ops::relu_backward(gpu, gradient, in_place, gradient);
      CHECK(in_place.to_vector<T>(gpu) == y.to_vector<T>());
      CHECK(gradient.to_vector<T>(gpu) == dx.to_vector<T>());
    }
  }

  TEST_CASE_TEMPLATE("activation: dropout mask on the GPU is bit-identical to the CPU mask", T, float, double,
                     cumtl::bfloat16_t, cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    std::uint64_t seed = 50;
    for (const Shape& shape : awkward_shapes) {
      for (double p : {0.0, 0.1, 0.5, 0.9}) {
        CAPTURE(shape);
        CAPTURE(p);
        const Tensor x = cumtl_test::random_tensor<T>(shape, seed++), dy = cumtl_test::random_tensor<T>(shape, seed++);
        Generator cpu_generator(1234, 99), gpu_generator(1234, 99);
        Tensor y = Tensor::empty(shape, x.dtype()), dx = Tensor::empty(shape, x.dtype());
        const DropoutMask cpu_mask = cumtl::ops::dropout_forward(cpu, x, p, cpu_generator, y);
        cumtl::ops::dropout_backward(cpu, dy, cpu_mask, dx);

        const Tensor x_gpu = x.to(gpu, gpu.device()), dy_gpu = dy.to(gpu, gpu.device());
        Tensor y_gpu = Tensor::empty(gpu, shape, x.dtype()), dx_gpu = Tensor::empty(gpu, shape, x.dtype());
        const DropoutMask gpu_mask = cumtl::ops::dropout_forward(gpu, x_gpu, p, gpu_generator, y_gpu);
        cumtl::ops::dropout_backward(gpu, dy_gpu, gpu_mask, dx_gpu);
        CHECK(gpu_mask.seed == cpu_mask.seed);
        CHECK(gpu_mask.offset == cpu_mask.offset);
        CHECK(gpu_generator == cpu_generator);
        CHECK(y_gpu.to_vector<T>(gpu) == y.to_vector<T>());
        CHECK(dx_gpu.to_vector<T>(gpu) == dx.to_vector<T>());
      }
    }
  }

  TEST_CASE("activation: in-place dropout on the GPU equals out of place") {
    Context gpu(Device::cuda(0));
    const Tensor x = cumtl_test::random_tensor<float>(Shape{3, 17, 19, 5}, 7).to(gpu, gpu.device());
    Tensor y = Tensor::empty(gpu, x.shape(), ScalarType::f32);
    Generator generator(8), replay(8);
    const DropoutMask mask = cumtl::ops::dropout_forward(gpu, x, 0.3, generator, y);
    Tensor in_place = x.to(gpu, gpu.device());
    cumtl::ops::dropout_forward(gpu, in_place, 0.3, replay, in_place);
    CHECK(in_place.to_vector<float>(gpu) == y.to_vector<float>(gpu));
    Tensor dx = Tensor::empty(gpu, x.shape(), ScalarType::f32);
    cumtl::ops::dropout_backward(gpu, x, mask, dx);
    Tensor gradient = x.to(gpu, gpu.device());
    cumtl::ops::dropout_backward(gpu, gradient, mask, gradient);
    CHECK(gradient.to_vector<float>(gpu) == dx.to_vector<float>(gpu));
  }

  TEST_CASE("activation: tensors on another device than the context are refused") {
    Context gpu(Device::cuda(0));
    const Tensor host = Tensor::zeros(Shape{4}, ScalarType::f32);
    Tensor device = Tensor::zeros(gpu, Shape{4}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::relu_forward(gpu, host, device), "ops::relu_forward", "'x' is float32[4] on cpu",
                     "context is on cuda:0");
    Generator generator(1);
    Tensor host_y = Tensor::zeros(Shape{4}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::dropout_forward(gpu, device, 0.5, generator, host_y), "ops::dropout_forward",
                     "'y' is float32[4] on cpu", "context is on cuda:0");
  }

}  // TEST_SUITE
