// Residual blocks and the multi-head ResNet on the CPU: finite-difference
// gradient checks in double through batch norm, the fused ReLU and residual
// paths and the loss; parameter names and counts as torchvision has them.
#include <cstdint>
#include <vector>

#include "../support/gradcheck.hpp"

using cumtl::Context;
using cumtl::Generator;
using cumtl::GradientMode;
using cumtl::ParameterStore;
using cumtl::Phase;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

Tensor random_images(const Shape& shape, std::uint64_t seed) {
  Context cpu;
  Tensor images = Tensor::empty(shape, ScalarType::f64);
  Generator generator(seed);
  cumtl::ops::normal(cpu, images, generator, 0, 1);
  return images;
}

// Checks dx and every parameter gradient of `block` against central differences.
template <class Block>
void check_block(ParameterStore& store, Block& block, Tensor& x) {
  Context ctx;
  const Tensor r = cumtl_test::loss_weights(block.forward(ctx, x, Phase::train).shape(), 21);
  const auto loss = [&] { return cumtl_test::weighted_sum(block.forward(ctx, x, Phase::train), r); };
  cumtl_test::fill(store.gradients(), 0.5);  // accumulate mode must keep these
  block.forward(ctx, x, Phase::train);
  const Tensor dx = block.backward(ctx, r, GradientMode::accumulate);
  std::vector<double> gradients = store.gradients().to_vector<double>();
  for (double& value : gradients) value -= 0.5;
  cumtl_test::check_gradient("x", dx, cumtl_test::numeric_gradient(x, loss), {.relative = 1e-5, .absolute = 1e-7});
  cumtl_test::check_gradient("parameters", gradients, cumtl_test::numeric_gradient(store.values(), loss),
                             {.relative = 1e-5, .absolute = 1e-7});
}

}  // namespace

