#pragma once
// MultiTaskLoss: the selective joint loss of Pons & Masip over any number of
// heads, for batches in which any sample may lack any task's label.
//
// For a batch and each task t with weight λ_t:
//   softmax head  L_t = (1/N_t) Σ_i m_i · CE(softmax(z_i), y_i)        (optionally label-smoothed)
//   sigmoid head  L_t = (1/N_t) Σ_i Σ_k m_ik · BCE(σ(z_ik), y_ik)       (optionally pos-weighted)
//   total         L   = Σ_t λ_t L_t
// where m marks the labels present and N_t is the normalizer chosen by
// LossNormalization (per available label by default). A task with no label in
// the batch contributes 0, and a missing label gets an exact zero gradient.
// docs/loss.md has the formulas, the baselines and the kernel's design.
//
// Logits are one N×T tensor with the heads' outputs side by side in each row,
// in the order the heads are given. Labels are MultiTaskLabels: int32 N×S
// classes (one column per softmax head) and int8 N×B binary labels (one column
// per sigmoid output), -1 marking a missing label.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cumtl/core/tensor.hpp"
#include "cumtl/cpu/multitask_loss.hpp"
#include "cumtl/ops/dispatch.hpp"
#include "cumtl/ops/elementwise.hpp"

namespace cumtl {

using kernels::LossNormalization;

enum class HeadKind : std::uint8_t { softmax, sigmoid };

struct HeadSpec {
  std::string name;
  HeadKind kind = HeadKind::softmax;
  int outputs = 0;                        // classes (softmax) or labels (sigmoid)
  double weight = 1.0;                    // λ_t
  double label_smoothing = 0.0;           // softmax only: ε in [0, 1)
  std::vector<double> positive_weights;   // sigmoid only: one per label, or empty for all 1
  std::vector<std::string> output_names;  // optional: class or label names, for messages
};

// What a missing sigmoid label means: absent (the selective loss), or a
// negative (the naive baseline that treats unlabelled AUs as inactive).
enum class MissingLabels : std::uint8_t { ignore, as_negative };

struct LossOptions {
  LossNormalization normalization = LossNormalization::per_label;
  MissingLabels missing_sigmoid_labels = MissingLabels::ignore;
};

// Train writes the logits' gradient; evaluate computes the loss only.
enum class LossMode : std::uint8_t { train, evaluate };

// A batch's labels, on the device of the logits. classes: int32 [N, S];
// binary: int8 [N, B]; -1 = missing.
struct MultiTaskLabels {
  Tensor classes;
  Tensor binary;
};

// The host's copy of a computed loss.
struct LossReport {
  std::vector<double> task_losses;    // L_t, unweighted, in head order
  double total = 0;                   // Σ λ_t L_t
  std::vector<std::int64_t> labels;   // labels present per task
  std::vector<std::int64_t> samples;  // samples with at least one label per task
};

class MultiTaskLoss;

// One computed loss on its way to the host. MultiTaskLoss::read_async()
// enqueues copies of the result into this object's host buffers (pinned on a
// GPU) and records an event, so neither the stream nor the host waits; a
// later MultiTaskLoss::read(ctx, readback) takes it. It holds one result at a
// time, and keeps the batch's labels so an invalid one can still be named.
class LossReadback {
 public:
  // A result was enqueued and not taken yet.
  bool pending() const noexcept { return pending_; }

 private:
  friend class MultiTaskLoss;

