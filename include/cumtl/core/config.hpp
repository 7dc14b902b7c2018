#pragma once
// Compile-time facts about the translation unit that includes cumtl.
//
// The CUDA backend is compiled into a translation unit only when nvcc compiles
// it: host compilers never see CUDA headers, so the CPU backend builds with any
// C++20 compiler and no toolkit. Everything cumtl declares lives in an inline
// namespace named after that choice (cumtl::with_cuda or cumtl::cpu_only), so a
// program that links translation units of both kinds gets two distinct sets of
// types and functions instead of a silent One Definition Rule violation: a
// Tensor made in one cannot be handed to the other, and the linker says so.

#if defined(__CUDACC__) && !defined(CUMTL_DISABLE_CUDA)
#define CUMTL_HAS_CUDA 1
#define CUMTL_ABI with_cuda
#else
#define CUMTL_HAS_CUDA 0
#define CUMTL_ABI cpu_only
#endif

// Math shared by a CUDA kernel and its CPU twin.
#if defined(__CUDACC__)
#define CUMTL_HOST_DEVICE __host__ __device__
#else
#define CUMTL_HOST_DEVICE
#endif

#define CUMTL_VERSION_MAJOR 0
#define CUMTL_VERSION_MINOR 1
#define CUMTL_VERSION_PATCH 0
