#pragma once
// The fused multi-task masked loss: softmax cross-entropy heads and sigmoid
// binary cross-entropy heads over one batch of logits, where any sample may lack
// any task's label and, for a sigmoid head, any single label.
//
// Layout. Logits are one row-major N×T array: the heads' outputs side by side
// in each row (T = Σ classes). Labels are fixed-shape, with missing entries
// marked, never compacted, so a training step keeps its shapes and can be
// captured in a CUDA graph: `classes` is int32 N×S (one column per softmax head,
// -1 = missing) and `binary` is int8 N×B (one column per sigmoid label,
// 1 / 0 / -1 = missing).
//
// Passes. The normalizer of a task (how many labels or labelled samples the
// batch holds) must be known before any gradient element can be written, so:
//   1. count:  reads the labels only (N·(4S + B) bytes), counts per task the
//              available labels and the labelled samples with warp-aggregated
//              integer atomics (exact and order-free, hence deterministic), and
//              records the first row holding an invalid label;
//   2. loss:   one warp per row, reads the row's logits and labels once, writes
//              the row's gradient once (scaled by λ_t / normalizer_t, exactly 0
//              where a label is missing) and leaves per-block, per-task loss
//              sums in double;
//   3. finish: one block reduces the block sums in a fixed order and divides by
//              the normalizers, writing each task's loss and the weighted total.
// Bytes moved: 4NT read + 4NT written (the floor for any loss that writes a
// gradient; 2NT each for 2-byte logits) plus twice the labels; pass 3 reads
// ⌈N/8⌉·H doubles. Nothing is read back by the host: the loss stays on the
// device until it is asked for.
//
// Numerics. Log-sum-exp with the row maximum subtracted, and BCE in softplus
// form (log σ(z) = -softplus(-z)), keep the loss and the gradient finite for
// logits of any magnitude. No floating-point atomics: the same inputs give
// bit-identical outputs run after run. Logits and their gradient may be bf16
// or f16 (T); the loss then computes in float (C = compute_t<T>) on the
// widened logits, rounds each gradient element once, and its positive weights
// and losses are float. For float and double, C is T.

#include <cmath>
#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/core/half.hpp"

namespace cumtl::kernels {

inline constexpr int max_loss_heads = 16;

enum class LossHeadKind : std::int32_t { softmax, sigmoid };

// What a task's loss is divided by (its normalizer):
//   per_label   the labels present in the batch (the selective loss);
//   per_sample  the samples labelled for the task, times the head's outputs for a sigmoid head;
//   per_batch   the batch size, times the head's outputs for a sigmoid head (the naive baseline).
enum class LossNormalization : std::int32_t { per_label, per_sample, per_batch };

// Everything the kernels need to know of the heads, passed by value as a kernel
// parameter (no device-side metadata to upload or keep in sync).
struct LossHeadTable {
  struct Head {
    LossHeadKind kind;
    int logit_offset;  // first column of the head in a logits row
    int outputs;       // classes (softmax) or labels (sigmoid)
    int label_column;  // its column in `classes` (softmax) or its first column in `binary` (sigmoid)
    double weight;     // λ_t
    double smoothing;  // label smoothing ε (softmax)
  };
  int count = 0;
  int logit_columns = 0;   // T
  int class_columns = 0;   // S
  int binary_columns = 0;  // B
  LossNormalization normalization = LossNormalization::per_label;
  bool missing_as_negative = false;  // sigmoid labels that are missing count as 0 (a naive baseline)
  Head head[max_loss_heads] = {};
};

// Where the kernels put their results. counts holds two integers per head
// (LossCounts), first_bad_row the lowest row with an invalid label (all ones
// when none), losses the H task losses and then the weighted total, in the
// compute type C.
template <class C>
struct LossOutputs {
  std::int32_t* counts;
  unsigned long long* first_bad_row;
  C* losses;
};

inline constexpr unsigned long long no_bad_row = ~0ull;

// The counts the count pass produces, two per head.
struct LossCounts {
  static constexpr int labels = 0;   // available labels
  static constexpr int samples = 1;  // samples with at least one available label
};

template <class T>
CUMTL_HOST_DEVICE inline T softplus(T x) {
  return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::fabs(x)));
}

template <class T>
CUMTL_HOST_DEVICE inline T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

// Binary cross-entropy of σ(z) against target 0 or 1, with the positive class
// weighted by `positive_weight` (PyTorch's pos_weight): the loss and dloss/dz.
template <class T>
CUMTL_HOST_DEVICE inline void binary_cross_entropy(T z, int target, T positive_weight, T& loss, T& gradient) {
  if (target == 1) {
    loss = positive_weight * softplus(-z);
    gradient = -positive_weight * sigmoid(-z);
  } else {
    loss = softplus(z);
    gradient = sigmoid(z);
  }
}

