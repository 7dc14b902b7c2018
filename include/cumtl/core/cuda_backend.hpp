#pragma once
// The table through which every translation unit reaches the GPU.
//
// All device code (kernels, launchers, cuDNN and cuBLAS calls) lives in one
// implementation unit, <cumtl/cuda_backend.cu>, that a program compiles once
// with nvcc and links. At start-up it registers a CudaBackend: the CUDA
// runtime services the core needs (streams, events, memory) and the CUDA twin
// of every operation, per scalar type. Any other file, whatever compiled it,
// sees the same types and calls the GPU through this table, so a Tensor made
// in a g++-compiled file can be used by a .cu file and back. A program built
// without the implementation unit has no backend: asking for a CUDA device
// there fails with an Error that says how to link it.
//
// CUDA's handle types appear only as the incomplete structs they point to
// (cudaStream_t is CUstream_st*), so no CUDA header is needed here.

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cumtl/core/conv_shape.hpp"
#include "cumtl/core/dtype.hpp"
#include "cumtl/core/error.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/core/sums_over_ranks.hpp"
#include "cumtl/kernels/multitask_loss.cuh"
#include "cumtl/kernels/optimizer.cuh"
#include "cumtl/kernels/pooling.cuh"
#include "cumtl/kernels/preprocess.cuh"

struct CUstream_st;  // cudaStream_t
struct CUevent_st;   // cudaEvent_t

namespace cumtl {

class Context;

namespace detail {

// The CUDA twins of the operations in ops/ for one scalar type: the same
// names and arguments as their CPU twins in cpu/ (the CUMTL_DISPATCH macro
// calls one or the other), documented with the facades that call them.
//
// The operations that run in every activation type: float and double, and the
// 2-byte bfloat16_t and float16_t of mixed precision.
template <class T>
class CudaActivationTypeOperations {
 public:
  virtual ~CudaActivationTypeOperations() = default;

