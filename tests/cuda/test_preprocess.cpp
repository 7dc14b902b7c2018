// The data pipeline on a GPU: image normalization against its CPU twin, and
// the loader's pinned, double-buffered path against its CPU path. Needs a GPU.
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../support/pattern_dataset.hpp"
#include "../support/testing.hpp"
#include "cumtl/data/loader.hpp"
#include "cumtl/ops/preprocess.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::HeadKind;
using cumtl::HeadSpec;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl::data::Batch;
using cumtl::data::Dataset;
using cumtl::data::Image;
using cumtl::data::Labels;
using cumtl::data::Loader;
using cumtl::data::LoaderOptions;
using cumtl::data::MultiDomainSampler;
using cumtl::data::Sample;

using cumtl_test::PatternDataset;

namespace {

std::vector<HeadSpec> three_heads() {
  HeadSpec au{"au", HeadKind::sigmoid, 2};
  au.output_names = {"AU1", "AU12"};
  return {HeadSpec{"emotion", HeadKind::softmax, 7}, au, HeadSpec{"compound", HeadKind::softmax, 11}};
}

}  // namespace

TEST_SUITE("data") {
  TEST_CASE("data: normalize_images on the GPU equals its CPU twin") {
    Context cpu;
    Context gpu(Device::cuda(0));
    std::mt19937 random(3);
    const std::array<float, 3> mean{0.3f, 0.5f, 0.7f}, stddev{0.25f, 0.2f, 0.3f};
    for (std::int64_t channels : {1, 3}) {
      for (const Shape& shape : {Shape{0, 4, 4, channels}, Shape{1, 1, 1, channels}, Shape{3, 7, 5, channels},
                                 Shape{2, 112, 112, channels}, Shape{5, 33, 67, channels}}) {
        CAPTURE(shape);
        Tensor pixels = Tensor::empty(shape, ScalarType::u8);
        for (std::int64_t i = 0; i < pixels.numel(); ++i) pixels.data<std::uint8_t>()[i] = std::uint8_t(random());
        Tensor expected = Tensor::empty(shape, ScalarType::f32);
        cumtl::ops::normalize_images(cpu, pixels, mean, stddev, expected);
        const Tensor pixels_gpu = pixels.to(gpu, gpu.device());
        Tensor out = Tensor::empty(gpu, shape, ScalarType::f32);
        cumtl::ops::normalize_images(gpu, pixels_gpu, mean, stddev, out);
        CHECK(out.to_vector<float>(gpu) == expected.to_vector<float>());  // bit for bit: one fma on both
        Tensor expected_bf16 = Tensor::empty(shape, ScalarType::bf16);
        cumtl::ops::normalize_images(cpu, pixels, mean, stddev, expected_bf16);
        Tensor out_bf16 = Tensor::empty(gpu, shape, ScalarType::bf16);
        cumtl::ops::normalize_images(gpu, pixels_gpu, mean, stddev, out_bf16);
        CHECK(out_bf16.to_vector<cumtl::bfloat16_t>(gpu) == expected_bf16.to_vector<cumtl::bfloat16_t>());
      }
    }
    const Tensor pixels = Tensor::zeros(gpu, Shape{1, 2, 2, 3}, ScalarType::u8);
    Tensor host_out = Tensor::zeros(Shape{1, 2, 2, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::normalize_images(gpu, pixels, host_out), "ops::normalize_images", "'out'", "cpu");
  }

  TEST_CASE("data: the loader feeding a GPU gives the CPU's batches") {
    Context cpu;
    Context gpu(Device::cuda(0));
    const auto a = std::make_shared<PatternDataset>("a", 45, 40, 36, 3, std::set<std::size_t>{5});
    const auto b = std::make_shared<PatternDataset>("b", 31, 28, 30, 1);
    const MultiDomainSampler sampler({a, b}, {0.6, 0.4}, 0, 10, 17);
    LoaderOptions options;
    options.image_size = 24;
    options.threads = 3;
    options.skip_bad = true;
    Loader on_cpu(cpu, sampler, three_heads(), options);
    std::optional<Batch> kept;
    {
      Loader on_gpu(gpu, sampler, three_heads(), options);
      for (std::uint64_t epoch : {0u, 1u}) {
        CAPTURE(epoch);
        on_cpu.start_epoch(epoch);
        on_gpu.start_epoch(epoch);
        std::size_t batches = 0;
        while (std::optional<Batch> expected = on_cpu.next()) {
          std::optional<Batch> actual = on_gpu.next();
          REQUIRE(actual.has_value());
          CHECK(actual->images.device() == gpu.device());
          CHECK(actual->labels.classes.device() == gpu.device());
          CHECK(actual->size == expected->size);
          CHECK(actual->samples == expected->samples);
          CHECK(actual->images.to_vector<float>(gpu) == expected->images.to_vector<float>());
          CHECK(actual->labels.classes.to_vector<std::int32_t>(gpu) ==
                expected->labels.classes.to_vector<std::int32_t>());
          CHECK(actual->labels.binary.to_vector<std::int8_t>(gpu) == expected->labels.binary.to_vector<std::int8_t>());
          if (batches++ == 0) kept = std::move(actual);
        }
        CHECK(!on_gpu.next().has_value());
        CHECK(batches == sampler.batches_per_epoch());
        CHECK(on_gpu.skipped() == on_cpu.skipped());
        CHECK(on_gpu.skipped() == 1);
      }
      // Stopping midway with batches in flight, then destroying the loader, must not hang.
      on_gpu.start_epoch(2);
      CHECK(on_gpu.next().has_value());
    }
    // Batches for a bf16 trunk: the same bits on both devices.
    options.image_type = ScalarType::bf16;
    Loader narrow_cpu(cpu, sampler, three_heads(), options), narrow_gpu(gpu, sampler, three_heads(), options);
    narrow_cpu.start_epoch(0);
    narrow_gpu.start_epoch(0);
    while (std::optional<Batch> expected = narrow_cpu.next()) {
      std::optional<Batch> actual = narrow_gpu.next();
      REQUIRE(actual.has_value());
      CHECK(actual->images.dtype() == ScalarType::bf16);
      CHECK(actual->images.to_vector<cumtl::bfloat16_t>(gpu) == expected->images.to_vector<cumtl::bfloat16_t>());
    }
    // A batch is the caller's: it outlives the loader and its staging.
    REQUIRE(kept.has_value());
    on_cpu.start_epoch(1);
    const std::optional<Batch> expected = on_cpu.next();
    REQUIRE(expected.has_value());
    CHECK(kept->images.to_vector<float>(gpu) == expected->images.to_vector<float>());
  }
}
