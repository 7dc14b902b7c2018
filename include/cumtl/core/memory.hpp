#pragma once
// Memory: blocks of bytes on a device (Storage), the streams they are freed on,
// and the grow-only scratch Workspace every context owns.
//
// GPU memory comes from the device's stream-ordered pool (cudaMallocAsync
// semantics) whose release threshold is raised once, so freed blocks stay in the
// pool and the training loop never reaches the driver's allocator: a steady-state
// step neither calls cudaMalloc nor synchronizes to allocate. Managed memory is
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

namespace cumtl::inline CUMTL_ABI {

enum class MemoryKind : std::uint8_t {
  host,         // aligned host memory cumtl owns
  pinned_host,  // page-locked host memory for asynchronous copies
  device,       // GPU memory from the device's stream-ordered pool
  borrowed,     // memory the caller owns; never freed by cumtl
};

namespace detail {

inline constexpr std::size_t host_alignment = 64;

#if CUMTL_HAS_CUDA
// A CUDA stream, owned or borrowed from the caller. Storage allocated on a
// stream holds a reference to it, so the stream outlives every block whose
// stream-ordered free is queued on it.
class StreamHolder {
 public:
  StreamHolder(cudaStream_t stream, int device, bool owned) : stream_(stream), device_(device), owned_(owned) {}
  ~StreamHolder() {
    if (owned_) (void)cudaStreamDestroy(stream_);  // errors at teardown cannot be acted on
  }
  StreamHolder(const StreamHolder&) = delete;
  StreamHolder& operator=(const StreamHolder&) = delete;

  cudaStream_t get() const noexcept { return stream_; }
  int device() const noexcept { return device_; }

 private:
  cudaStream_t stream_;
  int device_;
  bool owned_;
};

// Makes `device` current for a scope and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    CUMTL_CHECK_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device) CUMTL_CHECK_CUDA(cudaSetDevice(device));
  }
  ~DeviceGuard() { (void)cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// The device's default memory pool, told once to keep what is freed.
inline cudaMemPool_t device_pool(int device) {
  static std::mutex mutex;
  static std::vector<cudaMemPool_t> pools;
  const std::lock_guard lock(mutex);
  if (pools.size() <= std::size_t(device)) pools.resize(std::size_t(device) + 1, nullptr);
  if (pools[std::size_t(device)] == nullptr) {
    cudaMemPool_t pool = nullptr;
    CUMTL_CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, device));
    std::uint64_t keep_everything = UINT64_MAX;
    CUMTL_CHECK_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_everything));
    pools[std::size_t(device)] = pool;
  }
  return pools[std::size_t(device)];
}
#endif

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

#if CUMTL_HAS_CUDA
  static std::shared_ptr<Storage> pinned_host(std::size_t bytes) {
    detail::require_usable(Device::cuda(0));
    void* data = nullptr;
    if (bytes > 0) {
      const cudaError_t status = cudaMallocHost(&data, bytes);
      if (status != cudaSuccess)
        detail::check_cuda(status, detail::concat("cudaMallocHost(", bytes, " bytes)").c_str(), __FILE__, __LINE__);
    }
    return std::shared_ptr<Storage>(new Storage(data, bytes, Device::cpu(), MemoryKind::pinned_host));
  }

  // Stream-ordered GPU memory: usable by work enqueued on `stream` from now on,
  // and returned to the pool in stream order when the last reference goes.
  static std::shared_ptr<Storage> device(std::size_t bytes, std::shared_ptr<detail::StreamHolder> stream) {
    const int index = stream->device();
    void* data = nullptr;
    if (bytes > 0) {
      const cudaError_t status = cudaMallocFromPoolAsync(&data, bytes, detail::device_pool(index), stream->get());
      if (status != cudaSuccess)
        detail::check_cuda(status, detail::concat("allocating ", bytes, " bytes on cuda:", index).c_str(), __FILE__,
                           __LINE__);
    }
    auto storage = std::shared_ptr<Storage>(new Storage(data, bytes, Device::cuda(index), MemoryKind::device));
    storage->stream_ = std::move(stream);
    return storage;
  }
#endif

  ~Storage() {
    if (data_ == nullptr) return;
    switch (kind_) {
      case MemoryKind::host: ::operator delete (data_, std::align_val_t{detail::host_alignment}); break;
#if CUMTL_HAS_CUDA
      // Failures here happen only at process teardown or after a sticky device
      // error that the next checked call reports; a destructor cannot act on them.
      case MemoryKind::pinned_host: (void)cudaFreeHost(data_); break;
      case MemoryKind::device: (void)cudaFreeAsync(data_, stream_->get()); break;
#endif
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

 private:
  Storage(void* data, std::size_t bytes, Device device, MemoryKind kind)
      : data_(data), bytes_(bytes), device_(device), kind_(kind) {}

  void* data_;
  std::size_t bytes_;
  Device device_;
  MemoryKind kind_;
#if CUMTL_HAS_CUDA
  std::shared_ptr<detail::StreamHolder> stream_;
#endif
};

// Grow-only scratch memory on one device (cuDNN plans, im2col buffers). A
// pointer it returns stays valid until a later reserve() asks for more than
// the capacity; on a GPU the old block is freed in stream order, so work
// already enqueued on the context's stream may still use it.
class Workspace {
 public:
  explicit Workspace(Device device) : device_(device) {}
#if CUMTL_HAS_CUDA
  Workspace(Device device, std::shared_ptr<detail::StreamHolder> stream)
      : device_(device), stream_(std::move(stream)) {}
#endif

  void* reserve(std::size_t bytes) {
    if (bytes > capacity()) {
      // Growing by half again keeps a slowly rising demand from reallocating each call.
      const std::size_t grown = std::max(bytes, capacity() + capacity() / 2);
#if CUMTL_HAS_CUDA
      if (device_.is_cuda()) {
        block_.reset();
        block_ = Storage::device(grown, stream_);
        return block_->data();
      }
#endif
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
#if CUMTL_HAS_CUDA
  std::shared_ptr<detail::StreamHolder> stream_;
#endif
};

}  // namespace cumtl::inline CUMTL_ABI
