// Every CUDA operation against its CPU twin, through the facades and the
// backend table from a host-compiled file. Needs a GPU. The CUDA side of the
// core seen from CUDA code (streams, handles, launch checks) is test_backend.cu.
#include <cstdint>
#include <vector>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

const std::vector<std::int64_t> awkward_sizes{0, 1, 7, 255, 257, 1000, (1 << 20) + 3};

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE_TEMPLATE("tensors round trip through the GPU", T, float, double) {
    Context ctx(Device::cuda(0));
    for (std::int64_t count : awkward_sizes) {
      CAPTURE(count);
      const Tensor host = cumtl_test::random_tensor<T>(Shape{count}, 1);
      const Tensor device = host.to(ctx, ctx.device());
      CHECK(device.device() == Device::cuda(0));
      CHECK(device.to_vector<T>(ctx) == host.to_vector<T>());

      Tensor pinned = Tensor::pinned(Shape{count}, cumtl::scalar_type_v<T>);
      CHECK(pinned.is_pinned());
      cumtl::ops::copy(ctx, pinned, device);
      ctx.synchronize();
      CHECK(pinned.to_vector<T>() == host.to_vector<T>());
    }
    const Tensor host = cumtl_test::random_tensor<T>(Shape{40}, 2);
    const Tensor device = host.view(Shape{10, 4}).to(ctx, ctx.device());
    CHECK(device.slice(3, 7).to_vector<T>(ctx) == host.view(Shape{10, 4}).slice(3, 7).to_vector<T>());
    const Tensor zeros = Tensor::zeros(ctx, Shape{5, 3}, cumtl::scalar_type_v<T>);
    CHECK(zeros.to_vector<T>(ctx) == std::vector<T>(15, T(0)));
  }

  TEST_CASE_TEMPLATE("elementwise ops match their CPU twins", T, float, double) {
    Context cpu;
    Context gpu(Device::cuda(0));
    for (std::int64_t count : awkward_sizes) {
      CAPTURE(count);
      const Tensor x = cumtl_test::random_tensor<T>(Shape{count}, 10),
                   y = cumtl_test::random_tensor<T>(Shape{count}, 11);
      const Tensor x_gpu = x.to(gpu, gpu.device());
      Tensor y_gpu = y.to(gpu, gpu.device());
      Tensor y_cpu = y.to(Device::cpu());
      Tensor out_cpu = Tensor::empty(x.shape(), x.dtype());
      Tensor out_gpu = Tensor::empty(gpu, x.shape(), x.dtype());

      cumtl::ops::fill(cpu, out_cpu, -1.25);
      cumtl::ops::fill(gpu, out_gpu, -1.25);
      CHECK(out_gpu.to_vector<T>(gpu) == out_cpu.to_vector<T>());

      cumtl::ops::add(cpu, x, y_cpu, out_cpu);
      cumtl::ops::add(gpu, x_gpu, y_gpu, out_gpu);
      CHECK(out_gpu.to_vector<T>(gpu) == out_cpu.to_vector<T>());

      cumtl::ops::scale(cpu, out_cpu, 0.3);
      cumtl::ops::scale(gpu, out_gpu, 0.3);
      CHECK(out_gpu.to_vector<T>(gpu) == out_cpu.to_vector<T>());

      // The GPU fuses a*x+y into one rounding, the CPU twin may round twice; errors are relative
      // to max(|expected|, 1) since cancellation near zero leaves an absolute error of an operand's ulp.
      cumtl::ops::axpy(cpu, 0.7, x, y_cpu);
      cumtl::ops::axpy(gpu, 0.7, x_gpu, y_gpu);
      CHECK(cumtl_test::max_relative_error(y_gpu.to_vector<T>(gpu), y_cpu.to_vector<T>(), 1.0) <
            (sizeof(T) == 4 ? 1e-6 : 1e-14));
    }
  }

  TEST_CASE_TEMPLATE("random fills match the CPU for the same seed", T, float, double) {
    Context cpu;
    Context gpu(Device::cuda(0));
    for (std::int64_t count : awkward_sizes) {
      CAPTURE(count);
      Tensor on_cpu = Tensor::empty(Shape{count}, cumtl::scalar_type_v<T>);
      Tensor on_gpu = Tensor::empty(gpu, Shape{count}, cumtl::scalar_type_v<T>);
      Generator cpu_generator(99, 5), gpu_generator(99, 5);
      cumtl::ops::uniform(cpu, on_cpu, cpu_generator, -3, 4);
      cumtl::ops::uniform(gpu, on_gpu, gpu_generator, -3, 4);
      CHECK(on_gpu.to_vector<T>(gpu) == on_cpu.to_vector<T>());  // bit for bit

      // Normal draws go through log and cos, which may differ in a double's last bit.
      cumtl::ops::normal(cpu, on_cpu, cpu_generator, 1, 2);
      cumtl::ops::normal(gpu, on_gpu, gpu_generator, 1, 2);
      CHECK(cumtl_test::max_relative_error(on_gpu.to_vector<T>(gpu), on_cpu.to_vector<T>(), 1.0) <
            (sizeof(T) == 4 ? 2.5e-7 : 1e-14));
      CHECK(gpu_generator == cpu_generator);
    }
  }

  TEST_CASE("tensors on another device than the context are refused") {
    Context gpu(Device::cuda(0));
    Context cpu;
    const Tensor host = Tensor::zeros(Shape{4}, ScalarType::f32);
    Tensor device = Tensor::zeros(gpu, Shape{4}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::add(gpu, host, device, device), "ops::add", "'a' is float32[4] on cpu",
                     "context is on cuda:0");
    CHECK_ERROR_WITH(cumtl::ops::fill(cpu, device, 1), "ops::fill", "on cuda:0", "context is on cpu");
    CHECK_ERROR_WITH(host.to(cpu, Device::cuda(0)), "needs a context on cuda:0");
  }

}  // TEST_SUITE
