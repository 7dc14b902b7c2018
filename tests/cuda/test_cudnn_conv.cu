// cuDNN graph-API convolutions executed on the GPU, against a direct CPU
// convolution accumulated in double. Needs a GPU; the plan-level tests that do
// not are in test_cudnn_plans.cu.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <cumtl/cuda/cudnn_graph.hpp>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl::cuda::ConvDirection;
using cumtl::cuda::ConvNumerics;
using cumtl::cuda::ConvShape;

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

// A square convolution of N×size×size×C by K×R×R×C.
ConvShape square_conv(std::int64_t n, std::int64_t size, std::int64_t c, std::int64_t k, std::int64_t r,
                      std::int64_t stride, std::int64_t pad) {
  ConvShape shape;
  shape.n = n;
  shape.h = shape.w = size;
  shape.c = c;
  shape.k = k;
  shape.r = shape.s = r;
  shape.pad_h = shape.pad_w = pad;
  shape.stride_h = shape.stride_w = stride;
  return shape;
}

std::int64_t x_count(const ConvShape& s) {
  return s.n * s.h * s.w * s.c;
}
std::int64_t w_count(const ConvShape& s) {
  return s.k * s.r * s.s * s.c;
}
std::int64_t y_count(const ConvShape& s) {
  return s.n * s.out_h() * s.out_w() * s.k;
}

// Calls term(x index, w index, y index) for every product of the forward
// convolution (cross-correlation, NHWC and KRSC, zero padding).
template <class Term>
void for_each_term(const ConvShape& s, Term&& term) {
  const std::int64_t out_h = s.out_h(), out_w = s.out_w();
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t p = 0; p < out_h; ++p)
      for (std::int64_t q = 0; q < out_w; ++q)
        for (std::int64_t r = 0; r < s.r; ++r)
          for (std::int64_t t = 0; t < s.s; ++t) {
            const std::int64_t ih = p * s.stride_h - s.pad_h + r * s.dilation_h;
            const std::int64_t iw = q * s.stride_w - s.pad_w + t * s.dilation_w;
            if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
            for (std::int64_t k = 0; k < s.k; ++k)
              for (std::int64_t c = 0; c < s.c; ++c)
                term(((n * s.h + ih) * s.w + iw) * s.c + c, ((k * s.r + r) * s.s + t) * s.c + c,
                     ((n * out_h + p) * out_w + q) * s.k + k);
          }
}

// The two inputs of each direction: fprop (x, w), dgrad (dy, w), wgrad (x, dy).
struct Inputs {
  std::vector<float> a, b;
};

Inputs random_inputs(ConvDirection direction, const ConvShape& s, std::uint64_t seed) {
  switch (direction) {
    case ConvDirection::forward: return {random_values(x_count(s), seed), random_values(w_count(s), seed + 1)};
    case ConvDirection::backward_data: return {random_values(y_count(s), seed), random_values(w_count(s), seed + 1)};
    default: return {random_values(x_count(s), seed), random_values(y_count(s), seed + 1)};
  }
}

std::int64_t output_count(ConvDirection direction, const ConvShape& s) {
  return direction == ConvDirection::forward         ? y_count(s)
         : direction == ConvDirection::backward_data ? x_count(s)
                                                     : w_count(s);
}

std::vector<double> direct_conv(ConvDirection direction, const ConvShape& s, const Inputs& in) {
  std::vector<double> out(std::size_t(output_count(direction, s)), 0.0);
  const auto a = [&in](std::int64_t i) { return double(in.a[std::size_t(i)]); };
  const auto b = [&in](std::int64_t i) { return double(in.b[std::size_t(i)]); };
  switch (direction) {
    case ConvDirection::forward:
      for_each_term(s, [&](std::int64_t x, std::int64_t w, std::int64_t y) { out[std::size_t(y)] += a(x) * b(w); });
      break;
    case ConvDirection::backward_data:
      for_each_term(s, [&](std::int64_t x, std::int64_t w, std::int64_t y) { out[std::size_t(x)] += a(y) * b(w); });
      break;
    case ConvDirection::backward_filter:
      for_each_term(s, [&](std::int64_t x, std::int64_t w, std::int64_t y) { out[std::size_t(w)] += a(x) * b(y); });
      break;
  }
  return out;
}

Tensor upload(Context& ctx, const std::vector<float>& values) {
  return Tensor::from_vector(values, Shape{std::int64_t(values.size())}).to(ctx, ctx.device());
}

