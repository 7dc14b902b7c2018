#pragma once
// CPU twin of the fused multi-task masked loss (kernels/multitask_loss.cuh):
// the same three passes, sequentially, with the same per-element math; task
// sums are accumulated in double. Same signature as cuda::multitask_loss;
// 2-byte logits are widened, the math is done in compute_t<T>, and each
// gradient element is rounded once, as on the GPU.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/kernels/multitask_loss.cuh"

namespace cumtl::cpu {

template <class T>
void multitask_loss(Context&, const kernels::LossHeadTable& table, std::int64_t rows, const T* logits,
                    const std::int32_t* classes, const std::int8_t* binary, const compute_t<T>* positive_weights,
                    T* gradient, const kernels::LossOutputs<compute_t<T>>& outputs) {
  using C = compute_t<T>;
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
      const C scale = C(kernels::loss_gradient_scale(table, h, outputs.counts, rows));
      const T* z = logits + row * table.logit_columns + head.logit_offset;
      T* dz = gradient == nullptr ? nullptr : gradient + row * table.logit_columns + head.logit_offset;
      C row_loss = 0;
      if (head.kind == LossHeadKind::softmax) {
        const std::int32_t label = classes[row * table.class_columns + head.label_column];
        if (label >= 0 && label < head.outputs) {
          C maximum = C(z[0]);
          for (int c = 1; c < head.outputs; ++c) maximum = std::max(maximum, C(z[c]));
          C exp_sum = 0, logit_sum = 0;
          for (int c = 0; c < head.outputs; ++c) {
            exp_sum += std::exp(C(z[c]) - maximum);
            logit_sum += C(z[c]);
          }
          const C log_sum_exp = maximum + std::log(exp_sum);
          const C smoothing = C(head.smoothing);
          const C uniform_target = smoothing / C(head.outputs);
          row_loss = log_sum_exp - (C(1) - smoothing) * C(z[label]) - uniform_target * logit_sum;
          if (dz != nullptr)
            for (int c = 0; c < head.outputs; ++c) {
              const C target = (c == label ? C(1) - smoothing : C(0)) + uniform_target;
              dz[c] = T(scale * (std::exp(C(z[c]) - log_sum_exp) - target));
            }
        } else if (dz != nullptr) {
          std::fill_n(dz, head.outputs, T(C(0)));
        }
      } else {
        const std::int8_t* labels = binary + row * table.binary_columns + head.label_column;
        for (int k = 0; k < head.outputs; ++k) {
          const std::int8_t label = labels[k];
          C loss = 0, d = 0;
          if ((label >= 0 && label <= 1) || (label == -1 && table.missing_as_negative)) {
            const C weight = positive_weights == nullptr ? C(1) : positive_weights[head.label_column + k];
            kernels::binary_cross_entropy(C(z[k]), label == 1 ? 1 : 0, weight, loss, d);
          }
          row_loss += loss;
          if (dz != nullptr) dz[k] = T(scale * d);
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
    outputs.losses[h] = C(task_loss);
    total += table.head[h].weight * task_loss;
  }
  outputs.losses[table.count] = C(total);
}

}  // namespace cumtl::cpu
