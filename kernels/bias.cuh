#pragma once
// Bias kernels for row-major [rows, columns] activations (a linear layer's
// [N, out], or a convolution's NHWC output seen as [N·P·Q, K]): adding a bias
// to every row, and summing a gradient over rows. Columns are the fastest
// index, so consecutive threads take consecutive columns (coalesced); the
// gradient sum gives each thread one column and walks the rows in order, which
// is deterministic and, with one read per element, memory-bound.

#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/kernels/grid.cuh"

namespace cumtl::kernels {

#if defined(__CUDACC__)
template <class T>
__global__ void add_bias_kernel(std::int64_t count, std::int64_t columns, const T* __restrict__ bias,
                                T* __restrict__ y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] += bias[i % columns];
}

// bias_gradient[c] = (accumulate ? bias_gradient[c] : 0) + Σ_rows dy[row, c]
template <class T>
__global__ void bias_gradient_kernel(std::int64_t columns, std::int64_t rows, const T* __restrict__ dy,
                                     T* __restrict__ bias_gradient, bool accumulate) {
  CUMTL_GRID_STRIDE_LOOP(column, columns) {
    T sum = 0;
    for (std::int64_t row = 0; row < rows; ++row) sum += dy[row * columns + column];
    bias_gradient[column] = accumulate ? bias_gradient[column] + sum : sum;
  }
}
#endif

}  // namespace cumtl::kernels
