#pragma once
// Loader: turns a sampler's batches into network input on the compute device,
// decoding and augmenting on background threads so the training step never
// waits for the disk or the decoder.
//
// Threads. Worker threads take one sample at a time from the batches in flight
// (so even a small batch is spread over every worker): Dataset::load, then
// augment() (training) or center_resize() (evaluation), then the labels,
// written straight into the batch's place in a staging buffer. There are
// `prefetch` (at least 2) staging slots; batch b uses slot b mod prefetch, and
// workers start on batch b + prefetch as soon as next() has handed batch b over.
//
// CPU target. Each worker also normalizes its image (the CPU twin of
// ops::normalize_images) into tensors made for that batch, which next() hands
// over as they are: no copy on the consumer's thread.
//
// GPU target. Staging is pinned host memory, and each slot has a device copy of
// it. The worker that completes a batch enqueues the host-to-device copy on the
// loader's own copy stream (a stream of a Context the loader owns) and records
// the slot's `copied` event. next() makes the compute stream wait for that event
// (cudaStreamWaitEvent: no host synchronization), normalizes the uint8 pixels
// into a new float tensor and copies the labels into new tensors on the compute
// stream, then records the slot's `consumed` event, which the copy stream waits
// for before it overwrites the slot's device memory. Workers refilling a slot's
// pinned memory first wait (on their own thread) for its previous copy to finish.
// The returned tensors are the caller's: allocated per batch from the device's
// stream-ordered pool, they outlive the loader and are never overwritten.
//
// Determinism. A batch depends only on (epoch, batch index), the sampler and the
// options: shuffles come from the sampler, augmentation from Philox keyed by the
// sampler's seed at a counter that numbers the sample's place in the run, and a
// bad sample (with skip_bad) is replaced by the next index of the same dataset
// that loads. The number of threads and their timing change nothing, and the
// CPU and GPU targets give the same batch bit for bit.
//
// Errors. A sample that fails to load or transform is an error naming the
// sample, its dataset and the underlying cause (which names the file); next()
// throws it for the batch it belongs to and ends the epoch. Worker threads never
// let an exception escape; the destructor stops them after their current sample
// and joins them, whatever the consumer did.

#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cumtl/core/tensor.hpp"
#include "cumtl/data/augment.hpp"
#include "cumtl/data/dataset.hpp"
#include "cumtl/data/sampler.hpp"
#include "cumtl/loss/multitask_loss.hpp"
#include "cumtl/ops/preprocess.hpp"

