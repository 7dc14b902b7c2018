#pragma once
// Trainer: one training run of a multi-head ResNet, from a TrainConfig to a
// run folder — the loop behind cumtl-train, usable from any program.
//
// A run folder holds, when the run has finished:
//   model.json            the architecture, heads and input (train/model_file.hpp)
//   weights.safetensors   the weights under PyTorch's names and layout (io/checkpoint.hpp), float32
//   weights.bf16.safetensors  in a bf16 (fp16) run, the same rounded to bfloat16 (weights.fp16.safetensors:
//                         float16): what its forward passes computed with, for a PyTorch model in that type
//   metrics.jsonl         one JSON object per epoch: epoch, step, train_loss, lr, the test metrics
//   summary.json          the final metrics, device, precision, train_seconds, images_per_second
//   report.html           curves, per-AU F1 and the confusion matrix as inline SVG
//   checkpoints/          step-<N>.safetensors: the last few, for --resume
// Those four final files are written only after the last epoch, each
// atomically, so a run that fails or is interrupted never leaves a weights
// file or a summary that looks finished; metrics.jsonl and the checkpoints are
// rewritten atomically as the run goes.
//
// Resuming. A checkpoint holds the model, the optimizer state and step count,
// the position in the epoch (the sampler is a pure function of epoch and batch
// index), the epoch's running loss and the run's history and configuration.
// Nothing else carries state from step to step (the schedule is a function of
// the step, augmentation a function of the sample's place in the run), so on
// the CPU a resumed run reproduces the uninterrupted one bit for bit.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cumtl/core/context.hpp"
#include "cumtl/core/device.hpp"
#include "cumtl/core/precision.hpp"
#include "cumtl/data/loader.hpp"
#include "cumtl/distributed/communicator.hpp"
#include "cumtl/distributed/data_parallel.hpp"
#include "cumtl/io/checkpoint.hpp"
#include "cumtl/models/multi_head.hpp"
#include "cumtl/optim/loss_scale.hpp"
#include "cumtl/optim/optimizer.hpp"
#include "cumtl/optim/schedule.hpp"
#include "cumtl/train/config.hpp"
#include "cumtl/train/datasets.hpp"
#include "cumtl/train/evaluate.hpp"
#include "cumtl/train/model_file.hpp"
#include "cumtl/train/progress.hpp"
#include "cumtl/train/report.hpp"
#include "cumtl/train/step_losses.hpp"

namespace cumtl::train {

// The device a --device value names; "auto" is the first GPU if there is one.
// `local_rank`: the GPU that "auto" and "cuda" mean for this rank of a node's ranks (one GPU each).
inline Device choose_device(const std::string& text, int local_rank = 0) {
  if (text == "auto") return cuda_available() ? Device::cuda(local_rank) : Device::cpu();
  const Device device = text == "cuda" ? Device::cuda(local_rank) : Device::parse(text);
  cumtl::detail::require_usable(device);
  return device;
}

// The weights file a mixed-precision run writes beside weights.safetensors, rounded to its activation type:
// "weights.bf16.safetensors".
inline std::string mixed_weights_file(const Precision& precision) {
  return "weights." + std::string(precision.name) + ".safetensors";
}

// "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)".
inline std::string device_description(Device device) {
  std::string text = device.str();
  if (device.is_cuda()) {
    if (const std::string name = cumtl::detail::cuda_backend().device_name(device.index()); !name.empty())
      text += " (" + name + ")";
  }
  return text;
}

struct TrainerOptions {
  std::filesystem::path run_folder;
  bool overwrite = false;  // replace a finished or failed run in run_folder
  std::FILE* log = stdout;
  bool interactive = false;  // redraw a progress bar (a terminal) instead of log lines
  bool quiet = false;        // only errors
  // Stop with a checkpoint once the run reaches this step, as a stop request
  // would (for jobs in fixed time slots); < 0: never.
  std::int64_t pause_at_step = -1;
  // Called with every training step's loss, in step order, once it has
  // reached the host: a few steps after its own (the host does not wait for
  // the GPU each step), and for every step before an epoch ends or the run stops.
  std::function<void(const StepLoss&)> on_step_loss;
  // Data-parallel training: this process is one rank of the communicator's
  // world (null: a world of one). Every rank builds the same Trainer; rank 0's
  // parameters are broadcast at the start; each step trains on this rank's
  // shard of a batch of `batch` x world-size samples and averages the
  // gradients over the ranks; rank 0 alone writes the run folder and logs.
  std::shared_ptr<distributed::Communicator> communicator;
  // GPU ranks: makes the engine that carries the model's collectives on device
  // memory (NCCL, distributed/nccl.hpp) from `communicator` and this rank's GPU
  // context. The communicator itself keeps the host's collectives (agreeing on
  // a stop, summing counts). Unused on the CPU.
  std::function<std::shared_ptr<distributed::Communicator>(distributed::Communicator&, Context&)> device_engine;
  // This rank's place among its node's ranks: device "auto" or "cuda" is GPU local_rank.
  int local_rank = 0;
};

struct RunResult {
  bool finished = false;                // false: stopped by the caller's flag, a checkpoint was written
  nlohmann::json summary;               // summary.json's contents (finished runs)
  std::vector<nlohmann::json> history;  // metrics.jsonl's lines
  std::filesystem::path checkpoint;     // the last checkpoint written
};

namespace detail {

inline std::filesystem::path checkpoint_folder(const std::filesystem::path& run) {
  return run / "checkpoints";
}

// The checkpoints of a run, oldest first (their names number the step).
inline std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run) {
  std::vector<std::filesystem::path> found;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(checkpoint_folder(run), error)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("step-") && name.ends_with(".safetensors")) found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

inline std::string checkpoint_name(std::int64_t step) {
  char name[48];
  std::snprintf(name, sizeof name, "step-%010lld.safetensors", static_cast<long long>(step));
  return name;
}

inline void write_text(const std::filesystem::path& file, const std::string& text) {
  io::detail::write_pieces_atomically(file, {std::as_bytes(std::span(text))});
}

inline nlohmann::json read_checkpoint_configuration(const std::filesystem::path& file) {
  const io::SafetensorsFile contents = io::read_safetensors(file);
  const auto found = contents.metadata.find("configuration");
  CUMTL_REQUIRE(found != contents.metadata.end(), "checkpoint '", file.string(), "' has no run configuration");
  try {
    return nlohmann::json::parse(found->second);
  } catch (const nlohmann::json::exception& error) {
    CUMTL_FAIL("checkpoint '", file.string(), "': its run configuration is not valid JSON: ", error.what());
  }
}

}  // namespace detail

