#pragma once
// CPU twins of batch normalization (kernels/batchnorm.cuh): the oracle for the
// CUDA kernels, with the same signatures as cuda::. The statistics are two
// passes in double over each block of rows (the block's mean, then the squared
// deviations from it while the block is still in cache), the blocks merged by
// Chan, Golub and LeVeque's formula: a different sound algorithm from the
// kernels' shifted single-pass sums, which the GPU tests compare it with. The
// per-element and per-channel math is the kernels' own, in the same precision:
// activations of T, parameters and statistics of compute_t<T> (float for the
// 2-byte types, each 2-byte output rounded once from float).
//
// The rows are cut into blocks of about block_elements values, which the
// context's threads take in turn; per-block results are combined in block
// order, so the result does not depend on the number of threads.
//
// Synchronized batch norm (data-parallel training, the batch split over
// ranks): given a ChannelSumsOverRanks, forward_train and backward normalize
// with the whole batch's statistics and gradient sums, which they obtain by
// summing per-channel values over the ranks (three sums of C + 1, C and 2C + 1
// doubles per layer and step). Every rank must take part in every call.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/core/sums_over_ranks.hpp"
#include "cumtl/kernels/batchnorm.cuh"

namespace cumtl::cpu {

namespace detail {

// The element loops below take the activation and the presence of a residual
// as template arguments (a per-element `relu ? y[i] : 0` is a conditional load,
// which keeps the compiler from vectorizing), read the per-channel constants
// from one array each rather than from an array of structs, and tell the
// compiler that their iterations are independent: every output element
// depends only on the same element of the inputs, also where an output is an
// input (y the residual, dresidual dy), and the per-channel sums are distinct
// arrays. Each element's arithmetic is the kernels' own.
#if defined(__clang__)
#define CUMTL_CPU_INDEPENDENT_ITERATIONS _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define CUMTL_CPU_INDEPENDENT_ITERATIONS _Pragma("GCC ivdep")
#else
#define CUMTL_CPU_INDEPENDENT_ITERATIONS
#endif

inline constexpr std::int64_t block_elements = std::int64_t(1) << 15;

// Per-channel sums over the rows of a block run in lanes: `lanes` consecutive
// rows (at least lane_run_elements values, when the channels divide that)
// are summed element-wise into as many interleaved copies of the channels,
// which are added up at the end. A loop over only 16 channels spends more on
// its own overhead than on the sums.
inline constexpr std::int64_t lane_run_elements = 64;

struct Lanes {
  std::int64_t channels, count, width;  // width = count · channels

  explicit Lanes(std::int64_t channels_)
      : channels(channels_),
        count(channels_ < lane_run_elements && lane_run_elements % channels_ == 0 ? lane_run_elements / channels_ : 1),
        width(count * channels_) {}

  // Calls add(first_element, elements) for the rows [0, rows): runs of `count`
  // rows, then the rest one row at a time (into the first lane).
  template <class Add>
  void for_each_run(std::int64_t rows, Add&& add) const {
    const std::int64_t runs = rows / count;
    for (std::int64_t run = 0; run < runs; ++run) add(run * width, width);
    for (std::int64_t row = runs * count; row < rows; ++row) add(row * channels, channels);
  }

  // sums[c] += Σ over lanes, in lane order, of lane_sums[lane · channels + c].
  void fold(const double* lane_sums, double* sums) const {
    for (std::int64_t lane = 0; lane < count; ++lane)
      for (std::int64_t c = 0; c < channels; ++c) sums[c] += lane_sums[lane * channels + c];
  }

  // `values` (one per channel) repeated for every lane.
  template <class T>
  std::vector<double> tile(const T* values) const {
    std::vector<double> tiled(static_cast<std::size_t>(width));
    for (std::int64_t i = 0; i < width; ++i) tiled[std::size_t(i)] = double(values[i % channels]);
    return tiled;
  }
};

// Rows [begin, end) of each block of a rows × channels batch.
struct RowBlocks {
  std::int64_t rows, block_rows, count;

