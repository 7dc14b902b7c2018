// The multi-task masked loss on the CPU: hand-computed cases for every
// normalization, the finite-difference gradient check, masking, empty tasks,
// extreme logits, invalid labels and the evaluation mode.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../support/loss_batches.hpp"
#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::HeadKind;
using cumtl::HeadSpec;
using cumtl::LossMode;
using cumtl::LossNormalization;
using cumtl::LossReadback;
using cumtl::MultiTaskLabels;
using cumtl::MultiTaskLoss;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

// One softmax head over 3 classes (weight 2) and one sigmoid head over 2 labels (weight 0.5).
std::vector<HeadSpec> small_heads() {
  return {{.name = "emotion", .kind = HeadKind::softmax, .outputs = 3, .weight = 2.0},
          {.name = "au", .kind = HeadKind::sigmoid, .outputs = 2, .weight = 0.5}};
}

// 4 samples, all logits zero: every softmax CE is log 3 and every BCE is log 2.
//   sample 0: class 1, AUs (1, 0)
//   sample 1: class -, AUs (0, -)
//   sample 2: class 2, AUs (-, -)
//   sample 3: class -, AUs (-, -)
// Softmax: 2 labelled samples. Sigmoid: 3 labels on 2 samples.
struct ZeroLogitsBatch {
  Tensor logits = Tensor::zeros(Shape{4, 5}, ScalarType::f64);
  MultiTaskLabels labels{Tensor::from_vector<std::int32_t>({1, -1, 2, -1}, Shape{4, 1}),
                         Tensor::from_vector<std::int8_t>({1, 0, 0, -1, -1, -1, -1, -1}, Shape{4, 2})};
};

cumtl::LossReport compute(MultiTaskLoss& loss, const Tensor& logits, const MultiTaskLabels& labels, Tensor& gradient) {
  Context ctx;
  loss.compute(ctx, LossMode::train, logits, labels, gradient);
  return loss.read(ctx);
}

// The total loss at `logits`, for finite differences.
double total_loss(MultiTaskLoss& loss, const Tensor& logits, const MultiTaskLabels& labels) {
  Context ctx;
  Tensor unused;
  loss.compute(ctx, LossMode::evaluate, logits, labels, unused);
  return loss.read(ctx).total;
}

}  // namespace

