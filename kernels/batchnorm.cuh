#pragma once
// Batch normalization over NHWC activations, with an optional residual add and
// an optional ReLU fused into the output, and its backward pass.
//
// Layout. x is M×C row-major (M = N·H·W rows, channels fastest), so a warp
// reading 32 consecutive channels of one row is one coalesced access. Every
// kernel uses the same tile: a block of 256 threads is TX channels × TY rows
// (TX = min(32, C rounded up to a power of two), TY = 256 / TX), so for small C
// a warp still covers a contiguous run of rows × channels instead of idling
// 29 lanes. The grid is channel tiles × row blocks; a block owns a fixed range
// of rows, and a thread walks it with stride TY, keeping its channel (and
// that channel's coefficients) in registers for the whole loop.
//
// Passes (E = M·C elements of T; P row blocks, P × channel tiles ≈ one wave of resident blocks):
//   forward train   1. statistics: reads x (E·T); one (mean, M2) partial per
//                      row block and channel, in double (P·C·16 bytes);
//                   2. finish:    per channel, combines the P partials in a fixed
//                      order, writes saved mean/invstd and the running statistics;
//                   3. apply:     reads x (+ residual), writes y: 2E·T (3E·T).
//   forward eval    3 only, with the running statistics.
//   backward        4. reduce:    reads dy, x (+ y for ReLU): 2E·T (3E·T); one
//                      (Σdpre, Σdpre·(x−mean)) partial per row block and channel;
//                   5. finish:    per channel, sums the partials in a fixed order,
//                      writes dgamma and dbeta (overwritten or accumulated);
//                   6. apply:     reads dy, x (+ y), writes dx (+ dresidual):
//                      3E·T to 5E·T.
// So a forward train moves 3E·T (4E·T with a residual) and a backward 5E·T to
// 8E·T, plus O(P·C) doubles; the statistics cannot be fused into the apply
// because every output needs the whole batch's mean first.
//
// Synchronized over data-parallel ranks, pass 2 becomes: this rank's moments
// (BatchnormRankMoments), a sum of [Σx | count] over the ranks, each channel's
// m2 merged with the whole mean, a sum of the m2s, the statistics stored; and
// pass 5's sums are summed over the ranks before pass 6. Every step is per
// channel: O(C) doubles, the same values and layout as the CPU twin's.
//
// Numerics. A thread sums (x − K) and (x − K)² in double with K its first
// value (the shifted-data algorithm): since K is one of the values, the
// cancellation in M2 = Σ(x−K)² − (Σ(x−K))²/n is bounded by a factor n (the
// thread's rows), never by mean²/variance as with E[x²] − E[x]². Threads are
// merged with Chan's formula in a fixed tree, row blocks with the two-step sum
// (mean first, then M2 + n·(mean_b − mean)², all terms non-negative). No
// floating-point atomics: a run on one device is bit-identical to the next.
// The elementwise applies run in T with per-channel coefficients computed in
// double; x − mean is formed before scaling, so a large mean does not cancel.
// Forward normalizes with saved_mean and saved_invstd as stored in P, the very
// values backward reads, so backward differentiates exactly what forward did.
//
// Precision. The activations (x, residual, y, dy, dx, dresidual) are of T;
// the parameters, statistics and their gradients (γ, β, the running and saved
// statistics, dγ, dβ) of P = compute_t<T>: T itself for float and double,
// float for the 2-byte bf16 and f16 of mixed precision. A 2-byte element is
// widened, computed in float, and rounded once at the output (y, dx), so the
// 2-byte twins are the float twins on the same inputs with one rounding; the
// byte counts above halve for the activations.

#include <cmath>
#include <cstdint>

#include "cumtl/core/config.hpp"
#include "cumtl/core/half.hpp"
#include "cumtl/kernels/grid.cuh"