  RowBlocks(std::int64_t rows_, std::int64_t channels)
      : rows(rows_),
        block_rows(std::max<std::int64_t>(block_elements / std::max<std::int64_t>(channels, 1), 1)),
        count((rows_ + block_rows - 1) / block_rows) {}
  std::int64_t begin(std::int64_t block) const { return block * block_rows; }
  std::int64_t size(std::int64_t block) const { return std::min(block_rows, rows - begin(block)); }
};

// sums[i] = Σ over blocks, in block order, of the per-block sums that
// add_block(first_row, rows, block_sums) adds into its zeroed `width` values.
template <class AddBlock>
void sum_over_blocks(ThreadPool& threads, const RowBlocks& blocks, std::size_t width, std::vector<double>& sums,
                     AddBlock&& add_block) {
  std::vector<double> block_sums(std::size_t(blocks.count) * width, 0.0);
  threads.run(blocks.count, [&](std::int64_t block, int) {
    add_block(blocks.begin(block), blocks.size(block), block_sums.data() + std::size_t(block) * width);
  });
  sums.assign(width, 0.0);
  for (std::int64_t block = 0; block < blocks.count; ++block)
    for (std::size_t c = 0; c < width; ++c) sums[c] += block_sums[std::size_t(block) * width + c];
}

// Per-channel constants of batchnorm_output, one array per member.
template <class T>
struct BatchnormAffineColumns {
  std::vector<T> mean, scale, shift;

  explicit BatchnormAffineColumns(std::size_t channels) : mean(channels), scale(channels), shift(channels) {}
  void set(std::size_t c, const kernels::BatchnormAffine<T>& affine) {
    mean[c] = affine.mean, scale[c] = affine.scale, shift[c] = affine.shift;
  }
};

// Per-channel constants of batchnorm_input_gradient, one array per member.
template <class T>
struct BatchnormGradientColumns {
  std::vector<T> mean, invstd, scale, mean_dpre, mean_dpre_xhat;

