#pragma once
// CPU twins of the pooling kernels (kernels/pooling.cuh): the same per-element
// functions in plain loops, so forward and backward equal the GPU's bit for
// bit. Same signatures as the cuda:: launchers; the facades in ops/pooling.hpp
// check the shapes.

#include <cstdint>

#include "cumtl/core/context.hpp"
#include "cumtl/kernels/pooling.cuh"

namespace cumtl::cpu {

template <class T>
void max_pool2d_forward(Context&, const kernels::PoolShape& shape, const T* x, T* y, std::int32_t* argmax) {
  const std::int64_t count = kernels::pool_output_count(shape);
  for (std::int64_t i = 0; i < count; ++i) {
    const kernels::PoolMax<T> best = kernels::max_pool2d_forward_element(i, shape, x);
    y[i] = best.value;
    argmax[i] = best.index;
  }
}

template <class T>
void max_pool2d_backward(Context&, const kernels::PoolShape& shape, const T* dy, const std::int32_t* argmax, T* dx) {
  const std::int64_t count = kernels::pool_input_count(shape);
  for (std::int64_t i = 0; i < count; ++i) dx[i] = kernels::max_pool2d_backward_element(i, shape, dy, argmax);
}

template <class T>
void avg_pool2d_forward(Context&, const kernels::PoolShape& shape, const T* x, T* y) {
  const std::int64_t count = kernels::pool_output_count(shape);
  for (std::int64_t i = 0; i < count; ++i) y[i] = kernels::avg_pool2d_forward_element(i, shape, x);
}

template <class T>
void avg_pool2d_backward(Context&, const kernels::PoolShape& shape, const T* dy, T* dx) {
  const std::int64_t count = kernels::pool_input_count(shape);
  for (std::int64_t i = 0; i < count; ++i) dx[i] = kernels::avg_pool2d_backward_element(i, shape, dy);
}

// x is [batch, plane, channels] (plane = H·W), y is [batch, channels].
template <class T>
void global_avg_pool_forward(Context&, std::int64_t batch, std::int64_t plane, std::int64_t channels, const T* x,
                             T* y) {
  const std::int64_t count = batch * channels;
  for (std::int64_t i = 0; i < count; ++i) y[i] = kernels::global_avg_pool_forward_element(i, plane, channels, x);
}

template <class T>
void global_avg_pool_backward(Context&, std::int64_t batch, std::int64_t plane, std::int64_t channels, const T* dy,
                              T* dx) {
  const std::int64_t count = batch * plane * channels;
  for (std::int64_t i = 0; i < count; ++i) dx[i] = kernels::global_avg_pool_backward_element(i, plane, channels, dy);
}

}  // namespace cumtl::cpu