class Trainer {
 public:
  // Validates the configuration and opens every dataset; touches no file. In a
  // world of several ranks, also checks that they agree and takes rank 0's parameters.
  Trainer(TrainConfig config, TrainerOptions options)
      : config_(std::move(config)),
        options_(std::move(options)),
        device_(choose_device(config_.device, options_.local_rank)),
        precision_(choose_precision(config_.precision, device_, config_.deterministic)),
        ctx_(&Context::default_for(device_)),
        spec_(trunk_spec(config_, device_.is_cuda())),
        image_size_(train::image_size(config_, spec_)),
        heads_(head_specs(config_)),
        data_(make_training_data(config_, image_size_)),
        model_(spec_, heads_, precision_.activations),
        loss_(heads_, loss_options(config_)),
        communicator_(options_.communicator ? options_.communicator : std::make_shared<distributed::SingleProcess>()) {
    CUMTL_REQUIRE(config_.batch > 0, "--batch must be positive, got ", config_.batch);
    if (distributed() && device_.is_cuda()) {
      CUMTL_REQUIRE(options_.device_engine, "GPU ranks need an engine for device memory, NCCL: build with ",
                    "-DCUMTL_NCCL=ON, or pass --device cpu");
      device_engine_ = options_.device_engine(*communicator_, *ctx_);
    }
    if (!communicator_->is_root()) options_.quiet = true;
    CUMTL_REQUIRE(config_.epochs > 0 || config_.steps > 0, "--epochs must be positive, got ", config_.epochs);
    CUMTL_REQUIRE(config_.keep_checkpoints >= 1, "--keep-checkpoints must be at least 1");
    CUMTL_REQUIRE(config_.loader_threads >= 0, "--loader-threads must be >= 0");
    CUMTL_REQUIRE(config_.eval_every >= 0, "--eval-every must be >= 0");
    apply_math_mode(precision_, ctx_->numerics());
    ctx_->numerics().deterministic = config_.deterministic;
    const auto scheme = config_.scheme == Scheme::alternating ? data::MultiDomainSampler::Scheme::alternating
                                                              : data::MultiDomainSampler::Scheme::mixed;
    const std::optional<data::AugmentOptions> augmentation = train::augmentation(config_, image_size_);
    data::LoaderOptions train_options{.image_size = image_size_,
                                      .augment = augmentation.has_value(),
                                      .image_type = precision_.activations,
                                      .threads = std::size_t(config_.loader_threads),
                                      .skip_bad = config_.skip_bad,
                                      .shard_rank = std::size_t(communicator_->rank()),
                                      .shard_count = std::size_t(world_size())};
    if (augmentation) train_options.augmentation = *augmentation;
    train_loader_.emplace(*ctx_,
                          data::MultiDomainSampler(data_.train, data_.ratios, data_.epoch_dataset,
                                                   std::size_t(config_.batch * world_size()), config_.seed, scheme),
                          heads_, train_options);
    batches_per_epoch_ = std::int64_t(train_loader_->batches_per_epoch());
    const std::size_t shortest = train_loader_->sampler().batch_length(std::size_t(batches_per_epoch_ - 1));
    CUMTL_REQUIRE(shortest >= std::size_t(world_size()), "the epoch's last batch has ", shortest,
                  " samples, fewer than the ", world_size(), " ranks: choose another --batch");
    total_steps_ = config_.steps > 0 ? config_.steps : config_.epochs * batches_per_epoch_;
    epochs_ = (total_steps_ + batches_per_epoch_ - 1) / batches_per_epoch_;

    model_.allocate(*ctx_);
    Generator generator(config_.seed);
    model_.initialize(*ctx_, generator);
    make_optimizer();
    if (precision_ == precision_fp16) loss_scale_.emplace();
    make_schedule();
    if (distributed()) {
      join_ranks();
      gradient_buckets_.emplace(model_engine(), model_.parameters());
    }
    if (distributed() && config_.sync_batch_norm) model_.synchronize_batch_norm(&model_engine());
  }

