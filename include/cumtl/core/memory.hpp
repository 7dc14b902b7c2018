#pragma once
// Memory: blocks of bytes on a device (Storage), the streams they are freed on,
// and the grow-only scratch Workspace every context owns.
//
// GPU memory comes, through the CUDA backend, from the device's stream-ordered
// pool (cudaMallocAsync semantics), which keeps freed blocks up to a release
// threshold (90% of the device unless CUMTL_POOL_RELEASE_THRESHOLD says
// otherwise, core/device_pool.hpp), so the training loop never reaches the
// driver's allocator: a steady-state step neither calls cudaMalloc nor
// synchronizes to allocate, and the rest stays free for cuDNN and cuBLAS.
// Managed memory is
// never used. Host blocks are 64-byte aligned; pinned host blocks (for
// asynchronous copies) come from cudaMallocHost.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "cumtl/core/device.hpp"

namespace cumtl {

enum class MemoryKind : std::uint8_t {
  host,         // aligned host memory cumtl owns
  pinned_host,  // page-locked host memory for asynchronous copies
  device,       // GPU memory from the device's stream-ordered pool
  borrowed,     // memory the caller owns; never freed by cumtl
};

namespace detail {

inline constexpr std::size_t host_alignment = 64;

// A CUDA stream, owned or borrowed from the caller. Storage allocated on a
// stream holds a reference to it, so the stream outlives every block whose
// stream-ordered free is queued on it.
class StreamHolder {
 public:
  StreamHolder(CUstream_st* stream, int device, bool owned) : stream_(stream), device_(device), owned_(owned) {}
  ~StreamHolder() {
    if (owned_) cuda_backend().destroy_stream(stream_);
  }
  StreamHolder(const StreamHolder&) = delete;
  StreamHolder& operator=(const StreamHolder&) = delete;

  CUstream_st* get() const noexcept { return stream_; }
  int device() const noexcept { return device_; }

