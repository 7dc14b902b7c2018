// The CUDA side of the core as CUDA code sees it: a context's stream and
// library handles (cuBLAS's math mode), a caller's stream, launch checks,
// device memory and its pool. Compiled by nvcc (it includes the backend's own
// headers); needs a GPU.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "cumtl/core/device_pool.hpp"
#include "cumtl/core/precision.hpp"
#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/elementwise.cuh"

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

TEST_SUITE("cuda") {
  TEST_CASE("context and handles and device query") {
    CHECK(cumtl::cuda_device_count() >= 1);
    CHECK(cumtl::cuda_unavailable_reason().empty());
    Context ctx(Device::cuda(0));
    CHECK(ctx.multiprocessor_count() > 0);
    CHECK(ctx.stream() != nullptr);
    CHECK(cumtl::cuda::cudnn_handle(ctx) != nullptr);
    CHECK(cumtl::cuda::cublas_handle(ctx) != nullptr);
    CHECK(cumtl::cuda::cudnn_handle(ctx) == cumtl::cuda::cudnn_handle(ctx));  // created once
    CHECK_ERROR_WITH(Context(Device::cuda(cumtl::cuda_device_count())), "this process sees");
  }

  TEST_CASE("the compute capability is the runtime's, and auto precision follows it") {
    cudaDeviceProp properties{};
    REQUIRE(cudaGetDeviceProperties(&properties, 0) == cudaSuccess);
    const int capability = cumtl::detail::cuda_backend().compute_capability(0);
    CHECK(capability == properties.major * 10 + properties.minor);
    CHECK(cumtl::choose_precision("auto", Device::cuda(0)) == cumtl::auto_precision(capability, false));
    CHECK(cumtl::choose_precision("auto", Device::cuda(0), /*deterministic=*/true) == cumtl::precision_fp32);
    CHECK_ERROR_WITH(cumtl::detail::cuda_backend().compute_capability(cumtl::cuda_device_count()),
                     "cudaDevAttrComputeCapabilityMajor", "cudaErrorInvalidDevice");
  }

  TEST_CASE("a context on the caller's stream enqueues there") {
    cudaStream_t stream = nullptr;
    REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
    {
      Context ctx(Device::cuda(0), stream);
      CHECK(ctx.stream() == stream);
      Tensor values = Tensor::empty(ctx, Shape{1000}, ScalarType::f32);
      cumtl::ops::fill(ctx, values, 3);
      cumtl::ops::scale(ctx, values, 2);
      REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
      std::vector<float> host(1000);
      REQUIRE(cudaMemcpy(host.data(), values.raw_data(), 4000, cudaMemcpyDeviceToHost) == cudaSuccess);
      CHECK(host == std::vector<float>(1000, 6.0f));
    }
    CHECK(cudaStreamDestroy(stream) == cudaSuccess);  // cumtl did not destroy the borrowed stream
  }

  TEST_CASE("failures name the call and the status") {
    Context ctx(Device::cuda(0));
    // 1 PiB: what was asked, what the device and cumtl's pool have, and what to change.
    CHECK_ERROR_WITH(Tensor::empty(ctx, Shape{std::int64_t(1) << 48}, ScalarType::f32),
                     "allocating 1125899906842624 bytes (1.0 PiB) on cuda:0 failed: cudaErrorMemoryAllocation",
                     "; the device has ", " free of ", "; cumtl's memory pool on it has ", " in use and ", " reserved",
                     "hint: the GPU is out of memory: reduce the batch size", "The pool keeps up to ",
                     "CUMTL_POOL_RELEASE_THRESHOLD");
    // 2048 threads per block is past every GPU's limit: the launch itself fails.
    Tensor target = Tensor::empty(ctx, Shape{4}, ScalarType::f32);
    cumtl::kernels::fill_kernel<float><<<1, 2048, 0, ctx.stream()>>>(target.data<float>(), 4, 1.0f);
    CHECK_ERROR_WITH(CUMTL_CHECK_LAUNCH(ctx, "fill_kernel"), "launch of fill_kernel", "cudaErrorInvalidConfiguration");
    // The error was cleared: the context still works.
    Tensor values = Tensor::empty(ctx, Shape{3}, ScalarType::f32);
    cumtl::ops::fill(ctx, values, 1);
    CHECK(values.to_vector<float>(ctx) == std::vector<float>(3, 1.0f));
  }

  TEST_CASE("the workspace grows on the device") {
    Context ctx(Device::cuda(0));
    void* block = ctx.workspace().reserve(1 << 20);
    ctx.synchronize();  // the stream-ordered allocation has happened
    CHECK(ctx.workspace().capacity() >= (1u << 20));
    cudaPointerAttributes attributes{};
    REQUIRE(cudaPointerGetAttributes(&attributes, block) == cudaSuccess);
    CHECK(attributes.type == cudaMemoryTypeDevice);
    CHECK(ctx.workspace().reserve(100) == block);
  }

  TEST_CASE("the device pool keeps freed memory up to the configured release threshold") {
    Context ctx(Device::cuda(0));
    (void)Tensor::empty(ctx, Shape{256}, ScalarType::f32);  // the first allocation on a device sets its pool up
    cudaMemPool_t pool = nullptr;
    REQUIRE(cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess);
    std::uint64_t threshold = 0;
    REQUIRE(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) == cudaSuccess);
    cudaDeviceProp properties{};
    REQUIRE(cudaGetDeviceProperties(&properties, 0) == cudaSuccess);
    CHECK(threshold == cumtl::detail::pool_release_threshold_from_environment().bytes_for(properties.totalGlobalMem));
    if (std::getenv("CUMTL_POOL_RELEASE_THRESHOLD") == nullptr) CHECK(threshold < properties.totalGlobalMem);
  }

  TEST_CASE("cuBLAS follows the context's TF32 policy, and fp32 without TF32 matches the CPU twin") {
    Context cpu;
    Context gpu(Device::cuda(0));
    // Sums over 512 terms: TF32's 10-bit mantissa would leave errors near 1e-3 of the scale, fp32's near 1e-6.
    constexpr std::int64_t n = 512, in = 512, out = 512;
    const Tensor x = cumtl_test::random_tensor<float>(Shape{n, in}, 31, -1, 1);
    const Tensor w = cumtl_test::random_tensor<float>(Shape{out, in}, 32, -1, 1);
    const Tensor dy = cumtl_test::random_tensor<float>(Shape{n, out}, 33, -1, 1);
    const Tensor x_gpu = x.to(gpu, gpu.device()), w_gpu = w.to(gpu, gpu.device()), dy_gpu = dy.to(gpu, gpu.device());
    Tensor y = Tensor::empty(Shape{n, out}, ScalarType::f32);
    Tensor y_gpu = Tensor::empty(gpu, Shape{n, out}, ScalarType::f32);
    const auto math_mode = [&gpu] {
      cublasMath_t mode{};
      REQUIRE(gpu.library_handles().cublas != nullptr);
      REQUIRE(cublasGetMathMode(static_cast<cublasHandle_t>(gpu.library_handles().cublas), &mode) ==
              CUBLAS_STATUS_SUCCESS);
      return mode;
    };

    REQUIRE(gpu.numerics().allow_tf32);  // the default
    cumtl::ops::linear_forward(gpu, x_gpu, w_gpu, Tensor(), y_gpu);
    CHECK(math_mode() == CUBLAS_TF32_TENSOR_OP_MATH);

    // Changed after the handle was made: the next product follows.
    gpu.numerics().allow_tf32 = false;
    cumtl::ops::linear_forward(cpu, x, w, Tensor(), y);
    cumtl::ops::linear_forward(gpu, x_gpu, w_gpu, Tensor(), y_gpu);
    CHECK(math_mode() == CUBLAS_DEFAULT_MATH);
    CHECK(cumtl_test::error_over_scale(y_gpu.to_vector<float>(gpu), y.to_vector<float>()) < 1e-5);
    // The backward products are cuBLAS calls of their own.
    Tensor dx = Tensor::empty(Shape{n, in}, ScalarType::f32), dw = Tensor::empty(Shape{out, in}, ScalarType::f32);
    Tensor dx_gpu = Tensor::empty(gpu, Shape{n, in}, ScalarType::f32);
    Tensor dw_gpu = Tensor::empty(gpu, Shape{out, in}, ScalarType::f32), no_bias;
    cumtl::ops::linear_backward(cpu, dy, x, w, dx, dw, no_bias, cumtl::GradientMode::overwrite);
    cumtl::ops::linear_backward(gpu, dy_gpu, x_gpu, w_gpu, dx_gpu, dw_gpu, no_bias, cumtl::GradientMode::overwrite);
    CHECK(cumtl_test::error_over_scale(dx_gpu.to_vector<float>(gpu), dx.to_vector<float>()) < 1e-5);
    CHECK(cumtl_test::error_over_scale(dw_gpu.to_vector<float>(gpu), dw.to_vector<float>()) < 1e-5);

    gpu.numerics().allow_tf32 = true;
    cumtl::ops::linear_forward(gpu, x_gpu, w_gpu, Tensor(), y_gpu);
    CHECK(math_mode() == CUBLAS_TF32_TENSOR_OP_MATH);
    // Deterministic mode asks nothing of cuBLAS's math mode (cuda/launch.hpp).
    gpu.numerics().deterministic = true;
    cumtl::ops::linear_forward(gpu, x_gpu, w_gpu, Tensor(), y_gpu);
    CHECK(math_mode() == CUBLAS_TF32_TENSOR_OP_MATH);
  }

}  // TEST_SUITE
