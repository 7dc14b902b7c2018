#pragma once
// The parameter-store collectives of data-parallel training, as PyTorch's
// DistributedDataParallel defines them: at the start every rank takes rank 0's
// parameters and buffers; after every backward every rank's gradients become
// the mean over the ranks, from the store's flat gradient tensor in one call.
// The parameters then stay equal on every rank by construction; the buffers
// drift apart (each rank's batch norm sees its own shard) and are taken from
// rank 0 again where they are used.
// CPU stores (float) on the CPU engine.

#include <span>

#include "cumtl/core/error.hpp"
#include "cumtl/distributed/communicator.hpp"
#include "cumtl/layers/parameters.hpp"

namespace cumtl::distributed {

namespace detail {

inline std::span<float> host_floats(Tensor& flat, const char* what) {
  CUMTL_REQUIRE(flat.device().is_cpu() && flat.dtype() == ScalarType::f32, "data-parallel ", what,
                ": the CPU engine works on float32 CPU tensors, got ", flat.description());
  return {flat.data<float>(), std::size_t(flat.numel())};
}

}  // namespace detail

// Rank 0's buffers (batch norm's running statistics, which each rank updates
// from its own shard) on every rank: before an evaluation, so that every rank
// scores its shard with the statistics rank 0 saves and exports.
inline void broadcast_buffers(Communicator& communicator, ParameterStore& store) {
  if (communicator.world_size() == 1) return;
  communicator.broadcast(std::as_writable_bytes(detail::host_floats(store.buffer_values(), "broadcast")), 0);
}

inline void broadcast_parameters(Communicator& communicator, ParameterStore& store) {
  if (communicator.world_size() == 1) return;
  communicator.broadcast(std::as_writable_bytes(detail::host_floats(store.values(), "broadcast")), 0);
  broadcast_buffers(communicator, store);
}

// Sums the gradients over the ranks, then scales by 1/world size (exact for
// worlds of a power of two): every rank ends with the same mean gradient.
inline void average_gradients(Communicator& communicator, ParameterStore& store) {
  if (communicator.world_size() == 1) return;
  const std::span<float> gradients = detail::host_floats(store.gradients(), "gradient average");
  communicator.all_reduce_sum(gradients);
  const float inverse = 1.0f / float(communicator.world_size());
  for (float& value : gradients) value *= inverse;
}

}  // namespace cumtl::distributed
