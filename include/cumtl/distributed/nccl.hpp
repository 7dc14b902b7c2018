#pragma once
// NcclCommunicator: the GPU engine, on NCCL (shipped with the CUDA toolkit).
// Its collectives work on device memory of the rank's GPU. A program that
// includes this header links NCCL and the CUDA runtime (CMake: the cumtl::nccl
// target).
//
// Rendezvous: NCCL ranks meet through a unique id that rank 0 creates; it
// travels to the other ranks over the CPU engine (`bootstrap`, a Gloo world of
// the same ranks), as torch.distributed does over its store.
//
// Failure: the communicator is non-blocking (NCCL's config.blocking = 0), so
// nothing in NCCL can hold the host forever. Initialization and every
// collective are awaited by polling, under the timeout: a rank that died or
// hangs makes the others abort the communicator (ncclCommAbort) and throw
// cumtl::Error naming their rank and the operation.
//
// The Communicator interface is synchronous, as the CPU engine's: the spans
// are device memory; each call is ordered on the context's stream after the
// work already there, and returns once the collective is complete.
// start_all_reduce_mean() (GradientBuckets, distributed/data_parallel.hpp)
// instead runs on the communicator's own stream once the context's stream has
// produced the buffer, without waiting: the gradient mean overlaps the rest of
// backward; finish_all_reduces() makes the context's stream wait for it on the
// device. The host checks that it completed, under the timeout, when the next
// step starts its first bucket, so a lost rank still fails the others.

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <thread>

#include "cumtl/core/context.hpp"
#include "cumtl/core/error.hpp"
#include "cumtl/distributed/communicator.hpp"