namespace cumtl::data {

// One batch on the loader's device.
struct Batch {
  Tensor images;                   // float32 [N, S, S, 3], normalized
  MultiTaskLabels labels;          // int32 [N, softmax heads], int8 [N, sigmoid outputs]; -1 missing
  std::size_t size = 0;            // N
  std::vector<SampleRef> samples;  // the sample in each row, after any skip_bad replacement
};

struct LoaderOptions {
  int image_size = 64;          // S: output height and width (replaces augmentation.size)
  bool augment = true;          // true: augment (training); false: center_resize (evaluation)
  AugmentOptions augmentation;  // the training transform
  std::array<float, 3> mean = ops::imagenet_mean;
  std::array<float, 3> stddev = ops::imagenet_std;
  // The images' scalar type: float32, or the bfloat16 / float16 activations of
  // a mixed-precision trunk, normalized in float and rounded once, so the
  // trunk reads them without a conversion.
  ScalarType image_type = ScalarType::f32;
  std::size_t threads = 0;   // worker threads; 0: the hardware's threads − 1, at least 1
  std::size_t prefetch = 2;  // batches decoded ahead of the consumer, at least 2
  bool skip_bad = false;     // replace a sample that fails to load and count it, instead of failing
  // Data-parallel training: this process delivers only positions p of each of
  // the sampler's batches with p % shard_count == shard_rank, so the ranks'
  // shards partition every batch and mix its datasets alike. A sample is
  // augmented as it would be in the whole batch, so a world of N ranks sees
  // the images a single process would with N times the batch.
  std::size_t shard_rank = 0;
  std::size_t shard_count = 1;
};

namespace detail {

// Writes a sample's Labels into one row of each label tensor, in the layout
// MultiTaskLoss expects for `heads`.
class LabelEncoder {
 public:
  explicit LabelEncoder(const std::vector<HeadSpec>& heads) {
    const MultiTaskLoss layout(heads);  // validates the heads and places their columns
    class_columns_ = layout.class_columns();
    binary_columns_ = layout.binary_columns();
    for (const HeadSpec& head : heads) {
      const int column = layout.label_column(head.name);
      if (head.kind == HeadKind::softmax) {
        if (head.name == "emotion") {
          require_classes(head, emotion_names.size(), "emotions");
          classes_.push_back({column, ClassSource::emotion});
        } else if (head.name == "compound") {
          require_classes(head, compound_names.size(), "compound expressions");
          classes_.push_back({column, ClassSource::compound});
        } else {
          CUMTL_FAIL("Loader: softmax head '", head.name,
                     "' has no labels to take: a softmax head must be named 'emotion' (Labels::emotion) or "
                     "'compound' (Labels::compound)");
        }
      } else {
        CUMTL_REQUIRE(!head.output_names.empty(), "Loader: sigmoid head '", head.name,
                      "' needs output_names naming the AU of each output (\"AU1\", \"AU12\", ...)");
        for (int k = 0; k < head.outputs; ++k) {
          const std::string& name = head.output_names[std::size_t(k)];
          const std::optional<int> au = parse_au(name);
          CUMTL_REQUIRE(au.has_value(), "Loader: sigmoid head '", head.name, "' output '", name,
                        "' is not an Action Unit cumtl knows: expected AU<n> with n one of ", known_aus());
          binaries_.push_back({column + k, *au});
        }
      }
    }
  }

  int class_columns() const noexcept { return class_columns_; }
  int binary_columns() const noexcept { return binary_columns_; }

  void encode(const Labels& labels, std::int32_t* classes, std::int8_t* binary) const {
    for (const ClassColumn& entry : classes_) {
      const bool emotion = entry.source == ClassSource::emotion;
      const int value = emotion ? labels.emotion : labels.compound;
      const int count = int(emotion ? emotion_names.size() : compound_names.size());
      CUMTL_REQUIRE(value >= -1 && value < count, emotion ? "emotion" : "compound", " label ", value,
                    " is out of range, expected -1 (missing) or 0..", count - 1);
      classes[entry.column] = value;
    }
    for (const BinaryColumn& entry : binaries_) {
      const std::int8_t value = labels.aus[std::size_t(entry.au)];
      CUMTL_REQUIRE(value >= -1 && value <= 1, "AU", au_numbers[std::size_t(entry.au)], " label ", int(value),
                    " is not -1 (missing), 0 or 1");
      binary[entry.column] = value;
    }
  }

 private:
  enum class ClassSource : std::uint8_t { emotion, compound };
  struct ClassColumn {
    int column;
    ClassSource source;
  };
  struct BinaryColumn {
    int column;
    int au;  // index into au_numbers
  };

  static void require_classes(const HeadSpec& head, std::size_t count, const char* what) {
    CUMTL_REQUIRE(std::size_t(head.outputs) == count, "Loader: softmax head '", head.name, "' has ", head.outputs,
                  " outputs but cumtl has ", count, " ", what);
  }

  // "AU12" (or "au12") to the index of AU 12 in au_numbers.
  static std::optional<int> parse_au(std::string_view name) {
    if (name.size() < 3 || (name[0] != 'A' && name[0] != 'a') || (name[1] != 'U' && name[1] != 'u'))
      return std::nullopt;
    int number = 0;
    for (char digit : name.substr(2)) {
      if (digit < '0' || digit > '9' || number > 1000) return std::nullopt;
      number = number * 10 + (digit - '0');
    }
    return au_index(number);
  }

  static std::string known_aus() {
    std::string text;
    for (int number : au_numbers) text += (text.empty() ? "" : ", ") + std::to_string(number);
    return text;
  }