  // A run continued from the newest checkpoint in `options.run_folder`, with
  // its stored configuration; `device` ("" keeps the stored one) may change.
  static std::unique_ptr<Trainer> resume(TrainerOptions options, const std::string& device = "") {
    const std::vector<std::filesystem::path> checkpoints = detail::list_checkpoints(options.run_folder);
    CUMTL_REQUIRE(!checkpoints.empty(), "cannot resume: '", options.run_folder.string(),
                  "' has no checkpoints/step-*.safetensors");
    const nlohmann::json stored = detail::read_checkpoint_configuration(checkpoints.back());
    CUMTL_REQUIRE(stored.contains("config") && stored.contains("state"), "checkpoint '", checkpoints.back().string(),
                  "' was not written by a Trainer");
    TrainConfig config = config_from_json(stored["config"]);
    if (!device.empty()) config.device = device;
    options.overwrite = false;
    auto trainer = std::make_unique<Trainer>(std::move(config), std::move(options));
    trainer->restore(checkpoints.back());
    return trainer;
  }

  const TrainConfig& config() const noexcept { return config_; }
  Device device() const noexcept { return device_; }
  Context& context() noexcept { return *ctx_; }
  MultiHeadModel<float>& model() noexcept { return model_; }
  std::int64_t total_steps() const noexcept { return total_steps_; }
  std::int64_t batches_per_epoch() const noexcept { return batches_per_epoch_; }
  int input_size() const noexcept { return image_size_; }
  int world_size() const noexcept { return communicator_->world_size(); }
  bool distributed() const noexcept { return world_size() > 1; }

  ModelDescription description() const {
    return ModelDescription{spec_, heads_, image_size_, ops::imagenet_mean, ops::imagenet_std, loss_.options()};
  }

  // Trains to the end, or until `stop` becomes true (then writes a checkpoint at
  // the current step and returns with finished = false).
  RunResult run(const std::atomic<bool>& stop) {
    on_root("prepare the run folder", [&] { prepare_folder(); });
    say_plan();
    RunResult result;
    while (step_ < total_steps_) {
      const std::int64_t epoch = step_ / batches_per_epoch_;
      if (!train_epoch(epoch, stop)) {
        result.checkpoint = save_checkpoint();
        result.history = history_;
        log("stopped at step %lld; checkpoint %s (continue with --resume %s)\n", static_cast<long long>(step_),
            result.checkpoint.string().c_str(), options_.run_folder.string().c_str());
        return result;
      }
      finish_epoch(epoch);
      result.checkpoint = save_checkpoint();
    }
    result.history = history_;
    result.summary = write_final_outputs();
    result.finished = true;
    return result;
  }

 private:
  template <class... Args>
  void log(const char* format, Args... args) const {
    if (options_.quiet) return;
    std::fprintf(options_.log, format, args...);
    std::fflush(options_.log);
  }

  // Checks that every rank runs the same configuration and model, then gives
  // every rank rank 0's parameters and buffers.
  void join_ranks() {
    const std::string identity = to_json(config_).dump() + " parameters " +
                                 std::to_string(model_.parameters().parameter_count()) + " buffers " +
                                 std::to_string(model_.parameters().buffer_values().numel());
    std::uint64_t fingerprint = 14695981039346656037ull;  // FNV-1a
    for (const char c : identity) fingerprint = (fingerprint ^ std::uint8_t(c)) * 1099511628211ull;
    std::uint64_t roots = fingerprint;
    communicator_->broadcast(std::as_writable_bytes(std::span(&roots, 1)), 0);
    std::int64_t differing = roots != fingerprint;
    communicator_->all_reduce_sum(std::span(&differing, 1));
    CUMTL_REQUIRE(roots == fingerprint, "rank ", communicator_->rank(), " runs another configuration or model than ",
                  "rank 0 (every rank must get the same arguments and data)");
    CUMTL_REQUIRE(differing == 0, differing, " of the ", world_size(), " ranks run another configuration or model ",
                  "than rank 0 (every rank must get the same arguments and data)");
    distributed::broadcast_parameters(model_engine(), model_.parameters());
  }

