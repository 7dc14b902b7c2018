#pragma once
// Evaluating a multi-head model on a labelled split: the loss and the metrics
// of every head the split has labels for (Pons & Masip's criteria: emotion
// accuracy and mean per-class accuracy, per-AU F1 and its mean, compound
// accuracy). Images go through the loader without augmentation.

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cumtl/data/loader.hpp"
#include "cumtl/distributed/communicator.hpp"
#include "cumtl/loss/metrics.hpp"
#include "cumtl/loss/multitask_loss.hpp"
#include "cumtl/models/multi_head.hpp"

namespace cumtl::train {

struct Evaluation {
  std::int64_t images = 0;
  double loss = 0;  // the mean over batches of the total loss, weighted by batch size
  std::optional<ClassificationMetrics> emotion, compound;
  std::optional<MultiLabelMetrics> au;

  // The flat metrics, each key prefixed: {"<p>test_loss", "<p>emotion_accuracy", ...};
  // a head the split had no label for is left out rather than reported as 0.
  nlohmann::json metrics(const std::string& prefix = "") const {
    nlohmann::json out = nlohmann::json::object();
    out[prefix + "test_loss"] = loss;
    if (emotion && emotion->count() > 0) {
      out[prefix + "emotion_accuracy"] = emotion->accuracy();
      out[prefix + "emotion_mean_class_accuracy"] = emotion->mean_class_accuracy();
    }
    if (au && has_labels(*au)) out[prefix + "au_mean_f1"] = au->mean_f1();
    if (compound && compound->count() > 0) out[prefix + "compound_accuracy"] = compound->accuracy();
    return out;
  }

  static bool has_labels(const MultiLabelMetrics& metrics) {
    for (std::int64_t n : metrics.labelled())
      if (n > 0) return true;
    return false;
  }
};

// Runs every batch of `loader`'s current epoch (the caller calls start_epoch)
// through the model in evaluation mode.
template <class T>
Evaluation evaluate(Context& ctx, MultiHeadModel<T>& model, MultiTaskLoss& loss, data::Loader& loader) {
  Evaluation result;
  const std::vector<HeadSpec>& heads = model.heads();
  for (const HeadSpec& head : heads) {
    if (head.name == "emotion") result.emotion.emplace("emotion", head.outputs);
    if (head.name == "compound") result.compound.emplace("compound", head.outputs);
    if (head.name == "au") result.au.emplace("au", head.outputs, head.output_names);
  }
  const std::int64_t columns = model.logit_count();
  double loss_sum = 0;
  while (std::optional<data::Batch> batch = loader.next()) {
    if (batch->size == 0) continue;  // a rank's shard of a last batch shorter than the world
    const Tensor logits = model.forward(ctx, batch->images, Phase::eval);
    Tensor unused;
    loss.compute(ctx, LossMode::evaluate, logits, batch->labels, unused);
    loss_sum += loss.read(ctx).total * double(batch->size);
    result.images += std::int64_t(batch->size);

    const std::vector<T> scores = logits.to_vector<T>(ctx);
    const std::vector<std::int32_t> classes = batch->labels.classes.to_vector<std::int32_t>(ctx);
    const std::vector<std::int8_t> binary = batch->labels.binary.to_vector<std::int8_t>(ctx);
    const auto rows = std::int64_t(batch->size);
    for (const HeadSpec& head : heads) {
      const int offset = loss.logit_offset(head.name), column = loss.label_column(head.name);
      std::vector<float> head_scores(std::size_t(rows * head.outputs));
      for (std::int64_t i = 0; i < rows; ++i)
        for (int k = 0; k < head.outputs; ++k) {
          const double z = double(scores[std::size_t(i * columns + offset + k)]);
          // Sigmoid heads are scored on probabilities (thresholds are probabilities); softmax on logits (argmax).
          head_scores[std::size_t(i * head.outputs + k)] =
              float(head.kind == HeadKind::sigmoid ? 1 / (1 + std::exp(-z)) : z);
        }
      if (head.kind == HeadKind::softmax) {
        std::vector<std::int32_t> labels(static_cast<std::size_t>(rows));
        for (std::int64_t i = 0; i < rows; ++i)
          labels[std::size_t(i)] = classes[std::size_t(i * loss.class_columns() + column)];
        (head.name == "emotion" ? *result.emotion : *result.compound).add(head_scores, labels);
      } else {
        std::vector<std::int8_t> labels(std::size_t(rows * head.outputs));
        for (std::int64_t i = 0; i < rows; ++i)
          for (int k = 0; k < head.outputs; ++k)
            labels[std::size_t(i * head.outputs + k)] = binary[std::size_t(i * loss.binary_columns() + column + k)];
        result.au->add(head_scores, labels);
      }
    }
  }
  result.loss = result.images > 0 ? loss_sum / double(result.images) : 0;
  return result;
}

// Makes every rank's evaluation of its shard of a split the evaluation of the
// whole split: the counts behind every metric are summed over the ranks, so
// the metrics equal a single process's. The loss is the mean of the shards'
// batch losses weighted by their sizes.
inline void sum_over_ranks(Evaluation& evaluation, distributed::Communicator& communicator) {
  if (communicator.world_size() == 1) return;
  std::vector<std::int64_t> tallies{evaluation.images};
  const auto pack = [&](const auto& metrics) {
    if (!metrics) return;
    const auto& flat = metrics->tallies();
    tallies.insert(tallies.end(), flat.begin(), flat.end());
  };
  pack(evaluation.emotion);
  pack(evaluation.compound);
  pack(evaluation.au);
  double loss_sum = evaluation.loss * double(evaluation.images);
  communicator.all_reduce_sum(std::span<std::int64_t>(tallies));
  communicator.all_reduce_sum(std::span<double>(&loss_sum, 1));
  evaluation.images = tallies[0];
  std::size_t at = 1;
  const auto unpack = [&](auto& metrics) {
    if (!metrics) return;
    const std::size_t size = metrics->tallies().size();
    metrics->set_tallies(std::span<const std::int64_t>(tallies).subspan(at, size));
    at += size;
  };
  unpack(evaluation.emotion);
  unpack(evaluation.compound);
  unpack(evaluation.au);
  evaluation.loss = evaluation.images > 0 ? loss_sum / double(evaluation.images) : 0;
}

}  // namespace cumtl::train
