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
#include "cumtl/cuda/activation.cuh"
#include "cumtl/cuda/batchnorm.cuh"
#include "cumtl/cuda/cudnn_graph.hpp"
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
template <class T>
class Operations final : public detail::CudaOperations<T> {
 public:
  void fill(Context& ctx, T* out, std::int64_t count, T value) override { cuda::fill<T>(ctx, out, count, value); }
  void scale(Context& ctx, T* x, std::int64_t count, T alpha) override { cuda::scale<T>(ctx, x, count, alpha); }
  void axpy(Context& ctx, std::int64_t count, T alpha, const T* x, T* y) override {
    cuda::axpy<T>(ctx, count, alpha, x, y);
  }
  void add(Context& ctx, std::int64_t count, const T* a, const T* b, T* out) override {
    cuda::add<T>(ctx, count, a, b, out);
  }
  void uniform(Context& ctx, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T low,
               T high) override {
    cuda::uniform<T>(ctx, out, count, seed, offset, low, high);
  }
  void normal(Context& ctx, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T mean,
              T stddev) override {
    cuda::normal<T>(ctx, out, count, seed, offset, mean, stddev);
  }
  void relu_forward(Context& ctx, std::int64_t count, const T* x, T* y) override {
    cuda::relu_forward<T>(ctx, count, x, y);
  }
  void relu_backward(Context& ctx, std::int64_t count, const T* dy, const T* y, T* dx) override {
    cuda::relu_backward<T>(ctx, count, dy, y, dx);
  }
  void dropout(Context& ctx, std::int64_t count, std::uint64_t seed, std::uint64_t offset, double p, T scale,
               const T* x, T* y) override {
    cuda::dropout<T>(ctx, count, seed, offset, p, scale, x, y);
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
  void batchnorm_forward_train(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x, const T* gamma,
                               const T* beta, const T* residual, Activation activation, double momentum, double eps,
                               T* running_mean, T* running_var, T* saved_mean, T* saved_invstd, T* y) override {
    cuda::batchnorm_forward_train<T>(ctx, rows, channels, x, gamma, beta, residual, activation, momentum, eps,
                                     running_mean, running_var, saved_mean, saved_invstd, y);
  }
  void batchnorm_forward_eval(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x, const T* gamma,
                              const T* beta, const T* residual, Activation activation, double eps,
                              const T* running_mean, const T* running_var, T* y) override {
    cuda::batchnorm_forward_eval<T>(ctx, rows, channels, x, gamma, beta, residual, activation, eps, running_mean,
                                    running_var, y);
  }
  void batchnorm_backward(Context& ctx, std::int64_t rows, std::int64_t channels, const T* dy, const T* x, const T* y,
                          const T* gamma, const T* saved_mean, const T* saved_invstd, Activation activation, T* dx,
                          T* dresidual, T* dgamma, T* dbeta, GradientMode mode) override {
    cuda::batchnorm_backward<T>(ctx, rows, channels, dy, x, y, gamma, saved_mean, saved_invstd, activation, dx,
                                dresidual, dgamma, dbeta, mode);
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
  void multitask_loss(Context& ctx, const kernels::LossHeadTable& table, std::int64_t rows, const T* logits,
                      const std::int32_t* classes, const std::int8_t* binary, const T* positive_weights, T* gradient,
                      const kernels::LossOutputs<T>& outputs) override {
    cuda::multitask_loss<T>(ctx, table, rows, logits, classes, binary, positive_weights, gradient, outputs);
  }
  void sgd_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* buffer, const T* mask,
                  const SgdStep& step) override {
    cuda::sgd_update<T>(ctx, count, values, gradients, buffer, mask, step);
  }
  void adamw_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* m, T* v, const T* mask,
                    const AdamWStep& step) override {
    cuda::adamw_update<T>(ctx, count, values, gradients, m, v, mask, step);
  }
  void normalize_images(Context& ctx, std::int64_t count, int channels, const std::uint8_t* pixels,
                        const kernels::ChannelAffine<T>& affine, T* out) override {
    cuda::normalize_images<T>(ctx, count, channels, pixels, affine, out);
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
    void* data = nullptr;
    const cudaError_t status = cudaMallocFromPoolAsync(&data, bytes, device_pool(device), stream);
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

  void conv_forward(Context& ctx, const ConvShape& shape, const float* x, const float* w, float* y) override {
    cuda::conv_forward(ctx, shape, numerics(ctx), x, w, y);
  }
  void conv_backward_data(Context& ctx, const ConvShape& shape, const float* dy, const float* w, float* dx) override {
    cuda::conv_backward_data(ctx, shape, numerics(ctx), dy, w, dx);
  }
  void conv_backward_filter(Context& ctx, const ConvShape& shape, const float* x, const float* dy, float* dw,
                            GradientMode mode) override {
    cuda::conv_backward_filter(ctx, shape, numerics(ctx), x, dy, dw, 1.0f,
                               mode == GradientMode::accumulate ? 1.0f : 0.0f);
  }

 private:
  static ConvNumerics numerics(const Context& ctx) {
    return {.allow_tf32 = ctx.numerics().allow_tf32, .deterministic = ctx.numerics().deterministic};
  }

  // The device's default memory pool, told once to keep what is freed, so a
  // steady-state training step never reaches the driver's allocator.
  static cudaMemPool_t device_pool(int device) {
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

  Operations<float> float_operations_;
  Operations<double> double_operations_;
};

// Never destroyed: contexts and tensors that outlive static destruction (the
// default contexts) still release their CUDA objects through it.
[[maybe_unused]] const bool registered = [] {
  detail::register_cuda_backend(*new Backend);
  return true;
}();

}  // namespace
}  // namespace cumtl::cuda
