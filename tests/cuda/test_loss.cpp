// The fused multi-task loss kernel against its CPU twin, its determinism, and
// invalid labels found on the device. Needs a GPU.
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../support/loss_batches.hpp"
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::HeadKind;
using cumtl::LossMode;
using cumtl::LossNormalization;
using cumtl::MultiTaskLabels;
using cumtl::MultiTaskLoss;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

// Runs a copy of `loss` on the CPU and another on the GPU over the same batch,
// checks that counts, losses and gradients agree, and returns the GPU gradient.
std::vector<float> gpu_gradient_checked_against_cpu(const MultiTaskLoss& loss, const cumtl_test::Batch& batch) {
  Context cpu;
  Context gpu(Device::cuda(0));
  MultiTaskLoss cpu_loss(loss.heads(), loss.options()), gpu_loss(loss.heads(), loss.options());
  Tensor cpu_gradient = Tensor::empty(batch.logits.shape(), ScalarType::f32);
  cpu_loss.compute(cpu, LossMode::train, batch.logits, batch.labels, cpu_gradient);
  const cumtl::LossReport expected = cpu_loss.read(cpu);

  const auto [logits, labels] = batch.to(gpu);
  Tensor gradient = Tensor::empty(gpu, logits.shape(), ScalarType::f32);
  gpu_loss.compute(gpu, LossMode::train, logits, labels, gradient);
  const cumtl::LossReport report = gpu_loss.read(gpu);
  // The same result through pinned memory and an event, without a host wait.
  cumtl::LossReadback readback;
  gpu_loss.read_async(gpu, readback);
  const cumtl::LossReport late = gpu_loss.read(gpu, readback);
  CHECK(late.total == report.total);
  CHECK(late.task_losses == report.task_losses);
  CHECK(late.labels == report.labels);

  CHECK(report.labels == expected.labels);
  CHECK(report.samples == expected.samples);
  CHECK(cumtl_test::max_relative_error(report.task_losses, expected.task_losses, 1e-6) < 1e-6);
  CHECK(report.total == doctest::Approx(expected.total).epsilon(1e-6));
  std::vector<float> values = gradient.to_vector<float>(gpu);
  CHECK(cumtl_test::error_over_scale(values, cpu_gradient.to_vector<float>()) < 1e-6);
  return values;
}

}  // namespace

