// Epoch metrics on the host: hand-computed cases, the missing-label and zero-denominator conventions, every refusal,
// and threshold tuning.
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../support/testing.hpp"
#include "cumtl/loss/metrics.hpp"

using cumtl::ClassificationMetrics;
using cumtl::MultiLabelMetrics;

namespace {

bool all_finite(const std::vector<double>& values) {
  for (double value : values)
    if (!std::isfinite(value)) return false;
  return true;
}

}  // namespace

TEST_SUITE("metric") {
  TEST_CASE("metric: confusion matrix and accuracy against a hand-computed case") {
    ClassificationMetrics metrics("emotion", 3);
    // (truth, predicted) per sample; the scores below make each prediction the argmax.
    //   (0,0) (0,0) (0,1) (0,2) (1,1) (1,1) (1,0) (2,2) (-1,2) (-1,0)
    const std::vector<float> scores{
        2.0f,  0.1f, -1.0f,  // 0 -> 0
        0.9f,  0.3f, 0.2f,   // 0 -> 0
        -1.0f, 1.5f, 1.4f,   // 0 -> 1
        0.1f,  0.2f, 0.3f,   // 0 -> 2
        0.0f,  5.0f, 0.0f,   // 1 -> 1
        0.2f,  0.7f, 0.1f,   // 1 -> 1
        3.0f,  2.0f, 1.0f,   // 1 -> 0
        0.1f,  0.1f, 0.8f,   // 2 -> 2
        0.0f,  0.0f, 9.0f,   // missing
        9.0f,  0.0f, 0.0f,   // missing
    };
    const std::vector<std::int32_t> labels{0, 0, 0, 0, 1, 1, 1, 2, -1, -1};
    // Added in two calls to show the counts accumulate.
    metrics.add(std::span(scores).first(12), std::span(labels).first(4));
    metrics.add(std::span(scores).subspan(12), std::span(labels).subspan(4));

    // Rows are true classes: class 0 -> [2 1 1], class 1 -> [1 2 0], class 2 -> [0 0 1].
    CHECK(metrics.confusion() == std::vector<std::int64_t>{2, 1, 1, 1, 2, 0, 0, 0, 1});
    CHECK(metrics.confusion_at(1, 0) == 1);
    CHECK(metrics.count() == 8);
    // Correct: 2 + 2 + 1 = 5 of 8 labelled samples.
    CHECK(metrics.accuracy() == doctest::Approx(5.0 / 8.0));
    // Recalls: 2/4, 2/3, 1/1; mean (1/2 + 2/3 + 1) / 3 = (13/6) / 3 = 13/18.
    CHECK(metrics.mean_class_accuracy() == doctest::Approx(13.0 / 18.0));
    // Column totals: 3, 3, 2.
    // class 0: tp 2, fp 3-2 = 1, fn 4-2 = 2 -> 4/7
    // class 1: tp 2, fp 3-2 = 1, fn 3-2 = 1 -> 4/6 = 2/3
    // class 2: tp 1, fp 2-1 = 1, fn 1-1 = 0 -> 2/3
    const std::vector<double> f1 = metrics.per_class_f1();
    REQUIRE(f1.size() == 3);
    CHECK(f1[0] == doctest::Approx(4.0 / 7.0));
    CHECK(f1[1] == doctest::Approx(2.0 / 3.0));
    CHECK(f1[2] == doctest::Approx(2.0 / 3.0));
    // (4/7 + 2/3 + 2/3) / 3 = (12/21 + 14/21 + 14/21) / 3 = 40/63.
    CHECK(metrics.macro_f1() == doctest::Approx(40.0 / 63.0));
  }

  TEST_CASE("metric: classes never labelled are left out of the class means") {
    // Four classes; class 2 never appears, class 3 only as a (wrong) prediction.
    ClassificationMetrics metrics("emotion", 4);
    metrics.add_prediction(0, 0);
    metrics.add_prediction(3, 1);
    metrics.add_prediction(1, 1);
    metrics.add_prediction(2, -1);  // missing: skipped
    CHECK(metrics.count() == 3);
    CHECK(metrics.accuracy() == doctest::Approx(2.0 / 3.0));
    // Recalls of the labelled classes 0 and 1: 1/1 and 1/2 -> 3/4.
    CHECK(metrics.mean_class_accuracy() == doctest::Approx(0.75));
    // F1: class 0 tp 1 -> 1; class 1 tp 1 fn 1 -> 2/3; class 2 unseen -> 0; class 3 fp 1 -> 0.
    const std::vector<double> f1 = metrics.per_class_f1();
    CHECK(f1[0] == doctest::Approx(1.0));
    CHECK(f1[1] == doctest::Approx(2.0 / 3.0));
    CHECK(f1[2] == 0.0);
    CHECK(f1[3] == 0.0);
    // Macro over the classes seen in labels or predictions (0, 1, 3): (1 + 2/3 + 0) / 3 = 5/9.
    CHECK(metrics.macro_f1() == doctest::Approx(5.0 / 9.0));
  }

  TEST_CASE("metric: argmax ties go to the lowest class") {
    ClassificationMetrics metrics("emotion", 3);
    const float minus_infinity = -std::numeric_limits<float>::infinity();
    const std::vector<float> scores{
        1.0f,           3.0f, 3.0f,  // tie of 1 and 2 -> 1
        2.0f,           2.0f, 2.0f,  // all equal -> 0
        minus_infinity, 0.0f, 0.0f,  // tie of 1 and 2 -> 1
    };
    metrics.add(scores, std::vector<std::int32_t>{1, 0, 2});
    CHECK(metrics.confusion_at(1, 1) == 1);
    CHECK(metrics.confusion_at(0, 0) == 1);
    CHECK(metrics.confusion_at(2, 1) == 1);
    CHECK(metrics.count() == 3);
  }

  TEST_CASE("metric: an all-missing batch gives 0 and not NaN") {
    ClassificationMetrics classification("emotion", 3);
    classification.add(std::vector<float>(6, 0.5f), std::vector<std::int32_t>{-1, -1});
    classification.add(std::vector<float>{}, std::vector<std::int32_t>{});
    CHECK(classification.count() == 0);
    CHECK(classification.accuracy() == 0.0);
    CHECK(classification.mean_class_accuracy() == 0.0);
    CHECK(classification.macro_f1() == 0.0);
    CHECK(classification.per_class_f1() == std::vector<double>(3, 0.0));

    MultiLabelMetrics multilabel("au", 2);
    multilabel.add(std::vector<float>{0.9f, 0.1f, 0.4f, 0.6f}, std::vector<std::int8_t>{-1, -1, -1, -1});
    CHECK(multilabel.labelled() == std::vector<std::int64_t>{0, 0});
    CHECK(multilabel.f1() == std::vector<double>(2, 0.0));
    CHECK(all_finite(multilabel.precision()));
    CHECK(all_finite(multilabel.recall()));
    CHECK(all_finite(multilabel.accuracy()));
    CHECK(multilabel.mean_f1() == 0.0);
    CHECK(multilabel.mean_precision() == 0.0);
    CHECK(multilabel.mean_recall() == 0.0);
    CHECK(multilabel.mean_accuracy() == 0.0);
  }

  TEST_CASE("metric: classification errors name the head and the value") {
    CHECK_ERROR_WITH(ClassificationMetrics("emotion", 0), "metrics 'emotion'", "at least 1", "got 0");

    ClassificationMetrics metrics("emotion", 7);
    const std::vector<float> four_rows(28, 0.0f);
    CHECK_ERROR_WITH(metrics.add(four_rows, std::vector<std::int32_t>{0, 1, 2, 9}), "metrics 'emotion'",
                     "sample 3 has label 9", "expected -1 (missing) or 0..6");
    CHECK_ERROR_WITH(metrics.add(four_rows, std::vector<std::int32_t>{0, -2, 2, 3}), "metrics 'emotion'",
                     "sample 1 has label -2");
    CHECK_ERROR_WITH(metrics.add(std::vector<float>(14, 0.0f), std::vector<std::int32_t>{0, 1, 2}), "metrics 'emotion'",
                     "14 scores", "3 labels", "3 x 7 = 21");
    std::vector<float> with_nan(14, 0.0f);
    with_nan[10] = std::numeric_limits<float>::quiet_NaN();
    CHECK_ERROR_WITH(metrics.add(with_nan, std::vector<std::int32_t>{0, 1}), "metrics 'emotion'",
                     "sample 1 has a NaN score");
    CHECK_ERROR_WITH(metrics.add_prediction(0, 7), "metrics 'emotion'", "label 7", "0..6");
    CHECK_ERROR_WITH(metrics.add_prediction(-1, 0), "metrics 'emotion'", "predicted class -1", "0..6");
    CHECK_ERROR_WITH(metrics.confusion_at(7, 0), "metrics 'emotion'", "confusion_at(7, 0)");
    // A rejected batch counts nothing, not even its valid samples before the bad one.
    CHECK(metrics.count() == 0);
  }

  TEST_CASE("metric: multi-label counts against a hand-computed case") {
    MultiLabelMetrics metrics("au", 3, {"AU1", "AU2", "AU4"});
    // AU4 is never annotated, so the means are over AU1 and AU2 only.
    const std::vector<float> probabilities{
        0.9f, 0.2f, 0.7f,  //
        0.6f, 0.8f, 0.1f,  //
        0.3f, 0.4f, 0.9f,  //
        0.5f, 0.7f, 0.5f,  // AU1 at 0.5 exactly: predicted positive
        0.1f, 0.6f, 0.2f,  //
        0.2f, 0.1f, 0.8f,  //
    };
    const std::vector<std::int8_t> labels{
        1,  0,  -1,  //
        0,  1,  -1,  //
        1,  -1, -1,  //
        1,  0,  -1,  //
        0,  1,  -1,  //
        -1, 0,  -1,  //
    };
    metrics.add(std::span(probabilities).first(9), std::span(labels).first(9));
    metrics.add(std::span(probabilities).subspan(9), std::span(labels).subspan(9));

    // AU1, samples 0-4: tp (s0, s3), fp (s1), fn (s2), tn (s4).
    CHECK(metrics.counts(0).true_positives == 2);
    CHECK(metrics.counts(0).false_positives == 1);
    CHECK(metrics.counts(0).false_negatives == 1);
    CHECK(metrics.counts(0).true_negatives == 1);
    // AU2, samples 0, 1, 3, 4, 5: tp (s1, s4), fp (s3), fn none, tn (s0, s5).
    CHECK(metrics.counts(1).true_positives == 2);
    CHECK(metrics.counts(1).false_positives == 1);
    CHECK(metrics.counts(1).false_negatives == 0);
    CHECK(metrics.counts(1).true_negatives == 2);
    CHECK(metrics.labelled() == std::vector<std::int64_t>{5, 5, 0});

    // AU1: precision 2/3, recall 2/3, F1 4/(4+1+1) = 2/3, accuracy 3/5.
    // AU2: precision 2/3, recall 2/2, F1 4/(4+1+0) = 4/5, accuracy 4/5.
    const std::vector<double> f1 = metrics.f1(), precision = metrics.precision(), recall = metrics.recall(),
                              accuracy = metrics.accuracy();
    CHECK(f1[0] == doctest::Approx(2.0 / 3.0));
    CHECK(f1[1] == doctest::Approx(0.8));
    CHECK(f1[2] == 0.0);
    CHECK(precision[0] == doctest::Approx(2.0 / 3.0));
    CHECK(precision[1] == doctest::Approx(2.0 / 3.0));
    CHECK(recall[0] == doctest::Approx(2.0 / 3.0));
    CHECK(recall[1] == doctest::Approx(1.0));
    CHECK(accuracy[0] == doctest::Approx(0.6));
    CHECK(accuracy[1] == doctest::Approx(0.8));
    CHECK(accuracy[2] == 0.0);
    // Means over AU1 and AU2: F1 (2/3 + 4/5) / 2 = 11/15; accuracy (3/5 + 4/5) / 2 = 7/10;
    // precision 2/3; recall (2/3 + 1) / 2 = 5/6.
    CHECK(metrics.mean_f1() == doctest::Approx(11.0 / 15.0));
    CHECK(metrics.mean_accuracy() == doctest::Approx(0.7));
    CHECK(metrics.mean_precision() == doctest::Approx(2.0 / 3.0));
    CHECK(metrics.mean_recall() == doctest::Approx(5.0 / 6.0));
  }

  TEST_CASE("metric: custom thresholds change the predictions") {
    const std::vector<float> probabilities{0.9f, 0.2f, 0.6f, 0.8f, 0.3f, 0.4f, 0.5f, 0.7f, 0.1f, 0.6f};
    const std::vector<std::int8_t> labels{1, 0, 0, 1, 1, -1, 1, 0, 0, 1};
    MultiLabelMetrics metrics("au", 2);
    CHECK(metrics.thresholds() == std::vector<float>{0.5f, 0.5f});
    metrics.set_thresholds({0.55f, 0.75f});
    CHECK(metrics.thresholds() == std::vector<float>{0.55f, 0.75f});
    metrics.add(probabilities, labels);
    // Label 0 at 0.55: 0.9 (1) tp, 0.6 (0) fp, 0.3 (1) fn, 0.5 (1) fn now, 0.1 (0) tn -> F1 2/(2+1+2) = 2/5.
    CHECK(metrics.counts(0).true_positives == 1);
    CHECK(metrics.counts(0).false_negatives == 2);
    CHECK(metrics.f1()[0] == doctest::Approx(0.4));
    // Label 1 at 0.75: 0.2 (0) tn, 0.8 (1) tp, 0.7 (0) tn now, 0.6 (1) fn now -> precision 1, recall 1/2, F1 2/3.
    CHECK(metrics.counts(1).true_negatives == 2);
    CHECK(metrics.precision()[1] == doctest::Approx(1.0));
    CHECK(metrics.recall()[1] == doctest::Approx(0.5));
    CHECK(metrics.f1()[1] == doctest::Approx(2.0 / 3.0));

    // At the default 0.5 the same data scores differently: label 0 tp 2 fp 1 fn 1 -> 2/3.
    MultiLabelMetrics at_default("au", 2);
    at_default.add(probabilities, labels);
    CHECK(at_default.f1()[0] == doctest::Approx(2.0 / 3.0));

    // The bounds of [0, 1] are thresholds too: 0 predicts every sample positive, 1 only a probability of 1.
    MultiLabelMetrics extremes("au", 2);
    extremes.set_thresholds({0.0f, 1.0f});
    extremes.add(probabilities, labels);
    CHECK(extremes.counts(0).false_negatives == 0);
    CHECK(extremes.counts(1).true_positives == 0);
  }

  TEST_CASE("metric: multi-label errors name the head and the label and the value") {
    CHECK_ERROR_WITH(MultiLabelMetrics("au", 0), "metrics 'au'", "at least 1", "got 0");
    CHECK_ERROR_WITH(MultiLabelMetrics("au", 3, {"AU1", "AU2"}), "metrics 'au'", "2 label names", "3 labels");

    MultiLabelMetrics named("au", 2, {"AU1", "AU12"});
    CHECK_ERROR_WITH(named.add(std::vector<float>(4, 0.5f), std::vector<std::int8_t>{1, 0, 0, 2}), "metrics 'au'",
                     "sample 1", "value 2", "AU12", "expected -1 (missing), 0 or 1");
    CHECK_ERROR_WITH(named.add(std::vector<float>{0.5f, 1.5f}, std::vector<std::int8_t>{1, 0}), "metrics 'au'",
                     "sample 0", "probability 1.5", "AU12", "[0, 1]");
    CHECK_ERROR_WITH(named.add(std::vector<float>(4, 0.5f), std::vector<std::int8_t>{1, 0, 1}), "metrics 'au'",
                     "4 probabilities", "3 labels");
    CHECK_ERROR_WITH(named.add(std::vector<float>(3, 0.5f), std::vector<std::int8_t>{1, 0, 1}), "metrics 'au'",
                     "3 probabilities", "N x 2");
    CHECK(named.labelled() == std::vector<std::int64_t>{0, 0});

    MultiLabelMetrics unnamed("au", 3);
    CHECK_ERROR_WITH(unnamed.add(std::vector<float>(3, 0.5f), std::vector<std::int8_t>{1, -3, 0}), "metrics 'au'",
                     "sample 0", "value -3", "label 1");
    CHECK_ERROR_WITH(unnamed.set_thresholds({0.5f, 0.5f}), "metrics 'au'", "2 thresholds", "3 labels");
    CHECK_ERROR_WITH(unnamed.set_thresholds({0.5f, 1.25f, 0.5f}), "metrics 'au'", "threshold 1.25", "label 1",
                     "[0, 1]");
    CHECK_ERROR_WITH(unnamed.set_thresholds({-0.5f, 0.5f, 0.5f}), "metrics 'au'", "threshold -0.5", "label 0");
    CHECK_ERROR_WITH(unnamed.set_thresholds({0.5f, 0.5f, std::numeric_limits<float>::quiet_NaN()}), "metrics 'au'",
                     "threshold nan", "label 2");
    CHECK(unnamed.thresholds() == std::vector<float>(3, 0.5f));
    CHECK_ERROR_WITH(unnamed.counts(3), "metrics 'au'", "label 3");

    CHECK_ERROR_WITH(cumtl::tune_thresholds(std::vector<float>{}, std::vector<std::int8_t>{}, 0), "tune_thresholds",
                     "at least 1", "got 0");
    CHECK_ERROR_WITH(cumtl::tune_thresholds(std::vector<float>(2, 0.5f), std::vector<std::int8_t>{1, 5}, 2),
                     "tune_thresholds", "sample 0", "value 5", "label 1");
    CHECK_ERROR_WITH(cumtl::tune_thresholds(std::vector<float>(3, 0.5f), std::vector<std::int8_t>{1, 0, 1}, 2),
                     "tune_thresholds", "3 probabilities", "3 labels", "N x 2");
  }

  TEST_CASE("metric: tune_thresholds finds the best F1 and keeps 0.5 without labels") {
    // Label 0, sorted: 0.1 (0), 0.2 (0), 0.3 (1), 0.35 (0), 0.4 (1), 0.8 (1).
    //   0.15 -> tp 3 fp 2 -> 6/8;  0.25 -> tp 3 fp 1 -> 6/7;  0.325 -> tp 2 fp 1 fn 1 -> 4/6;
    //   0.375 -> tp 2 fn 1 -> 4/5;  0.5 and 0.6 -> tp 1 fn 2 -> 2/4.  Best: 0.25.
    // Label 1, sorted: 0.05 (0), 0.1 (1), 0.6 (0), 0.65 (0), 0.7 (1).
    //   0.075 -> tp 2 fp 2 -> 4/6;  0.35 and 0.5 -> tp 1 fp 2 fn 1 -> 2/5;  0.625 -> tp 1 fp 1 fn 1 -> 2/4;
    //   0.675 -> tp 1 fn 1 -> 2/3.  0.075 and 0.675 tie at 2/3; 0.675 is closer to 0.5.
    // Label 2 is never annotated; label 3 has only negatives, so every F1 is 0: both keep 0.5.
    const std::vector<float> probabilities{
        0.1f,  0.05f, 0.9f, 0.9f,  //
        0.2f,  0.1f,  0.1f, 0.7f,  //
        0.3f,  0.6f,  0.2f, 0.2f,  //
        0.35f, 0.65f, 0.3f, 0.6f,  //
        0.4f,  0.7f,  0.4f, 0.1f,  //
        0.8f,  0.3f,  0.5f, 0.3f,  // label 1 missing here
    };
    const std::vector<std::int8_t> labels{
        0, 0,  -1, 0,  //
        0, 1,  -1, 0,  //
        1, 0,  -1, 0,  //
        0, 0,  -1, 0,  //
        1, 1,  -1, 0,  //
        1, -1, -1, 0,  //
    };
    const std::vector<float> thresholds = cumtl::tune_thresholds(probabilities, labels, 4);
    REQUIRE(thresholds.size() == 4);
    CHECK(thresholds[0] == doctest::Approx(0.25));
    CHECK(thresholds[1] == doctest::Approx(0.675));
    CHECK(thresholds[2] == 0.5f);
    CHECK(thresholds[3] == 0.5f);

    // Applied to the same data, the tuned thresholds give the F1 the search found.
    MultiLabelMetrics metrics("au", 4);
    metrics.set_thresholds(thresholds);
    metrics.add(probabilities, labels);
    CHECK(metrics.f1()[0] == doctest::Approx(6.0 / 7.0));
    CHECK(metrics.f1()[1] == doctest::Approx(2.0 / 3.0));
    CHECK(metrics.labelled()[2] == 0);
  }

  TEST_CASE("metric: reset clears the counts") {
    ClassificationMetrics classification("emotion", 2);
    classification.add_prediction(1, 1);
    classification.add_prediction(0, 1);
    REQUIRE(classification.count() == 2);
    classification.reset();
    CHECK(classification.count() == 0);
    CHECK(classification.confusion() == std::vector<std::int64_t>(4, 0));
    CHECK(classification.accuracy() == 0.0);
    classification.add_prediction(0, 0);
    CHECK(classification.accuracy() == 1.0);

    MultiLabelMetrics multilabel("au", 2);
    multilabel.set_thresholds({0.3f, 0.7f});
    multilabel.add(std::vector<float>{0.9f, 0.1f}, std::vector<std::int8_t>{1, 0});
    REQUIRE(multilabel.labelled() == std::vector<std::int64_t>{1, 1});
    multilabel.reset();
    CHECK(multilabel.labelled() == std::vector<std::int64_t>{0, 0});
    CHECK(multilabel.mean_f1() == 0.0);
    CHECK(multilabel.thresholds() == std::vector<float>{0.3f, 0.7f});  // thresholds are configuration, not counts
  }
}
