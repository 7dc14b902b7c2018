#pragma once
// A Context is where work runs: a device and, on a GPU, the stream every
// operation enqueues on, with the cuDNN and cuBLAS handles bound to that stream
// and the scratch workspace. Every compute call takes one as its first argument:
// nothing hides on the legacy default stream, so cumtl can live inside a
// pipeline that owns its stream, overlap with other work, and be captured in a
// CUDA graph.
//
// A context is used by one host thread at a time (cuDNN and cuBLAS handles are
// not thread-safe); give each thread its own. On the CPU, operations spread
// over the threads of cpu_threads(): the process's pool unless the context was
// given a pool of its own.

#include <memory>
#include <mutex>
#include <vector>

#include "cumtl/core/memory.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/core/thread_pool.hpp"

namespace cumtl {

class Context {
 public:
  // The CPU.
  Context() : workspace_(Device::cpu()) {}

  // `device`; on a GPU, with a new non-blocking stream of its own. Throws when
  // the device is not usable (no GPU, no driver, a program without the CUDA backend).
  explicit Context(Device device) : device_(device), workspace_(device) {
    detail::require_usable(device);
    if (device.is_cuda()) {
      CUstream_st* stream = detail::cuda_backend().create_stream(device.index());
      init_cuda(std::make_shared<detail::StreamHolder>(stream, device.index(), /*owned=*/true));
    }
  }

  // A GPU context on the caller's stream (a cudaStream_t), which cumtl
  // enqueues on and never destroys; the caller keeps it alive while this
  // context or its tensors live.
  Context(Device device, CUstream_st* stream) : device_(device), workspace_(device) {
    CUMTL_REQUIRE(device.is_cuda(), "a context on a CUDA stream needs a CUDA device, got ", device);
    detail::require_usable(device);
    init_cuda(std::make_shared<detail::StreamHolder>(stream, device.index(), /*owned=*/false));
  }

  ~Context() {
    // The convolution plans go first: they were built from the cuDNN handle.
    library_handles_.cudnn_plans.reset();
    // Teardown errors cannot be acted on; destructors do not throw.
    if (library_handles_.cudnn != nullptr || library_handles_.cublas != nullptr)
      detail::cuda_backend().destroy_library_handles(library_handles_.cudnn, library_handles_.cublas);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const noexcept {
    return device_;
  }

  // Waits until everything enqueued on this context has finished.
  void synchronize() {
    if (device_.is_cuda()) detail::cuda_backend().synchronize(stream_->get());
  }

  Workspace& workspace() noexcept {
    return workspace_;
  }

  // TF32 and determinism for the library calls made on this context (cuDNN, cuBLAS).
  NumericsPolicy& numerics() noexcept {
    return numerics_;
  }
  const NumericsPolicy& numerics() const noexcept {
    return numerics_;
  }

  // The threads the CPU operations of this context run on.
  ThreadPool& cpu_threads() {
    return own_threads_ ? *own_threads_ : ThreadPool::process();
  }

  // Gives this context a pool of `threads` threads (the caller included) of its own.
  void set_cpu_threads(int threads) {
    own_threads_ = std::make_unique<ThreadPool>(threads);
  }

  // The stream (a cudaStream_t) work on this GPU context is enqueued on; null on the CPU.
  CUstream_st* stream() const noexcept {
    return stream_ ? stream_->get() : nullptr;
  }
  const std::shared_ptr<detail::StreamHolder>& stream_holder() const noexcept {
    return stream_;
  }
  int multiprocessor_count() const noexcept {
    return multiprocessors_;
  }

  // The cuDNN and cuBLAS handles (cudnnHandle_t, cublasHandle_t) of a GPU
  // context, which the CUDA backend creates on first use, bound to stream(),
  // and this context destroys with itself.
  struct LibraryHandles {
    void* cudnn = nullptr;
    void* cublas = nullptr;
    // The cublasMath_t last set on the cuBLAS handle (-1 before any), so that
    // following numerics() costs a cublasSetMathMode only when it changed.
    int cublas_math_mode = -1;
    // The backend's convolution state for this context: the device profile
    // read from the cuDNN handle, and the plans built for it.
    std::shared_ptr<void> cudnn_plans;
  };
  LibraryHandles& library_handles() noexcept {
    return library_handles_;
  }

  // The context that tensors made without one use: one per device, created on
  // first use, on a stream of its own. It lives until the process ends: freeing
  // CUDA objects from static destructors races the runtime's own teardown.
  static Context& default_for(Device device) {
    if (device.is_cpu()) {
      static Context cpu_context;
      return cpu_context;
    }
    static std::mutex mutex;
    static std::vector<Context*> contexts;
    const std::lock_guard lock(mutex);
    detail::require_usable(device);
    if (contexts.size() <= std::size_t(device.index())) contexts.resize(std::size_t(device.index()) + 1, nullptr);
    Context*& context = contexts[std::size_t(device.index())];
    if (context == nullptr) context = new Context(device);
    return *context;
  }

 private:
  void init_cuda(std::shared_ptr<detail::StreamHolder> stream) {
    stream_ = std::move(stream);
    workspace_ = Workspace(device_, stream_);
    multiprocessors_ = detail::cuda_backend().multiprocessor_count(device_.index());
  }

  Device device_;
  Workspace workspace_;
  NumericsPolicy numerics_;
  std::unique_ptr<ThreadPool> own_threads_;
  std::shared_ptr<detail::StreamHolder> stream_;
  int multiprocessors_ = 0;
  LibraryHandles library_handles_;
};

}  // namespace cumtl