  explicit BatchnormGradientColumns(std::size_t channels)
      : mean(channels), invstd(channels), scale(channels), mean_dpre(channels), mean_dpre_xhat(channels) {}
  void set(std::size_t c, const kernels::BatchnormGradientAffine<T>& affine) {
    mean[c] = affine.mean, invstd[c] = affine.invstd, scale[c] = affine.scale;
    mean_dpre[c] = affine.mean_dpre, mean_dpre_xhat[c] = affine.mean_dpre_xhat;
  }
};

// Calls f.template operator()<Relu, Residual>() with the two flags as compile-time constants.
template <class F>
void with_relu_and_residual(bool relu, bool residual, F&& f) {
  if (relu && residual)
    f.template operator()<true, true>();
  else if (relu)
    f.template operator()<true, false>();
  else if (residual)
    f.template operator()<false, true>();
  else
    f.template operator()<false, false>();
}

template <bool Relu, bool Residual, class T>
void batchnorm_apply_rows(std::int64_t rows, std::int64_t channels, const T* x, const T* residual,
                          const BatchnormAffineColumns<compute_t<T>>& affine, T* y) {
  using P = compute_t<T>;
  const P *mean = affine.mean.data(), *scale = affine.scale.data(), *shift = affine.shift.data();
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t offset = row * channels;
    CUMTL_CPU_INDEPENDENT_ITERATIONS
    for (std::int64_t c = 0; c < channels; ++c) {
      const std::int64_t i = offset + c;
      T add = T(P(0));
      if constexpr (Residual) add = residual[i];
      y[i] = kernels::batchnorm_output(x[i], add, kernels::BatchnormAffine<P>{mean[c], scale[c], shift[c]}, Relu);
    }
  }
}

// The mean and the sum of squared deviations from it of each channel of a
// rows × channels block: two passes, the second while the block is in cache.
template <class T>
void block_statistics(std::int64_t rows, std::int64_t channels, const T* values, double* mean, double* m2) {
  const Lanes lanes(channels);
  std::vector<double> lane_sums(static_cast<std::size_t>(lanes.width), 0.0);
  double* sums = lane_sums.data();
  lanes.for_each_run(rows, [&](std::int64_t first, std::int64_t count) {
    CUMTL_CPU_INDEPENDENT_ITERATIONS
    for (std::int64_t i = 0; i < count; ++i) sums[i] += kernels::batchnorm_wide(values[first + i]);
  });
  std::fill_n(mean, channels, 0.0);
  lanes.fold(sums, mean);
  for (std::int64_t c = 0; c < channels; ++c) mean[c] /= double(rows);

  const std::vector<double> centre = lanes.tile(mean);
  const double* centres = centre.data();
  std::fill(lane_sums.begin(), lane_sums.end(), 0.0);
  lanes.for_each_run(rows, [&](std::int64_t first, std::int64_t count) {
    CUMTL_CPU_INDEPENDENT_ITERATIONS
    for (std::int64_t i = 0; i < count; ++i) {
      const double deviation = kernels::batchnorm_wide(values[first + i]) - centres[i];
      sums[i] += deviation * deviation;
    }
  });
  std::fill_n(m2, channels, 0.0);
  lanes.fold(sums, m2);
}

// The gradient at the pre-activation goes through a buffer: selecting and
// widening it in the loop that sums in double leaves control flow there, which
// the compiler does not vectorize.
template <bool Relu, class T>
void batchnorm_gradient_sums(std::int64_t rows, std::int64_t channels, const T* dy, const T* x, const T* y,
                             const compute_t<T>* saved_mean, double* dpre_sum, double* centered_sum) {
  const Lanes lanes(channels);
  const std::size_t width = static_cast<std::size_t>(lanes.width);
  std::vector<T> dpre_buffer(width);
  std::vector<double> lane_dpre(width, 0.0), lane_centered(width, 0.0);
  const std::vector<double> mean = lanes.tile(saved_mean);
  T* dpre = dpre_buffer.data();
  double *dpre_lanes = lane_dpre.data(), *centered_lanes = lane_centered.data();
  const double* centre = mean.data();
  lanes.for_each_run(rows, [&](std::int64_t first, std::int64_t count) {
    CUMTL_CPU_INDEPENDENT_ITERATIONS
    for (std::int64_t i = 0; i < count; ++i) {
      T mask = T(compute_t<T>(0));
      if constexpr (Relu) mask = y[first + i];
      dpre[i] = kernels::batchnorm_pre_gradient(dy[first + i], mask, Relu);
    }
    CUMTL_CPU_INDEPENDENT_ITERATIONS
    for (std::int64_t i = 0; i < count; ++i) {
      const double value = kernels::batchnorm_wide(dpre[i]);
      dpre_lanes[i] += value;
      centered_lanes[i] += value * (kernels::batchnorm_wide(x[first + i]) - centre[i]);
    }
  });
  lanes.fold(dpre_lanes, dpre_sum);
  lanes.fold(centered_lanes, centered_sum);
}

template <bool Relu, bool Residual, class T>
void batchnorm_input_gradient_rows(std::int64_t rows, std::int64_t channels, const T* dy, const T* x, const T* y,
                                   const BatchnormGradientColumns<compute_t<T>>& affine, T* dx, T* dresidual) {
  using P = compute_t<T>;
  const P *mean = affine.mean.data(), *invstd = affine.invstd.data(), *scale = affine.scale.data();
  const P *mean_dpre = affine.mean_dpre.data(), *mean_dpre_xhat = affine.mean_dpre_xhat.data();
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t offset = row * channels;
    CUMTL_CPU_INDEPENDENT_ITERATIONS
    for (std::int64_t c = 0; c < channels; ++c) {
      const std::int64_t i = offset + c;
      T mask = T(P(0));
      if constexpr (Relu) mask = y[i];
      const T dpre = kernels::batchnorm_pre_gradient(dy[i], mask, Relu);
      if constexpr (Residual) dresidual[i] = dpre;
      dx[i] = kernels::batchnorm_input_gradient(
          dpre, x[i],
          kernels::BatchnormGradientAffine<P>{mean[c], invstd[c], scale[c], mean_dpre[c], mean_dpre_xhat[c]});
    }
  }
}