  Device device_;
  Tensor losses_, counts_, bad_row_;           // host twins of the loss's device buffers
  std::unique_ptr<detail::CudaEvent> landed_;  // on a GPU: happens once the copies have landed
  MultiTaskLabels labels_;
  bool pending_ = false;
};

class MultiTaskLoss {
 public:
  explicit MultiTaskLoss(std::vector<HeadSpec> heads, LossOptions options = {})
      : heads_(std::move(heads)), options_(options) {
    CUMTL_REQUIRE(!heads_.empty(), "MultiTaskLoss: no heads");
    CUMTL_REQUIRE(int(heads_.size()) <= kernels::max_loss_heads, "MultiTaskLoss: ", heads_.size(), " heads, at most ",
                  kernels::max_loss_heads, " are supported");
    table_.count = int(heads_.size());
    table_.normalization = options_.normalization;
    table_.missing_as_negative = options_.missing_sigmoid_labels == MissingLabels::as_negative;
    for (std::size_t h = 0; h < heads_.size(); ++h) {
      const HeadSpec& head = heads_[h];
      validate(head);
      for (std::size_t other = 0; other < h; ++other)
        CUMTL_REQUIRE(heads_[other].name != head.name, "MultiTaskLoss: two heads are named '", head.name, "'");
      kernels::LossHeadTable::Head& entry = table_.head[h];
      entry.kind = head.kind == HeadKind::softmax ? kernels::LossHeadKind::softmax : kernels::LossHeadKind::sigmoid;
      entry.logit_offset = table_.logit_columns;
      entry.outputs = head.outputs;
      entry.weight = head.weight;
      entry.smoothing = head.label_smoothing;
      table_.logit_columns += head.outputs;
      if (head.kind == HeadKind::softmax) {
        entry.label_column = table_.class_columns++;
      } else {
        entry.label_column = table_.binary_columns;
        table_.binary_columns += head.outputs;
        for (int k = 0; k < head.outputs; ++k)
          positive_weights_.push_back(head.positive_weights.empty() ? 1.0 : head.positive_weights[std::size_t(k)]);
      }
    }
  }

  const std::vector<HeadSpec>& heads() const noexcept { return heads_; }
  const LossOptions& options() const noexcept { return options_; }
  int logit_columns() const noexcept { return table_.logit_columns; }    // T
  int class_columns() const noexcept { return table_.class_columns; }    // S
  int binary_columns() const noexcept { return table_.binary_columns; }  // B
  // The heads as the kernels take them (kernels/multitask_loss.cuh).
  const kernels::LossHeadTable& head_table() const noexcept { return table_; }

  // The column of head `name` in the logits, and in the labels (classes for a
  // softmax head, the first of its columns in binary for a sigmoid head).
  int logit_offset(std::string_view name) const { return table_.head[index_of(name)].logit_offset; }
  int label_column(std::string_view name) const { return table_.head[index_of(name)].label_column; }

  // Labels for `rows` samples on ctx's device, every one missing.
  MultiTaskLabels make_labels(Context& ctx, std::int64_t rows) const {
    MultiTaskLabels labels{Tensor::empty(ctx, Shape{rows, table_.class_columns}, ScalarType::i32),
                           Tensor::empty(ctx, Shape{rows, table_.binary_columns}, ScalarType::i8)};
    set_all_missing(ctx, labels.classes);
    set_all_missing(ctx, labels.binary);
    return labels;
  }

  // The losses and, with LossMode::train, dL/dlogits into `gradient` (same
  // shape and type as logits; untouched and may be undefined with evaluate).
  // Logits of bf16 or f16 are widened and the loss is computed in float32,
  // each gradient element rounded once, as the heads of a mixed-precision
  // model that computed in the activation type would hand them over.
  // Enqueued on ctx's stream without waiting: losses() holds the result on the
  // device, read() brings it to the host (read_async() without waiting). On
  // the CPU an invalid label throws here; on a GPU it is detected by the
  // kernel and thrown by the read of the result.
  void compute(Context& ctx, LossMode mode, const Tensor& logits, const MultiTaskLabels& labels, Tensor& gradient) {
    validate_batch(ctx, mode, logits, labels, gradient);
    bind_buffers(ctx, compute_type_of(logits.dtype()));
    last_labels_ = labels;
    const std::int64_t rows = logits.shape()[0];
    dispatch_activation_type(logits.dtype(), "MultiTaskLoss", [&]<class T>() {
      using C = compute_t<T>;
      const kernels::LossOutputs<C> outputs{counts_.data<std::int32_t>(), bad_row(), losses_.data<C>()};
      T* gradient_data = mode == LossMode::train ? gradient.data<T>() : nullptr;
      const C* weights = table_.binary_columns > 0 ? positive_weights_on_device_.data<C>() : nullptr;
      CUMTL_DISPATCH(ctx, T, multitask_loss, ctx, table_, rows, logits.data<T>(), labels.classes.data<std::int32_t>(),
                     labels.binary.data<std::int8_t>(), weights, gradient_data, outputs);
    });
    if (ctx.device().is_cpu()) throw_if_invalid_labels(ctx, labels, *bad_row());
  }

