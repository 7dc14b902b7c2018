// The CUDA backend of cumtl: compile this file once per program with nvcc
// and link it (CMake's cumtl::cumtl does so when cumtl is configured with its
// CUDA backend). Every kernel, launcher and cuDNN or cuBLAS call of cumtl is
// instantiated here and nowhere else; at start-up this unit registers the
// table that the facades in ops/ dispatch to (core/cuda_backend.hpp). The rest
// of a program includes <cumtl/cumtl.hpp> from any C++20 compiler.
//
// Without a CMake build:
//   nvcc -std=c++20 --expt-relaxed-constexpr -arch=sm_90 -I<cumtl>/include -c cuda_backend.cu
//   g++ -std=c++20 -I<cumtl>/include main.cpp cuda_backend.o -lcudart -lcublas -lcudnn -lopenblas ...

#include <cstdint>
#include <string>

#include "cumtl/core/context.hpp"
#include "cumtl/core/cuda_backend.hpp"
#include "cumtl/core/device_pool.hpp"
#include "cumtl/cuda/activation.cuh"
#include "cumtl/cuda/batchnorm.cuh"
#include "cumtl/cuda/cudnn_conv.hpp"
#include "cumtl/cuda/elementwise.cuh"
#include "cumtl/cuda/launch.hpp"
#include "cumtl/cuda/linear.cuh"
#include "cumtl/cuda/multitask_loss.cuh"
#include "cumtl/cuda/optimizer.cuh"
#include "cumtl/cuda/pooling.cuh"
#include "cumtl/cuda/preprocess.cuh"
#include "cumtl/cuda/random.cuh"
#include "cumtl/cuda/status.hpp"

