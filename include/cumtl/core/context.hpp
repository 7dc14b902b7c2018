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

namespace cumtl::inline CUMTL_ABI {

class Context {
 public:
  // The CPU.
  Context() : workspace_(Device::cpu()) {}

  // `device`; on a GPU, with a new non-blocking stream of its own. Throws when
  // the device is not usable (no GPU, no driver, a CPU-only translation unit).
  explicit Context(Device device) : device_(device), workspace_(device) {
    detail::require_usable(device);
#if CUMTL_HAS_CUDA
    if (device.is_cuda()) {
      const detail::DeviceGuard guard(device.index());
      cudaStream_t stream = nullptr;
      CUMTL_CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      init_cuda(std::make_shared<detail::StreamHolder>(stream, device.index(), /*owned=*/true));
    }
#endif
  }

#if CUMTL_HAS_CUDA
  // A GPU context on the caller's stream, which cumtl enqueues on and never
  // destroys; the caller keeps it alive while this context or its tensors live.
  Context(Device device, cudaStream_t stream) : device_(device), workspace_(device) {
    CUMTL_REQUIRE(device.is_cuda(), "a context on a CUDA stream needs a CUDA device, got ", device);
    detail::require_usable(device);
    init_cuda(std::make_shared<detail::StreamHolder>(stream, device.index(), /*owned=*/false));
  }
#endif

  ~Context() {
#if CUMTL_HAS_CUDA
    // Teardown errors cannot be acted on; destructors do not throw.
    if (cudnn_ != nullptr) (void)cudnnDestroy(cudnn_);
    if (cublas_ != nullptr) (void)cublasDestroy(cublas_);
#endif
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const noexcept {
    return device_;
  }

  // Waits until everything enqueued on this context has finished.
  void synchronize() {
#if CUMTL_HAS_CUDA
    if (device_.is_cuda()) CUMTL_CHECK_CUDA(cudaStreamSynchronize(stream_->get()));
#endif
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

#if CUMTL_HAS_CUDA
  cudaStream_t stream() const noexcept {
    return stream_ ? stream_->get() : nullptr;
  }
  const std::shared_ptr<detail::StreamHolder>& stream_holder() const noexcept {
    return stream_;
  }
  int multiprocessor_count() const noexcept {
    return multiprocessors_;
  }

  // Created on first use (creating a cuDNN handle takes a noticeable time), bound to stream().
  cudnnHandle_t cudnn() {
    require_cuda("cudnn()");
    if (cudnn_ == nullptr) {
      const detail::DeviceGuard guard(device_.index());
      CUMTL_CHECK_CUDNN(cudnnCreate(&cudnn_));
      CUMTL_CHECK_CUDNN(cudnnSetStream(cudnn_, stream()));
    }
    return cudnn_;
  }

  cublasHandle_t cublas() {
    require_cuda("cublas()");
    if (cublas_ == nullptr) {
      const detail::DeviceGuard guard(device_.index());
      CUMTL_CHECK_CUBLAS(cublasCreate(&cublas_));
      CUMTL_CHECK_CUBLAS(cublasSetStream(cublas_, stream()));
    }
    return cublas_;
  }
#endif

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
#if CUMTL_HAS_CUDA
  void init_cuda(std::shared_ptr<detail::StreamHolder> stream) {
    stream_ = std::move(stream);
    workspace_ = Workspace(device_, stream_);
    CUMTL_CHECK_CUDA(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device_.index()));
  }

  void require_cuda(const char* what) const {
    CUMTL_REQUIRE(device_.is_cuda(), "Context::", what, " needs a CUDA context, this one is on ", device_);
  }
#endif

  Device device_;
  Workspace workspace_;
  NumericsPolicy numerics_;
  std::unique_ptr<ThreadPool> own_threads_;
#if CUMTL_HAS_CUDA
  std::shared_ptr<detail::StreamHolder> stream_;
  int multiprocessors_ = 0;
  cudnnHandle_t cudnn_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
#endif
};

}  // namespace cumtl::inline CUMTL_ABI
