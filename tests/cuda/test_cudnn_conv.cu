// cuDNN convolutions (through cudnn-frontend) executed on the GPU, against a
// direct CPU convolution accumulated in double. Needs a GPU; the plan-level
// tests that do not are in test_cudnn_plans.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <cumtl/cuda/cudnn_conv.hpp>
#include <cumtl/cuda/launch.hpp>

#include "../support/conv_cases.hpp"
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::ConvShape;
using cumtl::Device;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::square_conv;
using cumtl::Tensor;
using cumtl::cuda::ConvDataType;
using cumtl::cuda::ConvDirection;
using cumtl::cuda::ConvNumerics;

namespace {

constexpr ConvNumerics strict_fp32{.allow_tf32 = false};
constexpr ConvNumerics tf32{.allow_tf32 = true};
constexpr double fp32_tolerance = 1e-4;  // of the output's largest magnitude
constexpr double tf32_tolerance = 2e-2;  // TF32 keeps 10 mantissa bits of each input

std::vector<float> random_values(std::int64_t count, std::uint64_t seed) {
  Context cpu;
  Tensor tensor = Tensor::empty(Shape{count}, ScalarType::f32);
  Generator generator(seed);
  cumtl::ops::uniform(cpu, tensor, generator, -1, 1);
  return tensor.to_vector<float>();
}

// The two inputs of each direction: fprop (x, w), dgrad (dy, w), wgrad (x, dy).
struct Inputs {
  std::vector<float> a, b;
};

Inputs random_inputs(ConvDirection direction, const ConvShape& s, std::uint64_t seed) {
  switch (direction) {
    case ConvDirection::forward: return {random_values(s.x_count(), seed), random_values(s.w_count(), seed + 1)};
    case ConvDirection::backward_data: return {random_values(s.y_count(), seed), random_values(s.w_count(), seed + 1)};
    default: return {random_values(s.x_count(), seed), random_values(s.y_count(), seed + 1)};
  }
}

std::int64_t output_count(ConvDirection direction, const ConvShape& s) {
  return direction == ConvDirection::forward         ? s.y_count()
         : direction == ConvDirection::backward_data ? s.x_count()
                                                     : s.w_count();
}

std::vector<double> direct_conv(ConvDirection direction, const ConvShape& s, const Inputs& in) {
  std::vector<double> out(std::size_t(output_count(direction, s)), 0.0);
  const auto a = [&in](std::int64_t i) { return double(in.a[std::size_t(i)]); };
  const auto b = [&in](std::int64_t i) { return double(in.b[std::size_t(i)]); };
  switch (direction) {
    case ConvDirection::forward:
      cumtl_test::for_each_conv_term(
          s, [&](std::int64_t x, std::int64_t w, std::int64_t y) { out[std::size_t(y)] += a(x) * b(w); });
      break;
    case ConvDirection::backward_data:
      cumtl_test::for_each_conv_term(
          s, [&](std::int64_t x, std::int64_t w, std::int64_t y) { out[std::size_t(x)] += a(y) * b(w); });
      break;
    case ConvDirection::backward_filter:
      cumtl_test::for_each_conv_term(
          s, [&](std::int64_t x, std::int64_t w, std::int64_t y) { out[std::size_t(w)] += a(x) * b(y); });
      break;
  }
  return out;
}

Tensor upload(Context& ctx, const std::vector<float>& values) {
  return Tensor::from_vector(values, Shape{std::int64_t(values.size())}).to(ctx, ctx.device());
}

// Runs one direction on the GPU; `offset` shifts every pointer by that many floats.
std::vector<float> gpu_conv(Context& ctx, ConvDirection direction, const ConvShape& s, ConvNumerics numerics,
                            const Inputs& in, const std::vector<float>& initial, std::int64_t offset = 0) {
  const auto padded = [offset](const std::vector<float>& values) {
    std::vector<float> copy(std::size_t(offset), 0.0f);
    copy.insert(copy.end(), values.begin(), values.end());
    return copy;
  };
  Tensor a = upload(ctx, padded(in.a)), b = upload(ctx, padded(in.b)), out = upload(ctx, padded(initial));
  const float* pa = a.data<float>() + offset;
  const float* pb = b.data<float>() + offset;
  float* po = out.data<float>() + offset;
  cumtl::cuda::ConvPointers pointers{};
  switch (direction) {
    case ConvDirection::forward: pointers = {pa, pb, po}; break;          // x, w -> y
    case ConvDirection::backward_data: pointers = {po, pb, pa}; break;    // dy, w -> dx
    case ConvDirection::backward_filter: pointers = {pa, po, pb}; break;  // x, dy -> dw
  }
  cumtl::cuda::execute_conv(ctx, cumtl::cuda::cudnn_handle(ctx), direction, s, numerics, ConvDataType::float32,
                            pointers);
  std::vector<float> result = out.to_vector<float>(ctx);
  result.erase(result.begin(), result.begin() + offset);
  return result;
}

// Odd sizes, the RGB stem's geometry and a 3x3 body convolution, thin and wide channels.
std::vector<ConvShape> test_shapes() {
  std::vector<ConvShape> shapes;
  for (std::int64_t c : {3, 64})
    for (std::int64_t k : {7, 64}) {
      shapes.push_back(square_conv(3, 13, c, k, 7, 2, 3));
      shapes.push_back(square_conv(3, 13, c, k, 3, 1, 1));
    }
  return shapes;
}

constexpr ConvDirection all_directions[] = {ConvDirection::forward, ConvDirection::backward_data,
                                            ConvDirection::backward_filter};

}  // namespace