  int class_columns_ = 0, binary_columns_ = 0;
  std::vector<ClassColumn> classes_;
  std::vector<BinaryColumn> binaries_;
};

// The text of the exception in flight, without cumtl's location suffix.
inline std::string current_exception_text() {
  try {
    throw;
  } catch (const Error& error) {
    return error.message();
  } catch (const std::exception& error) {
    return error.what();
  } catch (...) {
    return "an unknown exception";
  }
}

}  // namespace detail

class Loader {
 public:
  // Batches from `sampler` for a model whose loss has `heads`, delivered on
  // ctx's device. `ctx` must outlive the loader; next() is called from the
  // thread that uses ctx.
  Loader(Context& ctx, MultiDomainSampler sampler, const std::vector<HeadSpec>& heads, LoaderOptions options = {})
      : ctx_(ctx),
        sampler_(std::move(sampler)),
        encoder_(heads),
        options_(std::move(options)),
        augment_seed_(sampler_.seed() ^ 0x9E3779B97F4A7C15ull) {
    CUMTL_REQUIRE(options_.image_size >= 1 && options_.image_size <= 16384, "Loader: image size ", options_.image_size);
    CUMTL_REQUIRE(options_.shard_count >= 1 && options_.shard_rank < options_.shard_count, "Loader: shard ",
                  options_.shard_rank, " of ", options_.shard_count);
    options_.augmentation.size = options_.image_size;
    if (options_.augment) detail::validate(options_.augmentation);
    for (std::size_t c = 0; c < 3; ++c)
      CUMTL_REQUIRE(std::isfinite(options_.mean[c]) && std::isfinite(options_.stddev[c]) && options_.stddev[c] > 0,
                    "Loader: channel ", c, " has mean ", options_.mean[c], " and standard deviation ",
                    options_.stddev[c]);
    CUMTL_REQUIRE(options_.image_type == ScalarType::f32 || options_.image_type == ScalarType::bf16 ||
                      options_.image_type == ScalarType::f16,
                  "Loader: images of ", name_of(options_.image_type),
                  " are not offered; float32, bfloat16 or float16 are");
    affine_ = kernels::normalize_affine<float>(options_.mean, options_.stddev);
    const std::size_t slots = std::max<std::size_t>(options_.prefetch, 2);
    slots_.resize(slots);
    if (ctx_.device().is_cuda()) {
      try {
        allocate_device_staging();
      } catch (...) {
        release_device_staging();
        throw;
      }
    }
    std::size_t threads = options_.threads;
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency()) - 1;
    threads = std::max<std::size_t>(threads, 1);
    workers_.reserve(threads);
    try {
      for (std::size_t t = 0; t < threads; ++t) workers_.emplace_back([this] { work(); });
    } catch (...) {
      stop_workers();
      release_device_staging();
      throw;
    }
  }

  ~Loader() {
    stop_workers();
    release_device_staging();
  }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Starts (or restarts) `epoch` at `first_batch` (to resume a run), dropping
  // whatever was prefetched for another. Waits only for samples being decoded now.
  void start_epoch(std::uint64_t epoch, std::size_t first_batch = 0) {
    std::unique_lock lock(mutex_);
    CUMTL_REQUIRE(first_batch <= sampler_.batches_per_epoch(), "Loader::start_epoch: batch ", first_batch,
                  " is past the epoch's ", sampler_.batches_per_epoch(), " batches");
    drain(lock);
    epoch_ = epoch;
    consume_ = issue_batch_ = first_batch;
    issue_position_ = 0;
    skipped_ = 0;
    first_skip_ = {};
    for (Slot& slot : slots_) {
      slot.ready = false;
      slot.error = nullptr;
    }
    started_ = accepting_ = true;
    work_cv_.notify_all();
  }