  // [H + 1] on the device of the last compute: each task's loss, then the
  // weighted total; float32 for bf16 or f16 logits, else of the logits' type.
  const Tensor& losses() const noexcept { return losses_; }

  // The last compute's result on the host; waits for ctx. Throws a
  // cumtl::Error naming the head, the sample and the value if a label was
  // invalid (the value is read from the labels tensor, so read before refilling it).
  LossReport read(Context& ctx) const {
    CUMTL_REQUIRE(losses_.defined(), "MultiTaskLoss::read: nothing was computed yet");
    const Tensor losses = losses_.to(ctx, Device::cpu()), counts = counts_.to(ctx, Device::cpu()),
                 bad_row = bad_row_.to(ctx, Device::cpu());
    ctx.synchronize();
    return report(ctx, losses, counts, bad_row, last_labels_);
  }

  // Enqueues on ctx's stream the copy of the last compute's result into
  // `into`, which must not hold one, and returns without waiting: a training
  // step reads its loss this way, so it never stops the host for the device.
  void read_async(Context& ctx, LossReadback& into) const {
    CUMTL_REQUIRE(losses_.defined(), "MultiTaskLoss::read_async: nothing was computed yet");
    CUMTL_REQUIRE(!into.pending_, "MultiTaskLoss::read_async: the readback still holds an earlier result; ",
                  "take it with read(ctx, readback) first");
    detail::require_on_context(ctx, "MultiTaskLoss::read_async", "losses", losses_);
    bind_readback(ctx, into);
    ops::copy(ctx, into.losses_, losses_);
    ops::copy(ctx, into.counts_, counts_);
    ops::copy(ctx, into.bad_row_, bad_row_);
    if (into.landed_) into.landed_->record(ctx.stream());
    into.labels_ = last_labels_;
    into.pending_ = true;
  }

  // The result `from` holds, once its copies have landed: the host waits for
  // them only if they have not yet. Empties `from`; throws as read(ctx) does.
  LossReport read(Context& ctx, LossReadback& from) const {
    CUMTL_REQUIRE(from.pending_, "MultiTaskLoss::read: the readback holds no result; read_async fills it");
    from.pending_ = false;
    const MultiTaskLabels labels = std::exchange(from.labels_, {});
    if (from.landed_) from.landed_->synchronize();
    return report(ctx, from.losses_, from.counts_, from.bad_row_, labels);
  }

 private:
  static void validate(const HeadSpec& head) {
    CUMTL_REQUIRE(!head.name.empty(), "MultiTaskLoss: a head has no name");
    const std::string where = "MultiTaskLoss: head '" + head.name + "'";
    CUMTL_REQUIRE(head.outputs >= 1, where, " has ", head.outputs, " outputs");
    CUMTL_REQUIRE(head.kind == HeadKind::sigmoid || head.outputs >= 2, where,
                  " is a softmax over one class; use a sigmoid head for a yes/no task");
    CUMTL_REQUIRE(head.weight >= 0 && std::isfinite(head.weight), where, " has weight ", head.weight);
    CUMTL_REQUIRE(head.label_smoothing >= 0 && head.label_smoothing < 1, where, " has label smoothing ",
                  head.label_smoothing, ", expected [0, 1)");
    CUMTL_REQUIRE(head.kind == HeadKind::softmax || head.label_smoothing == 0, where,
                  ": label smoothing applies to softmax heads only");
    CUMTL_REQUIRE(head.positive_weights.empty() || head.kind == HeadKind::sigmoid, where,
                  ": positive weights apply to sigmoid heads only");
    CUMTL_REQUIRE(head.positive_weights.empty() || int(head.positive_weights.size()) == head.outputs, where, " has ",
                  head.positive_weights.size(), " positive weights for ", head.outputs, " labels");
    for (double weight : head.positive_weights)
      CUMTL_REQUIRE(weight >= 0 && std::isfinite(weight), where, " has positive weight ", weight);
    CUMTL_REQUIRE(head.output_names.empty() || int(head.output_names.size()) == head.outputs, where, " has ",
                  head.output_names.size(), " output names for ", head.outputs, " outputs");
  }