namespace cumtl::cuda {
namespace {

// Each operation calls its launcher in cuda/ with the same arguments.
//
// The operations of every activation type, for the interface `Interface` that
// declares them (CudaActivationTypeOperations<T> or CudaOperations<T>).
template <class T, class Interface>
class ActivationTypeOperations : public Interface {
 public:
  void add(Context& ctx, std::int64_t count, const T* a, const T* b, T* out) override {
    cuda::add<T>(ctx, count, a, b, out);
  }
  void relu_forward(Context& ctx, std::int64_t count, const T* x, T* y) override {
    cuda::relu_forward<T>(ctx, count, x, y);
  }
  void relu_backward(Context& ctx, std::int64_t count, const T* dy, const T* y, T* dx) override {
    cuda::relu_backward<T>(ctx, count, dy, y, dx);
  }
  void dropout(Context& ctx, std::int64_t count, std::uint64_t seed, std::uint64_t offset, double p, compute_t<T> scale,
               const T* x, T* y) override {
    cuda::dropout<T>(ctx, count, seed, offset, p, scale, x, y);
  }
  void normalize_images(Context& ctx, std::int64_t count, int channels, const std::uint8_t* pixels,
                        const kernels::ChannelAffine<compute_t<T>>& affine, T* out) override {
    cuda::normalize_images<T>(ctx, count, channels, pixels, affine, out);
  }
  void max_pool2d_forward(Context& ctx, const kernels::PoolShape& shape, const T* x, T* y,
                          std::int32_t* argmax) override {
    cuda::max_pool2d_forward<T>(ctx, shape, x, y, argmax);
  }
  void max_pool2d_backward(Context& ctx, const kernels::PoolShape& shape, const T* dy, const std::int32_t* argmax,
                           T* dx) override {
    cuda::max_pool2d_backward<T>(ctx, shape, dy, argmax, dx);
  }
  void avg_pool2d_forward(Context& ctx, const kernels::PoolShape& shape, const T* x, T* y) override {
    cuda::avg_pool2d_forward<T>(ctx, shape, x, y);
  }
  void avg_pool2d_backward(Context& ctx, const kernels::PoolShape& shape, const T* dy, T* dx) override {
    cuda::avg_pool2d_backward<T>(ctx, shape, dy, dx);
  }
  void global_avg_pool_forward(Context& ctx, std::int64_t batch, std::int64_t plane, std::int64_t channels, const T* x,
                               T* y) override {
    cuda::global_avg_pool_forward<T>(ctx, batch, plane, channels, x, y);
  }
  void global_avg_pool_backward(Context& ctx, std::int64_t batch, std::int64_t plane, std::int64_t channels,
                                const T* dy, T* dx) override {
    cuda::global_avg_pool_backward<T>(ctx, batch, plane, channels, dy, dx);
  }
  void add_bias(Context& ctx, std::int64_t rows, std::int64_t columns, const T* bias, T* y) override {
    cuda::add_bias<T>(ctx, rows, columns, bias, y);
  }
  void bias_gradient(Context& ctx, std::int64_t rows, std::int64_t columns, const T* dy, T* bias_gradient,
                     GradientMode mode) override {
    cuda::bias_gradient<T>(ctx, rows, columns, dy, bias_gradient, mode);
  }
  void linear_forward(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* x, const T* weight,
                      T* y) override {
    cuda::linear_forward<T>(ctx, n, in, out, x, weight, y);
  }
  void linear_backward_data(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy,
                            const T* weight, T* dx) override {
    cuda::linear_backward_data<T>(ctx, n, in, out, dy, weight, dx);
  }
  void linear_backward_weight(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy, const T* x,
                              T* dweight, GradientMode mode) override {
    cuda::linear_backward_weight<T>(ctx, n, in, out, dy, x, dweight, mode);
  }
  void batchnorm_forward_train(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                               const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                               Activation activation, double momentum, double eps, compute_t<T>* running_mean,
                               compute_t<T>* running_var, compute_t<T>* saved_mean, compute_t<T>* saved_invstd, T* y,
                               const ChannelSumsOverRanks* sum_over_ranks) override {
    cuda::batchnorm_forward_train<T>(ctx, rows, channels, x, gamma, beta, residual, activation, momentum, eps,
                                     running_mean, running_var, saved_mean, saved_invstd, y, sum_over_ranks);
  }
  void batchnorm_forward_eval(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                              const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                              Activation activation, double eps, const compute_t<T>* running_mean,
                              const compute_t<T>* running_var, T* y) override {
    cuda::batchnorm_forward_eval<T>(ctx, rows, channels, x, gamma, beta, residual, activation, eps, running_mean,
                                    running_var, y);
  }
  void batchnorm_backward(Context& ctx, std::int64_t rows, std::int64_t channels, const T* dy, const T* x, const T* y,
                          const compute_t<T>* gamma, const compute_t<T>* saved_mean, const compute_t<T>* saved_invstd,
                          Activation activation, T* dx, T* dresidual, compute_t<T>* dgamma, compute_t<T>* dbeta,
                          GradientMode mode, const ChannelSumsOverRanks* sum_over_ranks) override {
    cuda::batchnorm_backward<T>(ctx, rows, channels, dy, x, y, gamma, saved_mean, saved_invstd, activation, dx,
                                dresidual, dgamma, dbeta, mode, sum_over_ranks);
  }
  void multitask_loss(Context& ctx, const kernels::LossHeadTable& table, std::int64_t rows, const T* logits,
                      const std::int32_t* classes, const std::int8_t* binary, const compute_t<T>* positive_weights,
                      T* gradient, const kernels::LossOutputs<compute_t<T>>& outputs) override {
    cuda::multitask_loss<T>(ctx, table, rows, logits, classes, binary, positive_weights, gradient, outputs);
  }
};

template <class Half>
using HalfOperations = ActivationTypeOperations<Half, detail::CudaActivationTypeOperations<Half>>;

template <class T>
class Operations final : public ActivationTypeOperations<T, detail::CudaOperations<T>> {
 public:
  void fill(Context& ctx, T* out, std::int64_t count, T value) override { cuda::fill<T>(ctx, out, count, value); }
  void scale(Context& ctx, T* x, std::int64_t count, T alpha) override { cuda::scale<T>(ctx, x, count, alpha); }
  void axpy(Context& ctx, std::int64_t count, T alpha, const T* x, T* y) override {
    cuda::axpy<T>(ctx, count, alpha, x, y);
  }
  void find_nonfinite(Context& ctx, std::int64_t count, const T* x, std::int32_t* flag) override {
    cuda::find_nonfinite<T>(ctx, count, x, flag);
  }
  void to_half(Context& ctx, std::int64_t count, const T* x, ScalarType half, std::uint16_t* y) override {
    cuda::to_half<T>(ctx, count, x, half, y);
  }
  void from_half(Context& ctx, std::int64_t count, ScalarType half, const std::uint16_t* x, T* y) override {
    cuda::from_half<T>(ctx, count, half, x, y);
  }
  void uniform(Context& ctx, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T low,
               T high) override {
    cuda::uniform<T>(ctx, out, count, seed, offset, low, high);
  }
  void normal(Context& ctx, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T mean,
              T stddev) override {
    cuda::normal<T>(ctx, out, count, seed, offset, mean, stddev);
  }
  void sgd_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* buffer, const T* mask,
                  const SgdStep& step, ScalarType working_type, std::uint16_t* working) override {
    cuda::sgd_update<T>(ctx, count, values, gradients, buffer, mask, step, working_type, working);
  }
  void adamw_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* m, T* v, const T* mask,
                    const AdamWStep& step, ScalarType working_type, std::uint16_t* working) override {
    cuda::adamw_update<T>(ctx, count, values, gradients, m, v, mask, step, working_type, working);
  }
};