  // The engine of the model's collectives: NCCL for GPU ranks, else the host communicator.
  distributed::Communicator& model_engine() const noexcept { return device_engine_ ? *device_engine_ : *communicator_; }

  // Every rank stops at the same step: at the first where any rank was asked to.
  bool should_stop(const std::atomic<bool>& stop) {
    std::int64_t asked = stop.load() || step_ == options_.pause_at_step;
    if (distributed()) communicator_->all_reduce_sum(std::span(&asked, 1));
    return asked > 0;
  }

  // The loss and image counts are this rank's own as training goes; gathering
  // leaves the world's totals on rank 0 and zero elsewhere, so gathering again
  // adds only what came since.
  void gather_counts() {
    if (!distributed()) return;
    double loss_sum = epoch_loss_sum_;
    std::int64_t counts[] = {epoch_images_, images_trained_};
    communicator_->all_reduce_sum(std::span(&loss_sum, 1));
    communicator_->all_reduce_sum(std::span(counts));
    const bool root = communicator_->is_root();
    epoch_loss_sum_ = root ? loss_sum : 0;
    epoch_images_ = root ? counts[0] : 0;
    images_trained_ = root ? counts[1] : 0;
  }

  // Runs `write` on rank 0 alone; every rank learns whether it worked, so a
  // failure there stops them all at once instead of after a timeout.
  template <class Write>
  void on_root(const char* what, Write&& write) {
    std::exception_ptr error;
    std::int64_t failed = 0;
    if (communicator_->is_root()) {
      try {
        write();
      } catch (...) {
        error = std::current_exception();
        failed = 1;
      }
    }
    if (distributed()) communicator_->all_reduce_sum(std::span(&failed, 1));
    if (error) std::rethrow_exception(error);
    CUMTL_REQUIRE(failed == 0, "rank 0 failed to ", what, " (its error says why)");
  }

  void make_optimizer() {
    const bool adamw = config_.optimizer == "adamw";
    CUMTL_REQUIRE(adamw || config_.optimizer == "sgd", "unknown optimizer '", config_.optimizer,
                  "': expected sgd or adamw");
    lr_ = config_.lr > 0 ? config_.lr : adamw ? 4e-3 : 0.05;
    const double decay = config_.weight_decay >= 0 ? config_.weight_decay : adamw ? 0.1 : 5e-4;
    if (adamw)
      optimizer_.emplace(*ctx_, model_.parameters(), optim::AdamWOptions{.lr = lr_, .weight_decay = decay});
    else
      optimizer_.emplace(*ctx_, model_.parameters(),
                         optim::SgdOptions{.lr = lr_,
                                           .momentum = config_.momentum,
                                           .nesterov = config_.nesterov && config_.momentum > 0,
                                           .weight_decay = decay});
  }

  void make_schedule() {
    const std::int64_t warmup =
        config_.warmup_steps >= 0 ? config_.warmup_steps : std::min<std::int64_t>(total_steps_ / 30, 500);
    CUMTL_REQUIRE(warmup < total_steps_ || config_.schedule != "cosine", "--warmup-steps (", warmup,
                  ") must be below the run's ", total_steps_, " steps");
    if (config_.schedule == "constant") {
      schedule_ = optim::Schedule::constant(lr_, warmup);
    } else if (config_.schedule == "cosine") {
      schedule_ = optim::Schedule::cosine(lr_, total_steps_, 0, warmup);
    } else if (config_.schedule == "step") {
      const double every = config_.step_every_epochs > 0 ? config_.step_every_epochs * double(batches_per_epoch_)
                                                         : double(total_steps_) / 3;
      schedule_ =
          optim::Schedule::step_decay(lr_, std::max<std::int64_t>(1, std::int64_t(every)), config_.gamma, warmup);
    } else {
      CUMTL_FAIL("unknown schedule '", config_.schedule, "': expected constant, step or cosine");
    }
    (void)schedule_.lr(0);  // validates the settings now rather than at the first step
  }

