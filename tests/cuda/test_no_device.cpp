// The CUDA build on a machine without a usable GPU: ctest runs this binary with
// CUDA_VISIBLE_DEVICES=-1, so it checks the same answers on GPU machines too.
// A host-compiled file: the backend comes from the implementation unit.
// Asking for GPU memory must throw a cumtl::Error that says why, never crash.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "../support/testing.hpp"

using cumtl::Device;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

TEST_SUITE("cuda-no-device") {
  TEST_CASE("no device: cuda_available answers false with a reason") {
    CHECK(cumtl::cuda_backend_linked());
    CHECK_FALSE(cumtl::cuda_available());
    CHECK(cumtl::cuda_device_count() == 0);
    CHECK_FALSE(cumtl::cuda_unavailable_reason().empty());
  }

  TEST_CASE("no device: asking for GPU memory throws a cumtl::Error saying so") {
    CHECK_ERROR_WITH(Tensor::empty(Shape{2, 2}, ScalarType::f32, Device::cuda()), "cannot use cuda:0",
                     "the CUDA backend is linked, but no GPU is usable", "hint: ");
    CHECK_ERROR_WITH(cumtl::Context(Device::cuda(0)), "no GPU is usable");
    CHECK_ERROR_WITH(cumtl::Context::default_for(Device::cuda(0)), "no GPU is usable");
    CHECK_ERROR_WITH(Tensor::pinned(Shape{2}, ScalarType::f32), "no GPU is usable");
  }

  TEST_CASE("no device: the CPU backend still works in a CUDA build") {
    cumtl::Context ctx;
    Tensor values = Tensor::from_vector<float>({1, 2, 3}, Shape{3});
    cumtl::ops::scale(ctx, values, 2);
    CHECK(values.to_vector<float>() == std::vector<float>{2, 4, 6});
  }

}  // TEST_SUITE
