#pragma once
// Evaluation metrics accumulated over an epoch on the host, for the heads of a multi-task facial-expression model.
//
// They are the numbers the benchmarks publish, so that results compare with the literature:
//  - EmotioNet challenge (action units, a multi-label sigmoid head): per-AU F1 and accuracy, and their means over AUs;
//  - RAF-DB (basic emotions, a single-label softmax head): overall accuracy and the mean of the per-class accuracies
//    (recalls), which keeps the large "happy" and "neutral" classes from hiding a weak "fear" or "disgust".
//
// Conventions:
//  - inputs are row-major host spans, N samples by C classes or K labels, as Tensor::to_vector() returns them;
//  - a label of -1 means missing: a multi-task mix of datasets annotates only some heads (or some AUs) of an image,
//    and counting a missing annotation as negative would bias every metric, so it is skipped;
//  - a ratio whose denominator is zero is 0, never NaN, so a metric can be logged and averaged without checks; F1 is
//    2tp / (2tp + fp + fn), 0 when that is 0/0, as scikit-learn's default (zero_division=0);
//  - a batch is checked whole before any of it is counted, so a rejected add() leaves the totals as they were.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cumtl/core/error.hpp"

namespace cumtl {
namespace detail {

inline double metric_ratio(std::int64_t numerator, std::int64_t denominator) {
  return denominator == 0 ? 0.0 : static_cast<double>(numerator) / static_cast<double>(denominator);
}

inline double f1_from_counts(std::int64_t true_positives, std::int64_t false_positives, std::int64_t false_negatives) {
  return metric_ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives);
}

// The mean of values[i] over the i where included[i]; 0 when none is, so that an empty epoch logs 0 rather than NaN.
inline double mean_where(const std::vector<double>& values, const std::vector<bool>& included) {
  double sum = 0;
  std::int64_t terms = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!included[i]) continue;
    sum += values[i];
    ++terms;
  }
  return terms == 0 ? 0.0 : sum / static_cast<double>(terms);
}

// How a message names label `index` of a multi-label head: by its name when the head has names.
inline std::string multilabel_label_text(const std::vector<std::string>& label_names, std::size_t index) {
  return label_names.empty() ? "label " + std::to_string(index) : label_names[index];
}

// Checks a whole multi-label batch before any of it is used. `who` starts every message ("metrics 'au'" or
// "tune_thresholds"). Probabilities outside [0, 1] are refused because thresholds live in [0, 1]: logits passed by
// mistake would otherwise be compared with 0.5 and give plausible but wrong numbers.
inline void check_multilabel_batch(std::string_view who, std::span<const float> probabilities,
                                   std::span<const std::int8_t> labels, int num_labels,
                                   const std::vector<std::string>& label_names) {
  const std::size_t labels_per_sample = static_cast<std::size_t>(num_labels);
  CUMTL_REQUIRE(probabilities.size() == labels.size() && labels.size() % labels_per_sample == 0, who, ": ",
                probabilities.size(), " probabilities and ", labels.size(), " labels, expected N x ", num_labels,
                " of each");
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::size_t sample = i / labels_per_sample;
    const std::size_t label = i % labels_per_sample;
    const int value = labels[i];  // an int8_t would print as a character
    CUMTL_REQUIRE(value >= -1 && value <= 1, who, ": sample ", sample, " has value ", value, " for ",
                  multilabel_label_text(label_names, label), ", expected -1 (missing), 0 or 1");
    const float probability = probabilities[i];
    CUMTL_REQUIRE(probability >= 0.0f && probability <= 1.0f, who, ": sample ", sample, " has probability ",
                  probability, " for ", multilabel_label_text(label_names, label),
                  ", expected a value in [0, 1] (apply the sigmoid to logits first)");
  }
}

}  // namespace detail

// Accuracy, mean per-class accuracy and F1 of a single-label (softmax) head, from a confusion matrix.
class ClassificationMetrics {
 public:
  ClassificationMetrics(std::string head_name, int num_classes)
      : head_name_(std::move(head_name)), num_classes_(num_classes) {
    CUMTL_REQUIRE(num_classes >= 1, "metrics '", head_name_, "': the number of classes must be at least 1, got ",
                  num_classes);
    confusion_.assign(static_cast<std::size_t>(num_classes) * static_cast<std::size_t>(num_classes), 0);
  }