  void prepare_folder() {
    namespace fs = std::filesystem;
    const fs::path& run = options_.run_folder;
    CUMTL_REQUIRE(!run.empty(), "no run folder (--out)");
    constexpr const char* outputs[] = {"model.json", "weights.safetensors", "summary.json", "report.html",
                                       "metrics.jsonl"};
    if (!resumed_) {
      const bool holds_run = std::any_of(std::begin(outputs), std::end(outputs),
                                         [&](const char* name) { return fs::exists(run / name); }) ||
                             !detail::list_checkpoints(run).empty();
      CUMTL_REQUIRE(!holds_run || options_.overwrite, "'", run.string(), "' already holds a run: pass --resume ",
                    run.string(), " to continue it or --overwrite to replace it");
      for (const char* name : outputs) fs::remove(run / name);
      for (const fs::path& checkpoint : detail::list_checkpoints(run)) fs::remove(checkpoint);
    } else {
      // A resumed run's final outputs from an earlier finish (if any) no longer describe it.
      for (const char* name : {"weights.safetensors", "summary.json", "report.html"}) fs::remove(run / name);
    }
    std::error_code error;
    fs::create_directories(detail::checkpoint_folder(run), error);
    CUMTL_REQUIRE(!error, "cannot create the run folder '", run.string(), "': ", error.message());
  }

  void say_plan() {
    std::string split_sizes;
    for (const auto& dataset : data_.train)
      split_sizes += (split_sizes.empty() ? "" : ", ") + dataset->name() + " " + std::to_string(dataset->size());
    log("device: %s%s\n", device_description(device_).c_str(),
        config_.device == "auto" && device_.is_cpu() ? (" (no GPU: " + cuda_unavailable_reason() + ")").c_str() : "");
    log("precision: %s%s\n", std::string(precision_.name).c_str(), config_.precision == "auto" ? " (auto)" : "");
    const auto joined = [](const std::vector<int>& values) {
      std::string text;
      for (int value : values) text += (text.empty() ? "" : "-") + std::to_string(value);
      return text;
    };
    log("model: %s (widths %s, blocks %s), input %dx%d, %lld parameters; heads:",
        model_name(config_, device_.is_cuda()).c_str(), joined(spec_.widths).c_str(), joined(spec_.blocks).c_str(),
        image_size_, image_size_, static_cast<long long>(model_.parameters().parameter_count()));
    for (const HeadSpec& head : heads_) log(" %s(%d)", head.name.c_str(), head.outputs);
    log("\ntrain: %s; scheme %s, loss %s; %lld steps of %lld (%lld epochs of %lld batches)\n", split_sizes.c_str(),
        std::string(name_of(config_.scheme)).c_str(), std::string(name_of(loss_.options().normalization)).c_str(),
        static_cast<long long>(total_steps_), static_cast<long long>(config_.batch), static_cast<long long>(epochs_),
        static_cast<long long>(batches_per_epoch_));
    if (distributed())
      log("ranks: %d (%s), %lld images per rank per step, batch norm %s\n", world_size(),
          model_engine().engine().c_str(), static_cast<long long>(config_.batch),
          config_.sync_batch_norm ? "over the global batch" : "per rank");
    if (resumed_) log("resuming at step %lld\n", static_cast<long long>(step_));
  }