TEST_SUITE("loss") {
  TEST_CASE("loss: the CUDA kernel matches the CPU twin on random batches") {
    for (LossNormalization normalization :
         {LossNormalization::per_label, LossNormalization::per_sample, LossNormalization::per_batch}) {
      for (cumtl::MissingLabels missing : {cumtl::MissingLabels::ignore, cumtl::MissingLabels::as_negative}) {
        for (std::int64_t rows : {1, 7, 1000, 65536}) {
          CAPTURE(int(normalization));
          CAPTURE(int(missing));
          CAPTURE(rows);
          const MultiTaskLoss loss(cumtl_test::flagship_heads(), {normalization, missing});
          gpu_gradient_checked_against_cpu(loss, cumtl_test::random_batch<float>(loss, rows, std::uint64_t(rows)));
        }
      }
    }
  }

  // 2-byte logits on both devices: the same float32 losses up to the libraries'
  // exp and log (1e-6), and gradients apart by at most one unit in the last
  // place of the largest element (an exp one float ulp apart can round the
  // other way): 2^-7 of the scale for bf16, 2^-10 for f16.
  TEST_CASE_TEMPLATE("loss: bf16 and f16 logits on the GPU match the CPU twin", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context cpu;
    Context gpu(Device::cuda(0));
    const ScalarType half = cumtl::scalar_type_v<Half>;
    const double one_ulp = std::is_same_v<Half, cumtl::bfloat16_t> ? 0x1p-7 : 0x1p-10;
    for (std::int64_t rows : {1, 7, 1000, 65536}) {
      CAPTURE(rows);
      MultiTaskLoss cpu_loss(cumtl_test::flagship_heads()), gpu_loss(cumtl_test::flagship_heads());
      const cumtl_test::Batch batch = cumtl_test::random_batch<float>(cpu_loss, rows, std::uint64_t(rows) + 3);
      const Tensor logits = cumtl_test::narrowed<Half>(batch.logits);
      Tensor gradient = Tensor::empty(logits.shape(), half);
      cpu_loss.compute(cpu, LossMode::train, logits, batch.labels, gradient);
      const cumtl::LossReport expected = cpu_loss.read(cpu);

      const Tensor gpu_logits = logits.to(gpu, gpu.device());
      const MultiTaskLabels gpu_labels{batch.labels.classes.to(gpu, gpu.device()),
                                       batch.labels.binary.to(gpu, gpu.device())};
      Tensor gpu_gradient = Tensor::empty(gpu, logits.shape(), half);
      gpu_loss.compute(gpu, LossMode::train, gpu_logits, gpu_labels, gpu_gradient);
      const cumtl::LossReport report = gpu_loss.read(gpu);
      CHECK(report.labels == expected.labels);
      CHECK(report.samples == expected.samples);
      CHECK(cumtl_test::max_relative_error(report.task_losses, expected.task_losses, 1e-6) < 1e-6);
      CHECK(cumtl_test::error_over_scale(gpu_gradient.to_vector<Half>(gpu), gradient.to_vector<Half>()) <= one_ulp);
    }
  }

  TEST_CASE("loss: a head wider than a warp and extreme logits on the GPU") {
    const MultiTaskLoss loss({{.name = "wide", .kind = HeadKind::softmax, .outputs = 1000},
                              {.name = "many", .kind = HeadKind::sigmoid, .outputs = 70}});
    const std::vector<float> gradient =
        gpu_gradient_checked_against_cpu(loss, cumtl_test::random_batch<float>(loss, 300, 5, 0.2, 1e4));
    for (float value : gradient) REQUIRE(std::isfinite(value));
  }

  TEST_CASE("loss: the kernel is deterministic run to run") {
    Context gpu(Device::cuda(0));
    MultiTaskLoss loss(cumtl_test::flagship_heads());
    const cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, 65536, 77);
    const auto [logits, labels] = batch.to(gpu);
    Tensor first = Tensor::empty(gpu, logits.shape(), ScalarType::f32);
    Tensor second = Tensor::empty(gpu, logits.shape(), ScalarType::f32);
    loss.compute(gpu, LossMode::train, logits, labels, first);
    const std::vector<float> first_losses = loss.losses().to_vector<float>(gpu);
    loss.compute(gpu, LossMode::train, logits, labels, second);
    const std::vector<float> second_losses = loss.losses().to_vector<float>(gpu);
    CHECK(std::memcmp(first_losses.data(), second_losses.data(), first_losses.size() * sizeof(float)) == 0);
    const std::vector<float> a = first.to_vector<float>(gpu), b = second.to_vector<float>(gpu);
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  }

  TEST_CASE("loss: evaluation on the GPU writes no gradient") {
    Context gpu(Device::cuda(0));
    MultiTaskLoss loss(cumtl_test::flagship_heads());
    const cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, 100, 8);
    const auto [logits, labels] = batch.to(gpu);
    Tensor gradient = Tensor::empty(gpu, logits.shape(), ScalarType::f32);
    loss.compute(gpu, LossMode::train, logits, labels, gradient);
    const double trained = loss.read(gpu).total;
    cumtl::ops::fill(gpu, gradient, 7.0);
    loss.compute(gpu, LossMode::evaluate, logits, labels, gradient);
    CHECK(loss.read(gpu).total == trained);
    CHECK(gradient.to_vector<float>(gpu) == std::vector<float>(std::size_t(gradient.numel()), 7.0f));
  }

  TEST_CASE("loss: an invalid label on the GPU is reported by read, also through a readback") {
    Context gpu(Device::cuda(0));
    MultiTaskLoss loss(cumtl_test::flagship_heads());
    cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, 4000, 12);
    batch.labels.classes.data<std::int32_t>()[2 * 3001 + 1] = 11;  // compound has classes 0..10
    batch.labels.binary.data<std::int8_t>()[12 * 3500 + 4] = 5;
    const auto [logits, labels] = batch.to(gpu);
    Tensor gradient = Tensor::empty(gpu, logits.shape(), ScalarType::f32);
    loss.compute(gpu, LossMode::train, logits, labels, gradient);
    CHECK_ERROR_WITH(loss.read(gpu), "head 'compound'", "sample 3001", "class 11", "0..10");
    // Read a step later, as the trainer does: the readback kept the batch's labels to name.
    cumtl::LossReadback readback;
    loss.compute(gpu, LossMode::train, logits, labels, gradient);
    loss.read_async(gpu, readback);
    CHECK_ERROR_WITH(loss.read(gpu, readback), "head 'compound'", "sample 3001", "class 11", "0..10");
    CHECK_FALSE(readback.pending());
  }
}  // TEST_SUITE