namespace cumtl::distributed {

struct NcclOptions {
  // How long initialization and any collective may wait for the other ranks.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
};

class NcclCommunicator final : public Communicator {
 public:
  // `ctx` is this rank's GPU context (one GPU per rank; with cumtl-launch or
  // torchrun, device LOCAL_RANK); the collectives run on its stream.
  NcclCommunicator(Communicator& bootstrap, Context& ctx, NcclOptions options = {})
      : rank_(bootstrap.rank()), world_size_(bootstrap.world_size()), ctx_(ctx), timeout_(options.timeout) {
    CUMTL_REQUIRE(ctx.device().is_cuda(), "NcclCommunicator: rank ", rank_, " needs a GPU context, got ", ctx.device());
    check_cuda(cudaSetDevice(ctx.device().index()), "cudaSetDevice");
    ncclUniqueId id{};
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bootstrap.broadcast(std::as_writable_bytes(std::span(&id, 1)), 0);

    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t started = ncclCommInitRankConfig(&comm_, world_size_, id, rank_, &config);
    if (started != ncclSuccess && started != ncclInProgress) fail("initialization", ncclGetErrorString(started));
    await_communicator("initialization");
    for (cudaEvent_t* event : {&done_, &produced_, &communicated_})
      check_cuda(cudaEventCreateWithFlags(event, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cuda(cudaMalloc(&scratch_, sizeof(std::int64_t)), "cudaMalloc");
  }

  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  ~NcclCommunicator() override {
    if (scratch_ != nullptr) (void)cudaFree(scratch_);
    for (cudaEvent_t event : {done_, produced_, communicated_})
      if (event != nullptr) (void)cudaEventDestroy(event);
    if (comm_ == nullptr) return;
    // Finalizing flushes what is in flight; a communicator that failed, or does not finalize in time, is aborted.
    bool clean = !failed_;
    if (clean) {
      const ncclResult_t result = ncclCommFinalize(comm_);
      clean = result == ncclSuccess || result == ncclInProgress;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    ncclResult_t state = ncclInProgress;
    while (clean && (ncclCommGetAsyncError(comm_, &state), state == ncclInProgress)) {
      clean = std::chrono::steady_clock::now() < deadline;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (clean && state == ncclSuccess)
      (void)ncclCommDestroy(comm_);
    else
      (void)ncclCommAbort(comm_);
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return world_size_; }
  std::string engine() const override {
    int version = 0;
    (void)ncclGetVersion(&version);
    return "nccl " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
           std::to_string(version % 100);
  }

  void all_reduce_sum(std::span<float> values) override { all_reduce(values.data(), values.size(), ncclFloat32); }
  void all_reduce_sum(std::span<double> values) override { all_reduce(values.data(), values.size(), ncclFloat64); }
  void all_reduce_sum(std::span<std::int64_t> values) override { all_reduce(values.data(), values.size(), ncclInt64); }

  // The mean in one pass: NCCL divides as it sums (ncclAvg).
  void all_reduce_mean(std::span<float> values) override {
    all_reduce(values.data(), values.size(), ncclFloat32, ncclAvg);
  }

  Device memory() const override { return ctx_.device(); }

  void broadcast(std::span<std::byte> bytes, int root) override {
    CUMTL_REQUIRE(root >= 0 && root < world_size_, "broadcast from rank ", root, " in a world of ", world_size_);
    if (bytes.empty()) return;
    enqueue("broadcast",
            ncclBroadcast(bytes.data(), bytes.data(), bytes.size(), ncclUint8, root, comm_, ctx_.stream()));
    wait("broadcast");
  }

  void barrier() override {
    check_cuda(cudaMemsetAsync(scratch_, 0, sizeof(std::int64_t), ctx_.stream()), "cudaMemsetAsync");
    all_reduce(scratch_, 1, ncclInt64, ncclSum, "barrier");
  }

  void start_all_reduce_mean(std::span<float> values) override {
    if (values.empty()) return;
    if (overlapping_) {
      await_event(communicated_, "gradient all-reduce");  // the previous step's, normally long done
      overlapping_ = false;
    }
    check_cuda(cudaEventRecord(produced_, ctx_.stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, produced_, 0), "cudaStreamWaitEvent");
    enqueue("gradient all-reduce",
            ncclAllReduce(values.data(), values.data(), values.size(), ncclFloat32, ncclAvg, comm_, stream_));
    started_ = true;
  }

  void finish_all_reduces() override {
    if (!started_) return;
    check_cuda(cudaEventRecord(communicated_, stream_), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(ctx_.stream(), communicated_, 0), "cudaStreamWaitEvent");
    started_ = false;
    overlapping_ = true;
  }

  // Waits until the work so far on the context's stream is complete, failing after the timeout when a
  // collective cannot complete.
  void wait(const char* what) {
    check_cuda(cudaEventRecord(done_, ctx_.stream()), "cudaEventRecord");
    await_event(done_, what);
  }

 private:
  template <class T>
  void all_reduce(T* values, std::size_t count, ncclDataType_t type, ncclRedOp_t operation = ncclSum,
                  const char* what = "all-reduce") {
    if (count == 0) return;
    enqueue(what, ncclAllReduce(values, values, count, type, operation, comm_, ctx_.stream()));
    wait(what);
  }

  void await_event(cudaEvent_t event, const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (;;) {
      const cudaError_t state = cudaEventQuery(event);
      if (state == cudaSuccess) return;
      if (state != cudaErrorNotReady) fail(what, cudaGetErrorString(state));
      ncclResult_t asynchronous = ncclSuccess;
      (void)ncclCommGetAsyncError(comm_, &asynchronous);
      if (asynchronous != ncclSuccess && asynchronous != ncclInProgress) fail(what, ncclGetErrorString(asynchronous));
      if (std::chrono::steady_clock::now() > deadline) fail(what, "timed out");
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  // A non-blocking communicator may still be enqueuing when a call returns ncclInProgress.
  void enqueue(const char* what, ncclResult_t result) {
    if (result != ncclSuccess && result != ncclInProgress) fail(what, ncclGetErrorString(result));
    await_communicator(what);
  }

  void await_communicator(const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    ncclResult_t state = ncclInProgress;
    while ((ncclCommGetAsyncError(comm_, &state), state == ncclInProgress)) {
      if (std::chrono::steady_clock::now() > deadline) fail(what, "timed out");
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    if (state != ncclSuccess) fail(what, ncclGetErrorString(state));
  }

  [[noreturn]] void fail(const char* what, const char* reason) {
    failed_ = true;
    CUMTL_FAIL("rank ", rank_, " of ", world_size_, ": NCCL ", what, " failed — another rank died or did not reach ",
               "it within ", std::chrono::duration<double>(timeout_).count(), " s (", reason, ")");
  }

  void check_cuda(cudaError_t result, const char* call) const {
    CUMTL_REQUIRE(result == cudaSuccess, "rank ", rank_, ": ", call, " failed: ", cudaGetErrorString(result));
  }
  void check_nccl(ncclResult_t result, const char* call) const {
    CUMTL_REQUIRE(result == ncclSuccess, "rank ", rank_, ": ", call, " failed: ", ncclGetErrorString(result));
  }

  int rank_, world_size_;
  Context& ctx_;
  std::chrono::milliseconds timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;       // the gradient buckets' all-reduces
  cudaEvent_t done_ = nullptr;          // the context's stream, for the host to wait on
  cudaEvent_t produced_ = nullptr;      // the context's stream has written a bucket
  cudaEvent_t communicated_ = nullptr;  // the step's buckets are averaged
  bool started_ = false;                // buckets started since the last finish_all_reduces()
  bool overlapping_ = false;            // the last step's buckets are not yet known to be complete
  std::int64_t* scratch_ = nullptr;     // the barrier's one value
  bool failed_ = false;
};

}  // namespace cumtl::distributed
