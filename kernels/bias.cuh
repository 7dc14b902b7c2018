#pragma once
// Bias kernels for row-major [rows, columns] activations (a linear layer's
// [N, out], or a convolution's NHWC output seen as [N·P·Q, K]): adding a bias
// to every row, and summing a gradient over rows.
//
// Adding is elementwise: consecutive threads take consecutive elements.
//
// The gradient is a sum down each column, over few rows for a linear head
// (64 × 7) and very many for a convolution with bias (8·56·56 = 25,088 rows ×
// 64), so the rows are split among blocks. A block of 256 threads is TX
// columns × TY rows (TX = min(32, columns rounded up to a power of two), TY =
// 256 / TX): a warp reads TX consecutive columns of 32/TX consecutive rows, one
// coalesced access even for 7 columns. The grid is column tiles × row blocks,
// and a row block owns a fixed run of rows (no more row blocks than leave each
// thread 16 rows, so the partials below add a few percent to the traffic at
// most). The input is read once: the kernels are memory-bound.
//
// Summation order. Every step is fixed by the shape and the device (its
// multiprocessor count and the kernels' occupancy on it), with no atomics, so
// two runs on one GPU agree to the bit:
//   1. thread (tx, ty) of row block b adds rows b·R + ty, b·R + ty + TY, ...
//      of its column in that order, in double;
//   2. the block's TY sums of a column are added in a fixed binary tree over
//      ty, in double;
//   3. with one row block that is the column's sum; otherwise each row block
//      writes it to the workspace, and the finishing kernel adds a column's
//      partials the same way (thread ty takes blocks ty, ty + TY, ... in order,
//      then the same tree);
//   4. the sum, plus the old gradient when accumulating, is rounded to T once.
// The result is thus the exact sum to within double rounding (under
// rows·2⁻⁵³·Σ|dy|), rounded once to T. The CPU twin (cpu/linear.hpp) adds the
// rows one after another in T, which is within (rows − 1)·ε_T·Σ|dy| of the
// exact sum (recursive summation's bound); that is the tolerance between the
// two, with ε_T·|sum| for the GPU's own rounding.
//
// bf16 and f16 (mixed precision) add in float and sum in double as above; the
// CPU twin sums in float. Each result is rounded to the 2-byte type once.

#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/core/half.hpp"
#include "cumtl/kernels/elementwise.cuh"
#include "cumtl/kernels/grid.cuh"

namespace cumtl::kernels {

// A bias gradient element from its column's sum: replaced, or added to (never
// read when replaced, so an uninitialized old value does not leak in).
template <class T>
CUMTL_HOST_DEVICE inline void bias_gradient_store(T& out, double sum, bool accumulate) {
  using C = compute_t<T>;
  out = T(C(accumulate ? double(C(out)) + sum : sum));
}

#if defined(CUMTL_KERNEL_CODE)
template <class T>
__global__ void add_bias_kernel(std::int64_t count, std::int64_t columns, const T* __restrict__ bias,
                                T* __restrict__ y) {
  CUMTL_GRID_STRIDE_LOOP(i, count) y[i] = add_element(y[i], bias[i % columns]);
}

inline constexpr int bias_gradient_threads = 256;

// Sums values[ty·TX + tx] over ty into values[tx] in a fixed tree (TY a power
// of two); every thread of the block must call it, after writing its value.
__device__ inline void bias_gradient_sum_columns(double* values) {
  const int slot = int(threadIdx.y * blockDim.x + threadIdx.x);
  __syncthreads();
  for (int width = int(blockDim.y) / 2; width > 0; width /= 2) {
    if (int(threadIdx.y) < width) values[slot] += values[slot + width * int(blockDim.x)];
    __syncthreads();
  }
}

// Steps 1 and 2: the sum of dy over the rows of row block blockIdx.y, per
// column of the tile. With one row block it is stored into bias_gradient,
// otherwise into partials[row block · columns + column].
template <class T>
__global__ void __launch_bounds__(bias_gradient_threads)
    bias_gradient_rows_kernel(std::int64_t rows, std::int64_t columns, std::int64_t rows_per_block,
                              const T* __restrict__ dy, double* __restrict__ partials, T* __restrict__ bias_gradient,
                              bool accumulate) {
  __shared__ double sums[bias_gradient_threads];
  const std::int64_t column = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t begin = std::int64_t(blockIdx.y) * rows_per_block;
  const std::int64_t end = begin + rows_per_block < rows ? begin + rows_per_block : rows;
  double sum = 0;
  if (column < columns) {
#pragma unroll 4
    for (std::int64_t row = begin + threadIdx.y; row < end; row += blockDim.y)
      sum += double(compute_t<T>(dy[row * columns + column]));
  }
  sums[threadIdx.y * blockDim.x + threadIdx.x] = sum;
  bias_gradient_sum_columns(sums);
  if (threadIdx.y != 0 || column >= columns) return;
  if (gridDim.y == 1)
    bias_gradient_store(bias_gradient[column], sums[threadIdx.x], accumulate);
  else
    partials[std::int64_t(blockIdx.y) * columns + column] = sums[threadIdx.x];
}

// Step 3: per column, its row_blocks partials added in a fixed order, then stored.
template <class T>
__global__ void __launch_bounds__(bias_gradient_threads)
    bias_gradient_finish_kernel(std::int64_t columns, std::int64_t row_blocks, const double* __restrict__ partials,
                                T* __restrict__ bias_gradient, bool accumulate) {
  __shared__ double sums[bias_gradient_threads];
  const std::int64_t column = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  double sum = 0;
  if (column < columns)
    for (std::int64_t block = threadIdx.y; block < row_blocks; block += blockDim.y)
      sum += partials[block * columns + column];
  sums[threadIdx.y * blockDim.x + threadIdx.x] = sum;
  bias_gradient_sum_columns(sums);
  if (threadIdx.y == 0 && column < columns) bias_gradient_store(bias_gradient[column], sums[threadIdx.x], accumulate);
}
#endif

}  // namespace cumtl::kernels