  virtual void add(Context& ctx, std::int64_t count, const T* a, const T* b, T* out) = 0;
  virtual void relu_forward(Context& ctx, std::int64_t count, const T* x, T* y) = 0;
  virtual void relu_backward(Context& ctx, std::int64_t count, const T* dy, const T* y, T* dx) = 0;
  virtual void dropout(Context& ctx, std::int64_t count, std::uint64_t seed, std::uint64_t offset, double p,
                       compute_t<T> scale, const T* x, T* y) = 0;
  // preprocessing
  virtual void normalize_images(Context& ctx, std::int64_t count, int channels, const std::uint8_t* pixels,
                                const kernels::ChannelAffine<compute_t<T>>& affine, T* out) = 0;
  // pooling
  virtual void max_pool2d_forward(Context& ctx, const kernels::PoolShape& shape, const T* x, T* y,
                                  std::int32_t* argmax) = 0;
  virtual void max_pool2d_backward(Context& ctx, const kernels::PoolShape& shape, const T* dy,
                                   const std::int32_t* argmax, T* dx) = 0;
  virtual void avg_pool2d_forward(Context& ctx, const kernels::PoolShape& shape, const T* x, T* y) = 0;
  virtual void avg_pool2d_backward(Context& ctx, const kernels::PoolShape& shape, const T* dy, T* dx) = 0;
  virtual void global_avg_pool_forward(Context& ctx, std::int64_t batch, std::int64_t plane, std::int64_t channels,
                                       const T* x, T* y) = 0;
  virtual void global_avg_pool_backward(Context& ctx, std::int64_t batch, std::int64_t plane, std::int64_t channels,
                                        const T* dy, T* dx) = 0;
  // linear
  virtual void add_bias(Context& ctx, std::int64_t rows, std::int64_t columns, const T* bias, T* y) = 0;
  virtual void bias_gradient(Context& ctx, std::int64_t rows, std::int64_t columns, const T* dy, T* bias_gradient,
                             GradientMode mode) = 0;
  virtual void linear_forward(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* x,
                              const T* weight, T* y) = 0;
  virtual void linear_backward_data(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy,
                                    const T* weight, T* dx) = 0;
  virtual void linear_backward_weight(Context& ctx, std::int64_t n, std::int64_t in, std::int64_t out, const T* dy,
                                      const T* x, T* dweight, GradientMode mode) = 0;
  // batch norm: the parameters and statistics of compute_t<T>
  virtual void batchnorm_forward_train(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                                       const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                                       Activation activation, double momentum, double eps, compute_t<T>* running_mean,
                                       compute_t<T>* running_var, compute_t<T>* saved_mean, compute_t<T>* saved_invstd,
                                       T* y, const ChannelSumsOverRanks* sum_over_ranks) = 0;
  virtual void batchnorm_forward_eval(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                                      const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                                      Activation activation, double eps, const compute_t<T>* running_mean,
                                      const compute_t<T>* running_var, T* y) = 0;
  virtual void batchnorm_backward(Context& ctx, std::int64_t rows, std::int64_t channels, const T* dy, const T* x,
                                  const T* y, const compute_t<T>* gamma, const compute_t<T>* saved_mean,
                                  const compute_t<T>* saved_invstd, Activation activation, T* dx, T* dresidual,
                                  compute_t<T>* dgamma, compute_t<T>* dbeta, GradientMode mode,
                                  const ChannelSumsOverRanks* sum_over_ranks) = 0;
  // the multi-task loss: positive weights and losses of compute_t<T>
  virtual void multitask_loss(Context& ctx, const kernels::LossHeadTable& table, std::int64_t rows, const T* logits,
                              const std::int32_t* classes, const std::int8_t* binary,
                              const compute_t<T>* positive_weights, T* gradient,
                              const kernels::LossOutputs<compute_t<T>>& outputs) = 0;
};

// Those and the rest, for float and double.
template <class T>
class CudaOperations : public CudaActivationTypeOperations<T> {
 public:
  // elementwise
  virtual void fill(Context& ctx, T* out, std::int64_t count, T value) = 0;
  virtual void scale(Context& ctx, T* x, std::int64_t count, T alpha) = 0;
  virtual void axpy(Context& ctx, std::int64_t count, T alpha, const T* x, T* y) = 0;
  virtual void find_nonfinite(Context& ctx, std::int64_t count, const T* x, std::int32_t* flag) = 0;
  virtual void to_half(Context& ctx, std::int64_t count, const T* x, ScalarType half, std::uint16_t* y) = 0;
  virtual void from_half(Context& ctx, std::int64_t count, ScalarType half, const std::uint16_t* x, T* y) = 0;
  // random
  virtual void uniform(Context& ctx, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T low,
                       T high) = 0;
  virtual void normal(Context& ctx, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T mean,
                      T stddev) = 0;
  // optimizers
  virtual void sgd_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* buffer, const T* mask,
                          const SgdStep& step, ScalarType working_type, std::uint16_t* working) = 0;
  virtual void adamw_update(Context& ctx, std::int64_t count, T* values, const T* gradients, T* m, T* v, const T* mask,
                            const AdamWStep& step, ScalarType working_type, std::uint16_t* working) = 0;
};

class CudaBackend {
 public:
  virtual ~CudaBackend() = default;

  // Devices. device_count() answers 0 with `reason` set when no GPU is usable.
  virtual int device_count(std::string& reason) const = 0;
  virtual std::string device_name(int device) const = 0;
  virtual int multiprocessor_count(int device) const = 0;
  // major * 10 + minor, as in sm_90.
  virtual int compute_capability(int device) const = 0;
  // The versions of the CUDA runtime and driver, cuDNN and cuBLAS in use.
  virtual std::string versions() const = 0;
  virtual int current_device() const = 0;
  virtual void set_device(int device) const = 0;

  // Streams and events; destroy_* run in destructors and report nothing.
  virtual CUstream_st* create_stream(int device) const = 0;
  virtual void destroy_stream(CUstream_st* stream) const noexcept = 0;
  virtual void synchronize(CUstream_st* stream) const = 0;
  // `timing`: elapsed_milliseconds() can measure between two such events.
  virtual CUevent_st* create_event(int device, bool timing) const = 0;
  virtual void destroy_event(CUevent_st* event) const noexcept = 0;
  virtual void record_event(CUevent_st* event, CUstream_st* stream) const = 0;
  // The stream waits (on the device) until the event has happened.
  virtual void wait_event(CUstream_st* stream, CUevent_st* event) const = 0;
  // The host waits.
  virtual void synchronize_event(CUevent_st* event) const = 0;
  virtual float elapsed_milliseconds(CUevent_st* start, CUevent_st* stop) const = 0;