namespace cumtl::kernels {

// Count, mean and sum of squared deviations of a set of values.
struct BatchnormMoments {
  double count;
  double mean;
  double m2;
};

// What the statistics pass leaves per (row block, channel); the count follows from the row block.
struct BatchnormPartialMoments {
  double mean;
  double m2;
};

// What the backward reduce leaves per (row block, channel): Σ dpre and Σ dpre·(x − mean).
struct BatchnormPartialGradient {
  double dpre;
  double dpre_centered;
};

// Per channel, the backward's reductions: Σ dpre (= dbeta) and Σ dpre·x̂ (= dgamma).
struct BatchnormChannelGradient {
  double dbeta;
  double dgamma;
};

// Where a channel's normalization comes from: the batch (mean and invstd saved
// by the statistics pass) or running statistics (mean and variance, with eps).
template <class T>
struct BatchnormNormalization {
  const T* mean;
  const T* invstd;    // set in training
  const T* variance;  // set in evaluation
  double eps;
};

// pre = (x − mean)·scale + shift for one channel.
template <class T>
struct BatchnormAffine {
  T mean;
  T scale;
  T shift;
};

// dx = scale·(dpre − mean_dpre − x̂·mean_dpre_xhat), x̂ = (x − mean)·invstd, for one channel.
template <class T>
struct BatchnormGradientAffine {
  T mean;
  T invstd;
  T scale;
  T mean_dpre;
  T mean_dpre_xhat;
};

// Rows [b·rows_per_block, min(rows, (b+1)·rows_per_block)) belong to row block b.
CUMTL_HOST_DEVICE inline std::int64_t batchnorm_block_rows(std::int64_t block, std::int64_t rows,
                                                           std::int64_t rows_per_block) {
  const std::int64_t begin = block * rows_per_block;
  const std::int64_t end = begin + rows_per_block < rows ? begin + rows_per_block : rows;
  return end > begin ? end - begin : 0;
}

CUMTL_HOST_DEVICE inline double batchnorm_invstd(double variance, double eps) {
  return 1.0 / std::sqrt(variance + eps);
}

// Moments of n values from their sums shifted by K (one of the values).
CUMTL_HOST_DEVICE inline BatchnormMoments batchnorm_moments_from_shifted_sums(double count, double shift, double sum,
                                                                              double sum_squares) {
  if (count == 0) return {0, 0, 0};
  const double offset = sum / count;
  const double m2 = sum_squares - sum * offset;
  return {count, shift + offset, m2 > 0 ? m2 : 0.0};  // rounding may leave a tiny negative
}

// Chan et al.'s merge of the moments of two disjoint sets.
CUMTL_HOST_DEVICE inline BatchnormMoments batchnorm_merge(const BatchnormMoments& a, const BatchnormMoments& b) {
  const double count = a.count + b.count;
  if (count == 0) return {0, 0, 0};
  const double delta = b.mean - a.mean, weight = b.count / count;
  return {count, a.mean + delta * weight, a.m2 + b.m2 + delta * delta * a.count * weight};
}

// Synchronized batch norm's merge of one rank's moments into the whole
// batch's (Chan, Golub and LeVeque, one term per rank): given the sums over
// the ranks of count·mean and of the counts, the rank's m2 gains
// count·(its mean − the whole mean)², so that the m2s summed over the ranks
// are the whole m2; its mean becomes the whole mean.
CUMTL_HOST_DEVICE inline void batchnorm_merge_rank(double& mean, double& m2, double count, double whole_sum,
                                                   double whole_count) {
  const double whole_mean = whole_sum / whole_count, deviation = mean - whole_mean;
  m2 += count * deviation * deviation;
  mean = whole_mean;
}

// Where the CUDA twin of synchronized batch norm keeps a channel's moments in
// one array of 3C + 1 doubles, laid out for the two sums over the ranks, which
// take [Σx | count], then [m2], as the CPU twin's do:
//   [this rank's mean (C) | Σx (C) | count (1) | m2 (C)].
struct BatchnormRankMoments {
  double* mean;
  double* sums;  // followed by the count
  double* count;
  double* m2;

  CUMTL_HOST_DEVICE static constexpr std::int64_t doubles(std::int64_t channels) { return 3 * channels + 1; }
  CUMTL_HOST_DEVICE static BatchnormRankMoments in(double* values, std::int64_t channels) {
    return {values, values + channels, values + 2 * channels, values + 2 * channels + 1};
  }
};

// What the backward leaves per channel for its apply, in one array of 2C + 1
// doubles: [Σ dpre (C) | Σ dpre·(x − mean) (C) | rows (1)]. Synchronized batch
// norm sums the whole array over the ranks, as the CPU twin does.
struct BatchnormGradientSums {
  const double* values;
  std::int64_t channels;