  // scores: N x C row-major logits or probabilities; the prediction is the argmax, ties to the lowest class as
  // torch.argmax and numpy.argmax break them, so numbers match a Python evaluation. labels: N class indices, -1
  // missing.
  void add(std::span<const float> scores, std::span<const std::int32_t> labels) {
    const std::size_t classes = static_cast<std::size_t>(num_classes_);
    CUMTL_REQUIRE(scores.size() == labels.size() * classes, "metrics '", head_name_, "': ", scores.size(),
                  " scores for ", labels.size(), " labels, expected ", labels.size(), " x ", num_classes_, " = ",
                  labels.size() * classes);
    for (std::size_t sample = 0; sample < labels.size(); ++sample) {
      CUMTL_REQUIRE(is_label(labels[sample]), "metrics '", head_name_, "': sample ", sample, " has label ",
                    labels[sample], ", expected -1 (missing) or 0..", num_classes_ - 1);
      // NaN never wins a comparison, so it would silently predict class 0 and credit it; a diverged model should
      // say so instead.
      const std::span<const float> row = scores.subspan(sample * classes, classes);
      CUMTL_REQUIRE(std::none_of(row.begin(), row.end(), [](float score) { return std::isnan(score); }), "metrics '",
                    head_name_, "': sample ", sample, " has a NaN score");
    }
    for (std::size_t sample = 0; sample < labels.size(); ++sample) {
      if (labels[sample] == -1) continue;
      const std::span<const float> row = scores.subspan(sample * classes, classes);
      const auto predicted = std::max_element(row.begin(), row.end()) - row.begin();  // the first of equal maxima
      record(labels[sample], static_cast<int>(predicted));
    }
  }

  // One sample whose prediction is already a class index; label -1 (missing) is skipped.
  void add_prediction(int predicted, int label) {
    CUMTL_REQUIRE(is_label(label), "metrics '", head_name_, "': label ", label, ", expected -1 (missing) or 0..",
                  num_classes_ - 1);
    CUMTL_REQUIRE(predicted >= 0 && predicted < num_classes_, "metrics '", head_name_, "': predicted class ", predicted,
                  ", expected 0..", num_classes_ - 1);
    if (label != -1) record(label, predicted);
  }

  const std::string& head_name() const noexcept { return head_name_; }
  int num_classes() const noexcept { return num_classes_; }

  // The number of labelled samples seen since construction or reset().
  std::int64_t count() const noexcept { return count_; }

  // The counts every metric derives from (the confusion matrix), flat: what
  // processes that each evaluated a shard of a split sum to score the whole.
  const std::vector<std::int64_t>& tallies() const noexcept { return confusion_; }
  void set_tallies(std::span<const std::int64_t> tallies) {
    CUMTL_REQUIRE(tallies.size() == confusion_.size(), "metrics '", head_name_, "': ", tallies.size(),
                  " tallies for a ", num_classes_, "-class confusion matrix");
    std::copy(tallies.begin(), tallies.end(), confusion_.begin());
    count_ = std::accumulate(confusion_.begin(), confusion_.end(), std::int64_t(0));
  }

  double accuracy() const {
    std::int64_t correct = 0;
    for (int c = 0; c < num_classes_; ++c) correct += confusion_at(c, c);
    return detail::metric_ratio(correct, count_);
  }

  // The mean over classes with at least one labelled sample of that class's recall (the RAF-DB convention); a class
  // absent from the labels has no recall to average.
  double mean_class_accuracy() const {
    std::vector<double> recalls(static_cast<std::size_t>(num_classes_));
    std::vector<bool> labelled(recalls.size());
    for (int c = 0; c < num_classes_; ++c) {
      recalls[c] = detail::metric_ratio(confusion_at(c, c), row_total(c));
      labelled[c] = row_total(c) > 0;
    }
    return detail::mean_where(recalls, labelled);
  }

  // C x C row-major; row = true class, column = predicted class.
  const std::vector<std::int64_t>& confusion() const noexcept { return confusion_; }

  std::int64_t confusion_at(int truth, int predicted) const {
    CUMTL_REQUIRE(truth >= 0 && truth < num_classes_ && predicted >= 0 && predicted < num_classes_, "metrics '",
                  head_name_, "': confusion_at(", truth, ", ", predicted, ") is outside 0..", num_classes_ - 1);
    return confusion_[static_cast<std::size_t>(truth) * static_cast<std::size_t>(num_classes_) + predicted];
  }