TEST_SUITE("models") {
  TEST_CASE("gradcheck: basicblock") {
    for (int stride : {1, 2}) {
      CAPTURE(stride);
      Context ctx;
      ParameterStore store;
      cumtl::BasicBlock<double> block(store, "layer2.0", 3, stride == 1 ? 3 : 4, stride);
      store.allocate(ctx, ScalarType::f64);
      Generator generator(11);
      block.initialize(ctx, generator);
      cumtl::ops::uniform(ctx, store.values(), generator, -1, 1);  // γ and β away from 1 and 0 too
      Tensor x = random_images(Shape{2, 5, 5, 3}, 12);
      check_block(store, block, x);
      if (stride == 2) CHECK(store.parameter("layer2.0.downsample.0.weight").shape == Shape{4, 1, 1, 3});
    }
  }

  TEST_CASE("gradcheck: bottleneck") {
    Context ctx;
    ParameterStore store;
    cumtl::Bottleneck<double> block(store, "layer1.0", 3, 2, 2);
    store.allocate(ctx, ScalarType::f64);
    Generator generator(13);
    block.initialize(ctx, generator);
    cumtl::ops::uniform(ctx, store.values(), generator, -1, 1);
    Tensor x = random_images(Shape{2, 5, 5, 3}, 14);
    check_block(store, block, x);
    CHECK(store.parameter("layer1.0.conv3.weight").shape == Shape{8, 1, 1, 2});
  }

  TEST_CASE("gradcheck: resnet") {
    // A whole multi-head model and the selective loss: every parameter's
    // gradient, behind the 3×3/1 stem and behind the strided one.
    for (const cumtl::StemKind stem : {cumtl::StemKind::small, cumtl::StemKind::small_strided}) {
      CAPTURE(cumtl::name_of(stem));
      Context ctx;
      const cumtl::ResNetSpec spec{.blocks = {1, 1, 1}, .widths = {2, 3, 4}, .stem = stem, .stem_width = 2};
      const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 3},
                                               {.name = "au", .kind = cumtl::HeadKind::sigmoid, .outputs = 2}};
      cumtl::MultiHeadModel<double> model(spec, heads);
      model.allocate(ctx);
      Generator generator(15);
      model.initialize(ctx, generator);
      cumtl::MultiTaskLoss loss(heads);
      const Tensor images = random_images(Shape{3, 6, 6, 3}, 16);
      const cumtl::MultiTaskLabels labels{Tensor::from_vector<std::int32_t>({2, -1, 0}, Shape{3, 1}),
                                          Tensor::from_vector<std::int8_t>({1, 0, -1, -1, 0, 1}, Shape{3, 2})};
      const auto total_loss = [&] {
        Tensor unused;
        loss.compute(ctx, cumtl::LossMode::evaluate, model.forward(ctx, images, Phase::train), labels, unused);
        return loss.read(ctx).total;
      };
      const Tensor logits = model.forward(ctx, images, Phase::train);
      Tensor dlogits = Tensor::empty(logits.shape(), ScalarType::f64);
      loss.compute(ctx, cumtl::LossMode::train, logits, labels, dlogits);
      cumtl_test::fill(model.parameters().gradients(), INFINITY);
      model.backward(ctx, dlogits, GradientMode::overwrite);
      cumtl_test::check_gradient("parameters", model.parameters().gradients(),
                                 cumtl_test::numeric_gradient(model.parameters().values(), total_loss),
                                 {.relative = 1e-5, .absolute = 1e-8});
    }
  }

  TEST_CASE("resnet: a training step gives the same bits on 1, 2 and 3 CPU threads") {
    // The compact model on a batch of 16: its convolutions run in several
    // groups of images and its batch norms in several blocks of rows, which
    // threads take in any order; the sums over them must not notice.
    const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7},
                                             {.name = "au", .kind = cumtl::HeadKind::sigmoid, .outputs = 12}};
    cumtl::MultiTaskLoss loss(heads);
    struct Step {
      std::vector<float> logits, gradients;
    };
    const auto train_step = [&](int threads) {
      Context ctx;
      ctx.set_cpu_threads(threads);
      cumtl::MultiHeadModel<float> model(cumtl::ResNetSpec::compact(), heads);
      model.allocate(ctx);
      Generator generator(23);
      model.initialize(ctx, generator);
      Tensor images = Tensor::empty(Shape{16, 32, 32, 3}, ScalarType::f32);
      cumtl::ops::normal(ctx, images, generator, 0, 1);
      const Tensor logits = model.forward(ctx, images, Phase::train);
      cumtl::MultiTaskLabels labels = loss.make_labels(ctx, 16);
      for (std::int32_t i = 0; i < 16; ++i) labels.classes.data<std::int32_t>()[i] = i % 7;
      Tensor dlogits = Tensor::empty(logits.shape(), ScalarType::f32);
      loss.compute(ctx, cumtl::LossMode::train, logits, labels, dlogits);
      model.backward(ctx, dlogits, GradientMode::overwrite);
      return Step{logits.to_vector<float>(), model.parameters().gradients().to_vector<float>()};
    };
    const Step one = train_step(1);
    for (const int threads : {2, 3}) {
      CAPTURE(threads);
      const Step many = train_step(threads);
      CHECK(many.logits == one.logits);
      CHECK(many.gradients == one.gradients);
    }
  }

  TEST_CASE("resnet: parameter names and counts match torchvision") {
    // torchvision's resnet18 and resnet50 have 11,689,512 and 25,557,032 parameters,
    // of which the 1000-class fc layer holds 513,000 and 2,049,000.
    ParameterStore resnet18;
    cumtl::ResNet<float> trunk18(resnet18, cumtl::ResNetSpec::resnet18());
    CHECK(resnet18.parameter_count() == 11'689'512 - 513'000);
    CHECK(resnet18.parameter("conv1.weight").shape == Shape{64, 7, 7, 3});
    CHECK(resnet18.parameter("layer2.0.downsample.0.weight").shape == Shape{128, 1, 1, 64});
    CHECK(resnet18.parameter("layer4.1.bn2.bias").shape == Shape{512});
    CHECK(resnet18.buffer("layer3.1.bn1.running_var").initial_value == 1.0);
    CHECK_ERROR_WITH(resnet18.parameter("layer5.0.conv1.weight"), "no parameter is named 'layer5.0.conv1.weight'");

    ParameterStore resnet50;
    cumtl::ResNet<float> trunk50(resnet50, cumtl::ResNetSpec::resnet50());
    CHECK(resnet50.parameter_count() == 25'557'032 - 2'049'000);
    CHECK(resnet50.parameter("layer1.0.conv3.weight").shape == Shape{256, 1, 1, 64});
    CHECK(resnet50.parameter("layer4.2.bn3.weight").shape == Shape{2048});
    CHECK(cumtl::ResNetSpec::resnet50().feature_count() == 2048);
  }

  TEST_CASE("resnet: the small model trains one step on the CPU") {
    Context ctx;
    const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7},
                                             {.name = "au", .kind = cumtl::HeadKind::sigmoid, .outputs = 12}};
    cumtl::MultiHeadModel<float> model(cumtl::ResNetSpec::small(), heads);
    model.allocate(ctx);
    Generator generator(17);
    model.initialize(ctx, generator);
    Tensor images = Tensor::empty(Shape{4, 32, 32, 3}, ScalarType::f32);
    cumtl::ops::normal(ctx, images, generator, 0, 1);
    const Tensor logits = model.forward(ctx, images, Phase::train);
    CHECK(logits.shape() == Shape{4, 19});
    cumtl::MultiTaskLoss loss(heads);
    cumtl::MultiTaskLabels labels = loss.make_labels(ctx, 4);
    labels.classes.data<std::int32_t>()[0] = 3;
    labels.binary.data<std::int8_t>()[12] = 1;
    Tensor dlogits = Tensor::empty(logits.shape(), ScalarType::f32);
    loss.compute(ctx, cumtl::LossMode::train, logits, labels, dlogits);
    const double before = loss.read(ctx).total;
    model.backward(ctx, dlogits);
    cumtl::ops::axpy(ctx, -0.1, model.parameters().gradients(), model.parameters().values());
    Tensor unused;
    loss.compute(ctx, cumtl::LossMode::evaluate, model.forward(ctx, images, Phase::train), labels, unused);
    CHECK(loss.read(ctx).total < before);  // one step of gradient descent lowers the loss

    const Tensor evaluated = model.forward(ctx, images, Phase::eval);
    CHECK(evaluated.shape() == Shape{4, 19});
    CHECK_ERROR_WITH(model.forward(ctx, Tensor::zeros(Shape{4, 32, 32, 1}, ScalarType::f32), Phase::train),
                     "Conv2d 'conv1'", "float32[4, 32, 32, 1]");
  }
}  // TEST_SUITE
