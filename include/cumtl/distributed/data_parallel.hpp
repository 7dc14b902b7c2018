#pragma once
// The parameter-store collectives of data-parallel training, as PyTorch's
// DistributedDataParallel defines them: at the start every rank takes rank 0's
// parameters and buffers; after every backward every rank's gradients become
// the mean over the ranks (average_gradients: the flat gradient tensor in one
// call; GradientBuckets: in buckets started while backward runs). The
// parameters then stay equal on every rank by construction; the buffers drift
// apart where each rank's batch norm sees its own shard, and are taken from
// rank 0 again where they are used.
// Float32 stores, on the memory of the communicator's engine: CPU stores on the
// CPU engine, GPU stores on NCCL.

#include <algorithm>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "cumtl/core/error.hpp"
#include "cumtl/distributed/communicator.hpp"
#include "cumtl/layers/parameters.hpp"

namespace cumtl::distributed {

namespace detail {

inline std::span<float> floats_for(Communicator& communicator, Tensor& flat, const char* what) {
  CUMTL_REQUIRE(flat.dtype() == ScalarType::f32, "data-parallel ", what, ": float32 stores only, got ",
                flat.description());
  CUMTL_REQUIRE(flat.device() == communicator.memory(), "data-parallel ", what, ": the ", communicator.engine(),
                " engine works on memory of ", communicator.memory(), ", the store is ", flat.description());
  return {flat.data<float>(), std::size_t(flat.numel())};
}

}  // namespace detail

// Rank 0's buffers (batch norm's running statistics, which each rank updates
// from its own shard) on every rank: before an evaluation, so that every rank
// scores its shard with the statistics rank 0 saves and exports.
inline void broadcast_buffers(Communicator& communicator, ParameterStore& store) {
  if (communicator.world_size() == 1) return;
  communicator.broadcast(std::as_writable_bytes(detail::floats_for(communicator, store.buffer_values(), "broadcast")),
                         0);
}

inline void broadcast_parameters(Communicator& communicator, ParameterStore& store) {
  if (communicator.world_size() == 1) return;
  communicator.broadcast(std::as_writable_bytes(detail::floats_for(communicator, store.values(), "broadcast")), 0);
  broadcast_buffers(communicator, store);
}

// Every rank ends with the same mean gradient (the sum over the ranks scaled
// by 1/world size, exact for worlds of a power of two).
inline void average_gradients(Communicator& communicator, ParameterStore& store) {
  if (communicator.world_size() == 1) return;
  communicator.all_reduce_mean(detail::floats_for(communicator, store.gradients(), "gradient average"));
}

// The gradient mean of DDP's reducer: the flat gradient tensor in buckets of
// about bucket_bytes, from its end (the order in which backward finishes
// gradients), each started as soon as backward has made it final, so that on an
// engine that communicates beside the computation (NCCL) the late layers'
// communication overlaps the early layers' backward. Every rank plans the same
// buckets and starts them in the same order. Per step: ready() as backward
// goes (MultiHeadModel::backward's GradientsReady), then finish().
class GradientBuckets {
 public:
  static constexpr std::int64_t default_bucket_bytes = std::int64_t(25) << 20;  // PyTorch DDP's bucket_cap_mb

  GradientBuckets(Communicator& engine, ParameterStore& store, std::int64_t bucket_bytes = default_bucket_bytes)
      : engine_(engine), gradients_(detail::floats_for(engine, store.gradients(), "gradient average")) {
    CUMTL_REQUIRE(bucket_bytes >= std::int64_t(sizeof(float)), "GradientBuckets: buckets of ", bucket_bytes, " bytes");
    const std::int64_t per_bucket = bucket_bytes / std::int64_t(sizeof(float));
    for (std::int64_t end = std::int64_t(gradients_.size()); end > 0;) {
      const std::int64_t begin = std::max<std::int64_t>(end - per_bucket, 0);
      buckets_.emplace_back(begin, end);
      end = begin;
    }
  }

  // The buckets, [first, last) elements of the flat gradient, in the order they start.
  const std::vector<std::pair<std::int64_t, std::int64_t>>& buckets() const noexcept { return buckets_; }

  // Every gradient from `first_final_element` on is final: starts the buckets that lie there.
  void ready(std::int64_t first_final_element) {
    while (next_ < buckets_.size() && buckets_[next_].first >= first_final_element) start(buckets_[next_++]);
  }

  // Starts what is left; the work after it sees the mean gradient.
  void finish() {
    while (next_ < buckets_.size()) start(buckets_[next_++]);
    if (engine_.world_size() > 1) engine_.finish_all_reduces();
    next_ = 0;
  }

 private:
  void start(const std::pair<std::int64_t, std::int64_t>& bucket) {
    if (engine_.world_size() == 1) return;
    engine_.start_all_reduce_mean(
        gradients_.subspan(std::size_t(bucket.first), std::size_t(bucket.second - bucket.first)));
  }

  Communicator& engine_;
  std::span<float> gradients_;
  std::vector<std::pair<std::int64_t, std::int64_t>> buckets_;
  std::size_t next_ = 0;
};

}  // namespace cumtl::distributed
