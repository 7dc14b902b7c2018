#pragma once
// Heads and labelled batches for the loss tests, on the CPU.

#include <cstdint>
#include <vector>

#include <cumtl/cumtl.hpp>

namespace cumtl_test {

// The flagship's heads: 7 emotions, 12 AUs (with positive weights), 11 compound expressions (label-smoothed).
inline std::vector<cumtl::HeadSpec> flagship_heads() {
  using cumtl::HeadKind;
  std::vector<double> au_weights;
  for (int k = 0; k < 12; ++k) au_weights.push_back(0.5 + 0.25 * k);
  return {
      {.name = "emotion", .kind = HeadKind::softmax, .outputs = 7, .weight = 1.0},
      {.name = "au", .kind = HeadKind::sigmoid, .outputs = 12, .weight = 0.5, .positive_weights = au_weights},
      {.name = "compound", .kind = HeadKind::softmax, .outputs = 11, .weight = 0.3, .label_smoothing = 0.1},
  };
}

// Logits and labels on one device.
struct Batch {
  cumtl::Tensor logits;  // [N, T]
  cumtl::MultiTaskLabels labels;

  Batch to(cumtl::Context& ctx) const {
    return {logits.to(ctx, ctx.device()), {labels.classes.to(ctx, ctx.device()), labels.binary.to(ctx, ctx.device())}};
  }
};

// On the CPU: random logits in [-scale, scale) and labels of which about `missing` are
// missing (class labels) or missing individually (binary labels); rows whose
// index is a multiple of 5 lack every binary label, as a sample of an
// emotion-only domain would.
template <class T>
Batch random_batch(const cumtl::MultiTaskLoss& loss, std::int64_t rows, std::uint64_t seed, double missing = 0.3,
                   double scale = 4.0) {
  cumtl::Context cpu;
  Batch batch{cumtl::Tensor::empty(cumtl::Shape{rows, loss.logit_columns()}, cumtl::scalar_type_v<T>),
              loss.make_labels(cpu, rows)};
  cumtl::Generator generator(seed);
  cumtl::ops::uniform(cpu, batch.logits, generator, -scale, scale);
  std::int32_t* classes = batch.labels.classes.data<std::int32_t>();
  std::int8_t* binary = batch.labels.binary.data<std::int8_t>();
  for (std::int64_t row = 0; row < rows; ++row) {
    for (const cumtl::HeadSpec& head : loss.heads()) {
      const int column = loss.label_column(head.name);
      if (head.kind == cumtl::HeadKind::softmax) {
        if (generator.uniform() >= missing)
          classes[row * loss.class_columns() + column] = std::int32_t(generator.uniform() * head.outputs);
      } else if (row % 5 != 0) {
        for (int k = 0; k < head.outputs; ++k)
          if (generator.uniform() >= missing)
            binary[row * loss.binary_columns() + column + k] = std::int8_t(generator.uniform() < 0.4);
      }
    }
  }
  return batch;
}

}  // namespace cumtl_test