  std::vector<double> per_class_f1() const {
    std::vector<double> scores(static_cast<std::size_t>(num_classes_));
    for (int c = 0; c < num_classes_; ++c) {
      const std::int64_t true_positives = confusion_at(c, c);
      scores[c] =
          detail::f1_from_counts(true_positives, column_total(c) - true_positives, row_total(c) - true_positives);
    }
    return scores;
  }

  // The mean of per-class F1 over classes that appear in the labels or the predictions, as scikit-learn's
  // f1_score(average="macro") does without an explicit label list: a class never seen either way has no F1.
  double macro_f1() const {
    std::vector<bool> seen(static_cast<std::size_t>(num_classes_));
    for (int c = 0; c < num_classes_; ++c) seen[c] = row_total(c) + column_total(c) > 0;
    return detail::mean_where(per_class_f1(), seen);
  }

  void reset() {
    std::fill(confusion_.begin(), confusion_.end(), 0);
    count_ = 0;
  }

 private:
  bool is_label(std::int32_t label) const noexcept { return label >= -1 && label < num_classes_; }

  void record(int truth, int predicted) {
    ++confusion_[static_cast<std::size_t>(truth) * static_cast<std::size_t>(num_classes_) + predicted];
    ++count_;
  }

  std::int64_t row_total(int truth) const {
    std::int64_t total = 0;
    for (int predicted = 0; predicted < num_classes_; ++predicted) total += confusion_at(truth, predicted);
    return total;
  }

  std::int64_t column_total(int predicted) const {
    std::int64_t total = 0;
    for (int truth = 0; truth < num_classes_; ++truth) total += confusion_at(truth, predicted);
    return total;
  }

  std::string head_name_;
  int num_classes_;
  std::vector<std::int64_t> confusion_;
  std::int64_t count_ = 0;
};

// The outcomes of one binary label over the samples where it was annotated.
struct BinaryCounts {
  std::int64_t true_positives = 0;
  std::int64_t false_positives = 0;
  std::int64_t false_negatives = 0;
  std::int64_t true_negatives = 0;

  std::int64_t labelled() const noexcept { return true_positives + false_positives + false_negatives + true_negatives; }
};

// Per-label F1, precision, recall and accuracy of a multi-label (sigmoid) head, and their means.
class MultiLabelMetrics {
 public:
  // label_names, when given, name the labels in error messages (e.g. "AU12"); one per label.
  MultiLabelMetrics(std::string head_name, int num_labels, std::vector<std::string> label_names = {})
      : head_name_(std::move(head_name)), num_labels_(num_labels), label_names_(std::move(label_names)) {
    CUMTL_REQUIRE(num_labels >= 1, "metrics '", head_name_, "': the number of labels must be at least 1, got ",
                  num_labels);
    CUMTL_REQUIRE(label_names_.empty() || label_names_.size() == static_cast<std::size_t>(num_labels), "metrics '",
                  head_name_, "': ", label_names_.size(), " label names for ", num_labels, " labels");
    thresholds_.assign(static_cast<std::size_t>(num_labels), 0.5f);
    counts_.assign(static_cast<std::size_t>(num_labels), BinaryCounts{});
  }

  // One threshold per label, each in [0, 1]; a probability >= its threshold is a positive prediction. add() applies
  // the thresholds as it counts, so they affect only samples added after this call.
  void set_thresholds(std::vector<float> thresholds) {
    CUMTL_REQUIRE(thresholds.size() == static_cast<std::size_t>(num_labels_), "metrics '", head_name_,
                  "': ", thresholds.size(), " thresholds for ", num_labels_, " labels");
    for (std::size_t label = 0; label < thresholds.size(); ++label)
      CUMTL_REQUIRE(thresholds[label] >= 0.0f && thresholds[label] <= 1.0f, "metrics '", head_name_, "': threshold ",
                    thresholds[label], " for ", detail::multilabel_label_text(label_names_, label),
                    ", expected a value in [0, 1]");
    thresholds_ = std::move(thresholds);
  }

  const std::vector<float>& thresholds() const noexcept { return thresholds_; }

