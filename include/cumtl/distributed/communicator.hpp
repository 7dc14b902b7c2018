#pragma once
// The collectives data-parallel training needs, behind one small interface:
// all-reduce (sum), broadcast, barrier, the rank and the world size. Engines:
//   SingleProcess     a world of one: every collective is the identity;
//   GlooCommunicator  CPU memory over TCP (distributed/gloo.hpp, needs Gloo);
//   NcclCommunicator  GPU memory (distributed/nccl.hpp, needs NCCL).
// memory() says where an engine's buffers live.
// Every rank must call the same collectives in the same order with the same
// sizes. A collective that cannot complete — a rank died, or did not answer
// within the communicator's timeout — throws cumtl::Error naming this rank and
// the operation, so a job never hangs on a lost rank.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "cumtl/core/device.hpp"

namespace cumtl::distributed {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const noexcept = 0;
  virtual int world_size() const noexcept = 0;
  // "gloo over TCP", ...: what summary.json and the logs report.
  virtual std::string engine() const = 0;

  // Every rank's `values` becomes the elementwise sum over ranks, in place.
  virtual void all_reduce_sum(std::span<float> values) = 0;
  virtual void all_reduce_sum(std::span<double> values) = 0;
  virtual void all_reduce_sum(std::span<std::int64_t> values) = 0;
  // Every rank's `values` becomes the elementwise mean over ranks, in place.
  virtual void all_reduce_mean(std::span<float> values) {
    all_reduce_sum(values);
    const float inverse = 1.0f / float(world_size());
    for (float& value : values) value *= inverse;
  }
  // The mean of all_reduce_mean, started on the engine and finished by finish_all_reduces(): engines that
  // communicate beside the computation (NCCL on its own stream) return at once, so communication overlaps the
  // work that follows; the others complete it here. Buffers must stay untouched until then.
  virtual void start_all_reduce_mean(std::span<float> values) { all_reduce_mean(values); }
  // After it, the work that follows on this rank sees every started mean complete.
  virtual void finish_all_reduces() {}
  // Every rank's `bytes` becomes rank `root`'s.
  virtual void broadcast(std::span<std::byte> bytes, int root) = 0;
  // Returns once every rank has called it.
  virtual void barrier() = 0;

  // Where the collectives' buffers are: host memory, or the device an engine for GPU memory works on.
  virtual Device memory() const { return Device::cpu(); }

  bool is_root() const noexcept { return rank() == 0; }
};

class SingleProcess final : public Communicator {
 public:
  int rank() const noexcept override { return 0; }
  int world_size() const noexcept override { return 1; }
  std::string engine() const override { return "none (one process)"; }
  void all_reduce_sum(std::span<float>) override {}
  void all_reduce_sum(std::span<double>) override {}
  void all_reduce_sum(std::span<std::int64_t>) override {}
  void broadcast(std::span<std::byte>, int) override {}
  void barrier() override {}
};

}  // namespace cumtl::distributed