  // Memory: stream-ordered blocks from the device's pool, pinned host blocks,
  // and asynchronous copies and byte fills on a stream.
  virtual void* allocate(std::size_t bytes, int device, CUstream_st* stream) const = 0;
  virtual void free(void* data, CUstream_st* stream) const noexcept = 0;
  virtual void* allocate_pinned(std::size_t bytes) const = 0;
  virtual void free_pinned(void* data) const noexcept = 0;
  virtual void copy(void* destination, const void* source, std::size_t bytes, CUstream_st* stream) const = 0;
  virtual void fill_bytes(void* destination, int value, std::size_t bytes, CUstream_st* stream) const = 0;

  // The cuDNN and cuBLAS handles a context creates on first use.
  virtual void destroy_library_handles(void* cudnn, void* cublas) const noexcept = 0;

  // Operations.
  virtual CudaOperations<float>& float_operations() = 0;
  virtual CudaOperations<double>& double_operations() = 0;
  virtual CudaActivationTypeOperations<bfloat16_t>& bfloat16_operations() = 0;
  virtual CudaActivationTypeOperations<float16_t>& float16_operations() = 0;
  // Convolutions through cuDNN on tensors of `type` (float32, bfloat16 or
  // float16), with TF32 and determinism from ctx.numerics().
  virtual void conv_forward(Context& ctx, const ConvShape& shape, ScalarType type, const void* x, const void* w,
                            void* y) = 0;
  virtual void conv_backward_data(Context& ctx, const ConvShape& shape, ScalarType type, const void* dy, const void* w,
                                  void* dx) = 0;
  virtual void conv_backward_filter(Context& ctx, const ConvShape& shape, ScalarType type, const void* x,
                                    const void* dy, void* dw, GradientMode mode) = 0;
};

// The registered backend; null in a program without the implementation unit.
inline CudaBackend*& registered_cuda_backend() noexcept {
  static CudaBackend* backend = nullptr;
  return backend;
}

// Called by the implementation unit during static initialization.
inline void register_cuda_backend(CudaBackend& backend) noexcept {
  registered_cuda_backend() = &backend;
}

inline constexpr const char* cuda_backend_missing_hint =
    "compile <cumtl/cuda_backend.cu> once with nvcc and link it into the program: with CMake, configure cumtl "
    "with CUMTL_CUDA=ON (or AUTO, with the CUDA toolkit and cuDNN installed) and link cumtl::cumtl";

// The backend, or an Error saying the program was built without it.
inline CudaBackend& cuda_backend() {
  CudaBackend* backend = registered_cuda_backend();
  if (backend == nullptr)
    throw Error("this program has no CUDA backend: it was built without <cumtl/cuda_backend.cu>", __FILE__, __LINE__,
                cuda_backend_missing_hint);
  return *backend;
}

// CudaOperations<T> for float and double, CudaActivationTypeOperations<T> for the 2-byte types.
template <class T>
auto& cuda_operations() {
  if constexpr (std::is_same_v<T, float>)
    return cuda_backend().float_operations();
  else if constexpr (std::is_same_v<T, double>)
    return cuda_backend().double_operations();
  else if constexpr (std::is_same_v<T, bfloat16_t>)
    return cuda_backend().bfloat16_operations();
  else if constexpr (std::is_same_v<T, float16_t>)
    return cuda_backend().float16_operations();
  else
    static_assert(sizeof(T) == 0, "the CUDA backend has operations on float, double, bfloat16 and float16 tensors");
}

}  // namespace detail

// Whether this program links the CUDA backend (cuda_available() says whether
// a GPU can be used as well).
inline bool cuda_backend_linked() noexcept {
  return detail::registered_cuda_backend() != nullptr;
}

}  // namespace cumtl