  // The epoch's next batch, or nothing once the epoch is over (or after next()
  // threw for it). Throws the error of a sample of the batch that failed.
  std::optional<Batch> next() {
    std::unique_lock lock(mutex_);
    CUMTL_REQUIRE(started_, "Loader::next: call start_epoch(epoch) first");
    if (!accepting_ || consume_ >= sampler_.batches_per_epoch()) return std::nullopt;
    Slot& slot = slots_[consume_ % slots_.size()];
    const std::size_t wanted = consume_;
    ready_cv_.wait(lock, [&] { return slot.ready && slot.batch == wanted; });
    if (slot.error) {
      const std::exception_ptr error = slot.error;
      drain(lock);
      std::rethrow_exception(error);
    }
    Batch batch;
    batch.size = slot.samples.size();
    batch.samples = std::move(slot.samples);
    if (ctx_.device().is_cuda()) {
      // The slot stays ours until consume_ moves on, so the hand-over needs no lock.
      lock.unlock();
      try {
        hand_over_from_device_staging(slot, batch);
      } catch (...) {
        lock.lock();
        drain(lock);
        throw;
      }
      lock.lock();
    }
    if (ctx_.device().is_cpu()) {
      batch.images = std::move(slot.images);
      batch.labels = std::move(slot.labels);
    }
    slot.ready = false;
    ++consume_;
    work_cv_.notify_all();
    return batch;
  }

  // Samples replaced because they failed to load (skip_bad), in the epoch so far;
  // complete once next() has returned nothing. The trainer warns with it.
  std::size_t skipped() const {
    const std::lock_guard lock(mutex_);
    return skipped_;
  }
  // Why the epoch's first replaced sample (in batch order) failed; empty if none did.
  std::string first_skip_reason() const {
    const std::lock_guard lock(mutex_);
    return first_skip_.reason;
  }

  std::uint64_t epoch() const {
    const std::lock_guard lock(mutex_);
    return epoch_;
  }
  // The index of the batch the next call to next() returns.
  std::size_t batch_index() const {
    const std::lock_guard lock(mutex_);
    return consume_;
  }
  std::size_t batches_per_epoch() const noexcept { return sampler_.batches_per_epoch(); }
  const MultiDomainSampler& sampler() const noexcept { return sampler_; }
  const LoaderOptions& options() const noexcept { return options_; }
  std::size_t threads() const noexcept { return workers_.size(); }

 private:
  struct Slot {
    std::size_t batch = 0;
    std::vector<SampleRef> samples;
    std::size_t remaining = 0;  // samples not yet written
    bool ready = false;
    std::exception_ptr error;  // of the failed sample with the lowest position
    std::size_t error_position = 0;
    // CPU target: the batch's own output tensors. GPU target: pinned staging, reused.
    Tensor images;  // CPU: float32 [n, S, S, 3]
    Tensor pixels;  // GPU: uint8 [B, S, S, 3]
    MultiTaskLabels labels;
    Tensor device_pixels;
    MultiTaskLabels device_labels;
    std::unique_ptr<cumtl::detail::CudaEvent> copied;    // on the copy stream: the staging has reached the device
    std::unique_ptr<cumtl::detail::CudaEvent> consumed;  // on the compute stream: the device staging has been read
  };

  struct Task {
    std::size_t slot = 0, position = 0, batch = 0;
    std::uint64_t epoch = 0;
  };

  struct Outcome {
    std::exception_ptr error;
    std::size_t skipped = 0;
    std::string skip_reason;  // of the first sample skipped
  };

  struct FirstSkip {
    std::size_t batch = std::numeric_limits<std::size_t>::max(), position = 0;
    std::string reason;
  };

  std::int64_t image_elements() const noexcept { return std::int64_t(options_.image_size) * options_.image_size * 3; }

  bool can_issue() const noexcept {
    return accepting_ && issue_batch_ < sampler_.batches_per_epoch() && issue_batch_ < consume_ + slots_.size();
  }

  // Stops handing out samples and waits until no worker is busy; the caller holds the lock.
  void drain(std::unique_lock<std::mutex>& lock) {
    accepting_ = false;
    idle_cv_.wait(lock, [&] { return in_flight_ == 0; });
  }

  void stop_workers() noexcept {
    {
      const std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& worker : workers_)
      if (worker.joinable()) worker.join();
  }

