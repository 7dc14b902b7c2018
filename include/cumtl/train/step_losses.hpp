#pragma once
// StepLosses: each training step's loss on its way to the host, without a
// host synchronization inside the step.
//
// Reading a loss the moment it is enqueued would make the host wait for the
// GPU every step, so the GPU would idle while the host prepares the next one,
// and a step could not be captured as a CUDA graph. Instead a step enqueues a
// copy of its loss into a pinned buffer behind its own work and moves on; the
// host takes the value `lag` steps later, when the GPU has long finished that
// step (it waits only if the GPU has fallen that far behind), and takes every
// value still in flight at the end of an epoch or before a checkpoint. The
// host so runs at most `lag` steps ahead of the device. On the CPU the same
// path runs on ordinary host memory, where every copy has landed at once.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/loss/multitask_loss.hpp"

namespace cumtl::train {

// One training step's loss, as the host sees it.
struct StepLoss {
  std::int64_t step = 0;    // 0-based, counted over the run
  std::int64_t images = 0;  // the batch's size
  double loss = 0;          // the batch's total loss Σ λ_t L_t
};

class StepLosses {
 public:
  // `lag`: how many later steps may be enqueued before a step's loss is
  // taken; 0 takes each one at once (a host wait per step).
  explicit StepLosses(int lag = 2) : slots_(lag >= 0 ? std::size_t(lag) + 1 : 0) {
    CUMTL_REQUIRE(lag >= 0, "StepLosses: lag must be >= 0, got ", lag);
  }

  // Enqueues the copy of the loss `loss` last computed on ctx, the loss of
  // `step`, and returns the oldest step's loss once more than `lag` are in
  // flight. Called after every step, it returns each step's loss, in order,
  // `lag` steps late.
  std::optional<StepLoss> push(Context& ctx, const MultiTaskLoss& loss, std::int64_t step, std::int64_t images) {
    Slot& slot = slots_[(first_ + count_) % slots_.size()];
    loss.read_async(ctx, slot.readback);
    slot.step = step;
    slot.images = images;
    ++count_;
    if (count_ < slots_.size()) return std::nullopt;
    return take_oldest(ctx, loss);
  }

  // The oldest loss in flight, waiting for its copy if it has not landed;
  // nullopt when none is in flight. Throws what MultiTaskLoss::read throws
  // (an invalid label a GPU found); the step is taken then all the same.
  std::optional<StepLoss> take_oldest(Context& ctx, const MultiTaskLoss& loss) {
    if (count_ == 0) return std::nullopt;
    Slot& slot = slots_[first_];
    first_ = (first_ + 1) % slots_.size();
    --count_;
    return StepLoss{slot.step, slot.images, loss.read(ctx, slot.readback).total};
  }

  // The steps whose loss was enqueued and not taken yet.
  std::size_t in_flight() const noexcept {
    return count_;
  }

 private:
  struct Slot {
    LossReadback readback;
    std::int64_t step = 0, images = 0;
  };

  std::vector<Slot> slots_;  // a ring: count_ slots from first_ are in flight
  std::size_t first_ = 0, count_ = 0;
};

}  // namespace cumtl::train