std::string version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

class Backend final : public detail::CudaBackend {
 public:
  int device_count(std::string& reason) const override {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      reason = detail::concat("cudaGetDeviceCount failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status),
                              ")");
      if (const std::string hint = detail::cuda_hint(status); !hint.empty()) reason += "; " + hint;
      return 0;
    }
    if (count == 0) reason = "the CUDA runtime found no device (check nvidia-smi and CUDA_VISIBLE_DEVICES)";
    return count;
  }

  std::string device_name(int device) const override {
    cudaDeviceProp properties{};
    if (cudaGetDeviceProperties(&properties, device) != cudaSuccess) {
      (void)cudaGetLastError();
      return {};
    }
    return properties.name;
  }

  int multiprocessor_count(int device) const override {
    int count = 0;
    CUMTL_CHECK_CUDA(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    return count;
  }

  int compute_capability(int device) const override {
    int major = 0, minor = 0;
    CUMTL_CHECK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUMTL_CHECK_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major * 10 + minor;
  }

  std::string versions() const override {
    int runtime = 0, driver = 0, cublas_major = 0, cublas_minor = 0;
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaDriverGetVersion(&driver);  // 0 when no driver is installed
    (void)cublasGetProperty(MAJOR_VERSION, &cublas_major);
    (void)cublasGetProperty(MINOR_VERSION, &cublas_minor);
    const std::size_t cudnn = cudnnGetVersion();
    return detail::concat("CUDA runtime ", version_text(runtime), ", driver ",
                          driver == 0 ? std::string("none") : version_text(driver), ", cuDNN ", cudnn / 10000, ".",
                          cudnn % 10000 / 100, ".", cudnn % 100, ", cuBLAS ", cublas_major, ".", cublas_minor);
  }

  int current_device() const override {
    int device = 0;
    CUMTL_CHECK_CUDA(cudaGetDevice(&device));
    return device;
  }
  void set_device(int device) const override { CUMTL_CHECK_CUDA(cudaSetDevice(device)); }

  CUstream_st* create_stream(int device) const override {
    const detail::DeviceGuard guard(device);
    cudaStream_t stream = nullptr;
    CUMTL_CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    return stream;
  }
  void destroy_stream(CUstream_st* stream) const noexcept override { (void)cudaStreamDestroy(stream); }
  void synchronize(CUstream_st* stream) const override { CUMTL_CHECK_CUDA(cudaStreamSynchronize(stream)); }

  CUevent_st* create_event(int device, bool timing) const override {
    const detail::DeviceGuard guard(device);
    cudaEvent_t event = nullptr;
    CUMTL_CHECK_CUDA(cudaEventCreateWithFlags(&event, timing ? cudaEventDefault : cudaEventDisableTiming));
    return event;
  }
  void destroy_event(CUevent_st* event) const noexcept override { (void)cudaEventDestroy(event); }
  void record_event(CUevent_st* event, CUstream_st* stream) const override {
    CUMTL_CHECK_CUDA(cudaEventRecord(event, stream));
  }
  void wait_event(CUstream_st* stream, CUevent_st* event) const override {
    CUMTL_CHECK_CUDA(cudaStreamWaitEvent(stream, event, 0));
  }
  void synchronize_event(CUevent_st* event) const override { CUMTL_CHECK_CUDA(cudaEventSynchronize(event)); }
  float elapsed_milliseconds(CUevent_st* start, CUevent_st* stop) const override {
    float milliseconds = 0;
    CUMTL_CHECK_CUDA(cudaEventElapsedTime(&milliseconds, start, stop));
    return milliseconds;
  }

  void* allocate(std::size_t bytes, int device, CUstream_st* stream) const override {
    const cudaMemPool_t pool = device_pool(device);
    void* data = nullptr;
    cudaError_t status = cudaMallocFromPoolAsync(&data, bytes, pool, stream);
    if (status == cudaErrorMemoryAllocation && release_unused(device, pool, stream))
      status = cudaMallocFromPoolAsync(&data, bytes, pool, stream);
    if (status == cudaErrorMemoryAllocation) throw out_of_memory(bytes, device, pool);
    if (status != cudaSuccess)
      detail::check_cuda(status, detail::concat("allocating ", bytes, " bytes on cuda:", device).c_str(), __FILE__,
                         __LINE__);
    return data;
  }
  void free(void* data, CUstream_st* stream) const noexcept override { (void)cudaFreeAsync(data, stream); }
  void* allocate_pinned(std::size_t bytes) const override {
    void* data = nullptr;
    const cudaError_t status = cudaMallocHost(&data, bytes);
    if (status != cudaSuccess)
      detail::check_cuda(status, detail::concat("cudaMallocHost(", bytes, " bytes)").c_str(), __FILE__, __LINE__);
    return data;
  }
  void free_pinned(void* data) const noexcept override { (void)cudaFreeHost(data); }
  void copy(void* destination, const void* source, std::size_t bytes, CUstream_st* stream) const override {
    CUMTL_CHECK_CUDA(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDefault, stream));
  }
  void fill_bytes(void* destination, int value, std::size_t bytes, CUstream_st* stream) const override {
    CUMTL_CHECK_CUDA(cudaMemsetAsync(destination, value, bytes, stream));
  }

  void destroy_library_handles(void* cudnn, void* cublas) const noexcept override {
    if (cudnn != nullptr) (void)cudnnDestroy(static_cast<cudnnHandle_t>(cudnn));
    if (cublas != nullptr) (void)cublasDestroy(static_cast<cublasHandle_t>(cublas));
  }

  detail::CudaOperations<float>& float_operations() override { return float_operations_; }
  detail::CudaOperations<double>& double_operations() override { return double_operations_; }
  detail::CudaActivationTypeOperations<bfloat16_t>& bfloat16_operations() override { return bfloat16_operations_; }
  detail::CudaActivationTypeOperations<float16_t>& float16_operations() override { return float16_operations_; }

  void conv_forward(Context& ctx, const ConvShape& shape, ScalarType type, const void* x, const void* w,
                    void* y) override {
    convolve(ctx, "cumtl::conv_forward", ConvDirection::forward, shape, type, {x, w, y});
  }
  void conv_backward_data(Context& ctx, const ConvShape& shape, ScalarType type, const void* dy, const void* w,
                          void* dx) override {
    convolve(ctx, "cumtl::conv_backward_data", ConvDirection::backward_data, shape, type, {dx, w, dy});
  }
  void conv_backward_filter(Context& ctx, const ConvShape& shape, ScalarType type, const void* x, const void* dy,
                            void* dw, GradientMode mode) override {
    if (mode == GradientMode::overwrite) {
      convolve(ctx, "cumtl::conv_backward_filter", ConvDirection::backward_filter, shape, type, {x, dw, dy});
      return;
    }
    // The frontend's convolution nodes have no beta: the gradient goes to
    // scratch memory in stream order, then is added (rounded once more in a 2-byte type).
    const std::int64_t count = shape.w_count();
    const std::shared_ptr<Storage> scratch = Storage::device(std::size_t(count) * size_of(type), ctx.stream_holder());
    convolve(ctx, "cumtl::conv_backward_filter", ConvDirection::backward_filter, shape, type, {x, scratch->data(), dy});
    dispatch_convolution_type(type, [&]<class T>() {
      cuda::add<T>(ctx, count, static_cast<const T*>(dw), static_cast<const T*>(scratch->data()), static_cast<T*>(dw));
    });
  }

 private:
  // Calls fn.template operator()<T>() with T the C++ type of a convolution's `type`.
  template <class Fn>
  static void dispatch_convolution_type(ScalarType type, Fn&& fn) {
    switch (type) {
      case ScalarType::f32: fn.template operator()<float>(); return;
      case ScalarType::bf16: fn.template operator()<bfloat16_t>(); return;
      case ScalarType::f16: fn.template operator()<float16_t>(); return;
      default: CUMTL_FAIL("CUDA convolutions take float32, bfloat16 or float16 tensors, got ", name_of(type));
    }
  }

  static ConvDataType convolution_data_type(ScalarType type) {
    ConvDataType data_type = ConvDataType::float32;
    dispatch_convolution_type(type, [&]<class T>() {
      if constexpr (std::is_same_v<T, bfloat16_t>) data_type = ConvDataType::bfloat16;
      if constexpr (std::is_same_v<T, float16_t>) data_type = ConvDataType::float16;
    });
    return data_type;
  }

  static void convolve(Context& ctx, const char* name, ConvDirection direction, const ConvShape& shape, ScalarType type,
                       ConvPointers pointers) {
    const LaunchScope scope(ctx, name);
    const ConvNumerics numerics{.allow_tf32 = ctx.numerics().allow_tf32, .deterministic = ctx.numerics().deterministic};
    execute_conv(ctx, cudnn_handle(ctx), direction, shape, numerics, convolution_data_type(type), pointers);
    if (sync_after_launch()) {
      if (const cudaError_t sync = cudaStreamSynchronize(ctx.stream()); sync != cudaSuccess)
        detail::check_cuda(sync, detail::concat(name, " (reported by CUMTL_SYNC=1)").c_str(), __FILE__, __LINE__);
    }
  }

  // The device's default memory pool, given once the release threshold of
  // core/device_pool.hpp: freed blocks stay in the pool up to it, so a
  // steady-state training step does not reach the driver's allocator, and what
  // lies unused beyond it goes back to the driver at the next synchronization,
  // where cuDNN, cuBLAS and other processes can get it.
  static cudaMemPool_t device_pool(int device) {
    static std::mutex mutex;
    static std::vector<cudaMemPool_t> pools;
    const std::lock_guard lock(mutex);
    if (pools.size() <= std::size_t(device)) pools.resize(std::size_t(device) + 1, nullptr);
    if (pools[std::size_t(device)] == nullptr) {
      const detail::PoolReleaseThreshold setting = detail::pool_release_threshold_from_environment();
      cudaDeviceProp properties{};
      CUMTL_CHECK_CUDA(cudaGetDeviceProperties(&properties, device));
      std::uint64_t threshold = setting.bytes_for(properties.totalGlobalMem);
      cudaMemPool_t pool = nullptr;
      CUMTL_CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, device));
      CUMTL_CHECK_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
      pools[std::size_t(device)] = pool;
    }
    return pools[std::size_t(device)];
  }

  // After an allocation failed for want of memory: lets the device catch up,
  // then gives everything the pool holds unused back to the driver, and says
  // whether a second try is worth it. What the pool holds may be in pieces too
  // small for the request, or behind frees still queued on other streams;
  // returned to the driver, it can back the request whole (PyTorch's caching
  // allocator frees its cache and retries for the same reason). The wait is
  // on the failure path only, and is skipped while the stream is captured
  // into a graph, which a synchronization would invalidate.
  static bool release_unused(int device, cudaMemPool_t pool, CUstream_st* stream) {
    (void)cudaGetLastError();  // an out-of-memory is not sticky: clear it before the next checked call
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUMTL_CHECK_CUDA(cudaStreamIsCapturing(stream, &capture));
    if (capture != cudaStreamCaptureStatusNone) return false;
    const detail::DeviceGuard guard(device);
    CUMTL_CHECK_CUDA(cudaDeviceSynchronize());
    CUMTL_CHECK_CUDA(cudaMemPoolTrimTo(pool, 0));
    return true;
  }

  // What a person needs to act on an out-of-memory: the request, what the
  // device has left, and what cumtl's pool holds and keeps.
  static CudaError out_of_memory(std::size_t bytes, int device, cudaMemPool_t pool) {
    (void)cudaGetLastError();
    std::string message =
        detail::concat("allocating ", bytes, " bytes (", detail::byte_count_text(bytes), ") on cuda:", device,
                       " failed: cudaErrorMemoryAllocation (", cudaGetErrorString(cudaErrorMemoryAllocation), ")");
    // The queries are best effort: one that fails leaves its part out rather
    // than hide the out-of-memory behind an error of its own.
    const detail::DeviceGuard guard(device);
    std::size_t free_bytes = 0, total_bytes = 0;
    std::uint64_t used = 0, reserved = 0, threshold = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
      message += detail::concat("; the device has ", detail::byte_count_text(free_bytes), " free of ",
                                detail::byte_count_text(total_bytes));
    if (cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used) == cudaSuccess &&
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved) == cudaSuccess)
      message += detail::concat("; cumtl's memory pool on it has ", detail::byte_count_text(used), " in use and ",
                                detail::byte_count_text(reserved), " reserved");
    std::string hint = "the GPU is out of memory: reduce the batch size or the input size";
    if (cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) == cudaSuccess)
      hint += detail::concat(". The pool keeps up to ", detail::byte_count_text(threshold),
                             " reserved for reuse after a synchronization; a lower ",
                             detail::pool_release_threshold_variable,
                             " (such as 50% or 8GiB) leaves more to cuDNN, cuBLAS and other processes");
    (void)cudaGetLastError();
    return CudaError(int(cudaErrorMemoryAllocation), std::move(message), __FILE__, __LINE__, std::move(hint));
  }

  Operations<float> float_operations_;
  Operations<double> double_operations_;
  HalfOperations<bfloat16_t> bfloat16_operations_;
  HalfOperations<float16_t> float16_operations_;
};

// Never destroyed: contexts and tensors that outlive static destruction (the
// default contexts) still release their CUDA objects through it.
[[maybe_unused]] const bool registered = [] {
  detail::register_cuda_backend(*new Backend);
  return true;
}();

}  // namespace
}  // namespace cumtl::cuda
