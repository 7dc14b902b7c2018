#pragma once
// Compile-time facts shared by every translation unit that includes cumtl.
//
// The public headers are the same for every compiler: they include no CUDA
// header and have no branch on whether CUDA compiles them. The CUDA backend
// is one implementation unit, <cumtl/cuda_backend.cu>, that a program compiles
// once with nvcc; it registers itself at start-up (core/cuda_backend.hpp).

// Math shared by a CUDA kernel and its CPU twin (CUMTL_HOST_DEVICE), and
// whether the kernels themselves are compiled (CUMTL_KERNEL_CODE): by nvcc, and
// by the host compiler in the kernel emulation tests (tests/emulation), which
// emulate CUDA's execution model on the CPU.
#if defined(__CUDACC__)
#define CUMTL_HOST_DEVICE __host__ __device__
#define CUMTL_KERNEL_CODE 1
#elif defined(CUMTL_EMULATE_CUDA)
#include "cumtl_emulation/execution_model.hpp"
#define CUMTL_HOST_DEVICE
#define CUMTL_KERNEL_CODE 1
#else
#define CUMTL_HOST_DEVICE
#endif

#define CUMTL_VERSION_MAJOR 0
#define CUMTL_VERSION_MINOR 1
#define CUMTL_VERSION_PATCH 0
