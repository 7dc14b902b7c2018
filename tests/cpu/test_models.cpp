// Residual blocks and the multi-head ResNet on the CPU: finite-difference
// gradient checks in double through batch norm, the fused ReLU and residual
// paths and the loss; parameter names and counts as torchvision has them.
#include <cstdint>
#include <type_traits>
#include <utility>
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

  // A float32 model whose trunk runs in bf16 or f16 against the same model
  // (same seed, so the same master weights) in float32. The invariants are
  // exact: master values, gradients and buffers stay float32, the working copy
  // is the master values rounded, also after a write to the master values
  // between two forward passes, and gradients accumulate in float32. The
  // logits carry a rounding per layer (2^-8 relative for bf16, 2^-11 for f16)
  // through 10 layers: held within 5% (bf16) and 1% (f16) of their scale
  // (measured 0.7% and 0.12%).
  TEST_CASE_TEMPLATE("resnet: a trunk in bf16 or f16 keeps float32 master weights and tracks the float32 model", Half,
                     cumtl::bfloat16_t, cumtl::float16_t) {
    Context ctx;
    const ScalarType half = cumtl::scalar_type_v<Half>;
    const double bound = std::is_same_v<Half, cumtl::bfloat16_t> ? 0.05 : 0.01;
    const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7},
                                             {.name = "au", .kind = cumtl::HeadKind::sigmoid, .outputs = 12}};
    cumtl::MultiHeadModel<float> wide(cumtl::ResNetSpec::small(), heads);
    cumtl::MultiHeadModel<float> mixed(cumtl::ResNetSpec::small(), heads, half);
    CHECK(mixed.activations() == half);
    wide.allocate(ctx);
    mixed.allocate(ctx);
    ParameterStore& store = mixed.parameters();
    CHECK(store.mixed());
    CHECK(store.values().dtype() == ScalarType::f32);
    CHECK(store.gradients().dtype() == ScalarType::f32);
    CHECK(store.buffer_values().dtype() == ScalarType::f32);
    CHECK(store.working_values().dtype() == half);
    CHECK(store.parameter("conv1.weight").working.dtype() == half);
    Generator wide_generator(23), mixed_generator(23);
    wide.initialize(ctx, wide_generator);
    mixed.initialize(ctx, mixed_generator);
    CHECK(store.values().to_vector<float>() == wide.parameters().values().to_vector<float>());

    Tensor images = Tensor::empty(Shape{6, 32, 32, 3}, ScalarType::f32);
    Generator image_generator(24);
    cumtl::ops::normal(ctx, images, image_generator, 0, 1);
    const Tensor logits = wide.forward(ctx, images, Phase::train);
    const Tensor mixed_logits = mixed.forward(ctx, images, Phase::train);
    CHECK(mixed_logits.dtype() == ScalarType::f32);
    CHECK(store.working_values().to_vector<Half>() == cumtl_test::rounded<Half>(std::as_const(store).values()));
    const double logit_error = cumtl_test::error_over_scale(mixed_logits.to_vector<float>(), logits.to_vector<float>());
    MESSAGE("logits: ", logit_error, " of their scale");
    CHECK(logit_error < bound);

    Tensor dlogits = Tensor::empty(logits.shape(), ScalarType::f32);
    cumtl::ops::normal(ctx, dlogits, image_generator, 0, 1);
    wide.backward(ctx, dlogits, GradientMode::overwrite);
    mixed.backward(ctx, dlogits, GradientMode::overwrite);
    const std::vector<float> gradients = wide.parameters().gradients().to_vector<float>();
    // How far the float32 model's own gradients move when only its weights are
    // rounded to the half type: batch norm over few values per channel makes a
    // small network's gradients that sensitive (15% of their scale for bf16
    // here). The mixed model rounds its activations as well, by as much, so it
    // may be twice as far (measured: 1.1 times).
    cumtl::MultiHeadModel<float> rounded_weights(cumtl::ResNetSpec::small(), heads);
    rounded_weights.allocate(ctx);
    cumtl::ops::convert(ctx, cumtl_test::narrowed<Half>(wide.parameters().values()),
                        rounded_weights.parameters().values());
    rounded_weights.forward(ctx, images, Phase::train);
    rounded_weights.backward(ctx, dlogits, GradientMode::overwrite);
    const double sensitivity =
        cumtl_test::error_over_scale(rounded_weights.parameters().gradients().to_vector<float>(), gradients);
    const double gradient_error = cumtl_test::error_over_scale(store.gradients().to_vector<float>(), gradients);
    MESSAGE("gradients: ", gradient_error, " of their scale; with the weights alone rounded: ", sensitivity);
    CHECK(gradient_error < 2 * sensitivity);
    // The heads' gradients never pass through the 2-byte type but for their inputs, the features.
    const double head_error =
        cumtl_test::error_over_scale(store.parameter("heads.emotion.weight").gradient.to_vector<float>(),
                                     wide.parameters().parameter("heads.emotion.weight").gradient.to_vector<float>());
    CHECK(head_error < bound);
    CHECK(cumtl_test::error_over_scale(store.buffer_values().to_vector<float>(),
                                       wide.parameters().buffer_values().to_vector<float>()) < bound);

    // Accumulating adds in float32 to what is there: the same pass again doubles every gradient exactly.
    std::vector<float> twice = store.gradients().to_vector<float>();
    for (float& value : twice) value *= 2;
    mixed.forward(ctx, images, Phase::train);
    mixed.backward(ctx, dlogits, GradientMode::accumulate);
    CHECK(store.gradients().to_vector<float>() == twice);

    // An optimizer step writes the working copy in the pass that updates the master values.
    const std::vector<float> before_step = mixed.forward(ctx, images, Phase::eval).to_vector<float>();
    cumtl::optim::Sgd sgd(ctx, store, {.lr = 0.5});
    sgd.step(ctx);
    CHECK(store.working_current());
    CHECK(store.working_values().to_vector<Half>() == cumtl_test::rounded<Half>(std::as_const(store).values()));
    const std::vector<float> after_step = mixed.forward(ctx, images, Phase::eval).to_vector<float>();
    CHECK(after_step != before_step);

    // Any other write to the master values reaches the next forward pass: through the flat values, whose
    // non-const accessor marks the working copy stale, ...
    cumtl::ops::axpy(ctx, -0.5, store.gradients(), store.values());
    CHECK(!store.working_current());
    const std::vector<float> after_write = mixed.forward(ctx, images, Phase::eval).to_vector<float>();
    CHECK(store.working_values().to_vector<Half>() == cumtl_test::rounded<Half>(std::as_const(store).values()));
    CHECK(after_write != after_step);
    // ... or through a parameter's view, announced with values_written().
    cumtl::ops::scale(ctx, store.parameter("conv1.weight").value, 0.5);
    store.values_written();
    const std::vector<float> after_scale = mixed.forward(ctx, images, Phase::eval).to_vector<float>();
    CHECK(store.working_values().to_vector<Half>() == cumtl_test::rounded<Half>(std::as_const(store).values()));
    CHECK(after_scale != after_write);

    // So do weights loaded from a file: the float32 model's, here.
    const cumtl_test::TemporaryFolder folder;
    cumtl::io::export_model_weights(ctx, wide.parameters(), folder.path / "weights.safetensors");
    cumtl::io::import_model_weights(ctx, store, folder.path / "weights.safetensors");
    CHECK(!store.working_current());
    const std::vector<float> loaded = mixed.forward(ctx, images, Phase::eval).to_vector<float>();
    CHECK(std::as_const(store).values().to_vector<float>() == wide.parameters().values().to_vector<float>());
    CHECK(store.working_values().to_vector<Half>() == cumtl_test::rounded<Half>(std::as_const(store).values()));
    CHECK(loaded != after_scale);
  }

  // cuDNN's tensor-core engines need 16-byte-aligned operands (without, the
  // stem's filter gradient has none: tests/cuda/test_cudnn_plans.cpp). Every
  // convolution weight of the shipped networks starts at a multiple of 8
  // elements of the flat working copy: 16 bytes in bf16 and f16.
  TEST_CASE("resnet: every convolution weight starts 16 bytes into a 2-byte working copy") {
    const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7}};
    for (const cumtl::ResNetSpec& spec : {cumtl::ResNetSpec::resnet18(), cumtl::ResNetSpec::resnet50(),
                                          cumtl::ResNetSpec::small(), cumtl::ResNetSpec::compact()}) {
      cumtl::MultiHeadModel<float> model(spec, heads, ScalarType::bf16);
      const ParameterStore& store = model.parameters();
      int convolutions = 0;
      for (std::size_t i = 0; i < store.parameters().size(); ++i) {
        if (store.parameters()[i]->shape.rank() != 4) continue;
        CAPTURE(store.parameters()[i]->name);
        CHECK(store.element_offset(i) % 8 == 0);
        ++convolutions;
      }
      CHECK(convolutions >= 5);
    }
  }

  TEST_CASE("resnet: a float64 model runs its trunk in float64 only") {
    CHECK_ERROR_WITH(cumtl::MultiHeadModel<double>(
                         cumtl::ResNetSpec::small(),
                         {{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7}}, ScalarType::bf16),
                     "MultiHeadModel", "float64 model runs its trunk in float64", "not in bfloat16");
  }
}  // TEST_SUITE
