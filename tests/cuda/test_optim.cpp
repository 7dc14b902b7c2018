// The CUDA optimizer updates against their CPU twins. Needs a GPU.
#include <cstdint>
#include <type_traits>
#include <vector>

#include <cumtl/optim/optimizer.hpp>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

// Half the elements decay: a mask of 0s and 1s from uniform [0, 2), rounded down.
Tensor random_mask(std::int64_t count, std::uint64_t seed) {
  std::vector<float> mask = cumtl_test::random_tensor<float>(Shape{count}, seed, 0, 2).to_vector<float>();
  for (float& m : mask) m = m >= 1 ? 1.0f : 0.0f;
  return Tensor::from_vector(mask, Shape{count});
}

}  // namespace

TEST_SUITE("optim") {
  TEST_CASE("optim: cuda sgd and adamw match the cpu twin over several steps") {
    Context cpu;
    Context gpu(Device::cuda(0));
    for (const std::int64_t count : {std::int64_t(0), std::int64_t(1), std::int64_t(257), std::int64_t(1000000)}) {
      CAPTURE(count);
      const Shape shape{count};
      const Tensor mask = random_mask(count, 1);
      const Tensor gpu_mask = mask.to(gpu, gpu.device());

      // SGD with Nesterov momentum and weight decay: CPU and GPU start from the same random state.
      Tensor values = cumtl_test::random_tensor<float>(shape, 2);
      Tensor buffer = Tensor::zeros(shape, ScalarType::f32);
      Tensor gpu_values = values.to(gpu, gpu.device());
      Tensor gpu_buffer = buffer.to(gpu, gpu.device());
      // AdamW: exp_avg_sq must stay >= 0, as it does from zeros.
      Tensor adam_values = cumtl_test::random_tensor<float>(shape, 3);
      Tensor m = Tensor::zeros(shape, ScalarType::f32), v = Tensor::zeros(shape, ScalarType::f32);
      Tensor gpu_adam_values = adam_values.to(gpu, gpu.device());
      Tensor gpu_m = m.to(gpu, gpu.device()), gpu_v = v.to(gpu, gpu.device());

      for (std::uint64_t step = 0; step < 4; ++step) {
        const Tensor gradients = cumtl_test::random_tensor<float>(shape, 100 + step);
        const Tensor gpu_gradients = gradients.to(gpu, gpu.device());
        const cumtl::SgdStep sgd{
            .lr = 0.05, .momentum = 0.9, .weight_decay = 1e-2, .nesterov = true, .first_step = step == 0};
        cumtl::ops::sgd_update(cpu, values, gradients, buffer, mask, sgd);
        cumtl::ops::sgd_update(gpu, gpu_values, gpu_gradients, gpu_buffer, gpu_mask, sgd);
        const cumtl::AdamWStep adamw{.lr = 1e-2, .weight_decay = 5e-2, .step = step + 1};
        cumtl::ops::adamw_update(cpu, adam_values, gradients, m, v, mask, adamw);
        cumtl::ops::adamw_update(gpu, gpu_adam_values, gpu_gradients, gpu_m, gpu_v, gpu_mask, adamw);
      }
      CHECK(cumtl_test::error_over_scale(gpu_values.to_vector<float>(gpu), values.to_vector<float>()) < 1e-6);
      CHECK(cumtl_test::error_over_scale(gpu_buffer.to_vector<float>(gpu), buffer.to_vector<float>()) < 1e-6);
      CHECK(cumtl_test::error_over_scale(gpu_adam_values.to_vector<float>(gpu), adam_values.to_vector<float>()) < 1e-6);
      CHECK(cumtl_test::error_over_scale(gpu_m.to_vector<float>(gpu), m.to_vector<float>()) < 1e-6);
      CHECK(cumtl_test::error_over_scale(gpu_v.to_vector<float>(gpu), v.to_vector<float>()) < 1e-6);
    }
  }

  // The working copy written by the update on the GPU is the GPU's updated
  // values rounded once; against the CPU's, at most one unit in the last place
  // of the largest value apart (2^-7 of the scale for bf16, 2^-10 for f16),
  // where the float32 values differ in their last bits.
  TEST_CASE_TEMPLATE("optim: cuda updates write the working copy as the cpu twin does", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    const ScalarType half = cumtl::scalar_type_v<Half>;
    for (const std::int64_t count : {std::int64_t(1), std::int64_t(257), std::int64_t(1000000)}) {
      CAPTURE(count);
      const Shape shape{count};
      const Tensor mask = random_mask(count, 1);
      Tensor values = cumtl_test::random_tensor<float>(shape, 2);
      Tensor m = Tensor::zeros(shape, ScalarType::f32), v = Tensor::zeros(shape, ScalarType::f32);
      Tensor working = Tensor::empty(shape, half);
      Tensor gpu_values = values.to(gpu, gpu.device()), gpu_m = m.to(gpu, gpu.device()),
             gpu_v = v.to(gpu, gpu.device());
      Tensor gpu_working = Tensor::empty(gpu, shape, half);
      Tensor sgd_values = values.to(gpu, gpu.device()), buffer = Tensor::zeros(gpu, shape, ScalarType::f32);
      Tensor sgd_working = Tensor::empty(gpu, shape, half);
      for (std::uint64_t step = 0; step < 3; ++step) {
        const Tensor gradients = cumtl_test::random_tensor<float>(shape, 100 + step);
        const Tensor gpu_gradients = gradients.to(gpu, gpu.device());
        const cumtl::AdamWStep adamw{.lr = 1e-2, .weight_decay = 5e-2, .step = step + 1};
        cumtl::ops::adamw_update(cpu, values, gradients, m, v, mask, adamw, working);
        cumtl::ops::adamw_update(gpu, gpu_values, gpu_gradients, gpu_m, gpu_v, mask.to(gpu, gpu.device()), adamw,
                                 gpu_working);
        const cumtl::SgdStep sgd{.lr = 0.05, .momentum = 0.9, .first_step = step == 0};
        cumtl::ops::sgd_update(gpu, sgd_values, gpu_gradients, buffer, mask.to(gpu, gpu.device()), sgd, sgd_working);
      }
      const Tensor gpu_values_here = gpu_values.to(gpu, Device::cpu());
      const Tensor sgd_values_here = sgd_values.to(gpu, Device::cpu());
      gpu.synchronize();
      CHECK(gpu_working.to_vector<Half>(gpu) == cumtl_test::rounded<Half>(gpu_values_here));
      CHECK(sgd_working.to_vector<Half>(gpu) == cumtl_test::rounded<Half>(sgd_values_here));
      CHECK(cumtl_test::error_over_scale(gpu_values_here.to_vector<float>(), values.to_vector<float>()) < 1e-6);
      CHECK(cumtl_test::error_over_scale(gpu_working.to_vector<Half>(gpu), working.to_vector<Half>()) <=
            (std::is_same_v<Half, cumtl::bfloat16_t> ? 0x1p-7 : 0x1p-10));
    }
  }

  TEST_CASE("optim: cuda optimizer classes update a store on the gpu") {
    Context gpu(Device::cuda(0));
    cumtl::ParameterStore store;
    store.add_parameter("fc.weight", Shape{2}, true);
    store.add_parameter("fc.bias", Shape{1}, false);
    store.allocate(gpu, ScalarType::f64);
    cumtl::ops::copy(gpu, store.values(), Tensor::from_vector(std::vector<double>{1, -2, 0.5}, Shape{3}));
    cumtl::ops::copy(gpu, store.gradients(), Tensor::from_vector(std::vector<double>{0.5, 1, -2}, Shape{3}));
    cumtl::optim::Sgd sgd(gpu, store, {.lr = 0.1, .weight_decay = 0.1});
    CHECK(sgd.state()[0].tensor.device() == gpu.device());
    sgd.step(gpu);
    // as on the CPU: weight g + 0.1·w = [0.6, 0.8], bias exempt
    const std::vector<double> values = store.values().to_vector<double>(gpu);
    CHECK(values[0] == doctest::Approx(0.94));
    CHECK(values[1] == doctest::Approx(-2.08));
    CHECK(values[2] == doctest::Approx(0.7));
  }
}