TEST_SUITE("cudnn") {
  TEST_CASE("cudnn: device profile from the GPU") {
    Context ctx(Device::cuda(0));
    const auto device = cumtl::cuda::DeviceProfile::from_handle(cumtl::cuda::cudnn_handle(ctx), 0);
    CHECK(device.handle() == cumtl::cuda::cudnn_handle(ctx));
    // The profile to commit as tests/fixtures/cudnn_h100_device.json.
    MESSAGE("this GPU's cuDNN device profile: ", device.json());
    if (const char* path = std::getenv("CUMTL_CUDNN_DEVICE_JSON"); path != nullptr && path[0] != '\0')
      std::ofstream(path) << device.json();
    int major = 0, minor = 0;
    CUMTL_CHECK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    CUMTL_CHECK_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
    CHECK(device.sm_version() == major * 10 + minor);
    const ConvShape shape = square_conv(2, 8, 16, 16, 3, 1, 1);
    const auto plan = cumtl::cuda::build_conv_plan(
        device, cumtl::cuda::make_conv_plan_key(device, ConvDirection::forward, shape, ConvNumerics{}));
    CHECK(plan.engine().engine_id >= 0);
    // The same plan from the profile's JSON, as the GPU-less tests build it.
    const auto recorded = cumtl::cuda::DeviceProfile::from_json(device.json(), "this GPU's profile");
    const auto replayed = cumtl::cuda::build_conv_plan(
        recorded, cumtl::cuda::make_conv_plan_key(recorded, ConvDirection::forward, shape, ConvNumerics{}));
    MESSAGE("engine from the handle: ", plan.engine().str(), "; from its JSON: ", replayed.engine().str());
    CHECK(recorded.fingerprint() == device.fingerprint());
  }

  TEST_CASE("cudnn: every ResNet-18 and ResNet-50 convolution matches a direct convolution") {
    Context ctx(Device::cuda(0));
    std::vector<ConvShape> shapes;
    // Batch 1 keeps the direct convolution in double affordable; the plans differ only in N.
    for (const cumtl::ResNetConvLayout& layout :
         {cumtl::ResNetConvLayout{1, 224, 64, 7, 2, 3, true, false, {64, 128, 256, 512}, {2, 2, 2, 2}},
          cumtl::ResNetConvLayout{1, 224, 64, 7, 2, 3, true, true, {64, 128, 256, 512}, {3, 4, 6, 3}}})
      for (const ConvShape& shape : cumtl::resnet_convolutions(layout))
        if (std::find(shapes.begin(), shapes.end(), shape) == shapes.end()) shapes.push_back(shape);
    std::uint64_t seed = 500;
    for (const ConvShape& shape : shapes) {
      for (ConvDirection direction : all_directions) {
        CAPTURE(shape.str());
        CAPTURE(cumtl::cuda::to_string(direction));
        const Inputs in = random_inputs(direction, shape, seed += 2);
        const std::vector<double> expected = direct_conv(direction, shape, in);
        const std::vector<float> zeros(expected.size(), 0.0f);
        CHECK(cumtl_test::error_over_scale(gpu_conv(ctx, direction, shape, tf32, in, zeros), expected) <=
              tf32_tolerance);
      }
    }
  }

  TEST_CASE("cudnn: a plan without its first engine runs on the next and still matches") {
    Context ctx(Device::cuda(0));
    const auto device = cumtl::cuda::DeviceProfile::from_handle(cumtl::cuda::cudnn_handle(ctx), 0);
    const ConvShape shape = square_conv(3, 13, 64, 64, 3, 1, 1);
    const Inputs in = random_inputs(ConvDirection::forward, shape, 61);
    const std::vector<double> expected = direct_conv(ConvDirection::forward, shape, in);
    auto key = cumtl::cuda::make_conv_plan_key(device, ConvDirection::forward, shape, strict_fp32);
    const auto first = cumtl::cuda::build_conv_plan(device, key);
    key.excluded_engines = {first.engine().engine_id};
    auto second = cumtl::cuda::build_conv_plan(device, key);
    CHECK(second.engine().engine_id != first.engine().engine_id);
    MESSAGE("first engine ", first.engine().str(), ", then ", second.engine().str());
    Tensor x = upload(ctx, in.a), w = upload(ctx, in.b);
    Tensor y = upload(ctx, std::vector<float>(expected.size(), 0.0f));
    second.execute(ctx, cumtl::cuda::cudnn_handle(ctx), {x.data<float>(), w.data<float>(), y.data<float>()});
    CHECK(cumtl_test::error_over_scale(y.to_vector<float>(ctx), expected) <= fp32_tolerance);
    CHECK(second.fallbacks() == 0);
    // Every other kept configuration runs too, each chosen in turn.
    std::int64_t ran = 0;
    for (const auto& config : second.candidates().kept()) {
      try {
        second.use_config(config.index);
      } catch (const cumtl::CudnnFrontendError& error) {
        MESSAGE(config.str(), " does not finalize here: ", error.what());
        continue;
      }
      Tensor out = upload(ctx, std::vector<float>(expected.size(), 0.0f));
      second.execute(ctx, cumtl::cuda::cudnn_handle(ctx), {x.data<float>(), w.data<float>(), out.data<float>()});
      CAPTURE(config.str());
      CHECK(cumtl_test::error_over_scale(out.to_vector<float>(ctx), expected) <= fp32_tolerance);
      ++ran;
    }
    CHECK(ran >= 2);
  }

  TEST_CASE("cudnn: fprop dgrad and wgrad match a direct convolution") {
    Context ctx(Device::cuda(0));
    std::uint64_t seed = 100;
    for (const ConvShape& shape : test_shapes()) {
      for (ConvDirection direction : all_directions) {
        CAPTURE(shape.str());
        CAPTURE(cumtl::cuda::to_string(direction));
        const Inputs in = random_inputs(direction, shape, seed += 2);
        const std::vector<double> expected = direct_conv(direction, shape, in);
        const std::vector<float> zeros(expected.size(), 0.0f);
        const double strict_error =
            cumtl_test::error_over_scale(gpu_conv(ctx, direction, shape, strict_fp32, in, zeros), expected);
        CHECK(strict_error <= fp32_tolerance);
        const double tf32_error =
            cumtl_test::error_over_scale(gpu_conv(ctx, direction, shape, tf32, in, zeros), expected);
        CHECK(tf32_error <= tf32_tolerance);
      }
    }
  }

  TEST_CASE("cudnn: the filter gradient accumulates in accumulate mode") {
    Context ctx(Device::cuda(0));
    ctx.numerics().allow_tf32 = false;
    for (const ConvShape& shape : test_shapes()) {
      CAPTURE(shape.str());
      const Inputs in = random_inputs(ConvDirection::backward_filter, shape, 7);
      const std::vector<float> initial = random_values(shape.w_count(), 9);
      std::vector<double> expected = direct_conv(ConvDirection::backward_filter, shape, in);
      for (std::size_t i = 0; i < expected.size(); ++i) expected[i] += double(initial[i]);
      Tensor x = upload(ctx, in.a), dy = upload(ctx, in.b), dw = upload(ctx, initial);
      cumtl::detail::cuda_backend().conv_backward_filter(ctx, shape, ScalarType::f32, x.raw_data(), dy.raw_data(),
                                                         dw.raw_data(), cumtl::GradientMode::accumulate);
      CHECK(cumtl_test::error_over_scale(dw.to_vector<float>(ctx), expected) <= fp32_tolerance);
    }
  }

  TEST_CASE("cudnn: deterministic mode gives bit-identical dgrad and wgrad") {
    Context ctx(Device::cuda(0));
    const ConvShape body = square_conv(8, 28, 64, 64, 3, 1, 1);
    const ConvShape stem = square_conv(8, 56, 3, 64, 7, 2, 3);
    for (const ConvShape& shape : {body, stem}) {
      for (ConvDirection direction : {ConvDirection::backward_data, ConvDirection::backward_filter}) {
        for (bool allow_tf32 : {false, true}) {
          CAPTURE(shape.str());
          CAPTURE(cumtl::cuda::to_string(direction));
          CAPTURE(allow_tf32);
          const ConvNumerics numerics{.allow_tf32 = allow_tf32, .deterministic = true};
          const Inputs in = random_inputs(direction, shape, 21);
          const std::vector<float> zeros(std::size_t(output_count(direction, shape)), 0.0f);
          const std::vector<float> first = gpu_conv(ctx, direction, shape, numerics, in, zeros);
          const std::vector<float> second = gpu_conv(ctx, direction, shape, numerics, in, zeros);
          CHECK(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)) == 0);
        }
      }
    }
  }

  TEST_CASE("cudnn: pointers aligned to only 4 bytes") {
    Context ctx(Device::cuda(0));
    const ConvShape shape = square_conv(3, 13, 64, 64, 3, 1, 1);
    for (ConvDirection direction : all_directions) {
      CAPTURE(cumtl::cuda::to_string(direction));
      const Inputs in = random_inputs(direction, shape, 31);
      const std::vector<double> expected = direct_conv(direction, shape, in);
      const std::vector<float> zeros(expected.size(), 0.0f);
      CHECK(cumtl_test::error_over_scale(gpu_conv(ctx, direction, shape, strict_fp32, in, zeros, 1), expected) <=
            fp32_tolerance);
      CHECK(cumtl_test::error_over_scale(gpu_conv(ctx, direction, shape, tf32, in, zeros, 1), expected) <=
            tf32_tolerance);
    }
  }

  TEST_CASE("cudnn: plans are cached per context and go with it") {
    Context ctx(Device::cuda(0));
    const ConvShape shape = square_conv(2, 9, 8, 8, 3, 1, 1);
    CHECK(cumtl::cuda::context_conv_plans(ctx) == nullptr);
    const Inputs in = random_inputs(ConvDirection::forward, shape, 41);
    const std::vector<float> zeros(std::size_t(shape.y_count()), 0.0f);
    const std::vector<float> first = gpu_conv(ctx, ConvDirection::forward, shape, strict_fp32, in, zeros);
    const cumtl::cuda::ConvPlanCache* cache = cumtl::cuda::context_conv_plans(ctx);
    REQUIRE(cache != nullptr);
    CHECK(cache->misses() == 1);
    const std::vector<float> second = gpu_conv(ctx, ConvDirection::forward, shape, strict_fp32, in, zeros);
    CHECK(cache->hits() == 1);
    CHECK(cache->misses() == 1);
    CHECK(first == second);
    {
      // Another context plans for itself, from its own handle.
      Context other(Device::cuda(0));
      CHECK(gpu_conv(other, ConvDirection::forward, shape, strict_fp32, in, zeros) == first);
      REQUIRE(cumtl::cuda::context_conv_plans(other) != nullptr);
      CHECK(cumtl::cuda::context_conv_plans(other) != cache);
      CHECK(cumtl::cuda::context_conv_plans(other)->misses() == 1);
    }
    // The first context's plans outlive the other's handle.
    CHECK(gpu_conv(ctx, ConvDirection::forward, shape, strict_fp32, in, zeros) == first);
    CHECK(cache->hits() == 2);
  }

  TEST_CASE("cudnn: convolution contract errors") {
    Context cpu;
    Context ctx(Device::cuda(0));
    const ConvShape shape = square_conv(1, 4, 4, 4, 3, 1, 1);
    Tensor x = Tensor::zeros(ctx, Shape{1, 4, 4, 4}, ScalarType::f32);
    Tensor w = Tensor::zeros(ctx, Shape{4, 3, 3, 4}, ScalarType::f32);
    Tensor y = Tensor::zeros(ctx, Shape{1, 4, 4, 4}, ScalarType::f32);
    cudnnHandle_t handle = cumtl::cuda::cudnn_handle(ctx);
    const auto run = [&](Context& on, ConvDirection direction, const ConvShape& s, cumtl::cuda::ConvPointers p) {
      cumtl::cuda::execute_conv(on, handle, direction, s, tf32, ConvDataType::float32, p);
    };
    CHECK_ERROR_WITH(run(cpu, ConvDirection::forward, shape, {x.data<float>(), w.data<float>(), y.data<float>()}),
                     "cumtl::conv_forward needs a CUDA context", "cpu", "x[1, 4, 4, 4]");
    CHECK_ERROR_WITH(run(ctx, ConvDirection::backward_data, shape, {nullptr, w.data<float>(), y.data<float>()}),
                     "cumtl::conv_backward_data: null pointer", "dx");
    ConvShape empty = shape;
    empty.n = 0;
    CHECK_ERROR_WITH(
        run(ctx, ConvDirection::backward_filter, empty, {x.data<float>(), w.data<float>(), y.data<float>()}),
        "cumtl::conv_backward_filter", "must be positive");
    const auto* misaligned = reinterpret_cast<const float*>(reinterpret_cast<const char*>(x.data<float>()) + 2);
    CHECK_ERROR_WITH(run(ctx, ConvDirection::forward, shape, {misaligned, w.data<float>(), y.data<float>()}),
                     "aligned to the element size (4 bytes)");
  }
}