// The whole batch's moments from the ranks' own (each rank's `mean` and `m2`
// of `count` rows, replaced by the whole's): the sums of x and the counts give
// the whole mean; each rank's m2 + count·(its mean − whole mean)², summed,
// is the whole m2 (Chan, Golub and LeVeque's merge, one term per rank).
inline void merge_moments_over_ranks(const ChannelSumsOverRanks& sum_over_ranks, std::vector<double>& mean,
                                     std::vector<double>& m2, double& count) {
  const std::size_t channels = mean.size();
  std::vector<double> totals(channels + 1);
  for (std::size_t c = 0; c < channels; ++c) totals[c] = mean[c] * count;
  totals[channels] = count;
  sum_over_ranks(totals);
  for (std::size_t c = 0; c < channels; ++c)
    kernels::batchnorm_merge_rank(mean[c], m2[c], count, totals[c], totals[channels]);
  sum_over_ranks(m2);
  count = totals[channels];
}

}  // namespace detail

// y = act(bn(x) + residual) with a given normalization; shared by train and eval.
template <class T>
void batchnorm_apply(ThreadPool& threads, std::int64_t rows, std::int64_t channels, const T* x, const T* residual,
                     const compute_t<T>* gamma, const compute_t<T>* beta,
                     const kernels::BatchnormNormalization<compute_t<T>>& normalization, Activation activation, T* y) {
  detail::BatchnormAffineColumns<compute_t<T>> affine(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c)
    affine.set(std::size_t(c), kernels::batchnorm_affine(normalization, gamma, beta, c));
  const detail::RowBlocks blocks(rows, channels);
  detail::with_relu_and_residual(activation == Activation::relu, residual != nullptr, [&]<bool Relu, bool Residual>() {
    threads.run(blocks.count, [&](std::int64_t block, int) {
      const std::int64_t offset = blocks.begin(block) * channels;
      detail::batchnorm_apply_rows<Relu, Residual>(blocks.size(block), channels, x + offset,
                                                   Residual ? residual + offset : nullptr, affine, y + offset);
    });
  });
}

template <class T>
void batchnorm_forward_train(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                             const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                             Activation activation, double momentum, double eps, compute_t<T>* running_mean,
                             compute_t<T>* running_var, compute_t<T>* saved_mean, compute_t<T>* saved_invstd, T* y,
                             const ChannelSumsOverRanks* sum_over_ranks = nullptr) {
  ThreadPool& threads = ctx.cpu_threads();
  const std::size_t width = static_cast<std::size_t>(channels);
  const detail::RowBlocks blocks(rows, channels);
  // Per block: [mean | sum of squared deviations from it], channels each.
  std::vector<double> per_block(std::size_t(blocks.count) * 2 * width);
  threads.run(blocks.count, [&](std::int64_t block, int) {
    double* block_mean = per_block.data() + std::size_t(block) * 2 * width;
    detail::block_statistics(blocks.size(block), channels, x + blocks.begin(block) * channels, block_mean,
                             block_mean + width);
  });
  std::vector<double> mean(width, 0.0), m2(width, 0.0);
  double merged = 0;
  for (std::int64_t block = 0; block < blocks.count; ++block) {
    const double* block_mean = per_block.data() + std::size_t(block) * 2 * width;
    const double* block_m2 = block_mean + width;
    const double count = double(blocks.size(block)), total = merged + count;
    for (std::size_t c = 0; c < width; ++c) {
      const double delta = block_mean[c] - mean[c];
      mean[c] += delta * (count / total);
      m2[c] += block_m2[c] + delta * delta * (merged * count / total);
    }
    merged = total;
  }
  if (sum_over_ranks != nullptr) detail::merge_moments_over_ranks(*sum_over_ranks, mean, m2, merged);
  for (std::int64_t c = 0; c < channels; ++c)
    kernels::batchnorm_store_statistics(c, mean[std::size_t(c)], m2[std::size_t(c)], merged, momentum, eps,
                                        running_mean, running_var, saved_mean, saved_invstd);
  batchnorm_apply(threads, rows, channels, x, residual, gamma, beta,
                  kernels::BatchnormNormalization<compute_t<T>>{saved_mean, saved_invstd, nullptr, eps}, activation, y);
}