// A sigmoid label is usable as a target when it is 0 or 1, or, with
// missing_as_negative, -1 (taken as 0). Anything else is invalid.
CUMTL_HOST_DEVICE inline bool binary_label_valid(std::int8_t label) {
  return label >= -1 && label <= 1;
}
CUMTL_HOST_DEVICE inline bool class_label_valid(std::int32_t label, int classes) {
  return label >= -1 && label < classes;
}

// The number a task's summed loss is divided by; 0 when the batch has no label
// for the task (the task then contributes 0 and gets a zero gradient).
CUMTL_HOST_DEVICE inline double loss_normalizer(const LossHeadTable& table, int head, const std::int32_t* counts,
                                                std::int64_t rows) {
  const LossHeadTable::Head& h = table.head[head];
  const double outputs = h.kind == LossHeadKind::sigmoid ? double(h.outputs) : 1.0;
  switch (table.normalization) {
    case LossNormalization::per_label: return double(counts[2 * head + LossCounts::labels]);
    case LossNormalization::per_sample: return double(counts[2 * head + LossCounts::samples]) * outputs;
    case LossNormalization::per_batch: return counts[2 * head + LossCounts::labels] == 0 ? 0.0 : double(rows) * outputs;
  }
  return 0.0;
}

// How much one element's gradient is scaled by: λ_t / normalizer_t.
CUMTL_HOST_DEVICE inline double loss_gradient_scale(const LossHeadTable& table, int head, const std::int32_t* counts,
                                                    std::int64_t rows) {
  const double normalizer = loss_normalizer(table, head, counts, rows);
  return normalizer > 0 ? table.head[head].weight / normalizer : 0.0;
}

#if defined(CUMTL_KERNEL_CODE)
inline constexpr int loss_warps_per_block = 8;
inline constexpr int loss_finish_threads = 256;

