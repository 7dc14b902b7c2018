#pragma once
// CPU twin of the fused multi-task masked loss (kernels/multitask_loss.cuh):
// the same three passes, sequentially, with the same per-element math; task
// sums are accumulated in double. Same signature as cuda::multitask_loss.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/kernels/multitask_loss.cuh"

namespace cumtl::cpu {

template <class T>
void multitask_loss(Context&, const kernels::LossHeadTable& table, std::int64_t rows, const T* logits,
                    const std::int32_t* classes, const std::int8_t* binary, const T* positive_weights, T* gradient,
                    const kernels::LossOutputs<T>& outputs) {
  using kernels::LossCounts;
  using kernels::LossHeadKind;

  // Pass 1: counts and the first invalid row.
  std::fill_n(outputs.counts, 2 * table.count, 0);
  *outputs.first_bad_row = kernels::no_bad_row;
  for (std::int64_t row = 0; row < rows; ++row) {
    for (int h = 0; h < table.count; ++h) {
      const kernels::LossHeadTable::Head& head = table.head[h];
      int labels = 0;
      bool bad = false;
      if (head.kind == LossHeadKind::softmax) {
        const std::int32_t label = classes[row * table.class_columns + head.label_column];
        bad = !kernels::class_label_valid(label, head.outputs);
        labels = !bad && label >= 0;
      } else {
        for (int k = 0; k < head.outputs; ++k) {
          const std::int8_t label = binary[row * table.binary_columns + head.label_column + k];
          if (!kernels::binary_label_valid(label))
            bad = true;
          else
            labels += label >= 0 || table.missing_as_negative;
        }
      }
      if (bad && *outputs.first_bad_row == kernels::no_bad_row) *outputs.first_bad_row = std::uint64_t(row);
      outputs.counts[2 * h + LossCounts::labels] += labels;
      outputs.counts[2 * h + LossCounts::samples] += labels > 0;
    }
  }

  // Pass 2: each row's loss and gradient.
  std::vector<double> sums(std::size_t(table.count), 0.0);
  for (std::int64_t row = 0; row < rows; ++row) {
    for (int h = 0; h < table.count; ++h) {
      const kernels::LossHeadTable::Head& head = table.head[h];
      const T scale = T(kernels::loss_gradient_scale(table, h, outputs.counts, rows));
      const T* z = logits + row * table.logit_columns + head.logit_offset;
      T* dz = gradient == nullptr ? nullptr : gradient + row * table.logit_columns + head.logit_offset;
      T row_loss = 0;
      if (head.kind == LossHeadKind::softmax) {
        const std::int32_t label = classes[row * table.class_columns + head.label_column];
        if (label >= 0 && label < head.outputs) {
          const T maximum = *std::max_element(z, z + head.outputs);
          T exp_sum = 0, logit_sum = 0;
          for (int c = 0; c < head.outputs; ++c) {
            exp_sum += std::exp(z[c] - maximum);
            logit_sum += z[c];
          }
          const T log_sum_exp = maximum + std::log(exp_sum);
          const T smoothing = T(head.smoothing);
          const T uniform_target = smoothing / T(head.outputs);
          row_loss = log_sum_exp - (T(1) - smoothing) * z[label] - uniform_target * logit_sum;
          if (dz != nullptr)
            for (int c = 0; c < head.outputs; ++c) {
              const T target = (c == label ? T(1) - smoothing : T(0)) + uniform_target;
              dz[c] = scale * (std::exp(z[c] - log_sum_exp) - target);
            }
        } else if (dz != nullptr) {
          std::fill_n(dz, head.outputs, T(0));
        }
      } else {
        const std::int8_t* labels = binary + row * table.binary_columns + head.label_column;
        for (int k = 0; k < head.outputs; ++k) {
          const std::int8_t label = labels[k];
          T loss = 0, d = 0;
          if ((label >= 0 && label <= 1) || (label == -1 && table.missing_as_negative)) {
            const T weight = positive_weights == nullptr ? T(1) : positive_weights[head.label_column + k];
            kernels::binary_cross_entropy(z[k], label == 1 ? 1 : 0, weight, loss, d);
          }
          row_loss += loss;
          if (dz != nullptr) dz[k] = scale * d;
        }
      }
      sums[std::size_t(h)] += double(row_loss);
    }
  }

  // Pass 3: normalize and weight.
  double total = 0;
  for (int h = 0; h < table.count; ++h) {
    const double normalizer = kernels::loss_normalizer(table, h, outputs.counts, rows);
    const double task_loss = normalizer > 0 ? sums[std::size_t(h)] / normalizer : 0.0;
    outputs.losses[h] = T(task_loss);
    total += table.head[h].weight * task_loss;
  }
  outputs.losses[table.count] = T(total);
}

}  // namespace cumtl::cpu