  void work() noexcept {
    Context host;  // the CPU twin's context argument, this thread's own
    std::vector<std::uint8_t> scratch(static_cast<std::size_t>(image_elements()));
    std::unique_lock lock(mutex_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stop_ || can_issue(); });
      if (stop_) return;
      Task task;
      if (!issue(task)) continue;
      ++in_flight_;
      lock.unlock();
      Outcome outcome = process(task, host, scratch);
      lock.lock();
      finish(task, std::move(outcome), lock);
      if (--in_flight_ == 0) idle_cv_.notify_all();
    }
  }

  // Hands out the next sample, setting up its batch's slot on the batch's first
  // sample; false when setting up failed (the slot then carries the error).
  bool issue(Task& task) {
    const std::size_t b = issue_batch_;
    Slot& slot = slots_[b % slots_.size()];
    if (issue_position_ == 0) {
      slot.batch = b;
      slot.ready = false;
      slot.error = nullptr;
      slot.error_position = std::numeric_limits<std::size_t>::max();
      try {
        slot.samples = shard_of(sampler_.batch(epoch_, b));
        slot.remaining = slot.samples.size();
        if (ctx_.device().is_cpu()) {
          const auto n = std::int64_t(slot.samples.size());
          const std::int64_t size = options_.image_size;
          slot.images = Tensor::empty(Shape{n, size, size, 3}, options_.image_type);
          slot.labels = {Tensor::empty(Shape{n, encoder_.class_columns()}, ScalarType::i32),
                         Tensor::empty(Shape{n, encoder_.binary_columns()}, ScalarType::i8)};
        }
      } catch (...) {
        slot.error = std::current_exception();
        slot.remaining = 0;
      }
      if (slot.remaining == 0) {
        ++issue_batch_;
        slot.ready = true;
        ready_cv_.notify_all();
        return false;
      }
    }
    task = Task{b % slots_.size(), issue_position_, b, epoch_};
    if (++issue_position_ == slot.samples.size()) {
      ++issue_batch_;
      issue_position_ = 0;
    }
    return true;
  }

  // Loads, transforms and encodes one sample into its slot; runs unlocked and never throws.
  Outcome process(const Task& task, Context& host, std::vector<std::uint8_t>& scratch) noexcept {
    Outcome outcome;
    Slot& slot = slots_[task.slot];
    // Only this task touches this position until the batch is handed over.
    SampleRef& ref = slot.samples[task.position];
    const std::size_t first_index = ref.index;
    try {
      // The pinned staging may still be on its way to the device for the slot's previous batch.
      if (ctx_.device().is_cuda()) {
        const cumtl::detail::DeviceGuard guard(ctx_.device().index());
        slot.copied->synchronize();
      }
      const Dataset& dataset = sampler_.dataset(ref.dataset);
      const std::size_t size = dataset.size();
      const std::uint64_t counter = (task.epoch * sampler_.batches_per_epoch() + task.batch) * sampler_.batch_size() +
                                    task.position * options_.shard_count + options_.shard_rank;
      const std::int64_t elements = image_elements();
      const bool gpu = ctx_.device().is_cuda();
      std::uint8_t* pixels = gpu ? slot.pixels.data<std::uint8_t>() + task.position * elements : scratch.data();
      std::int32_t* classes = slot.labels.classes.data<std::int32_t>() + task.position * encoder_.class_columns();
      std::int8_t* binary = slot.labels.binary.data<std::int8_t>() + task.position * encoder_.binary_columns();
      for (std::size_t attempt = 0;; ++attempt) {
        std::string source;
        try {
          const Sample sample = dataset.load(ref.index);
          source = sample.source;
          if (options_.augment)
            detail::augment_into(sample.image, options_.augmentation, augment_seed_, counter, pixels);
          else
            detail::center_resize_into(sample.image, options_.image_size, pixels);
          encoder_.encode(sample.labels, classes, binary);
          break;
        } catch (...) {
          const std::string reason =
              cumtl::detail::concat("Loader: sample ", ref.index, " of dataset '", dataset.name(), "'",
                                    source.empty() ? "" : " (" + source + ")", ", in batch ", task.batch, " of epoch ",
                                    task.epoch, ": ", detail::current_exception_text());
          if (!options_.skip_bad) throw Error(reason, __FILE__, __LINE__);
          if (outcome.skipped++ == 0) outcome.skip_reason = reason;
          CUMTL_REQUIRE(attempt + 1 < size, "Loader: every sample of dataset '", dataset.name(),
                        "' failed to load (skip_bad); the first, sample ", first_index, ": ", outcome.skip_reason);
          ref.index = (ref.index + 1) % size;
        }
      }
      if (!gpu) normalize_on_host(host, elements, pixels, slot.images, task.position);
    } catch (...) {
      outcome.error = std::current_exception();
    }
    return outcome;
  }

  // Records a processed sample; the last of a batch makes it ready (on a GPU,
  // after enqueueing its copy, done unlocked). The caller holds the lock.
  void finish(const Task& task, Outcome outcome, std::unique_lock<std::mutex>& lock) noexcept {
    Slot& slot = slots_[task.slot];
    if (outcome.error && (!slot.error || task.position < slot.error_position)) {
      slot.error = outcome.error;
      slot.error_position = task.position;
    }
    if (outcome.skipped > 0) {
      skipped_ += outcome.skipped;
      if (task.batch < first_skip_.batch || (task.batch == first_skip_.batch && task.position < first_skip_.position))
        first_skip_ = FirstSkip{task.batch, task.position, std::move(outcome.skip_reason)};
    }
    if (--slot.remaining > 0) return;
    if (ctx_.device().is_cuda() && !slot.error) {
      lock.unlock();
      std::exception_ptr error;
      try {
        copy_to_device_staging(slot);
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      if (error) slot.error = error;
    }
    slot.ready = true;
    ready_cv_.notify_all();
  }

  std::vector<SampleRef> shard_of(std::vector<SampleRef> samples) const {
    if (options_.shard_count == 1) return samples;
    std::vector<SampleRef> mine;
    mine.reserve(samples.size() / options_.shard_count + 1);
    for (std::size_t p = options_.shard_rank; p < samples.size(); p += options_.shard_count) mine.push_back(samples[p]);
    return mine;
  }

  // The most samples one shard of a batch holds.
  std::size_t shard_capacity() const {
    return (sampler_.batch_size() + options_.shard_count - 1) / options_.shard_count;
  }

  void allocate_device_staging() {
    copy_ctx_ = std::make_unique<Context>(ctx_.device());
    const auto rows = std::int64_t(shard_capacity());
    const std::int64_t size = options_.image_size;
    const cumtl::detail::DeviceGuard guard(ctx_.device().index());
    for (Slot& slot : slots_) {
      slot.pixels = Tensor::pinned(Shape{rows, size, size, 3}, ScalarType::u8);
      slot.labels = {Tensor::pinned(Shape{rows, encoder_.class_columns()}, ScalarType::i32),
                     Tensor::pinned(Shape{rows, encoder_.binary_columns()}, ScalarType::i8)};
      slot.device_pixels = Tensor::empty(*copy_ctx_, slot.pixels.shape(), ScalarType::u8);
      slot.device_labels = {Tensor::empty(*copy_ctx_, slot.labels.classes.shape(), ScalarType::i32),
                            Tensor::empty(*copy_ctx_, slot.labels.binary.shape(), ScalarType::i8)};
      slot.copied = std::make_unique<cumtl::detail::CudaEvent>(ctx_.device().index());
      slot.consumed = std::make_unique<cumtl::detail::CudaEvent>(ctx_.device().index());
    }
  }

  // Frees in stream order: the copy stream waits until the compute stream has
  // read every slot, and the host until the copy stream is idle (pinned memory
  // must not be freed under a copy). Errors here cannot be acted on.
  void release_device_staging() noexcept {
    if (!copy_ctx_) return;
    try {
      for (Slot& slot : slots_)
        if (slot.consumed) slot.consumed->make_wait(copy_ctx_->stream());
      copy_ctx_->synchronize();
    } catch (...) {  // a sticky device error: the next checked call reports it
    }
    for (Slot& slot : slots_) {
      slot.copied.reset();
      slot.consumed.reset();
    }
  }

  // On a worker thread, once a batch is complete in pinned staging.
  void copy_to_device_staging(Slot& slot) {
    const std::lock_guard lock(copy_mutex_);
    const cumtl::detail::DeviceGuard guard(ctx_.device().index());
    const Device device = ctx_.device();
    const auto n = std::int64_t(slot.samples.size());
    slot.consumed->make_wait(copy_ctx_->stream());
    const auto copy_rows = [&](const Tensor& from, const Tensor& to) {
      const Tensor rows = from.slice(0, n);
      cumtl::detail::copy_bytes(*copy_ctx_, to.raw_data(), device, rows.raw_data(), Device::cpu(), rows.bytes());
    };
    copy_rows(slot.pixels, slot.device_pixels);
    copy_rows(slot.labels.classes, slot.device_labels.classes);
    copy_rows(slot.labels.binary, slot.device_labels.binary);
    slot.copied->record(copy_ctx_->stream());
  }

  // A worker's image, normalized into its place in the batch on the CPU (the twin of ops::normalize_images).
  void normalize_on_host(Context& host, std::int64_t elements, const std::uint8_t* pixels, Tensor& images,
                         std::size_t position) const {
    const auto normalize = [&]<class T>() {
      cpu::normalize_images(host, elements, 3, pixels, affine_, images.data<T>() + std::int64_t(position) * elements);
    };
    if (images.dtype() == ScalarType::bf16)
      normalize.template operator()<bfloat16_t>();
    else if (images.dtype() == ScalarType::f16)
      normalize.template operator()<float16_t>();
    else
      normalize.template operator()<float>();
  }

  // On the consumer's thread: everything enqueued on the compute stream.
  void hand_over_from_device_staging(Slot& slot, Batch& batch) {
    const cumtl::detail::DeviceGuard guard(ctx_.device().index());
    const auto n = std::int64_t(batch.size);
    const std::int64_t size = options_.image_size;
    slot.copied->make_wait(ctx_.stream());
    batch.images = Tensor::empty(ctx_, Shape{n, size, size, 3}, options_.image_type);
    ops::normalize_images(ctx_, slot.device_pixels.slice(0, n), options_.mean, options_.stddev, batch.images);
    batch.labels = {Tensor::empty(ctx_, Shape{n, encoder_.class_columns()}, ScalarType::i32),
                    Tensor::empty(ctx_, Shape{n, encoder_.binary_columns()}, ScalarType::i8)};
    const auto copy_rows = [&](const Tensor& from, Tensor& to) {
      cumtl::detail::copy_bytes(ctx_, to.raw_data(), to.device(), from.raw_data(), from.device(), to.bytes());
    };
    copy_rows(slot.device_labels.classes, batch.labels.classes);
    copy_rows(slot.device_labels.binary, batch.labels.binary);
    slot.consumed->record(ctx_.stream());
  }

  Context& ctx_;
  MultiDomainSampler sampler_;
  detail::LabelEncoder encoder_;
  LoaderOptions options_;
  std::uint64_t augment_seed_;
  kernels::ChannelAffine<float> affine_{};

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;   // workers: a sample to take, or stop
  std::condition_variable ready_cv_;  // consumer: a batch is ready
  std::condition_variable idle_cv_;   // start_epoch and errors: no sample in flight
  std::vector<Slot> slots_;
  bool started_ = false, accepting_ = false, stop_ = false;
  std::uint64_t epoch_ = 0;
  std::size_t consume_ = 0;         // the batch next() returns next
  std::size_t issue_batch_ = 0;     // the batch whose samples are being handed out
  std::size_t issue_position_ = 0;  // its next sample
  std::size_t in_flight_ = 0;       // samples being processed
  std::size_t skipped_ = 0;
  FirstSkip first_skip_;
  std::unique_ptr<Context> copy_ctx_;  // the copy stream's, and the owner of the device staging
  std::mutex copy_mutex_;
  std::vector<std::thread> workers_;
};

}  // namespace cumtl::data