  // probabilities and labels: N x K row-major; label 1 positive, 0 negative, -1 missing (skipped for that label only).
  void add(std::span<const float> probabilities, std::span<const std::int8_t> labels) {
    detail::check_multilabel_batch("metrics '" + head_name_ + "'", probabilities, labels, num_labels_, label_names_);
    const std::size_t labels_per_sample = static_cast<std::size_t>(num_labels_);
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] == -1) continue;
      const std::size_t label = i % labels_per_sample;
      const bool predicted_positive = probabilities[i] >= thresholds_[label];
      BinaryCounts& counts = counts_[label];
      if (labels[i] == 1)
        ++(predicted_positive ? counts.true_positives : counts.false_negatives);
      else
        ++(predicted_positive ? counts.false_positives : counts.true_negatives);
    }
  }

  const std::string& head_name() const noexcept { return head_name_; }
  int num_labels() const noexcept { return num_labels_; }

  // Every label's counts, flat (true positives, false positives, false
  // negatives, true negatives per label), as ClassificationMetrics::tallies.
  std::vector<std::int64_t> tallies() const {
    std::vector<std::int64_t> flat;
    flat.reserve(4 * counts_.size());
    for (const BinaryCounts& c : counts_)
      flat.insert(flat.end(), {c.true_positives, c.false_positives, c.false_negatives, c.true_negatives});
    return flat;
  }
  void set_tallies(std::span<const std::int64_t> tallies) {
    CUMTL_REQUIRE(tallies.size() == 4 * counts_.size(), "metrics '", head_name_, "': ", tallies.size(),
                  " tallies for ", num_labels_, " labels");
    for (std::size_t label = 0; label < counts_.size(); ++label)
      counts_[label] = BinaryCounts{tallies[4 * label], tallies[4 * label + 1], tallies[4 * label + 2],
                                    tallies[4 * label + 3]};
  }

  const BinaryCounts& counts(int label) const {
    CUMTL_REQUIRE(label >= 0 && label < num_labels_, "metrics '", head_name_, "': label ", label, " is outside 0..",
                  num_labels_ - 1);
    return counts_[static_cast<std::size_t>(label)];
  }

  std::vector<double> f1() const {
    return per_label([](const BinaryCounts& c) {
      return detail::f1_from_counts(c.true_positives, c.false_positives, c.false_negatives);
    });
  }
  std::vector<double> precision() const {
    return per_label([](const BinaryCounts& c) {
      return detail::metric_ratio(c.true_positives, c.true_positives + c.false_positives);
    });
  }
  std::vector<double> recall() const {
    return per_label([](const BinaryCounts& c) {
      return detail::metric_ratio(c.true_positives, c.true_positives + c.false_negatives);
    });
  }
  // (tp + tn) / labelled.
  std::vector<double> accuracy() const {
    return per_label(
        [](const BinaryCounts& c) { return detail::metric_ratio(c.true_positives + c.true_negatives, c.labelled()); });
  }
  std::vector<std::int64_t> labelled() const {
    std::vector<std::int64_t> totals(counts_.size());
    for (std::size_t label = 0; label < counts_.size(); ++label) totals[label] = counts_[label].labelled();
    return totals;
  }

  // Means over the labels with at least one labelled sample: a label no image annotates says nothing about the
  // model, and counting its 0 would drag the mean down.
  double mean_f1() const { return detail::mean_where(f1(), labelled_mask()); }
  double mean_precision() const { return detail::mean_where(precision(), labelled_mask()); }
  double mean_recall() const { return detail::mean_where(recall(), labelled_mask()); }
  double mean_accuracy() const { return detail::mean_where(accuracy(), labelled_mask()); }

  // Clears the counts; the thresholds stay.
  void reset() { std::fill(counts_.begin(), counts_.end(), BinaryCounts{}); }

 private:
  template <class Metric>
  std::vector<double> per_label(Metric metric) const {
    std::vector<double> values(counts_.size());
    for (std::size_t label = 0; label < counts_.size(); ++label) values[label] = metric(counts_[label]);
    return values;
  }

  std::vector<bool> labelled_mask() const {
    std::vector<bool> mask(counts_.size());
    for (std::size_t label = 0; label < counts_.size(); ++label) mask[label] = counts_[label].labelled() > 0;
    return mask;
  }

  std::string head_name_;
  int num_labels_;
  std::vector<std::string> label_names_;
  std::vector<float> thresholds_;
  std::vector<BinaryCounts> counts_;
};