  int index_of(std::string_view name) const {
    for (std::size_t h = 0; h < heads_.size(); ++h)
      if (heads_[h].name == name) return int(h);
    CUMTL_FAIL("MultiTaskLoss: no head is named '", name, "'");
  }

  static void set_all_missing(Context& ctx, Tensor& labels) {
    if (labels.bytes() == 0) return;
    // Bytes of all ones are -1 in int8 and in int32 alike.
    if (ctx.device().is_cuda()) {
      detail::cuda_backend().fill_bytes(labels.raw_data(), 0xff, labels.bytes(), ctx.stream());
      return;
    }
    std::memset(labels.raw_data(), 0xff, labels.bytes());
  }

  void validate_batch(Context& ctx, LossMode mode, const Tensor& logits, const MultiTaskLabels& labels,
                      const Tensor& gradient) const {
    detail::require_on_context(ctx, "MultiTaskLoss", "logits", logits);
    detail::require_on_context(ctx, "MultiTaskLoss", "labels.classes", labels.classes);
    detail::require_on_context(ctx, "MultiTaskLoss", "labels.binary", labels.binary);
    const std::int64_t rows = logits.shape().rank() == 2 ? logits.shape()[0] : -1;
    CUMTL_REQUIRE(rows >= 0 && logits.shape()[1] == table_.logit_columns, "MultiTaskLoss: logits is ",
                  logits.description(), ", expected [N, ", table_.logit_columns, "] (the heads' outputs side by side)");
    CUMTL_REQUIRE(
        (labels.classes.dtype() == ScalarType::i32 && labels.classes.shape() == Shape{rows, table_.class_columns}),
        "MultiTaskLoss: labels.classes is ", labels.classes.description(), ", expected int32[", rows, ", ",
        table_.class_columns, "] (one column per softmax head)");
    CUMTL_REQUIRE(
        (labels.binary.dtype() == ScalarType::i8 && labels.binary.shape() == Shape{rows, table_.binary_columns}),
        "MultiTaskLoss: labels.binary is ", labels.binary.description(), ", expected int8[", rows, ", ",
        table_.binary_columns, "] (one column per sigmoid output)");
    if (mode == LossMode::train) {
      detail::require_on_context(ctx, "MultiTaskLoss", "gradient", gradient);
      detail::require_alike("MultiTaskLoss", "gradient", gradient, "logits", logits);
    }
  }

  // Output buffers live on the device of the last compute, allocated once per
  // device and compute type so a training step does not allocate.
  void bind_buffers(Context& ctx, ScalarType dtype) {
    if (losses_.defined() && losses_.device() == ctx.device() && losses_.dtype() == dtype) return;
    losses_ = Tensor::empty(ctx, Shape{table_.count + 1}, dtype);
    counts_ = Tensor::empty(ctx, Shape{2 * table_.count}, ScalarType::i32);
    bad_row_ = Tensor::empty(ctx, Shape{1}, ScalarType::i64);
    dispatch_floating(dtype, "MultiTaskLoss", [&]<class T>() {
      const std::vector<T> weights(positive_weights_.begin(), positive_weights_.end());
      positive_weights_on_device_ =
          Tensor::from_vector(weights, Shape{std::int64_t(weights.size())}).to(ctx, ctx.device());
    });
  }