TEST_SUITE("loss") {
  TEST_CASE("loss: per available label on a hand-computed batch") {
    MultiTaskLoss loss(small_heads());
    ZeroLogitsBatch batch;
    Tensor gradient = Tensor::empty(Shape{4, 5}, ScalarType::f64);
    const cumtl::LossReport report = compute(loss, batch.logits, batch.labels, gradient);
    CHECK(report.labels == std::vector<std::int64_t>{2, 3});
    CHECK(report.samples == std::vector<std::int64_t>{2, 2});
    CHECK(report.task_losses[0] == doctest::Approx(std::log(3.0)).epsilon(1e-12));
    CHECK(report.task_losses[1] == doctest::Approx(std::log(2.0)).epsilon(1e-12));
    CHECK(report.total == doctest::Approx(2 * std::log(3.0) + 0.5 * std::log(2.0)).epsilon(1e-12));

    // dL/dz = λ/N_t · (p - y): softmax p = 1/3 with λ/N = 2/2, sigmoid p = 1/2 with λ/N = 0.5/3.
    const std::vector<double> g = gradient.to_vector<double>();
    const double third = 1.0 / 3, sixth = 0.5 / 3;
    const std::vector<double> expected{third,
                                       third - 1,
                                       third,
                                       sixth * (0.5 - 1),
                                       sixth * 0.5,  // sample 0
                                       0,
                                       0,
                                       0,
                                       sixth * 0.5,
                                       0,  // sample 1
                                       third,
                                       third,
                                       third - 1,
                                       0,
                                       0,  // sample 2
                                       0,
                                       0,
                                       0,
                                       0,
                                       0};  // sample 3
    for (std::size_t i = 0; i < expected.size(); ++i) {
      CAPTURE(i);
      CHECK(g[i] == doctest::Approx(expected[i]).epsilon(1e-12));
    }
  }

  TEST_CASE("loss: per labelled sample and per batch on the same batch") {
    ZeroLogitsBatch batch;
    Tensor gradient = Tensor::empty(Shape{4, 5}, ScalarType::f64);
    {
      // Softmax: 2 labelled samples (as per label). Sigmoid: 3 BCE terms over 2 samples × 2 outputs.
      MultiTaskLoss loss(small_heads(), {.normalization = LossNormalization::per_sample});
      const cumtl::LossReport report = compute(loss, batch.logits, batch.labels, gradient);
      CHECK(report.task_losses[0] == doctest::Approx(std::log(3.0)).epsilon(1e-12));
      CHECK(report.task_losses[1] == doctest::Approx(3 * std::log(2.0) / 4).epsilon(1e-12));
      CHECK(gradient.to_vector<double>()[3] == doctest::Approx(0.5 / 4 * (0.5 - 1)).epsilon(1e-12));
    }
    {
      // Softmax: 2 CE terms over 4 samples. Sigmoid: 3 BCE terms over 4 samples × 2 outputs.
      MultiTaskLoss loss(small_heads(), {.normalization = LossNormalization::per_batch});
      const cumtl::LossReport report = compute(loss, batch.logits, batch.labels, gradient);
      CHECK(report.task_losses[0] == doctest::Approx(2 * std::log(3.0) / 4).epsilon(1e-12));
      CHECK(report.task_losses[1] == doctest::Approx(3 * std::log(2.0) / 8).epsilon(1e-12));
      CHECK(report.total == doctest::Approx(2 * 2 * std::log(3.0) / 4 + 0.5 * 3 * std::log(2.0) / 8).epsilon(1e-12));
      CHECK(gradient.to_vector<double>()[1] == doctest::Approx(2.0 / 4 * (1.0 / 3 - 1)).epsilon(1e-12));
    }
  }

  TEST_CASE("loss: missing sigmoid labels as negatives is the same as writing zeros") {
    ZeroLogitsBatch batch;
    MultiTaskLoss naive(small_heads(), {.missing_sigmoid_labels = cumtl::MissingLabels::as_negative});
    Tensor naive_gradient = Tensor::empty(Shape{4, 5}, ScalarType::f64);
    const cumtl::LossReport naive_report = compute(naive, batch.logits, batch.labels, naive_gradient);
    CHECK(naive_report.labels[1] == 8);  // every sigmoid output now counts

    MultiTaskLabels explicit_zeros{batch.labels.classes,
                                   Tensor::from_vector<std::int8_t>({1, 0, 0, 0, 0, 0, 0, 0}, Shape{4, 2})};
    MultiTaskLoss selective(small_heads());
    Tensor gradient = Tensor::empty(Shape{4, 5}, ScalarType::f64);
    const cumtl::LossReport report = compute(selective, batch.logits, explicit_zeros, gradient);
    CHECK(naive_report.total == report.total);
    CHECK(naive_gradient.to_vector<double>() == gradient.to_vector<double>());
  }

  TEST_CASE("loss: label smoothing and positive weights against their formulas") {
    const std::vector<HeadSpec> heads{
        {.name = "compound", .kind = HeadKind::softmax, .outputs = 4, .label_smoothing = 0.2},
        {.name = "au", .kind = HeadKind::sigmoid, .outputs = 1, .positive_weights = {3.0}}};
    MultiTaskLoss loss(heads);
    const std::vector<double> z{1.0, -0.5, 2.0, 0.25, -1.5};
    const Tensor logits = Tensor::from_vector(z, Shape{1, 5});
    const MultiTaskLabels labels{Tensor::from_vector<std::int32_t>({2}, Shape{1, 1}),
                                 Tensor::from_vector<std::int8_t>({1}, Shape{1, 1})};
    Tensor gradient = Tensor::empty(Shape{1, 5}, ScalarType::f64);
    const cumtl::LossReport report = compute(loss, logits, labels, gradient);

    // Smoothed CE = -Σ_c q_c log p_c with q = 0.8·onehot + 0.2/4.
    double exp_sum = 0;
    for (int c = 0; c < 4; ++c) exp_sum += std::exp(z[std::size_t(c)]);
    double cross_entropy = 0;
    for (int c = 0; c < 4; ++c) {
      const double q = (c == 2 ? 0.8 : 0.0) + 0.05;
      cross_entropy -= q * std::log(std::exp(z[std::size_t(c)]) / exp_sum);
      CHECK(gradient.to_vector<double>()[std::size_t(c)] ==
            doctest::Approx(std::exp(z[std::size_t(c)]) / exp_sum - q).epsilon(1e-12));
    }
    CHECK(report.task_losses[0] == doctest::Approx(cross_entropy).epsilon(1e-12));
    // Weighted BCE of a positive: -3 log σ(z), gradient 3 (σ(z) - 1).
    const double s = 1 / (1 + std::exp(1.5));
    CHECK(report.task_losses[1] == doctest::Approx(-3 * std::log(s)).epsilon(1e-12));
    CHECK(gradient.to_vector<double>()[4] == doctest::Approx(3 * (s - 1)).epsilon(1e-12));
  }

  TEST_CASE("gradcheck: loss") {
    for (LossNormalization normalization :
         {LossNormalization::per_label, LossNormalization::per_sample, LossNormalization::per_batch}) {
      for (cumtl::MissingLabels missing : {cumtl::MissingLabels::ignore, cumtl::MissingLabels::as_negative}) {
        CAPTURE(int(normalization));
        CAPTURE(int(missing));
        MultiTaskLoss loss(cumtl_test::flagship_heads(),
                           {.normalization = normalization, .missing_sigmoid_labels = missing});
        cumtl_test::Batch batch = cumtl_test::random_batch<double>(loss, 6, 11);
        // +inf everywhere first: an element the loss forgets to write stays infinite and fails.
        Tensor gradient = Tensor::empty(batch.logits.shape(), ScalarType::f64);
        std::fill_n(gradient.data<double>(), gradient.numel(), std::numeric_limits<double>::infinity());
        compute(loss, batch.logits, batch.labels, gradient);
        const std::vector<double> analytic = gradient.to_vector<double>();

        double* z = batch.logits.data<double>();
        double worst = 0;
        for (std::int64_t i = 0; i < batch.logits.numel(); ++i) {
          const double saved = z[i], step = 1e-5;
          z[i] = saved + step;
          const double above = total_loss(loss, batch.logits, batch.labels);
          z[i] = saved - step;
          const double below = total_loss(loss, batch.logits, batch.labels);
          z[i] = saved;
          const double numeric = (above - below) / (2 * step);
          const double error = std::abs(numeric - analytic[std::size_t(i)]);
          CHECK(error <= 1e-8 + 1e-6 * std::abs(numeric));
          worst = std::max(worst, error);
        }
        MESSAGE("largest |numeric - analytic| = ", worst);
      }
    }
  }

  TEST_CASE("loss: missing labels get exactly zero gradient") {
    MultiTaskLoss loss(cumtl_test::flagship_heads());
    cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, 200, 3, 0.5);
    Tensor gradient = Tensor::empty(batch.logits.shape(), ScalarType::f32);
    compute(loss, batch.logits, batch.labels, gradient);
    const float* g = gradient.data<float>();
    const std::int32_t* classes = batch.labels.classes.data<std::int32_t>();
    const std::int8_t* binary = batch.labels.binary.data<std::int8_t>();
    int zeros_checked = 0;
    for (std::int64_t row = 0; row < 200; ++row) {
      for (const HeadSpec& head : loss.heads()) {
        const int offset = loss.logit_offset(head.name), column = loss.label_column(head.name);
        for (int k = 0; k < head.outputs; ++k) {
          const bool missing = head.kind == HeadKind::softmax ? classes[row * loss.class_columns() + column] < 0
                                                              : binary[row * loss.binary_columns() + column + k] < 0;
          const float value = g[row * loss.logit_columns() + offset + k];
          if (missing) {
            CHECK(value == 0.0f);
            ++zeros_checked;
          } else {
            CHECK(value != 0.0f);
          }
        }
      }
    }
    CHECK(zeros_checked > 500);
  }

  TEST_CASE("loss: a task without labels gives 0 and a batch without labels gives 0") {
    MultiTaskLoss loss(cumtl_test::flagship_heads());
    Context ctx;
    cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, 16, 4);
    std::fill_n(batch.labels.binary.data<std::int8_t>(), batch.labels.binary.numel(), std::int8_t(-1));
    Tensor gradient = Tensor::empty(batch.logits.shape(), ScalarType::f32);
    cumtl::LossReport report = compute(loss, batch.logits, batch.labels, gradient);
    CHECK(report.task_losses[1] == 0.0);
    CHECK(report.labels[1] == 0);
    CHECK(std::isfinite(report.total));
    CHECK(report.total > 0);

    const MultiTaskLabels none = loss.make_labels(ctx, 16);
    report = compute(loss, batch.logits, none, gradient);
    CHECK(report.total == 0.0);
    CHECK(report.task_losses == std::vector<double>(3, 0.0));
    CHECK(gradient.to_vector<float>() == std::vector<float>(std::size_t(gradient.numel()), 0.0f));

    Tensor empty_logits = Tensor::empty(Shape{0, loss.logit_columns()}, ScalarType::f32);
    Tensor empty_gradient = Tensor::empty(empty_logits.shape(), ScalarType::f32);
    report = compute(loss, empty_logits, loss.make_labels(ctx, 0), empty_gradient);
    CHECK(report.total == 0.0);
  }

  TEST_CASE("loss: extreme logits stay finite") {
    MultiTaskLoss loss(small_heads());
    const Tensor logits = Tensor::from_vector<float>({1e4f, -1e4f, 0, -1e4f, 1e4f,  //
                                                      -1e4f, 1e4f, -1e4f, 1e4f, -1e4f},
                                                     Shape{2, 5});
    const MultiTaskLabels labels{Tensor::from_vector<std::int32_t>({0, 0}, Shape{2, 1}),
                                 Tensor::from_vector<std::int8_t>({1, 0, 1, 0}, Shape{2, 2})};
    Tensor gradient = Tensor::empty(Shape{2, 5}, ScalarType::f32);
    const cumtl::LossReport report = compute(loss, logits, labels, gradient);
    // Sample 0 is right with certainty (loss 0), sample 1 wrong by 2e4 in every term.
    CHECK(report.task_losses[0] == doctest::Approx(2e4 / 2).epsilon(1e-6));
    CHECK(report.task_losses[1] == doctest::Approx((1e4 + 1e4 + 0 + 0) / 4).epsilon(1e-6));
    for (float value : gradient.to_vector<float>()) CHECK(std::isfinite(value));
  }

  TEST_CASE("loss: invalid labels name the head and the sample and the value") {
    MultiTaskLoss loss(small_heads());
    ZeroLogitsBatch batch;
    Tensor gradient = Tensor::empty(Shape{4, 5}, ScalarType::f64);
    batch.labels.classes.data<std::int32_t>()[2] = 3;
    CHECK_ERROR_WITH(compute(loss, batch.logits, batch.labels, gradient), "head 'emotion'", "sample 2", "class 3",
                     "expected -1 (missing) or 0..2");
    batch.labels.classes.data<std::int32_t>()[2] = -2;
    CHECK_ERROR_WITH(compute(loss, batch.logits, batch.labels, gradient), "head 'emotion'", "sample 2", "class -2");
    batch.labels.classes.data<std::int32_t>()[2] = 2;
    batch.labels.binary.data<std::int8_t>()[3] = 2;
    CHECK_ERROR_WITH(compute(loss, batch.logits, batch.labels, gradient), "head 'au'", "sample 1", "label 1",
                     "value 2");

    std::vector<HeadSpec> named = small_heads();
    named[1].output_names = {"AU1", "AU2"};
    MultiTaskLoss named_loss(named);
    CHECK_ERROR_WITH(compute(named_loss, batch.logits, batch.labels, gradient), "label AU2 has value 2");
  }

  TEST_CASE("loss: evaluation leaves the gradient alone and gives the training loss") {
    MultiTaskLoss loss(cumtl_test::flagship_heads());
    Context ctx;
    const cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, 50, 9);
    Tensor gradient = Tensor::empty(batch.logits.shape(), ScalarType::f32);
    const double trained = compute(loss, batch.logits, batch.labels, gradient).total;

    cumtl::ops::fill(ctx, gradient, 7.0);
    loss.compute(ctx, LossMode::evaluate, batch.logits, batch.labels, gradient);
    CHECK(loss.read(ctx).total == trained);
    CHECK(gradient.to_vector<float>() == std::vector<float>(std::size_t(gradient.numel()), 7.0f));
    Tensor undefined;
    loss.compute(ctx, LossMode::evaluate, batch.logits, batch.labels, undefined);  // no gradient needed
    CHECK(loss.read(ctx).total == trained);
  }

  TEST_CASE("loss: a result read through a readback is the one read at once") {
    MultiTaskLoss loss(cumtl_test::flagship_heads());
    Context ctx;
    LossReadback readback;
    CHECK_FALSE(readback.pending());
    CHECK_ERROR_WITH(loss.read_async(ctx, readback), "read_async", "nothing was computed yet");
    for (std::uint64_t seed : {3, 4}) {
      const cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, 40, seed);
      Tensor gradient = Tensor::empty(batch.logits.shape(), ScalarType::f32);
      loss.compute(ctx, LossMode::train, batch.logits, batch.labels, gradient);
      const cumtl::LossReport direct = loss.read(ctx);
      loss.read_async(ctx, readback);
      CHECK(readback.pending());
      CHECK_ERROR_WITH(loss.read_async(ctx, readback), "still holds an earlier result");
      // A later compute must not change what the readback took.
      const cumtl_test::Batch other = cumtl_test::random_batch<float>(loss, 40, seed + 100);
      loss.compute(ctx, LossMode::train, other.logits, other.labels, gradient);
      const cumtl::LossReport late = loss.read(ctx, readback);
      CHECK_FALSE(readback.pending());
      CHECK(late.total == direct.total);
      CHECK(late.task_losses == direct.task_losses);
      CHECK(late.labels == direct.labels);
      CHECK(late.samples == direct.samples);
      CHECK(loss.read(ctx).total != direct.total);
    }
    CHECK_ERROR_WITH(loss.read(ctx, readback), "holds no result");
  }

  // bf16 or f16 logits: the loss computes in float32 on the widened logits, so
  // its losses are those of the float32 loss on the same values, bit for bit,
  // and each gradient element is the float32 gradient rounded once.
  TEST_CASE_TEMPLATE("loss: 2-byte logits give the float32 loss of their values and its gradient rounded once", Half,
                     cumtl::bfloat16_t, cumtl::float16_t) {
    Context ctx;
    for (LossNormalization normalization :
         {LossNormalization::per_label, LossNormalization::per_sample, LossNormalization::per_batch}) {
      CAPTURE(int(normalization));
      MultiTaskLoss narrow_loss(cumtl_test::flagship_heads(), {normalization});
      MultiTaskLoss wide_loss(cumtl_test::flagship_heads(), {normalization});
      const cumtl_test::Batch batch = cumtl_test::random_batch<float>(wide_loss, 300, 17);
      const Tensor narrow = cumtl_test::narrowed<Half>(batch.logits);
      const Tensor wide = cumtl_test::widened(narrow);
      Tensor narrow_gradient = Tensor::empty(narrow.shape(), cumtl::scalar_type_v<Half>);
      Tensor wide_gradient = Tensor::empty(wide.shape(), ScalarType::f32);
      narrow_loss.compute(ctx, LossMode::train, narrow, batch.labels, narrow_gradient);
      wide_loss.compute(ctx, LossMode::train, wide, batch.labels, wide_gradient);
      CHECK(narrow_loss.losses().dtype() == ScalarType::f32);
      const cumtl::LossReport report = narrow_loss.read(ctx), expected = wide_loss.read(ctx);
      CHECK(report.task_losses == expected.task_losses);
      CHECK(report.total == expected.total);
      CHECK(report.labels == expected.labels);
      CHECK(report.samples == expected.samples);
      CHECK(narrow_gradient.to_vector<Half>() == cumtl_test::rounded<Half>(wide_gradient));
      CHECK(cumtl_test::any_rounded<Half>(wide_gradient));
    }
  }

  TEST_CASE("loss: contract violations are named") {
    CHECK_ERROR_WITH(MultiTaskLoss({}), "no heads");
    CHECK_ERROR_WITH(MultiTaskLoss({{.name = "x", .kind = HeadKind::softmax, .outputs = 1}}), "head 'x'",
                     "softmax over one class");
    CHECK_ERROR_WITH(MultiTaskLoss({{.name = "x", .kind = HeadKind::sigmoid, .outputs = 2, .label_smoothing = 0.1}}),
                     "label smoothing applies to softmax heads only");
    CHECK_ERROR_WITH(MultiTaskLoss({{.name = "x", .kind = HeadKind::sigmoid, .outputs = 2, .positive_weights = {1.0}}}),
                     "1 positive weights for 2 labels");
    CHECK_ERROR_WITH(MultiTaskLoss({{.name = "x", .outputs = 2}, {.name = "x", .outputs = 3}}),
                     "two heads are named 'x'");

    MultiTaskLoss loss(small_heads());
    ZeroLogitsBatch batch;
    Tensor gradient = Tensor::empty(Shape{4, 5}, ScalarType::f64);
    Context ctx;
    const Tensor narrow = Tensor::zeros(Shape{4, 4}, ScalarType::f64);
    CHECK_ERROR_WITH(loss.compute(ctx, LossMode::train, narrow, batch.labels, gradient), "logits is float64[4, 4]",
                     "expected [N, 5]");
    const MultiTaskLabels wrong_type{Tensor::zeros(Shape{4, 1}, ScalarType::i64), batch.labels.binary};
    CHECK_ERROR_WITH(loss.compute(ctx, LossMode::train, batch.logits, wrong_type, gradient),
                     "labels.classes is int64[4, 1]", "expected int32[4, 1]");
    Tensor float_gradient = Tensor::empty(Shape{4, 5}, ScalarType::f32);
    CHECK_ERROR_WITH(loss.compute(ctx, LossMode::train, batch.logits, batch.labels, float_gradient),
                     "'gradient' is float32[4, 5]");
    CHECK_ERROR_WITH(loss.read(ctx), "nothing was computed");
    CHECK_ERROR_WITH(loss.logit_offset("valence"), "no head is named 'valence'");
  }

  TEST_CASE("loss: labels are laid out by head") {
    MultiTaskLoss loss(cumtl_test::flagship_heads());
    CHECK(loss.logit_columns() == 30);
    CHECK(loss.class_columns() == 2);
    CHECK(loss.binary_columns() == 12);
    CHECK(loss.logit_offset("au") == 7);
    CHECK(loss.logit_offset("compound") == 19);
    CHECK(loss.label_column("compound") == 1);
    Context ctx;
    const MultiTaskLabels labels = loss.make_labels(ctx, 3);
    CHECK(labels.classes.to_vector<std::int32_t>() == std::vector<std::int32_t>(6, -1));
    CHECK(labels.binary.to_vector<std::int8_t>() == std::vector<std::int8_t>(36, -1));
  }
}  // TEST_SUITE
