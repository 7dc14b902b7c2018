#pragma once
// How an operation that normalizes over a batch split across data-parallel
// ranks (synchronized batch norm) reaches the other ranks' values.

#include <functional>
#include <span>

namespace cumtl {

// Replaces every rank's values by their elementwise sum over the ranks, the
// same bits on every rank: a communicator's all-reduce. The values are in the
// memory of the operation's device: host memory for the CPU twins, device
// memory for the CUDA twins, whose work so far on the context's stream must
// be complete before the sum reads it, and the sum before their next kernel.
using ChannelSumsOverRanks = std::function<void(std::span<double>)>;

}  // namespace cumtl
