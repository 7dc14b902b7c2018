#pragma once
// Status checks for the CUDA runtime, cuDNN and cuBLAS, for the CUDA backend's
// implementation unit (cumtl/cuda_backend.cu) and the tests of its parts. Each
// failed call becomes a typed cumtl error that names the call as written, the
// library's own status name and text, file:line, and a hint where the cause is
// usually the same.

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "cumtl/core/error.hpp"

namespace cumtl::detail {

inline std::string cuda_hint(cudaError_t status) {
  switch (status) {
    case cudaErrorNoDevice:
      return "no CUDA device is visible to this process: check nvidia-smi and CUDA_VISIBLE_DEVICES";
    case cudaErrorInsufficientDriver:
      return "the NVIDIA driver is missing or older than the CUDA " + std::to_string(CUDART_VERSION / 1000) + "." +
             std::to_string(CUDART_VERSION % 1000 / 10) + " runtime cumtl was built with";
    case cudaErrorStubLibrary:
      return "the process loaded the toolkit's stub libcuda.so instead of a real driver; "
             "remove the stubs folder from LD_LIBRARY_PATH";
    case cudaErrorMemoryAllocation: return "the GPU is out of memory: reduce the batch size or the input size";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return "cumtl was compiled for other GPU architectures: configure with "
             "-DCMAKE_CUDA_ARCHITECTURES=<this card's compute capability, e.g. 80, 89 or 90>";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
      return "a kernel faulted; run with CUMTL_SYNC=1 to find which, or under compute-sanitizer";
    default: return {};
  }
}

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) [[likely]]
    return;
  // Clears a non-sticky error so that the next unrelated call does not report it again.
  (void)cudaGetLastError();
  throw CudaError(int(status),
                  concat(call, " failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ")"), file,
                  line, cuda_hint(status));
}

inline void check_cudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
  if (status == CUDNN_STATUS_SUCCESS) [[likely]]
    return;
  char detail[1024] = {};
  cudnnGetLastErrorString(detail, sizeof detail);
  std::string message = concat(call, " failed: ", cudnnGetErrorString(status));
  if (detail[0] != '\0') message += concat(" (", detail, ")");
  std::string hint;
  if (status == CUDNN_STATUS_NOT_SUPPORTED || status == CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH)
    hint =
        "no cuDNN engine supports this configuration; set CUDNN_LOGLEVEL_DBG=2 and "
        "CUDNN_LOGDEST_DBG=stderr to see why each engine refused";
  throw CudnnError(int(status), std::move(message), file, line, std::move(hint));
}

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) [[likely]]
    return;
  std::string hint;
  if (status == CUBLAS_STATUS_NOT_INITIALIZED)
    hint = "cuBLAS could not start: usually no usable GPU, or the GPU is out of memory";
  throw CublasError(int(status),
                    concat(call, " failed: ", cublasGetStatusName(status), " (", cublasGetStatusString(status), ")"),
                    file, line, std::move(hint));
}

}  // namespace cumtl::detail

#define CUMTL_CHECK_CUDA(call) ::cumtl::detail::check_cuda((call), #call, __FILE__, __LINE__)
#define CUMTL_CHECK_CUDNN(call) ::cumtl::detail::check_cudnn((call), #call, __FILE__, __LINE__)
#define CUMTL_CHECK_CUBLAS(call) ::cumtl::detail::check_cublas((call), #call, __FILE__, __LINE__)