  CUMTL_HOST_DEVICE static constexpr std::int64_t doubles(std::int64_t channels) { return 2 * channels + 1; }
  CUMTL_HOST_DEVICE double rows() const { return values[2 * channels]; }
  // dbeta and dgamma of the rows summed, dgamma with the channel's invstd.
  template <class P>
  CUMTL_HOST_DEVICE BatchnormChannelGradient of(std::int64_t channel, P invstd) const {
    return {values[channel], double(invstd) * values[channels + channel]};
  }
};

// Writes what forward train leaves for backward and updates the running
// statistics as PyTorch does (the running variance is the unbiased one).
template <class T>
CUMTL_HOST_DEVICE inline void batchnorm_store_statistics(std::int64_t channel, double mean, double m2, double rows,
                                                         double momentum, double eps, T* running_mean, T* running_var,
                                                         T* saved_mean, T* saved_invstd) {
  saved_mean[channel] = T(mean);
  saved_invstd[channel] = T(batchnorm_invstd(m2 / rows, eps));
  running_mean[channel] = T((1 - momentum) * double(running_mean[channel]) + momentum * mean);
  running_var[channel] = T((1 - momentum) * double(running_var[channel]) + momentum * (m2 / (rows - 1)));
}

template <class P>
CUMTL_HOST_DEVICE inline BatchnormAffine<P> batchnorm_affine(const BatchnormNormalization<P>& normalization,
                                                             const P* gamma, const P* beta, std::int64_t channel) {
  const double invstd = normalization.invstd != nullptr
                            ? double(normalization.invstd[channel])
                            : batchnorm_invstd(double(normalization.variance[channel]), normalization.eps);
  return {normalization.mean[channel], P(double(gamma[channel]) * invstd), beta[channel]};
}

// An activation widened to double, for the sums.
template <class T>
CUMTL_HOST_DEVICE inline double batchnorm_wide(T value) {
  return double(compute_t<T>(value));
}

// y = act(bn(x) + residual), computed in P and rounded once to T; pass
// residual 0 when there is none. NaN stays NaN through the ReLU.
template <class T, class P = compute_t<T>>
CUMTL_HOST_DEVICE inline T batchnorm_output(T x, T residual, const BatchnormAffine<P>& affine, bool relu) {
  const P pre = (P(x) - affine.mean) * affine.scale + affine.shift + P(residual);
  return T(relu && pre < P(0) ? P(0) : pre);
}

// The gradient at the pre-activation sum: dy where the ReLU passed its input
// (y > 0), selected, never rounded.
template <class T>
CUMTL_HOST_DEVICE inline T batchnorm_pre_gradient(T dy, T y, bool relu) {
  using P = compute_t<T>;
  return relu && !(P(y) > P(0)) ? T(P(0)) : dy;
}

template <class P>
CUMTL_HOST_DEVICE inline BatchnormGradientAffine<P> batchnorm_gradient_affine(P mean, P invstd, P gamma,
                                                                              const BatchnormChannelGradient& sums,
                                                                              double rows) {
  return {mean, invstd, P(double(gamma) * double(invstd)), P(sums.dbeta / rows), P(sums.dgamma / rows)};
}

// dx, computed in P and rounded once to T.
template <class T, class P = compute_t<T>>
CUMTL_HOST_DEVICE inline T batchnorm_input_gradient(T dpre, T x, const BatchnormGradientAffine<P>& affine) {
  const P x_hat = (P(x) - affine.mean) * affine.invstd;
  return T(affine.scale * (P(dpre) - affine.mean_dpre - x_hat * affine.mean_dpre_xhat));
}

// A parameter gradient, replaced or added to (never read when replaced, so an
// uninitialized or infinite old value does not leak in).
template <class T>
CUMTL_HOST_DEVICE inline void batchnorm_store_gradient(T& out, double gradient, bool accumulate) {
  out = accumulate ? T(double(out) + gradient) : T(gradient);
}

#if defined(CUMTL_KERNEL_CODE)
inline constexpr int batchnorm_threads = 256;

// Sums values[ty·TX + tx] over ty into values[tx] in a fixed tree; every thread of the block must call it.
__device__ inline void batchnorm_sum_columns(double* values) {
  const int slot = int(threadIdx.y * blockDim.x + threadIdx.x);
  for (int width = int(blockDim.y) / 2; width > 0; width /= 2) {
    if (int(threadIdx.y) < width) values[slot] += values[slot + width * int(blockDim.x)];
    __syncthreads();
  }
}

// Pass 1: partials[b·C + c] = the moments of x[rows of block b, c].
template <class T>
__global__ void __launch_bounds__(batchnorm_threads)
    batchnorm_statistics_kernel(std::int64_t rows, std::int64_t channels, std::int64_t rows_per_block,
                                const T* __restrict__ x, BatchnormPartialMoments* __restrict__ partials) {
  __shared__ BatchnormMoments moments[batchnorm_threads];
  const std::int64_t channel = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t begin = std::int64_t(blockIdx.y) * rows_per_block;
  const std::int64_t end = begin + batchnorm_block_rows(blockIdx.y, rows, rows_per_block);
  double count = 0, shift = 0, sum = 0, sum_squares = 0;
  if (channel < channels && begin + threadIdx.y < end) {
    shift = batchnorm_wide(x[(begin + threadIdx.y) * channels + channel]);
#pragma unroll 4
    for (std::int64_t row = begin + threadIdx.y; row < end; row += blockDim.y) {
      const double deviation = batchnorm_wide(x[row * channels + channel]) - shift;
      sum += deviation;
      sum_squares += deviation * deviation;
      count += 1;
    }
  }
  const int slot = int(threadIdx.y * blockDim.x + threadIdx.x);
  moments[slot] = batchnorm_moments_from_shifted_sums(count, shift, sum, sum_squares);
  __syncthreads();
  for (int width = int(blockDim.y) / 2; width > 0; width /= 2) {
    if (int(threadIdx.y) < width) moments[slot] = batchnorm_merge(moments[slot], moments[slot + width * blockDim.x]);
    __syncthreads();
  }
  if (threadIdx.y == 0 && channel < channels)
    partials[std::int64_t(blockIdx.y) * channels + channel] = {moments[slot].mean, moments[slot].m2};
}

// Pass 2's reduction: one column of threads per channel over the P partials, strided by TY, then a fixed tree.
// Every thread of the block calls it; each gets its channel's mean and m2 (zeros past the channels).
struct BatchnormChannelMoments {
  double mean;
  double m2;
};
__device__ inline BatchnormChannelMoments batchnorm_combine_partials(
    std::int64_t rows, std::int64_t channels, std::int64_t rows_per_block, std::int64_t row_blocks,
    const BatchnormPartialMoments* __restrict__ partials, double* sums) {
  const std::int64_t channel = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = channel < channels;
  const int slot = int(threadIdx.y * blockDim.x + threadIdx.x);

  double weighted_means = 0;
  if (active)
    for (std::int64_t block = threadIdx.y; block < row_blocks; block += blockDim.y)
      weighted_means +=
          double(batchnorm_block_rows(block, rows, rows_per_block)) * partials[block * channels + channel].mean;
  sums[slot] = weighted_means;
  __syncthreads();
  batchnorm_sum_columns(sums);
  const double mean = sums[threadIdx.x] / double(rows);
  __syncthreads();  // everyone has read the mean before the buffer is reused

  double m2 = 0;
  if (active)
    for (std::int64_t block = threadIdx.y; block < row_blocks; block += blockDim.y) {
      const BatchnormPartialMoments partial = partials[block * channels + channel];
      const double deviation = partial.mean - mean;
      m2 += partial.m2 + double(batchnorm_block_rows(block, rows, rows_per_block)) * deviation * deviation;
    }
  sums[slot] = m2;
  __syncthreads();
  batchnorm_sum_columns(sums);
  return {mean, sums[threadIdx.x]};
}

// Pass 2: the statistics of the batch, stored.
template <class P>
__global__ void __launch_bounds__(batchnorm_threads)
    batchnorm_finish_statistics_kernel(std::int64_t rows, std::int64_t channels, std::int64_t rows_per_block,
                                       std::int64_t row_blocks, const BatchnormPartialMoments* __restrict__ partials,
                                       double momentum, double eps, P* running_mean, P* running_var, P* saved_mean,
                                       P* saved_invstd) {
  __shared__ double sums[batchnorm_threads];
  const std::int64_t channel = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const BatchnormChannelMoments moments =
      batchnorm_combine_partials(rows, channels, rows_per_block, row_blocks, partials, sums);
  if (threadIdx.y == 0 && channel < channels)
    batchnorm_store_statistics(channel, moments.mean, moments.m2, double(rows), momentum, eps, running_mean,
                               running_var, saved_mean, saved_invstd);
}

// Synchronized, pass 2 instead: this rank's moments, laid out for the sums over the ranks. This kernel and the next
// are templates only so that every translation unit including this header may define them.
template <int = 0>
__global__ void __launch_bounds__(batchnorm_threads)
    batchnorm_rank_moments_kernel(std::int64_t rows, std::int64_t channels, std::int64_t rows_per_block,
                                  std::int64_t row_blocks, const BatchnormPartialMoments* __restrict__ partials,
                                  BatchnormRankMoments rank) {
  __shared__ double sums[batchnorm_threads];
  const std::int64_t channel = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const BatchnormChannelMoments moments =
      batchnorm_combine_partials(rows, channels, rows_per_block, row_blocks, partials, sums);
  if (threadIdx.y != 0 || channel >= channels) return;
  rank.mean[channel] = moments.mean;
  rank.sums[channel] = moments.mean * double(rows);
  rank.m2[channel] = moments.m2;
  if (channel == 0) *rank.count = double(rows);
}

// Synchronized, after the sum of [Σx | count] over the ranks: each channel's m2 merged, per rank (grid-stride).
template <int = 0>
__global__ void batchnorm_merge_ranks_kernel(std::int64_t channels, double rows, BatchnormRankMoments rank) {
  CUMTL_GRID_STRIDE_LOOP(channel, channels) {
    batchnorm_merge_rank(rank.mean[channel], rank.m2[channel], rows, rank.sums[channel], *rank.count);
  }
}

// Synchronized, after the sum of the m2s over the ranks: the whole batch's statistics, stored (grid-stride).
template <class P>
__global__ void batchnorm_store_over_ranks_kernel(std::int64_t channels, BatchnormRankMoments whole, double momentum,
                                                  double eps, P* running_mean, P* running_var, P* saved_mean,
                                                  P* saved_invstd) {
  CUMTL_GRID_STRIDE_LOOP(channel, channels) {
    batchnorm_store_statistics(channel, whole.mean[channel], whole.m2[channel], *whole.count, momentum, eps,
                               running_mean, running_var, saved_mean, saved_invstd);
  }
}

// Pass 3: y = act(bn(x) + residual). residual may be null, and y may be residual (each element is read, then written,
// by the same thread), hence no __restrict__ on either.
template <class T, class P = compute_t<T>>
__global__ void __launch_bounds__(batchnorm_threads)
    batchnorm_apply_kernel(std::int64_t rows, std::int64_t channels, std::int64_t rows_per_block,
                           const T* __restrict__ x, const T* residual, const P* __restrict__ gamma,
                           const P* __restrict__ beta, BatchnormNormalization<P> normalization, bool relu, T* y) {
  const std::int64_t channel = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (channel >= channels) return;
  const std::int64_t begin = std::int64_t(blockIdx.y) * rows_per_block;
  const std::int64_t end = begin + batchnorm_block_rows(blockIdx.y, rows, rows_per_block);
  const BatchnormAffine<P> affine = batchnorm_affine(normalization, gamma, beta, channel);
#pragma unroll 4
  for (std::int64_t row = begin + threadIdx.y; row < end; row += blockDim.y) {
    const std::int64_t i = row * channels + channel;
    y[i] = batchnorm_output(x[i], residual != nullptr ? residual[i] : T(P(0)), affine, relu);
  }
}

// Pass 4: partials[b·C + c] = (Σ dpre, Σ dpre·(x − mean)) over the rows of block b, in double.
template <class T, class P = compute_t<T>>
__global__ void __launch_bounds__(batchnorm_threads)
    batchnorm_backward_reduce_kernel(std::int64_t rows, std::int64_t channels, std::int64_t rows_per_block,
                                     const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                                     bool relu, const P* __restrict__ saved_mean,
                                     BatchnormPartialGradient* __restrict__ partials) {
  __shared__ double dpre_sums[batchnorm_threads];
  __shared__ double centered_sums[batchnorm_threads];
  const std::int64_t channel = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t begin = std::int64_t(blockIdx.y) * rows_per_block;
  const std::int64_t end = begin + batchnorm_block_rows(blockIdx.y, rows, rows_per_block);
  double dpre_sum = 0, centered_sum = 0;
  if (channel < channels) {
    const double mean = double(saved_mean[channel]);
#pragma unroll 4
    for (std::int64_t row = begin + threadIdx.y; row < end; row += blockDim.y) {
      const std::int64_t i = row * channels + channel;
      const double dpre = batchnorm_wide(batchnorm_pre_gradient(dy[i], relu ? y[i] : T(P(0)), relu));
      dpre_sum += dpre;
      centered_sum += dpre * (batchnorm_wide(x[i]) - mean);
    }
  }
  const int slot = int(threadIdx.y * blockDim.x + threadIdx.x);
  dpre_sums[slot] = dpre_sum;
  centered_sums[slot] = centered_sum;
  __syncthreads();
  batchnorm_sum_columns(dpre_sums);
  batchnorm_sum_columns(centered_sums);
  if (threadIdx.y == 0 && channel < channels)
    partials[std::int64_t(blockIdx.y) * channels + channel] = {dpre_sums[threadIdx.x], centered_sums[threadIdx.x]};
}

// Pass 5: per channel, the partials summed in a fixed order; dgamma and dbeta stored per mode, and the sums and the
// rows kept in `sums` (BatchnormGradientSums' layout) for pass 6: dgamma itself may hold an accumulated value, and
// synchronized batch norm sums them over the ranks in between.
template <class P>
__global__ void __launch_bounds__(batchnorm_threads)
    batchnorm_finish_backward_kernel(std::int64_t rows, std::int64_t channels, std::int64_t row_blocks,
                                     const BatchnormPartialGradient* __restrict__ partials,
                                     const P* __restrict__ saved_invstd, bool accumulate, P* dgamma, P* dbeta,
                                     double* __restrict__ sums) {
  __shared__ double dpre_sums[batchnorm_threads];
  __shared__ double centered_sums[batchnorm_threads];
  const std::int64_t channel = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = channel < channels;
  double dpre_sum = 0, centered_sum = 0;
  if (active)
    for (std::int64_t block = threadIdx.y; block < row_blocks; block += blockDim.y) {
      const BatchnormPartialGradient partial = partials[block * channels + channel];
      dpre_sum += partial.dpre;
      centered_sum += partial.dpre_centered;
    }
  const int slot = int(threadIdx.y * blockDim.x + threadIdx.x);
  dpre_sums[slot] = dpre_sum;
  centered_sums[slot] = centered_sum;
  __syncthreads();
  batchnorm_sum_columns(dpre_sums);
  batchnorm_sum_columns(centered_sums);
  if (threadIdx.y == 0 && active) {
    sums[channel] = dpre_sums[threadIdx.x];
    sums[channels + channel] = centered_sums[threadIdx.x];
    const BatchnormChannelGradient own = BatchnormGradientSums{sums, channels}.of(channel, saved_invstd[channel]);
    batchnorm_store_gradient(dgamma[channel], own.dgamma, accumulate);
    batchnorm_store_gradient(dbeta[channel], own.dbeta, accumulate);
    if (channel == 0) sums[2 * channels] = double(rows);
  }
}

// Pass 6: dx and, when dresidual is not null, dresidual = dpre. dresidual may be dy (read, then written, by the same
// thread), hence no __restrict__ on either.
template <class T, class P = compute_t<T>>
__global__ void __launch_bounds__(batchnorm_threads)
    batchnorm_backward_apply_kernel(std::int64_t rows, std::int64_t channels, std::int64_t rows_per_block, const T* dy,
                                    const T* __restrict__ x, const T* __restrict__ y, bool relu,
                                    const P* __restrict__ gamma, const P* __restrict__ saved_mean,
                                    const P* __restrict__ saved_invstd, BatchnormGradientSums sums, T* __restrict__ dx,
                                    T* dresidual) {
  const std::int64_t channel = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (channel >= channels) return;
  const std::int64_t begin = std::int64_t(blockIdx.y) * rows_per_block;
  const std::int64_t end = begin + batchnorm_block_rows(blockIdx.y, rows, rows_per_block);
  const BatchnormGradientAffine<P> affine = batchnorm_gradient_affine(
      saved_mean[channel], saved_invstd[channel], gamma[channel], sums.of(channel, saved_invstd[channel]), sums.rows());
#pragma unroll 4
  for (std::int64_t row = begin + threadIdx.y; row < end; row += blockDim.y) {
    const std::int64_t i = row * channels + channel;
    const T dpre = batchnorm_pre_gradient(dy[i], relu ? y[i] : T(P(0)), relu);
    if (dresidual != nullptr) dresidual[i] = dpre;
    dx[i] = batchnorm_input_gradient(dpre, x[i], affine);
  }
}
#endif

}  // namespace cumtl::kernels