// Per-label thresholds that maximize each label's F1 on the given (validation) data, for
// MultiLabelMetrics::set_thresholds. probabilities and labels are N x K row-major, as for MultiLabelMetrics::add.
//
// The rule, for each label: take the probabilities of the samples labelled 0 or 1 (missing ones are ignored), sort
// them, and try as thresholds the midpoint between each pair of consecutive distinct values, plus 0.5; a probability
// >= the threshold is a positive prediction, as in MultiLabelMetrics. The candidate with the highest F1 wins; among
// equal F1s, the one closest to 0.5, and of two equally close, the lower. Midpoints rather than the scores themselves
// leave the widest margin on both sides of the cut, so the threshold is not tuned to the exact validation scores; the
// tie rule means a label with no labelled sample (or no positive one, where every F1 is 0) keeps 0.5. Since every
// candidate but 0.5 lies between two scores, "predict every sample positive" is reachable only through 0.5.
inline std::vector<float> tune_thresholds(std::span<const float> probabilities, std::span<const std::int8_t> labels,
                                          int num_labels) {
  CUMTL_REQUIRE(num_labels >= 1, "tune_thresholds: the number of labels must be at least 1, got ", num_labels);
  detail::check_multilabel_batch("tune_thresholds", probabilities, labels, num_labels, {});
  const std::size_t labels_per_sample = static_cast<std::size_t>(num_labels);
  const std::size_t samples = labels.size() / labels_per_sample;

  std::vector<float> thresholds(labels_per_sample, 0.5f);
  std::vector<std::pair<float, bool>> scored;  // (probability, positive) of the labelled samples
  std::vector<float> sorted_scores;
  std::vector<std::int64_t> positives_from;  // positives_from[i]: positives among sorted_scores[i..]
  for (std::size_t label = 0; label < labels_per_sample; ++label) {
    scored.clear();
    for (std::size_t sample = 0; sample < samples; ++sample) {
      const std::size_t i = sample * labels_per_sample + label;
      if (labels[i] != -1) scored.emplace_back(probabilities[i], labels[i] == 1);
    }
    std::sort(scored.begin(), scored.end());
    sorted_scores.resize(scored.size());
    positives_from.assign(scored.size() + 1, 0);
    for (std::size_t i = scored.size(); i-- > 0;) {
      sorted_scores[i] = scored[i].first;
      positives_from[i] = positives_from[i + 1] + (scored[i].second ? 1 : 0);
    }
    const std::int64_t positives = positives_from[0];

    // Counts against the float threshold itself, so that what is scored is exactly what set_thresholds will apply,
    // even where rounding puts a midpoint onto one of the two scores.
    const auto f1_at = [&](float threshold) {
      const auto first_positive = std::lower_bound(sorted_scores.begin(), sorted_scores.end(), threshold);
      const std::size_t first = static_cast<std::size_t>(first_positive - sorted_scores.begin());
      const std::int64_t predicted_positive = static_cast<std::int64_t>(sorted_scores.size() - first);
      const std::int64_t true_positives = positives_from[first];
      return detail::f1_from_counts(true_positives, predicted_positive - true_positives, positives - true_positives);
    };
    const auto distance_from_half = [](float threshold) { return std::abs(static_cast<double>(threshold) - 0.5); };

    float best_threshold = 0.5f;
    double best_f1 = f1_at(best_threshold);
    for (std::size_t i = 0; i + 1 < sorted_scores.size(); ++i) {
      if (sorted_scores[i] == sorted_scores[i + 1]) continue;
      const float candidate = std::midpoint(sorted_scores[i], sorted_scores[i + 1]);
      const double candidate_f1 = f1_at(candidate);
      const double distance = distance_from_half(candidate);
      const double best_distance = distance_from_half(best_threshold);
      if (candidate_f1 > best_f1 ||
          (candidate_f1 == best_f1 &&
           (distance < best_distance || (distance == best_distance && candidate < best_threshold)))) {
        best_threshold = candidate;
        best_f1 = candidate_f1;
      }
    }
    thresholds[label] = best_threshold;
  }
  return thresholds;
}

}  // namespace cumtl
