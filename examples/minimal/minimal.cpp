// Embedding cumtl in one's own program: a two-head ResNet (a 3-class softmax
// head and a 4-label sigmoid head) trained for a few steps on tensors made
// here, then used to predict. Runs on the GPU if there is one, else the CPU.
#include <cstdio>
#include <vector>

#include <cumtl/cumtl.hpp>

int main() {
  using namespace cumtl;
  const Device device = cuda_available() ? Device::cuda(0) : Device::cpu();
  Context& ctx = Context::default_for(device);

  const std::vector<HeadSpec> heads{{.name = "shape", .kind = HeadKind::softmax, .outputs = 3},
                                    {.name = "marks", .kind = HeadKind::sigmoid, .outputs = 4}};
  MultiHeadModel<float> model(ResNetSpec::small(), heads);
  model.allocate(ctx);
  Generator generator(7);
  model.initialize(ctx, generator);
  MultiTaskLoss loss(heads);
  optim::AdamW optimizer(ctx, model.parameters(), {.lr = 1e-3});

  // A batch of 16 random 32×32 images; class = sample mod 3, marks = its low
  // bits; every fourth sample lacks its class label (-1), as in multi-domain data.
  const std::int64_t n = 16, side = 32;
  Tensor images = Tensor::empty(ctx, Shape::nhwc(n, side, side, 3), ScalarType::f32);
  ops::normal(ctx, images, generator, 0.0, 1.0);
  std::vector<std::int32_t> classes(n);
  std::vector<std::int8_t> marks(n * 4);
  for (std::int64_t i = 0; i < n; ++i) {
    classes[i] = i % 4 == 3 ? -1 : std::int32_t(i % 3);
    for (int k = 0; k < 4; ++k) marks[i * 4 + k] = std::int8_t((i >> k) & 1);
  }
  const MultiTaskLabels labels{Tensor::from_vector(classes, Shape{n, 1}).to(ctx, device),
                               Tensor::from_vector(marks, Shape{n, 4}).to(ctx, device)};

  for (int step = 0; step < 20; ++step) {
    const Tensor logits = model.forward(ctx, images, Phase::train);
    Tensor dlogits = Tensor::empty(ctx, logits.shape(), logits.dtype());
    loss.compute(ctx, LossMode::train, logits, labels, dlogits);
    model.backward(ctx, dlogits, GradientMode::overwrite);
    optimizer.step(ctx);
    if (step % 5 == 4) std::printf("step %2d  loss %.4f\n", step + 1, loss.read(ctx).total);
  }

  // Predict: the eval-mode logits of the first image, one head after the other.
  const std::vector<float> logits = model.forward(ctx, images, Phase::eval).to_vector<float>(ctx);
  std::printf("image 0 on %s: shape logits %.2f %.2f %.2f (label %d)\n", device.str().c_str(), logits[0], logits[1],
              logits[2], classes[0]);
  return 0;
}
