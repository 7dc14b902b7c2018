#pragma once
// Launchers of the pooling kernels (nvcc only); same signatures as cpu::.
// Each is one grid-stride launch over its output (the input gradient, for a
// backward pass) on ctx's stream.

#include <algorithm>
#include <cstdint>
#include <limits>

#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/pooling.cuh"

namespace cumtl::cuda {

// Calls launch.template operator()<Index>() with 32-bit indices when every
// offset into a tensor of `largest` elements fits (the grid-stride loop's own
// counter stays 64-bit, so nothing wraps), 64-bit ones otherwise.
template <class Launch>
void with_pool_index(std::int64_t largest, Launch&& launch) {
  if (largest <= std::numeric_limits<std::int32_t>::max())
    launch.template operator()<std::uint32_t>();
  else
    launch.template operator()<std::int64_t>();
}

template <class T>
void max_pool2d_forward(Context& ctx, const kernels::PoolShape& shape, const T* x, T* y, std::int32_t* argmax) {
  const std::int64_t count = kernels::pool_output_count(shape);
  with_pool_index(std::max(count, kernels::pool_input_count(shape)), [&]<class Index>() {
    launch_elementwise(ctx, "cumtl::max_pool2d_forward", kernels::max_pool2d_forward_kernel<T, Index>, count, shape,
                       count, x, y, argmax);
  });
}

template <class T>
void max_pool2d_backward(Context& ctx, const kernels::PoolShape& shape, const T* dy, const std::int32_t* argmax,
                         T* dx) {
  const std::int64_t count = kernels::pool_input_count(shape);
  with_pool_index(std::max(count, kernels::pool_output_count(shape)), [&]<class Index>() {
    launch_elementwise(ctx, "cumtl::max_pool2d_backward", kernels::max_pool2d_backward_kernel<T, Index>, count, shape,
                       count, dy, argmax, dx);
  });
}

template <class T>
void avg_pool2d_forward(Context& ctx, const kernels::PoolShape& shape, const T* x, T* y) {
  const std::int64_t count = kernels::pool_output_count(shape);
  with_pool_index(std::max(count, kernels::pool_input_count(shape)), [&]<class Index>() {
    launch_elementwise(ctx, "cumtl::avg_pool2d_forward", kernels::avg_pool2d_forward_kernel<T, Index>, count, shape,
                       count, x, y);
  });
}

template <class T>
void avg_pool2d_backward(Context& ctx, const kernels::PoolShape& shape, const T* dy, T* dx) {
  const std::int64_t count = kernels::pool_input_count(shape);
  with_pool_index(std::max(count, kernels::pool_output_count(shape)), [&]<class Index>() {
    launch_elementwise(ctx, "cumtl::avg_pool2d_backward", kernels::avg_pool2d_backward_kernel<T, Index>, count, shape,
                       count, dy, dx);
  });
}

template <class T>
void global_avg_pool_forward(Context& ctx, std::int64_t batch, std::int64_t plane, std::int64_t channels, const T* x,
                             T* y) {
  const std::int64_t count = batch * channels;
  with_pool_index(count * plane, [&]<class Index>() {
    launch_elementwise(ctx, "cumtl::global_avg_pool_forward", kernels::global_avg_pool_forward_kernel<T, Index>, count,
                       count, plane, channels, x, y);
  });
}

template <class T>
void global_avg_pool_backward(Context& ctx, std::int64_t batch, std::int64_t plane, std::int64_t channels, const T* dy,
                              T* dx) {
  const std::int64_t count = batch * plane * channels;
  with_pool_index(count, [&]<class Index>() {
    launch_elementwise(ctx, "cumtl::global_avg_pool_backward", kernels::global_avg_pool_backward_kernel<T, Index>,
                       count, count, plane, channels, dy, dx);
  });
}

}  // namespace cumtl::cuda
