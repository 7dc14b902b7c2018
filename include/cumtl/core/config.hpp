#pragma once
// Compile-time facts shared by every translation unit that includes cumtl.
//
// The public headers are the same for every compiler: they include no CUDA
// header and have no branch on whether CUDA compiles them. The CUDA backend
// is one implementation unit, <cumtl/cuda_backend.cu>, that a program compiles
// once with nvcc; it registers itself at start-up (core/cuda_backend.hpp).

// Math shared by a CUDA kernel and its CPU twin.
#if defined(__CUDACC__)
#define CUMTL_HOST_DEVICE __host__ __device__
#else
#define CUMTL_HOST_DEVICE
#endif

#define CUMTL_VERSION_MAJOR 0
#define CUMTL_VERSION_MINOR 1
#define CUMTL_VERSION_PATCH 0
