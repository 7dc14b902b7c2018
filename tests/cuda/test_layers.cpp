// Linear and convolution layers and the whole multi-head ResNet on the GPU
// against the CPU twins. TF32 is turned off so fp32 tolerances apply. Needs a GPU.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::Generator;
using cumtl::GradientMode;
using cumtl::Phase;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

Tensor random_on(Context& ctx, const Shape& shape, std::uint64_t seed) {
  Tensor tensor = Tensor::empty(ctx, shape, ScalarType::f32);
  Generator generator(seed);
  cumtl::ops::uniform(ctx, tensor, generator, -1, 1);
  return tensor;
}

}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("linear: the cuBLAS path matches the CPU twin") {
    Context cpu;
    Context gpu(Device::cuda(0));
    gpu.numerics().allow_tf32 = false;
    for (const auto& [n, in, out] : std::vector<std::array<std::int64_t, 3>>{{1, 1, 1}, {7, 13, 5}, {64, 512, 30}}) {
      CAPTURE(n);
      CAPTURE(in);
      CAPTURE(out);
      const Tensor x = random_on(cpu, Shape{n, in}, 1), w = random_on(cpu, Shape{out, in}, 2);
      const Tensor b = random_on(cpu, Shape{out}, 3), dy = random_on(cpu, Shape{n, out}, 4);
      Tensor y = Tensor::empty(Shape{n, out}, ScalarType::f32), dx = Tensor::empty(Shape{n, in}, ScalarType::f32);
      Tensor dw = random_on(cpu, Shape{out, in}, 5), db = random_on(cpu, Shape{out}, 6);
      Tensor y_gpu = y.to(gpu, gpu.device()), dx_gpu = dx.to(gpu, gpu.device());
      Tensor dw_gpu = dw.to(gpu, gpu.device()), db_gpu = db.to(gpu, gpu.device());
      cumtl::ops::linear_forward(cpu, x, w, b, y);
      cumtl::ops::linear_forward(gpu, x.to(gpu, gpu.device()), w.to(gpu, gpu.device()), b.to(gpu, gpu.device()), y_gpu);
      CHECK(cumtl_test::error_over_scale(y_gpu.to_vector<float>(gpu), y.to_vector<float>()) < 1e-5);
      cumtl::ops::linear_backward(cpu, dy, x, w, dx, dw, db, GradientMode::accumulate);
      cumtl::ops::linear_backward(gpu, dy.to(gpu, gpu.device()), x.to(gpu, gpu.device()), w.to(gpu, gpu.device()),
                                  dx_gpu, dw_gpu, db_gpu, GradientMode::accumulate);
      CHECK(cumtl_test::error_over_scale(dx_gpu.to_vector<float>(gpu), dx.to_vector<float>()) < 1e-5);
      CHECK(cumtl_test::error_over_scale(dw_gpu.to_vector<float>(gpu), dw.to_vector<float>()) < 1e-5);
      CHECK(cumtl_test::error_over_scale(db_gpu.to_vector<float>(gpu), db.to_vector<float>()) < 1e-5);
    }
  }

  TEST_CASE("resnet: the small multi-head model matches on the GPU and the CPU") {
    Context cpu;
    Context gpu(Device::cuda(0));
    gpu.numerics().allow_tf32 = false;
    const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7},
                                             {.name = "au", .kind = cumtl::HeadKind::sigmoid, .outputs = 12}};
    cumtl::MultiHeadModel<float> on_cpu(cumtl::ResNetSpec::small(), heads), on_gpu(cumtl::ResNetSpec::small(), heads);
    on_cpu.allocate(cpu);
    on_gpu.allocate(gpu);
    Generator cpu_generator(7), gpu_generator(7);
    on_cpu.initialize(cpu, cpu_generator);
    on_gpu.initialize(gpu, gpu_generator);
    // The same seed gives the same network on both devices (normal draws within a rounding).
    CHECK(cumtl_test::error_over_scale(on_gpu.parameters().values().to_vector<float>(gpu),
                                       on_cpu.parameters().values().to_vector<float>()) < 1e-6);

    const Tensor images = random_on(cpu, Shape{5, 33, 31, 3}, 8);
    const Tensor logits = on_cpu.forward(cpu, images, Phase::train);
    const Tensor logits_gpu = on_gpu.forward(gpu, images.to(gpu, gpu.device()), Phase::train);
    CHECK(cumtl_test::error_over_scale(logits_gpu.to_vector<float>(gpu), logits.to_vector<float>()) < 1e-4);

    const Tensor dlogits = random_on(cpu, logits.shape(), 9);
    on_cpu.backward(cpu, dlogits);
    on_gpu.backward(gpu, dlogits.to(gpu, gpu.device()));
    CHECK(cumtl_test::error_over_scale(on_gpu.parameters().gradients().to_vector<float>(gpu),
                                       on_cpu.parameters().gradients().to_vector<float>()) < 1e-3);
    CHECK(cumtl_test::error_over_scale(on_gpu.parameters().buffer_values().to_vector<float>(gpu),
                                       on_cpu.parameters().buffer_values().to_vector<float>()) < 1e-4);

    const Tensor evaluated = on_cpu.forward(cpu, images, Phase::eval);
    const Tensor evaluated_gpu = on_gpu.forward(gpu, images.to(gpu, gpu.device()), Phase::eval);
    CHECK(cumtl_test::error_over_scale(evaluated_gpu.to_vector<float>(gpu), evaluated.to_vector<float>()) < 1e-4);
  }

  // A float32 model with its trunk in bf16 or f16 on both devices, from the
  // same master weights. The working copies are the same bits (one rounding,
  // the same function on both devices); every operation's results may then
  // differ by an ulp between the devices (their fp32 sums run in another
  // order), which the network carries to the logits and gradients. Held to a
  // few ulps of their scale: 4% (bf16) and 0.5% (f16) for logits, twice that
  // for gradients and running statistics.
  TEST_CASE_TEMPLATE("resnet: the small multi-head model with a bf16 or f16 trunk matches on the GPU and the CPU", Half,
                     cumtl::bfloat16_t, cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    gpu.numerics().allow_tf32 = false;
    const ScalarType half = cumtl::scalar_type_v<Half>;
    const double bound = std::is_same_v<Half, cumtl::bfloat16_t> ? 0.04 : 0.005;
    const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7},
                                             {.name = "au", .kind = cumtl::HeadKind::sigmoid, .outputs = 12}};
    cumtl::MultiHeadModel<float> on_cpu(cumtl::ResNetSpec::small(), heads, half);
    cumtl::MultiHeadModel<float> on_gpu(cumtl::ResNetSpec::small(), heads, half);
    on_cpu.allocate(cpu);
    on_gpu.allocate(gpu);
    Generator cpu_generator(7), gpu_generator(7);
    on_cpu.initialize(cpu, cpu_generator);
    on_gpu.initialize(gpu, gpu_generator);
    cumtl::ops::copy(gpu, on_gpu.parameters().values(), on_cpu.parameters().values());  // the same master weights

    const Tensor images = random_on(cpu, Shape{16, 32, 32, 3}, 8);
    const Tensor logits = on_cpu.forward(cpu, images, Phase::train);
    const Tensor logits_gpu = on_gpu.forward(gpu, images.to(gpu, gpu.device()), Phase::train);
    CHECK(on_gpu.parameters().working_values().to_vector<Half>(gpu) ==
          on_cpu.parameters().working_values().to_vector<Half>());
    CHECK(cumtl_test::error_over_scale(logits_gpu.to_vector<float>(gpu), logits.to_vector<float>()) < bound);

    const Tensor dlogits = random_on(cpu, logits.shape(), 9);
    on_cpu.backward(cpu, dlogits);
    on_gpu.backward(gpu, dlogits.to(gpu, gpu.device()));
    CHECK(cumtl_test::error_over_scale(on_gpu.parameters().gradients().to_vector<float>(gpu),
                                       on_cpu.parameters().gradients().to_vector<float>()) < 2 * bound);
    CHECK(cumtl_test::error_over_scale(on_gpu.parameters().buffer_values().to_vector<float>(gpu),
                                       on_cpu.parameters().buffer_values().to_vector<float>()) < 2 * bound);

    const Tensor evaluated = on_cpu.forward(cpu, images, Phase::eval);
    const Tensor evaluated_gpu = on_gpu.forward(gpu, images.to(gpu, gpu.device()), Phase::eval);
    CHECK(cumtl_test::error_over_scale(evaluated_gpu.to_vector<float>(gpu), evaluated.to_vector<float>()) < bound);
  }

  TEST_CASE("layers: a tensor on another device than the layer is refused") {
    Context gpu(Device::cuda(0));
    cumtl::ParameterStore store;
    cumtl::Conv2d<float> conv(store, "conv1", 3, 8, {.kernel = 3, .padding = 1});
    store.allocate(gpu, ScalarType::f32);
    const Tensor on_cpu = Tensor::zeros(Shape{1, 4, 4, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(conv.forward(gpu, on_cpu), "'x' is float32[1, 4, 4, 3] on cpu", "context is on cuda:0");
  }
}  // TEST_SUITE
