#pragma once
// Launchers of the random fills (nvcc only); same signatures as cpu::.

#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/random.cuh"

namespace cumtl::cuda {

template <class T>
void uniform(Context& ctx, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T low, T high) {
  launch_elementwise(ctx, "cumtl::uniform", kernels::uniform_kernel<T>, count, out, count, seed, offset, low, high);
}

template <class T>
void normal(Context& ctx, T* out, std::int64_t count, std::uint64_t seed, std::uint64_t offset, T mean, T stddev) {
  launch_elementwise(ctx, "cumtl::normal", kernels::normal_kernel<T>, count, out, count, seed, offset, mean, stddev);
}

}  // namespace cumtl::cuda