  // Trains the rest of `epoch`; false when stopped by the flag.
  bool train_epoch(std::int64_t epoch, const std::atomic<bool>& stop) {
    const std::int64_t first = step_ - epoch * batches_per_epoch_;
    const std::int64_t last = std::min(batches_per_epoch_, total_steps_ - epoch * batches_per_epoch_);
    train_loader_->start_epoch(std::uint64_t(epoch), std::size_t(first));
    Progress progress(options_.log, options_.interactive);
    progress.start("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs_), last);
    const auto started = std::chrono::steady_clock::now();
    std::int64_t images = 0;
    // A step's loss arrives a few steps after the step (StepLosses), so it is
    // checked and counted then, under its own step number.
    const auto count = [&](const StepLoss& done) {
      CUMTL_REQUIRE(std::isfinite(done.loss), "the loss became ", done.loss, " at step ", done.step,
                    ": lower the learning rate (--lr, now ", lr_, ")");
      epoch_loss_sum_ += done.loss * double(done.images);
      epoch_images_ += done.images;
      images += done.images;
      if (options_.on_step_loss) options_.on_step_loss(done);
      if (!options_.quiet) progress.update(done.step - epoch * batches_per_epoch_ + 1 - first, images, done.loss);
    };
    bool stopped = false;
    for (std::int64_t b = first; b < last; ++b) {
      if (should_stop(stop)) {
        stopped = true;
        break;
      }
      std::optional<data::Batch> batch = train_loader_->next();
      CUMTL_REQUIRE(batch.has_value(), "the loader ended epoch ", epoch, " after ", b, " of ", last, " batches");
      const Tensor logits = model_.forward(*ctx_, batch->images, Phase::train);
      Tensor dlogits = Tensor::empty(*ctx_, logits.shape(), logits.dtype());
      loss_.compute(*ctx_, LossMode::train, logits, batch->labels, dlogits);
      if (loss_scale_) ops::scale(*ctx_, dlogits, loss_scale_->scale());
      if (gradient_buckets_) {
        model_.backward(*ctx_, dlogits, GradientMode::overwrite,
                        [&](std::int64_t first_final) { gradient_buckets_->ready(first_final); });
        gradient_buckets_->finish();
      } else {
        model_.backward(*ctx_, dlogits, GradientMode::overwrite);
      }
      // Every rank holds the same averaged gradients, so every rank takes or skips the step alike.
      if (!loss_scale_ || loss_scale_->unscale(*ctx_, model_.parameters().gradients()))
        optimizer_->step(*ctx_, schedule_.lr(step_));
      const std::optional<StepLoss> due = step_losses_.push(*ctx_, loss_, step_, std::int64_t(batch->size));
      ++step_;
      if (due) count(*due);
    }
    // The epoch's record, a checkpoint and an evaluation all need every step counted.
    while (const std::optional<StepLoss> done = step_losses_.take_oldest(*ctx_, loss_)) count(*done);
    if (!options_.quiet) progress.finish();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    train_seconds_ += seconds;
    images_trained_ += images;
    return !stopped;
  }

  void finish_epoch(std::int64_t epoch) {
    const auto started = std::chrono::steady_clock::now();
    gather_counts();
    nlohmann::json record = {{"epoch", epoch + 1},
                             {"step", step_},
                             {"train_loss", epoch_images_ > 0 ? epoch_loss_sum_ / double(epoch_images_) : 0.0},
                             {"lr", schedule_.lr(std::max<std::int64_t>(step_ - 1, 0))}};
    if (loss_scale_) {
      record["loss_scale"] = loss_scale_->scale();
      record["skipped_steps"] = loss_scale_->skipped_steps();
    }
    const bool last = step_ >= total_steps_;
    const bool due = last || (config_.eval_every > 0 && (epoch + 1) % config_.eval_every == 0);
    if (due) distributed::broadcast_buffers(model_engine(), model_.parameters());
    for (std::size_t s = 0; due && s < data_.evaluation.size(); ++s) {
      Evaluation evaluation = evaluate_split(s);
      record.update(evaluation.metrics(data_.evaluation[s].name));
      if (s == 0) last_evaluation_ = std::move(evaluation);
    }
    record["train_seconds"] = train_seconds_;
    record["images_per_second"] = train_seconds_ > 0 ? double(images_trained_) / train_seconds_ : 0.0;
    eval_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    history_.push_back(record);
    epoch_loss_sum_ = 0;
    epoch_images_ = 0;
    on_root("write metrics.jsonl", [&] { write_history(); });
    print_row(record);
  }

  Evaluation evaluate_split(std::size_t s) {
    data::LoaderOptions options{.image_size = image_size_,
                                .augment = false,
                                .image_type = precision_.activations,
                                .threads = std::size_t(config_.loader_threads),
                                .skip_bad = config_.skip_bad};
    options.shard_rank = std::size_t(communicator_->rank());
    options.shard_count = std::size_t(world_size());
    data::Loader loader(
        *ctx_, data::MultiDomainSampler(data_.evaluation[s].dataset, std::size_t(config_.batch * world_size()), 0),
        heads_, options);
    loader.start_epoch(0);
    Evaluation evaluation = evaluate(*ctx_, model_, loss_, loader);
    sum_over_ranks(evaluation, *communicator_);
    return evaluation;
  }

  void print_row(const nlohmann::json& record) {
    if (options_.quiet) return;
    const auto value = [&](const char* key) {
      char text[16] = "-";
      if (record.contains(key)) std::snprintf(text, sizeof text, "%.4f", record[key].get<double>());
      return std::string(text);
    };
    if (!table_header_printed_) {
      log("%5s %8s %10s %10s %9s %9s %9s %9s %8s\n", "epoch", "step", "train_loss", "test_loss", "emo_acc", "emo_mca",
          "au_f1", "cmp_acc", "img/s");
      table_header_printed_ = true;
    }
    log("%5lld %8lld %10s %10s %9s %9s %9s %9s %8.0f\n", static_cast<long long>(record["epoch"].get<std::int64_t>()),
        static_cast<long long>(record["step"].get<std::int64_t>()), value("train_loss").c_str(),
        value("test_loss").c_str(), value("emotion_accuracy").c_str(), value("emotion_mean_class_accuracy").c_str(),
        value("au_mean_f1").c_str(), value("compound_accuracy").c_str(), record["images_per_second"].get<double>());
  }

  void write_history() const {
    std::string text;
    for (const nlohmann::json& record : history_) text += record.dump() + "\n";
    detail::write_text(options_.run_folder / "metrics.jsonl", text);
  }

  // Steps the fp16 loss scale skipped (their gradients overflowed); 0 in every other precision.
  std::int64_t skipped_steps() const noexcept { return loss_scale_ ? loss_scale_->skipped_steps() : 0; }

  static nlohmann::json loss_scale_state_to_json(const optim::LossScaleState& state) {
    return {{"scale", state.scale}, {"finite_steps", state.finite_steps}, {"skipped_steps", state.skipped_steps}};
  }
  static optim::LossScaleState loss_scale_state_from_json(const nlohmann::json& json) {
    return {.scale = json.at("scale").get<double>(),
            .finite_steps = json.at("finite_steps").get<std::int64_t>(),
            .skipped_steps = json.at("skipped_steps").get<std::int64_t>()};
  }

  std::filesystem::path save_checkpoint() {
    gather_counts();
    const nlohmann::json state = {
        {"history", history_},
        {"epoch_loss_sum", epoch_loss_sum_},
        {"epoch_images", epoch_images_},
        {"loss_scale", loss_scale_ ? loss_scale_state_to_json(loss_scale_->state()) : nlohmann::json()},
        {"train_seconds", train_seconds_},
        {"images_trained", images_trained_}};
    const nlohmann::json configuration = {{"config", to_json(config_)}, {"state", state}};
    io::CheckpointContents contents;
    contents.model = &model_.parameters();
    contents.optimizer_state = optimizer_->state();
    contents.progress = {.epoch = step_ / batches_per_epoch_,
                         .step = step_,
                         .rng_seed = config_.seed,
                         .rng_offset = 0,
                         .sampler_position = step_ % batches_per_epoch_};
    contents.configuration = configuration.dump();
    const std::filesystem::path file = detail::checkpoint_folder(options_.run_folder) / detail::checkpoint_name(step_);
    on_root("write a checkpoint", [&] {
      io::save_checkpoint(*ctx_, file, contents);
      std::vector<std::filesystem::path> all = detail::list_checkpoints(options_.run_folder);
      for (std::size_t i = 0; i + std::size_t(config_.keep_checkpoints) < all.size(); ++i)
        std::filesystem::remove(all[i]);
    });
    return file;
  }

  void restore(const std::filesystem::path& file) {
    io::CheckpointContents contents;
    contents.model = &model_.parameters();
    contents.optimizer_state = optimizer_->state();
    io::load_checkpoint(*ctx_, file, contents);
    const nlohmann::json state = nlohmann::json::parse(contents.configuration).at("state");
    step_ = contents.progress.step;
    CUMTL_REQUIRE(step_ >= 0 && step_ <= total_steps_, "checkpoint '", file.string(), "' is at step ", step_,
                  " of a run of ", total_steps_);
    if (loss_scale_) loss_scale_->set_state(loss_scale_state_from_json(state.at("loss_scale")));
    // The optimizer counts the steps it took: in fp16, not the skipped ones.
    optimizer_->set_steps(std::uint64_t(step_ - skipped_steps()));
    history_ = state.at("history").get<std::vector<nlohmann::json>>();
    epoch_loss_sum_ = state.at("epoch_loss_sum").get<double>();
    epoch_images_ = state.at("epoch_images").get<std::int64_t>();
    train_seconds_ = state.at("train_seconds").get<double>();
    images_trained_ = state.at("images_trained").get<std::int64_t>();
    if (!communicator_->is_root())
      epoch_loss_sum_ = 0, epoch_images_ = 0, images_trained_ = 0;  // rank 0 holds the world's
    resumed_ = true;
  }

  nlohmann::json write_final_outputs() {
    const std::filesystem::path& run = options_.run_folder;
    nlohmann::json summary = nlohmann::json::object();
    if (!history_.empty())
      for (const auto& [key, value] : history_.back().items())
        if (key != "epoch" && key != "lr") summary[key] = value;
    summary["device"] = device_description(device_);
    summary["precision"] = std::string(precision_.name);
    summary["train_seconds"] = train_seconds_;
    summary["images_per_second"] = train_seconds_ > 0 ? double(images_trained_) / train_seconds_ : 0.0;
    summary["eval_seconds"] = eval_seconds_;
    summary["epochs"] = epochs_;
    summary["steps"] = step_;
    summary["scheme"] = std::string(name_of(config_.scheme));
    summary["model"] = model_name(config_, device_.is_cuda());
    summary["image_size"] = image_size_;
    summary["batch"] = config_.batch;
    summary["world_size"] = world_size();
    summary["global_batch"] = config_.batch * world_size();
    summary["sync_batch_norm"] = distributed() && config_.sync_batch_norm;
    summary["seed"] = config_.seed;

    on_root("write the final outputs", [&] {
      write_model_description(run / "model.json", description());
      io::export_model_weights(*ctx_, model_.parameters(), run / "weights.safetensors");
      if (precision_.mixed())
        io::export_model_weights(*ctx_, model_.parameters(), run / mixed_weights_file(precision_),
                                 precision_.activations);
      detail::write_text(run / "summary.json", summary.dump(2) + "\n");
      detail::write_text(run / "report.html", render_report_html(report_data(summary)));
    });
    return summary;
  }

  ReportData report_data(const nlohmann::json& summary) const {
    ReportData report;
    report.title = "cumtl run " + std::filesystem::absolute(options_.run_folder).filename().string();
    std::string data_names;
    for (const auto& dataset : data_.train) data_names += (data_names.empty() ? "" : ", ") + dataset->name();
    std::string head_names;
    for (const HeadSpec& head : heads_) head_names += (head_names.empty() ? "" : ", ") + head.name;
    report.settings = {
        {"device", device_description(device_)},
        {"precision", std::string(precision_.name)},
        {"model", model_name(config_, device_.is_cuda())},
        {"input", std::to_string(image_size_) + " px"},
        {"heads", head_names},
        {"training data", data_names},
        {"scheme", std::string(name_of(config_.scheme))},
        {"loss normalization", std::string(name_of(loss_.options().normalization))},
        {"optimizer", config_.optimizer + ", lr " + nlohmann::json(lr_).dump() + ", " + config_.schedule},
        {"steps", std::to_string(step_) + " of batch " + std::to_string(config_.batch * world_size())},
        {"ranks", std::to_string(world_size()) +
                      (distributed() ? " (" + model_engine().engine() +
                                           (config_.sync_batch_norm ? ", synchronized batch norm" : "") + ")"
                                     : "")},
        {"seed", std::to_string(config_.seed)}};
    for (const nlohmann::json& record : history_) {
      ReportEpoch epoch{.epoch = record["epoch"].get<std::int64_t>(), .train_loss = record["train_loss"].get<double>()};
      for (const auto& [key, value] : record.items())
        if (value.is_number() && key != "epoch" && key != "step" && key != "train_loss" && key != "lr" &&
            key != "train_seconds" && key != "images_per_second")
          epoch.metrics[key] = value.get<double>();
      report.epochs.push_back(std::move(epoch));
    }
    for (const auto& [key, value] : summary.items())
      if (value.is_number_float()) report.summary[key] = value.get<double>();
    if (last_evaluation_ && last_evaluation_->au && Evaluation::has_labels(*last_evaluation_->au)) {
      const HeadSpec& au =
          *std::find_if(heads_.begin(), heads_.end(), [](const HeadSpec& h) { return h.name == "au"; });
      report.au_names = au.output_names;
      report.au_f1 = last_evaluation_->au->f1();
    }
    if (last_evaluation_ && last_evaluation_->emotion && last_evaluation_->emotion->count() > 0) {
      report.class_names.assign(data::emotion_names.begin(), data::emotion_names.end());
      report.confusion = last_evaluation_->emotion->confusion();
    }
    return report;
  }

  TrainConfig config_;
  TrainerOptions options_;
  Device device_;
  Precision precision_;
  Context* ctx_;
  ResNetSpec spec_;
  int image_size_;
  std::vector<HeadSpec> heads_;
  TrainingData data_;
  MultiHeadModel<float> model_;
  MultiTaskLoss loss_;
  StepLosses step_losses_;
  std::optional<data::Loader> train_loader_;
  std::optional<optim::AnyOptimizer> optimizer_;
  std::optional<optim::DynamicLossScale> loss_scale_;  // fp16 only
  optim::Schedule schedule_;
  double lr_ = 0;
  std::int64_t batches_per_epoch_ = 0, total_steps_ = 0, epochs_ = 0;

  std::int64_t step_ = 0;
  double epoch_loss_sum_ = 0;
  std::int64_t epoch_images_ = 0;
  double train_seconds_ = 0, eval_seconds_ = 0;
  std::int64_t images_trained_ = 0;
  std::vector<nlohmann::json> history_;
  std::optional<Evaluation> last_evaluation_;
  bool resumed_ = false;
  bool table_header_printed_ = false;
  std::shared_ptr<distributed::Communicator> communicator_;
  std::shared_ptr<distributed::Communicator> device_engine_;      // GPU ranks: NCCL
  std::optional<distributed::GradientBuckets> gradient_buckets_;  // in a world of several ranks
};

}  // namespace cumtl::train
