// A g++-compiled program of a cumtl user. It reports whether the CUDA backend
// is linked (and fails when that is not what the installed package promised),
// computes y = 2x + y and trains a two-head ResNet for a few steps on the GPU
// when one is usable, else on the CPU. With --gpu it needs the GPU: without
// one it exits 77, which ctest reports as skipped.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include <cumtl/cumtl.hpp>

namespace {

bool axpy_is_right(cumtl::Context& ctx) {
  const cumtl::Tensor x = cumtl::Tensor::from_vector<float>({1, 2, 3, 4}, cumtl::Shape{2, 2}).to(ctx, ctx.device());
  cumtl::Tensor y = cumtl::Tensor::empty(ctx, x.shape(), x.dtype());
  cumtl::ops::fill(ctx, y, 0.5);
  cumtl::ops::axpy(ctx, 2.0, x, y);
  return y.to_vector<float>(ctx) == std::vector<float>{2.5f, 4.5f, 6.5f, 8.5f};
}

// The losses of a few training steps on one fixed batch.
std::vector<double> train_a_few_steps(cumtl::Context& ctx) {
  using namespace cumtl;
  const std::vector<HeadSpec> heads{{.name = "shape", .kind = HeadKind::softmax, .outputs = 3},
                                    {.name = "marks", .kind = HeadKind::sigmoid, .outputs = 4}};
  MultiHeadModel<float> model(ResNetSpec::small(), heads);
  model.allocate(ctx);
  Generator generator(7);
  model.initialize(ctx, generator);
  MultiTaskLoss loss(heads);
  optim::AdamW optimizer(ctx, model.parameters(), {.lr = 1e-3});
  const std::int64_t n = 8, side = 24;
  Tensor images = Tensor::empty(ctx, Shape::nhwc(n, side, side, 3), ScalarType::f32);
  ops::normal(ctx, images, generator, 0.0, 1.0);
  std::vector<std::int32_t> classes(n);
  std::vector<std::int8_t> marks(n * 4);
  for (std::int64_t i = 0; i < n; ++i) {
    classes[std::size_t(i)] = std::int32_t(i % 3);
    for (int k = 0; k < 4; ++k) marks[std::size_t(i * 4 + k)] = std::int8_t((i >> k) & 1);
  }
  const MultiTaskLabels labels{Tensor::from_vector(classes, Shape{n, 1}).to(ctx, ctx.device()),
                               Tensor::from_vector(marks, Shape{n, 4}).to(ctx, ctx.device())};
  std::vector<double> losses;
  for (int step = 0; step < 8; ++step) {
    const Tensor logits = model.forward(ctx, images, Phase::train);
    Tensor dlogits = Tensor::empty(ctx, logits.shape(), logits.dtype());
    loss.compute(ctx, LossMode::train, logits, labels, dlogits);
    model.backward(ctx, dlogits, GradientMode::overwrite);
    optimizer.step(ctx);
    losses.push_back(loss.read(ctx).total);
  }
  return losses;
}

}  // namespace

int main(int argc, char** argv) {
  const bool require_gpu = argc > 1 && std::strcmp(argv[1], "--gpu") == 0;
  try {
    const bool linked = cumtl::cuda_backend_linked();
    std::printf("consumer: CUDA backend %s\n", linked ? "linked" : "not linked");
    if (linked != bool(CONSUMER_EXPECTS_CUDA_BACKEND)) {
      std::fprintf(stderr, "consumer: the package %s a CUDA backend, the program %s one\n",
                   CONSUMER_EXPECTS_CUDA_BACKEND ? "has" : "has no", linked ? "links" : "does not link");
      return 1;
    }
    if (require_gpu && !cumtl::cuda_available()) {
      std::printf("consumer: skipped: no usable GPU: %s\n", cumtl::cuda_unavailable_reason().c_str());
      return 77;
    }
    const cumtl::Device device = cumtl::cuda_available() ? cumtl::Device::cuda(0) : cumtl::Device::cpu();
    cumtl::Context& ctx = cumtl::Context::default_for(device);
    if (!axpy_is_right(ctx)) {
      std::fprintf(stderr, "consumer: wrong axpy result on %s\n", device.str().c_str());
      return 1;
    }
    const std::vector<double> losses = train_a_few_steps(ctx);
    std::printf("consumer: on %s, axpy is right and the training loss went %.4f -> %.4f\n", device.str().c_str(),
                losses.front(), losses.back());
    if (!std::isfinite(losses.back()) || !(losses.back() < losses.front())) {
      std::fprintf(stderr, "consumer: training on %s did not lower the loss\n", device.str().c_str());
      return 1;
    }
    return 0;
  } catch (const cumtl::Error& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 1;
  }
}