template <class T>
__device__ inline T warp_sum(T value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

template <class T>
__device__ inline T warp_max(T value) {
  for (int offset = 16; offset > 0; offset /= 2) value = fmax(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Pass 1: counts[2h + labels|samples] += ..., invalid labels → atomicMin(first_bad_row, row).
// One thread per row; counts are summed across the warp before one atomic per warp.
// A template only so that every translation unit including this header may
// define it (a plain __global__ function here would be defined once per unit).
template <int = 0>
__global__ void count_loss_labels_kernel(LossHeadTable table, std::int64_t rows, const std::int32_t* classes,
                                         const std::int8_t* binary, std::int32_t* counts,
                                         unsigned long long* first_bad_row) {
  const std::int64_t row = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  const bool active = row < rows;
  bool bad = false;
  for (int h = 0; h < table.count; ++h) {
    const LossHeadTable::Head& head = table.head[h];
    int labels = 0;
    if (active) {
      if (head.kind == LossHeadKind::softmax) {
        const std::int32_t label = classes[row * table.class_columns + head.label_column];
        if (!class_label_valid(label, head.outputs))
          bad = true;
        else
          labels = label >= 0;
      } else {
        const std::int8_t* row_labels = binary + row * table.binary_columns + head.label_column;
        for (int k = 0; k < head.outputs; ++k) {
          const std::int8_t label = row_labels[k];
          if (!binary_label_valid(label))
            bad = true;
          else
            labels += label >= 0 || table.missing_as_negative;
        }
      }
    }
    const int warp_labels = warp_sum(labels);
    const int warp_samples = warp_sum(int(labels > 0));
    if (threadIdx.x % 32 == 0 && warp_labels > 0) {
      atomicAdd(&counts[2 * h + LossCounts::labels], warp_labels);
      atomicAdd(&counts[2 * h + LossCounts::samples], warp_samples);
    }
  }
  if (bad) atomicMin(first_bad_row, static_cast<unsigned long long>(row));
}

// Pass 2: one warp per row. block_sums[block * H + h] = Σ over the block's rows of the row's loss for head h.
// gradient may be null (evaluation): nothing is written then.
template <class T>
__global__ void __launch_bounds__(32 * loss_warps_per_block)
    multitask_loss_kernel(LossHeadTable table, std::int64_t rows, const T* __restrict__ logits,
                          const std::int32_t* __restrict__ classes, const std::int8_t* __restrict__ binary,
                          const compute_t<T>* __restrict__ positive_weights, T* __restrict__ gradient,
                          const std::int32_t* __restrict__ counts, double* __restrict__ block_sums) {
  using C = compute_t<T>;
  __shared__ double warp_losses[loss_warps_per_block][max_loss_heads];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t row = std::int64_t(blockIdx.x) * loss_warps_per_block + warp;
  const bool active = row < rows;  // whole warps are active or not: the shuffles below stay warp-uniform

  for (int h = 0; h < table.count; ++h) {
    const LossHeadTable::Head& head = table.head[h];
    const C scale = C(loss_gradient_scale(table, h, counts, rows));
    C row_loss = 0;
    if (active) {
      const T* z = logits + row * table.logit_columns + head.logit_offset;
      T* dz = gradient == nullptr ? nullptr : gradient + row * table.logit_columns + head.logit_offset;
      if (head.kind == LossHeadKind::softmax) {
        const std::int32_t label = classes[row * table.class_columns + head.label_column];
        if (label >= 0 && label < head.outputs) {
          C maximum = -INFINITY, logit_sum = 0;
          for (int c = lane; c < head.outputs; c += 32) {
            maximum = fmax(maximum, C(z[c]));
            logit_sum += C(z[c]);
          }
          maximum = warp_max(maximum);
          C exp_sum = 0;
          for (int c = lane; c < head.outputs; c += 32) exp_sum += std::exp(C(z[c]) - maximum);
          const C log_sum_exp = maximum + std::log(warp_sum(exp_sum));
          const C smoothing = C(head.smoothing);
          const C uniform_target = smoothing / C(head.outputs);
          row_loss = log_sum_exp - (C(1) - smoothing) * C(z[label]) - uniform_target * warp_sum(logit_sum);
          if (dz != nullptr)
            for (int c = lane; c < head.outputs; c += 32) {
              const C target = (c == label ? C(1) - smoothing : C(0)) + uniform_target;
              dz[c] = T(scale * (std::exp(C(z[c]) - log_sum_exp) - target));
            }
        } else if (dz != nullptr) {
          for (int c = lane; c < head.outputs; c += 32) dz[c] = T(C(0));
        }
      } else {
        const std::int8_t* labels = binary + row * table.binary_columns + head.label_column;
        C lane_loss = 0;
        for (int k = lane; k < head.outputs; k += 32) {
          const std::int8_t label = labels[k];
          const bool present = label >= 0 && label <= 1;
          C loss = 0, d = 0;
          if (present || (label == -1 && table.missing_as_negative)) {
            const C weight = positive_weights == nullptr ? C(1) : positive_weights[head.label_column + k];
            binary_cross_entropy(C(z[k]), label == 1 ? 1 : 0, weight, loss, d);
          }
          lane_loss += loss;
          if (dz != nullptr) dz[k] = T(scale * d);
        }
        row_loss = warp_sum(lane_loss);
      }
    }
    if (lane == 0) warp_losses[warp][h] = double(row_loss);
  }
  __syncthreads();
  // Fixed summation order over the block's warps: deterministic.
  if (int(threadIdx.x) < table.count) {
    double sum = 0;
    for (int w = 0; w < loss_warps_per_block; ++w) sum += warp_losses[w][threadIdx.x];
    block_sums[std::int64_t(blockIdx.x) * table.count + threadIdx.x] = sum;
  }
}

// Pass 3: one block. losses[h] = Σ_blocks block_sums / normalizer_h, losses[H] = Σ_h λ_h losses[h].
template <class C>
__global__ void finish_multitask_loss_kernel(LossHeadTable table, std::int64_t rows, std::int64_t blocks,
                                             const std::int32_t* counts, const double* block_sums, C* losses) {
  constexpr int threads = loss_finish_threads;
  __shared__ double partial[threads];
  __shared__ double task_loss[max_loss_heads];
  for (int h = 0; h < table.count; ++h) {
    double sum = 0;
    for (std::int64_t b = threadIdx.x; b < blocks; b += threads) sum += block_sums[b * table.count + h];
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int width = threads / 2; width > 0; width /= 2) {
      if (int(threadIdx.x) < width) partial[threadIdx.x] += partial[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      const double normalizer = loss_normalizer(table, h, counts, rows);
      task_loss[h] = normalizer > 0 ? partial[0] / normalizer : 0.0;
      losses[h] = C(task_loss[h]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double total = 0;
    for (int h = 0; h < table.count; ++h) total += table.head[h].weight * task_loss[h];
    losses[table.count] = C(total);
  }
}
#endif

}  // namespace cumtl::kernels