  // Host buffers like the device's, pinned on a GPU so the copies into them
  // are asynchronous; made again only when the device or the type changes.
  void bind_readback(Context& ctx, LossReadback& readback) const {
    if (readback.losses_.defined() && readback.device_ == ctx.device() && readback.losses_.dtype() == losses_.dtype())
      return;
    const auto host_twin = [&](const Tensor& tensor) {
      return ctx.device().is_cuda() ? Tensor::pinned(tensor.shape(), tensor.dtype())
                                    : Tensor::empty(tensor.shape(), tensor.dtype());
    };
    readback.losses_ = host_twin(losses_);
    readback.counts_ = host_twin(counts_);
    readback.bad_row_ = host_twin(bad_row_);
    readback.landed_ = ctx.device().is_cuda() ? std::make_unique<detail::CudaEvent>(ctx.device().index()) : nullptr;
    readback.device_ = ctx.device();
  }

  // A result from host copies of the loss's buffers.
  LossReport report(Context& ctx, const Tensor& losses, const Tensor& counts, const Tensor& bad_row,
                    const MultiTaskLabels& labels) const {
    throw_if_invalid_labels(ctx, labels, static_cast<unsigned long long>(bad_row.data<std::int64_t>()[0]));
    LossReport report;
    dispatch_floating(losses.dtype(), "MultiTaskLoss::read", [&]<class T>() {
      const T* values = losses.data<T>();
      report.task_losses.assign(values, values + table_.count);
      report.total = double(values[table_.count]);
    });
    const std::int32_t* count = counts.data<std::int32_t>();
    for (std::size_t h = 0; h < heads_.size(); ++h) {
      report.labels.push_back(count[2 * h + kernels::LossCounts::labels]);
      report.samples.push_back(count[2 * h + kernels::LossCounts::samples]);
    }
    return report;
  }

  unsigned long long* bad_row() { return reinterpret_cast<unsigned long long*>(bad_row_.data<std::int64_t>()); }

  void throw_if_invalid_labels(Context& ctx, const MultiTaskLabels& labels, unsigned long long first_bad_row) const {
    if (first_bad_row == kernels::no_bad_row) return;
    const std::int64_t row = std::int64_t(first_bad_row);
    const std::vector<std::int32_t> classes = labels.classes.slice(row, row + 1).to_vector<std::int32_t>(ctx);
    const std::vector<std::int8_t> binary = labels.binary.slice(row, row + 1).to_vector<std::int8_t>(ctx);
    for (std::size_t h = 0; h < heads_.size(); ++h) {
      const HeadSpec& head = heads_[h];
      const int column = table_.head[h].label_column;
      if (head.kind == HeadKind::softmax) {
        const std::int32_t label = classes[std::size_t(column)];
        CUMTL_REQUIRE(kernels::class_label_valid(label, head.outputs), "MultiTaskLoss: head '", head.name, "': sample ",
                      row, " has class ", label, ", expected -1 (missing) or 0..", head.outputs - 1);
      } else {
        for (int k = 0; k < head.outputs; ++k) {
          const std::int8_t label = binary[std::size_t(column + k)];
          CUMTL_REQUIRE(kernels::binary_label_valid(label), "MultiTaskLoss: head '", head.name, "': sample ", row,
                        ", label ", head.output_names.empty() ? std::to_string(k) : head.output_names[std::size_t(k)],
                        " has value ", int(label), ", expected -1 (missing), 0 or 1");
        }
      }
    }
  }

  std::vector<HeadSpec> heads_;
  LossOptions options_;
  kernels::LossHeadTable table_;
  std::vector<double> positive_weights_;  // one per binary column
  Tensor losses_, counts_, bad_row_, positive_weights_on_device_;
  MultiTaskLabels last_labels_;
};

}  // namespace cumtl