template <class T>
void batchnorm_forward_eval(Context& ctx, std::int64_t rows, std::int64_t channels, const T* x,
                            const compute_t<T>* gamma, const compute_t<T>* beta, const T* residual,
                            Activation activation, double eps, const compute_t<T>* running_mean,
                            const compute_t<T>* running_var, T* y) {
  batchnorm_apply(ctx.cpu_threads(), rows, channels, x, residual, gamma, beta,
                  kernels::BatchnormNormalization<compute_t<T>>{running_mean, nullptr, running_var, eps}, activation,
                  y);
}

template <class T>
void batchnorm_backward(Context& ctx, std::int64_t rows, std::int64_t channels, const T* dy, const T* x, const T* y,
                        const compute_t<T>* gamma, const compute_t<T>* saved_mean, const compute_t<T>* saved_invstd,
                        Activation activation, T* dx, T* dresidual, compute_t<T>* dgamma, compute_t<T>* dbeta,
                        GradientMode mode, const ChannelSumsOverRanks* sum_over_ranks = nullptr) {
  ThreadPool& threads = ctx.cpu_threads();
  const bool relu = activation == Activation::relu;
  const std::size_t width = static_cast<std::size_t>(channels);
  const detail::RowBlocks blocks(rows, channels);
  // Both sums of a block in one pass: [dpre sums | centred sums], channels each.
  std::vector<double> sums;
  detail::sum_over_blocks(threads, blocks, 2 * width, sums, [&](std::int64_t begin, std::int64_t count, double* sum) {
    const std::int64_t offset = begin * channels;
    if (relu)
      detail::batchnorm_gradient_sums<true>(count, channels, dy + offset, x + offset, y + offset, saved_mean, sum,
                                            sum + channels);
    else
      detail::batchnorm_gradient_sums<false>(count, channels, dy + offset, x + offset, static_cast<const T*>(nullptr),
                                             saved_mean, sum, sum + channels);
  });
  // γ and β's gradients are this rank's (data-parallel training averages them with the other parameters); x's
  // gradient subtracts the whole batch's means of dpre and dpre·x̂.
  std::vector<double> whole = sums;
  whole.push_back(double(rows));
  if (sum_over_ranks != nullptr) (*sum_over_ranks)(whole);
  const kernels::BatchnormGradientSums own_sums{sums.data(), channels}, whole_sums{whole.data(), channels};

  detail::BatchnormGradientColumns<compute_t<T>> affine(width);
  for (std::int64_t c = 0; c < channels; ++c) {
    const kernels::BatchnormChannelGradient own = own_sums.of(c, saved_invstd[c]);
    kernels::batchnorm_store_gradient(dgamma[c], own.dgamma, mode == GradientMode::accumulate);
    kernels::batchnorm_store_gradient(dbeta[c], own.dbeta, mode == GradientMode::accumulate);
    affine.set(std::size_t(c),
               kernels::batchnorm_gradient_affine(saved_mean[c], saved_invstd[c], gamma[c],
                                                  whole_sums.of(c, saved_invstd[c]), whole_sums.rows()));
  }

  detail::with_relu_and_residual(relu, dresidual != nullptr, [&]<bool Relu, bool Residual>() {
    threads.run(blocks.count, [&](std::int64_t block, int) {
      const std::int64_t offset = blocks.begin(block) * channels;
      detail::batchnorm_input_gradient_rows<Relu, Residual>(blocks.size(block), channels, dy + offset, x + offset,
                                                            Relu ? y + offset : nullptr, affine, dx + offset,
                                                            Residual ? dresidual + offset : nullptr);
    });
  });
}

}  // namespace cumtl::cpu
