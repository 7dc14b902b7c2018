#pragma once
// What every launcher of ours does around a kernel (nvcc only): a grid sized
// for the device, a profiler range named in cumtl's terms, and a launch check.
//
// Launch errors are checked after every launch. With CUMTL_SYNC=1 in the
// environment the stream is also synchronized after each launch, so a fault
// is reported by the launcher of the kernel that caused it instead of by some
// later call (slow: for debugging only).

#if !defined(__CUDACC__)
#error "cumtl/cuda/launch.hpp is for the CUDA backend's implementation unit, compiled by nvcc"
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "cumtl/core/context.hpp"
#include "cumtl/cuda/cudnn_conv.hpp"
#include "cumtl/cuda/status.hpp"

namespace cumtl::cuda {

inline bool sync_after_launch() {
  static const bool enabled = [] {
    const char* value = std::getenv("CUMTL_SYNC");
    return value != nullptr && std::strcmp(value, "") != 0 && std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

inline void check_launch(Context& ctx, const char* kernel, const char* file, int line) {
  if (const cudaError_t status = cudaGetLastError(); status != cudaSuccess)
    detail::check_cuda(status, detail::concat("launch of ", kernel).c_str(), file, line);
  if (sync_after_launch()) {
    if (const cudaError_t status = cudaStreamSynchronize(ctx.stream()); status != cudaSuccess)
      detail::check_cuda(status, detail::concat(kernel, " (reported by CUMTL_SYNC=1)").c_str(), file, line);
  }
}

// A range on the profiler's timeline under the "cumtl" domain, for the scope.
class ProfileRange {
 public:
  explicit ProfileRange(const char* name) {
    nvtxEventAttributes_t attributes{};
    attributes.version = NVTX_VERSION;
    attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
    attributes.message.ascii = name;
    nvtxDomainRangePushEx(domain(), &attributes);
  }
  ~ProfileRange() { nvtxDomainRangePop(domain()); }
  ProfileRange(const ProfileRange&) = delete;
  ProfileRange& operator=(const ProfileRange&) = delete;

 private:
  static nvtxDomainHandle_t domain() {
    static const nvtxDomainHandle_t handle = nvtxDomainCreateA("cumtl");
    return handle;
  }
};

// The context's cuDNN and cuBLAS handles, created on first use (creating a
// cuDNN handle takes a noticeable time) and bound to the context's stream.
inline cudnnHandle_t cudnn_handle(Context& ctx) {
  CUMTL_REQUIRE(ctx.device().is_cuda(), "a cuDNN handle needs a CUDA context, this one is on ", ctx.device());
  Context::LibraryHandles& handles = ctx.library_handles();
  if (handles.cudnn == nullptr) {
    // Once per process, before cuDNN is first used; a mismatch throws here
    // for every context, never half way into a plan.
    static const bool version_checked = (check_cudnn_version(), true);
    (void)version_checked;
    const detail::DeviceGuard guard(ctx.device().index());
    cudnnHandle_t handle = nullptr;
    CUMTL_CHECK_CUDNN(cudnnCreate(&handle));
    handles.cudnn = handle;
    CUMTL_CHECK_CUDNN(cudnnSetStream(handle, ctx.stream()));
  }
  return static_cast<cudnnHandle_t>(handles.cudnn);
}

// cuBLAS's math mode for a numerics policy. TF32 applies to fp32 products
// only; CUBLAS_DEFAULT_MATH keeps at least the operands' precision throughout.
// Deterministic mode needs no mode of its own: cuBLAS guarantees bit-identical
// results from run to run on GPUs of one architecture and multiprocessor
// count with one toolkit version, as long as one stream is active at a time
// (with several, it may pick other kernels; CUBLAS_WORKSPACE_CONFIG=:4096:8
// restores the guarantee, as PyTorch's determinism notes say). The only
// routines using atomics (symv, hemv) do so after cublasSetAtomicsMode allows
// it, which cumtl never does. CUBLAS_PEDANTIC_MATH is about accuracy, not
// reproducibility, and is not needed for either.
inline cublasMath_t cublas_math_mode(const NumericsPolicy& numerics) {
  return numerics.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
}

// The context's cuBLAS handle, in the math mode of the context's numerics as
// they are now: the policy may change after the handle was created, so every
// use re-reads it.
inline cublasHandle_t cublas_handle(Context& ctx) {
  CUMTL_REQUIRE(ctx.device().is_cuda(), "a cuBLAS handle needs a CUDA context, this one is on ", ctx.device());
  Context::LibraryHandles& handles = ctx.library_handles();
  if (handles.cublas == nullptr) {
    const detail::DeviceGuard guard(ctx.device().index());
    cublasHandle_t handle = nullptr;
    CUMTL_CHECK_CUBLAS(cublasCreate(&handle));
    handles.cublas = handle;
    CUMTL_CHECK_CUBLAS(cublasSetStream(handle, ctx.stream()));
  }
  const auto handle = static_cast<cublasHandle_t>(handles.cublas);
  if (const cublasMath_t mode = cublas_math_mode(ctx.numerics()); handles.cublas_math_mode != int(mode)) {
    CUMTL_CHECK_CUBLAS(cublasSetMathMode(handle, mode));
    handles.cublas_math_mode = int(mode);
  }
  return handle;
}

#define CUMTL_CHECK_LAUNCH(ctx, kernel) ::cumtl::cuda::check_launch((ctx), (kernel), __FILE__, __LINE__)

inline constexpr int elementwise_block = 256;

// Blocks for a grid-stride loop over `count` elements: enough to fill every
// multiprocessor several times over, no more than the elements need.
inline unsigned elementwise_grid(const Context& ctx, std::int64_t count) {
  const std::int64_t needed = (count + elementwise_block - 1) / elementwise_block;
  const std::int64_t resident = std::int64_t(ctx.multiprocessor_count()) * 8;
  return unsigned(std::clamp<std::int64_t>(needed, 1, std::max<std::int64_t>(resident, 1)));
}

// Launches a grid-stride `kernel` over `count` elements on ctx's stream,
// inside a profiler range named `name`, and checks the launch.
template <class... Parameters, class... Arguments>
void launch_elementwise(Context& ctx, const char* name, void (*kernel)(Parameters...), std::int64_t count,
                        Arguments&&... arguments) {
  if (count == 0) return;
  const ProfileRange range(name);
  const detail::DeviceGuard guard(ctx.device().index());
  kernel<<<elementwise_grid(ctx, count), elementwise_block, 0, ctx.stream()>>>(std::forward<Arguments>(arguments)...);
  CUMTL_CHECK_LAUNCH(ctx, name);
}

}  // namespace cumtl::cuda