// Runs one direction on the GPU; `offset` shifts every pointer by that many floats.
std::vector<float> gpu_conv(Context& ctx, ConvDirection direction, const ConvShape& s, ConvNumerics numerics,
                            const Inputs& in, const std::vector<float>& initial, float alpha = 1, float beta = 0,
                            std::int64_t offset = 0) {
  const auto padded = [offset](const std::vector<float>& values) {
    std::vector<float> copy(std::size_t(offset), 0.0f);
    copy.insert(copy.end(), values.begin(), values.end());
    return copy;
  };
  Tensor a = upload(ctx, padded(in.a)), b = upload(ctx, padded(in.b)), out = upload(ctx, padded(initial));
  const float* pa = a.data<float>() + offset;
  const float* pb = b.data<float>() + offset;
  float* po = out.data<float>() + offset;
  switch (direction) {
    case ConvDirection::forward: cumtl::cuda::conv_forward(ctx, s, numerics, pa, pb, po, alpha, beta); break;
    case ConvDirection::backward_data:
      cumtl::cuda::conv_backward_data(ctx, s, numerics, pa, pb, po, alpha, beta);
      break;
    case ConvDirection::backward_filter:
      cumtl::cuda::conv_backward_filter(ctx, s, numerics, pa, pb, po, alpha, beta);
      break;
  }
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
  TEST_CASE("cudnn: device properties from the GPU") {
    Context ctx(Device::cuda(0));
    const auto device = cumtl::cuda::DeviceProperties::from_handle(cumtl::cuda::cudnn_handle(ctx));
    CHECK(device.handle() == cumtl::cuda::cudnn_handle(ctx));
    // The profile to commit as tests/fixtures/cudnn_h100_device.json from an H100.
    MESSAGE("this GPU's cuDNN device profile: ", device.json());
    if (const char* path = std::getenv("CUMTL_CUDNN_DEVICE_JSON"); path != nullptr && path[0] != '\0')
      std::ofstream(path) << device.json();
    CHECK(device.json().find("\"smVersion\"") != std::string::npos);
    const ConvShape shape = square_conv(2, 8, 16, 16, 3, 1, 1);
    const auto plan = cumtl::cuda::build_conv_plan(device, ConvDirection::forward, shape, ConvNumerics{});
    CHECK(plan.engine_id() >= 0);
    // The other way to name the device (also setting the deprecated operation-graph handle) is
    // kept until a GPU run shows whether 9.19 accepts both together: recorded, not asserted.
    std::string with_handle;
    try {
      with_handle =
          cumtl::cuda::build_conv_plan(device.with_graph_handle(), ConvDirection::forward, shape, ConvNumerics{})
              .engine()
              .str();
    } catch (const cumtl::Error& error) {
      with_handle = std::string("failed: ") + error.what();
    }
    MESSAGE("engine from device properties: ", plan.engine().str(), "; with the graph handle too: ", with_handle);
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

  TEST_CASE("cudnn: beta 1 accumulates into the output") {
    Context ctx(Device::cuda(0));
    for (const ConvShape& shape : test_shapes()) {
      for (ConvDirection direction : all_directions) {
        CAPTURE(shape.str());
        CAPTURE(cumtl::cuda::to_string(direction));
        const Inputs in = random_inputs(direction, shape, 7);
        const std::vector<float> initial = random_values(output_count(direction, shape), 9);
        std::vector<double> expected = direct_conv(direction, shape, in);
        for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = 0.5 * expected[i] + double(initial[i]);
        CHECK(cumtl_test::error_over_scale(gpu_conv(ctx, direction, shape, strict_fp32, in, initial, 0.5f, 1.0f),
                                           expected) <= fp32_tolerance);
      }
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
      CHECK(cumtl_test::error_over_scale(gpu_conv(ctx, direction, shape, strict_fp32, in, zeros, 1, 0, 1), expected) <=
            fp32_tolerance);
      CHECK(cumtl_test::error_over_scale(gpu_conv(ctx, direction, shape, tf32, in, zeros, 1, 0, 1), expected) <=
            tf32_tolerance);
    }
  }

  TEST_CASE("cudnn: plans are cached per thread and device") {
    Context ctx(Device::cuda(0));
    Context other(Device::cuda(0));
    const ConvShape shape = square_conv(2, 9, 8, 8, 3, 1, 1);
    cumtl::cuda::ConvPlanCache& cache = cumtl::cuda::thread_conv_plan_cache(ctx);
    CHECK(&cache == &cumtl::cuda::thread_conv_plan_cache(other));
    const Inputs in = random_inputs(ConvDirection::forward, shape, 41);
    const std::vector<float> zeros(std::size_t(y_count(shape)), 0.0f);
    const std::vector<float> first = gpu_conv(ctx, ConvDirection::forward, shape, strict_fp32, in, zeros);
    const std::int64_t hits = cache.hits(), misses = cache.misses();
    const std::vector<float> second = gpu_conv(other, ConvDirection::forward, shape, strict_fp32, in, zeros);
    CHECK(cache.hits() == hits + 1);
    CHECK(cache.misses() == misses);
    CHECK(first == second);
  }

  TEST_CASE("cudnn: convolution contract errors") {
    Context cpu;
    Context ctx(Device::cuda(0));
    const ConvShape shape = square_conv(1, 4, 4, 4, 3, 1, 1);
    Tensor x = Tensor::zeros(ctx, Shape{1, 4, 4, 4}, ScalarType::f32);
    Tensor w = Tensor::zeros(ctx, Shape{4, 3, 3, 4}, ScalarType::f32);
    Tensor y = Tensor::zeros(ctx, Shape{1, 4, 4, 4}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::cuda::conv_forward(cpu, shape, tf32, x.data<float>(), w.data<float>(), y.data<float>()),
                     "cumtl::conv_forward needs a CUDA context", "cpu", "x[1, 4, 4, 4]");
    CHECK_ERROR_WITH(cumtl::cuda::conv_backward_data(ctx, shape, tf32, y.data<float>(), w.data<float>(), nullptr),
                     "cumtl::conv_backward_data: null pointer", "dx");
    ConvShape empty = shape;
    empty.n = 0;
    CHECK_ERROR_WITH(
        cumtl::cuda::conv_backward_filter(ctx, empty, tf32, x.data<float>(), y.data<float>(), w.data<float>()),
        "cumtl::conv_backward_filter", "must be positive");
    const auto* misaligned = reinterpret_cast<const float*>(reinterpret_cast<const char*>(x.data<float>()) + 2);
    CHECK_ERROR_WITH(cumtl::cuda::conv_forward(ctx, shape, tf32, misaligned, w.data<float>(), y.data<float>()),
                     "aligned to the element size (4 bytes)");
  }
}
