// The CUDA side of the core as CUDA code sees it: a context's stream and
// library handles, a caller's stream, launch checks, device memory. Compiled
// by nvcc (it includes the backend's own headers); needs a GPU.
#include <cstdint>
#include <vector>

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
    CHECK_ERROR_WITH(Tensor::empty(ctx, Shape{std::int64_t(1) << 50}, ScalarType::f32), "allocating", "bytes on cuda:0",
                     "cudaErrorMemoryAllocation", "hint: the GPU is out of memory");
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

}  // TEST_SUITE