 private:
  CUstream_st* stream_;
  int device_;
  bool owned_;
};

// A CUDA event on one device; with `timing`, milliseconds_since() measures.
class CudaEvent {
 public:
  explicit CudaEvent(int device, bool timing = false) : event_(cuda_backend().create_event(device, timing)) {}
  ~CudaEvent() { cuda_backend().destroy_event(event_); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  // The event happens once the work enqueued on `stream` so far has finished.
  void record(CUstream_st* stream) { cuda_backend().record_event(event_, stream); }
  // Work enqueued on `stream` from now on waits (on the device) for the event.
  void make_wait(CUstream_st* stream) { cuda_backend().wait_event(stream, event_); }
  // The host waits for the event.
  void synchronize() { cuda_backend().synchronize_event(event_); }
  // From `start` to this event, both recorded and this one synchronized.
  float milliseconds_since(const CudaEvent& start) const {
    return cuda_backend().elapsed_milliseconds(start.event_, event_);
  }

 private:
  CUevent_st* event_;
};

// Work enqueued on `then` from now on waits (on the device) for the work
// enqueued on `first`, a stream of GPU `first_device`, so far. The wait keeps
// what it waits for, so the event may go at once.
inline void order_streams(CUstream_st* first, int first_device, CUstream_st* then) {
  CudaEvent event(first_device);
  event.record(first);
  event.make_wait(then);
}

// Makes `device` current for a scope and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : previous_(cuda_backend().current_device()) {
    if (previous_ != device) cuda_backend().set_device(device);
  }
  ~DeviceGuard() {
    try {
      cuda_backend().set_device(previous_);
    } catch (...) {  // a destructor cannot act on it; the next checked call reports a sticky error
    }
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace detail

// A block of bytes on one device. Tensors share it through shared_ptr, so views
// keep their data alive.
class Storage {
 public:
  static std::shared_ptr<Storage> host(std::size_t bytes) {
    void* data = bytes == 0 ? nullptr : ::operator new (bytes, std::align_val_t{detail::host_alignment});
    return std::shared_ptr<Storage>(new Storage(data, bytes, Device::cpu(), MemoryKind::host));
  }

  // Memory cumtl does not own: the caller keeps it alive while tensors use it.
  static std::shared_ptr<Storage> borrow(void* data, std::size_t bytes, Device device) {
    return std::shared_ptr<Storage>(new Storage(data, bytes, device, MemoryKind::borrowed));
  }

  static std::shared_ptr<Storage> pinned_host(std::size_t bytes) {
    detail::require_usable(Device::cuda(0));
    void* data = bytes > 0 ? detail::cuda_backend().allocate_pinned(bytes) : nullptr;
    return std::shared_ptr<Storage>(new Storage(data, bytes, Device::cpu(), MemoryKind::pinned_host));
  }

  // Stream-ordered GPU memory: usable by work enqueued on `stream` from now on,
  // and returned to the pool in stream order when the last reference goes.
  // The pool may hand the block out again as soon as `stream` reaches the
  // free, so work another stream enqueues on the block must come before it
  // in `stream`'s order (detail::order_streams; Tensor's copies do that).
  static std::shared_ptr<Storage> device(std::size_t bytes, std::shared_ptr<detail::StreamHolder> stream) {
    const int index = stream->device();
    void* data = bytes > 0 ? detail::cuda_backend().allocate(bytes, index, stream->get()) : nullptr;
    auto storage = std::shared_ptr<Storage>(new Storage(data, bytes, Device::cuda(index), MemoryKind::device));
    storage->stream_ = std::move(stream);
    return storage;
  }

  ~Storage() {
    if (data_ == nullptr) return;
    switch (kind_) {
      case MemoryKind::host: ::operator delete (data_, std::align_val_t{detail::host_alignment}); break;
      // Failures here happen only at process teardown or after a sticky device
      // error that the next checked call reports; a destructor cannot act on them.
      case MemoryKind::pinned_host: detail::cuda_backend().free_pinned(data_); break;
      case MemoryKind::device: detail::cuda_backend().free(data_, stream_->get()); break;
      default: break;
    }
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const noexcept {
    return data_;
  }
  std::size_t bytes() const noexcept {
    return bytes_;
  }
  Device device() const noexcept {
    return device_;
  }
  MemoryKind kind() const noexcept {
    return kind_;
  }
  // Device memory: the stream it was allocated on and is freed on, whose
  // context owns it; null for the other kinds.
  CUstream_st* stream() const noexcept {
    return stream_ ? stream_->get() : nullptr;
  }

 private:
  Storage(void* data, std::size_t bytes, Device device, MemoryKind kind)
      : data_(data), bytes_(bytes), device_(device), kind_(kind) {}

  void* data_;
  std::size_t bytes_;
  Device device_;
  MemoryKind kind_;
  std::shared_ptr<detail::StreamHolder> stream_;  // device memory: the stream its free is queued on
};

// Grow-only scratch memory on one device (cuDNN plans, im2col buffers). A
// pointer it returns stays valid until a later reserve() asks for more than
// the capacity; on a GPU the old block is freed in stream order, so work
// already enqueued on the context's stream may still use it.
class Workspace {
 public:
  explicit Workspace(Device device) : device_(device) {}
  Workspace(Device device, std::shared_ptr<detail::StreamHolder> stream)
      : device_(device), stream_(std::move(stream)) {}

  void* reserve(std::size_t bytes) {
    if (bytes > capacity()) {
      // Growing by half again keeps a slowly rising demand from reallocating each call.
      const std::size_t grown = std::max(bytes, capacity() + capacity() / 2);
      if (device_.is_cuda()) {
        block_.reset();
        block_ = Storage::device(grown, stream_);
        return block_->data();
      }
      block_ = Storage::host(grown);
    }
    return block_ ? block_->data() : nullptr;
  }

  std::size_t capacity() const noexcept {
    return block_ ? block_->bytes() : 0;
  }

 private:
  Device device_;
  std::shared_ptr<Storage> block_;
  std::shared_ptr<detail::StreamHolder> stream_;
};

}  // namespace cumtl
