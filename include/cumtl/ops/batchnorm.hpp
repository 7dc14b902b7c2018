#pragma once
// Batch normalization of NHWC activations, with a residual add and a ReLU
// fused into its output (the tail of a ResNet block: relu(bn(conv(x)) + skip)).
//
// x has rank ≥ 2 with the channels last: C = its last extent, M = x.numel() / C
// rows. x, residual, y, dy, dx and dresidual are float, double, bfloat16 or
// float16, all of one type; gamma, beta, running_mean, running_var, saved_mean,
// saved_invstd, dgamma and dbeta are [C] of its compute type: float32 for
// bfloat16 and float16 activations (mixed precision: the statistics, the
// parameters and every per-element computation in float, each 2-byte output
// rounded once), x's own type otherwise. `residual` and `dresidual` may be
// undefined tensors, meaning "no residual". Every type on the CPU and on CUDA.
//
//   batchnorm_forward_train(ctx, x, gamma, beta, residual, act, momentum, eps,
//                           running_mean, running_var, saved_mean, saved_invstd, y)
//       y = act(gamma·(x − mean)·invstd + beta [+ residual]) with the batch's mean
//       and biased variance, invstd = 1/sqrt(var + eps); writes saved_mean and
//       saved_invstd for backward and updates, as PyTorch does,
//       running_mean ← (1 − momentum)·running_mean + momentum·mean and
//       running_var ← (1 − momentum)·running_var + momentum·M/(M − 1)·var.
//       Needs M ≥ 2 (one value per channel has no variance), 0 ≤ momentum ≤ 1, eps > 0.
//   batchnorm_forward_eval(ctx, x, gamma, beta, residual, act, eps, running_mean, running_var, y)
//       y = act(gamma·(x − running_mean)/sqrt(running_var + eps) + beta [+ residual]);
//       any M, 0 included.
//   batchnorm_backward(ctx, dy, x, y, gamma, saved_mean, saved_invstd, act, dx, dresidual,
//                      dgamma, dbeta, mode)
//       the backward of forward_train: x, y, saved_mean and saved_invstd are its
//       input and outputs (y's sign is the ReLU mask; y may be undefined when act
//       is none). dx is overwritten; dresidual, when defined, is overwritten with
//       the gradient of the pre-activation sum (dy masked by the ReLU); dgamma and
//       dbeta are overwritten or added to per `mode`. Needs M ≥ 2.
//
// Synchronized batch norm: given a communicator of several ranks (the last
// argument of forward_train and backward; null or a world of one: this
// process's batch alone), the rows of every rank make one batch. forward_train
// normalizes with, and adds to the running statistics, the whole batch's mean
// and variance; backward gives x the gradient of the whole batch's loss (the
// sum of the ranks' losses) and γ, β this rank's share of it, which
// data-parallel training averages with the other gradients. Every rank must
// call it for every layer in the same order. The communicator's collectives
// must work on x's memory: Gloo for CPU tensors, NCCL on ctx's stream for GPU
// ones.
//
// Aliasing: y may be the residual tensor itself (an in-place add), and
// dresidual may be dy itself; otherwise no output may overlap an input or
// another output (in particular dx may not overlap dy). Shapes, scalar types,
// devices and overlaps are checked, with errors naming the operation and the
// tensors. The work is enqueued on ctx's stream; nothing waits for it.

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>

#include "cumtl/core/modes.hpp"
#include "cumtl/core/sums_over_ranks.hpp"
#include "cumtl/cpu/batchnorm.hpp"
#include "cumtl/distributed/communicator.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl::detail {

// x is NHWC with at least one channel; returns C.
inline std::int64_t batchnorm_channels(std::string_view operation, const Tensor& x) {
  CUMTL_REQUIRE(x.shape().rank() >= 2, operation, ": x must be rank 2 or more with the channels last (N×H×W×C), got ",
                x.description());
  const std::int64_t channels = x.shape()[x.shape().rank() - 1];
  CUMTL_REQUIRE(channels >= 1, operation, ": x has no channels: ", x.description());
  return channels;
}

// `tensor` is a [C] vector of x's compute type.
inline void batchnorm_require_channel_vector(std::string_view operation, std::string_view name, const Tensor& tensor,
                                             const Tensor& x, std::int64_t channels) {
  const ScalarType type = compute_type_of(x.dtype());
  CUMTL_REQUIRE(tensor.dtype() == type && tensor.shape() == Shape{channels}, operation, ": tensor '", name,
                "' must be ", name_of(type), Shape{channels}, " (one value per channel of x, ", x.description(),
                "), got ", tensor.description());
}

// Training needs two values per channel to have a variance.
inline void batchnorm_require_variance(std::string_view operation, const Tensor& x, std::int64_t channels) {
  const std::int64_t rows = x.numel() / channels;
  CUMTL_REQUIRE(rows >= 2, operation,
                ": a training batch needs at least 2 values per channel to have a variance, x is ", x.description(),
                " (", rows, " per channel)");
}

// Whether the bytes of two defined tensors overlap (both on one device, as checked before).
inline bool batchnorm_overlap(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.bytes() == 0 || b.bytes() == 0) return false;
  const auto* a_begin = static_cast<const std::byte*>(a.raw_data());
  const auto* b_begin = static_cast<const std::byte*>(b.raw_data());
  // std::less gives a total order even for pointers into unrelated blocks.
  return std::less<>{}(a_begin, b_begin + b.bytes()) && std::less<>{}(b_begin, a_begin + a.bytes());
}

struct BatchnormNamedTensor {
  const char* name;
  const Tensor* tensor;
};

// No output overlaps an input or another output, except that `alias_output` may be exactly `alias_input` (the
// kernels read each element of it before writing that element, in the same thread).
inline void batchnorm_require_no_overlap(std::string_view operation,
                                         std::initializer_list<BatchnormNamedTensor> outputs,
                                         std::initializer_list<BatchnormNamedTensor> inputs,
                                         const Tensor* alias_output = nullptr, const Tensor* alias_input = nullptr) {
  const auto require_disjoint = [&](const BatchnormNamedTensor& output, const BatchnormNamedTensor& other) {
    CUMTL_REQUIRE(!batchnorm_overlap(*output.tensor, *other.tensor), operation, ": '", output.name, "' (",
                  output.tensor->description(), ") overlaps '", other.name, "' (", other.tensor->description(), ")");
  };
  for (auto output = outputs.begin(); output != outputs.end(); ++output) {
    for (const BatchnormNamedTensor& input : inputs) {
      const bool allowed_alias = output->tensor == alias_output && input.tensor == alias_input &&
                                 output->tensor->defined() && input.tensor->defined() &&
                                 output->tensor->raw_data() == input.tensor->raw_data() &&
                                 output->tensor->bytes() == input.tensor->bytes();
      if (!allowed_alias) require_disjoint(*output, input);
    }
    for (auto other = outputs.begin(); other != output; ++other) require_disjoint(*output, *other);
  }
}

// The sums over the ranks of synchronized batch norm; none for a batch of this process alone. They run on the
// communicator's memory, which must be x's: GPU ranks need an engine for device memory (NCCL) working on ctx's
// stream.
inline std::optional<ChannelSumsOverRanks> batchnorm_sums_over_ranks(std::string_view operation,
                                                                     distributed::Communicator* ranks,
                                                                     const Tensor& x) {
  if (ranks == nullptr || ranks->world_size() == 1) return std::nullopt;
  CUMTL_REQUIRE(ranks->memory() == x.device(), operation, ": synchronized batch norm over ", ranks->engine(),
                ", whose collectives work on ", ranks->memory(), " memory, cannot sum x's statistics: x is ",
                x.description(), " (GPU ranks synchronize over NCCL)");
  return ChannelSumsOverRanks([ranks](std::span<double> values) { ranks->all_reduce_sum(values); });
}

template <class T>
const T* batchnorm_optional(const Tensor& tensor) {
  return tensor.defined() ? tensor.data<T>() : nullptr;
}
template <class T>
T* batchnorm_optional(Tensor& tensor) {
  return tensor.defined() ? tensor.data<T>() : nullptr;
}

}  // namespace cumtl::detail

namespace cumtl::ops {

inline void batchnorm_forward_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                    const Tensor& residual, Activation activation, double momentum, double eps,
                                    Tensor& running_mean, Tensor& running_var, Tensor& saved_mean, Tensor& saved_invstd,
                                    Tensor& y, distributed::Communicator* synchronize_over = nullptr) {
  constexpr std::string_view op = "ops::batchnorm_forward_train";
  detail::require_on_context(ctx, op, {{"x", x}, {"gamma", gamma}, {"beta", beta}});
  if (residual.defined()) detail::require_on_context(ctx, op, "residual", residual);
  detail::require_on_context(ctx, op,
                             {{"running_mean", running_mean},
                              {"running_var", running_var},
                              {"saved_mean", saved_mean},
                              {"saved_invstd", saved_invstd},
                              {"y", y}});

  const std::int64_t channels = detail::batchnorm_channels(op, x);
  detail::batchnorm_require_channel_vector(op, "gamma", gamma, x, channels);
  detail::batchnorm_require_channel_vector(op, "beta", beta, x, channels);
  detail::batchnorm_require_channel_vector(op, "running_mean", running_mean, x, channels);
  detail::batchnorm_require_channel_vector(op, "running_var", running_var, x, channels);
  detail::batchnorm_require_channel_vector(op, "saved_mean", saved_mean, x, channels);
  detail::batchnorm_require_channel_vector(op, "saved_invstd", saved_invstd, x, channels);
  if (residual.defined()) detail::require_alike(op, "x", x, "residual", residual);
  detail::require_alike(op, "x", x, "y", y);
  detail::batchnorm_require_variance(op, x, channels);
  CUMTL_REQUIRE(momentum >= 0 && momentum <= 1, op, ": momentum must be in [0, 1], got ", momentum);
  CUMTL_REQUIRE(eps > 0 && std::isfinite(eps), op, ": eps must be positive and finite, got ", eps);

  detail::batchnorm_require_no_overlap(op,
                                       {{"y", &y},
                                        {"running_mean", &running_mean},
                                        {"running_var", &running_var},
                                        {"saved_mean", &saved_mean},
                                        {"saved_invstd", &saved_invstd}},
                                       {{"x", &x}, {"gamma", &gamma}, {"beta", &beta}, {"residual", &residual}}, &y,
                                       &residual);

  const std::int64_t rows = x.numel() / channels;
  const std::optional<ChannelSumsOverRanks> over_ranks = detail::batchnorm_sums_over_ranks(op, synchronize_over, x);
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    using P = compute_t<T>;
    CUMTL_DISPATCH(ctx, T, batchnorm_forward_train, ctx, rows, channels, x.data<T>(), gamma.data<P>(), beta.data<P>(),
                   detail::batchnorm_optional<T>(residual), activation, momentum, eps, running_mean.data<P>(),
                   running_var.data<P>(), saved_mean.data<P>(), saved_invstd.data<P>(), y.data<T>(),
                   over_ranks ? &*over_ranks : nullptr);
  });
}

inline void batchnorm_forward_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                   const Tensor& residual, Activation activation, double eps,
                                   const Tensor& running_mean, const Tensor& running_var, Tensor& y) {
  constexpr std::string_view op = "ops::batchnorm_forward_eval";
  detail::require_on_context(ctx, op, {{"x", x}, {"gamma", gamma}, {"beta", beta}});
  if (residual.defined()) detail::require_on_context(ctx, op, "residual", residual);
  detail::require_on_context(ctx, op, {{"running_mean", running_mean}, {"running_var", running_var}, {"y", y}});

  const std::int64_t channels = detail::batchnorm_channels(op, x);
  detail::batchnorm_require_channel_vector(op, "gamma", gamma, x, channels);
  detail::batchnorm_require_channel_vector(op, "beta", beta, x, channels);
  detail::batchnorm_require_channel_vector(op, "running_mean", running_mean, x, channels);
  detail::batchnorm_require_channel_vector(op, "running_var", running_var, x, channels);
  if (residual.defined()) detail::require_alike(op, "x", x, "residual", residual);
  detail::require_alike(op, "x", x, "y", y);
  CUMTL_REQUIRE(eps > 0 && std::isfinite(eps), op, ": eps must be positive and finite, got ", eps);

  detail::batchnorm_require_no_overlap(op, {{"y", &y}},
                                       {{"x", &x},
                                        {"gamma", &gamma},
                                        {"beta", &beta},
                                        {"residual", &residual},
                                        {"running_mean", &running_mean},
                                        {"running_var", &running_var}},
                                       &y, &residual);

  const std::int64_t rows = x.numel() / channels;
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    using P = compute_t<T>;
    CUMTL_DISPATCH(ctx, T, batchnorm_forward_eval, ctx, rows, channels, x.data<T>(), gamma.data<P>(), beta.data<P>(),
                   detail::batchnorm_optional<T>(residual), activation, eps, running_mean.data<P>(),
                   running_var.data<P>(), y.data<T>());
  });
}

inline void batchnorm_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& gamma,
                               const Tensor& saved_mean, const Tensor& saved_invstd, Activation activation, Tensor& dx,
                               Tensor& dresidual, Tensor& dgamma, Tensor& dbeta, GradientMode mode,
                               distributed::Communicator* synchronize_over = nullptr) {
  constexpr std::string_view op = "ops::batchnorm_backward";
  const bool relu = activation == Activation::relu;
  detail::require_on_context(ctx, op, {{"dy", dy}, {"x", x}});
  if (relu || y.defined()) detail::require_on_context(ctx, op, "y", y);
  detail::require_on_context(
      ctx, op, {{"gamma", gamma}, {"saved_mean", saved_mean}, {"saved_invstd", saved_invstd}, {"dx", dx}});
  if (dresidual.defined()) detail::require_on_context(ctx, op, "dresidual", dresidual);
  detail::require_on_context(ctx, op, {{"dgamma", dgamma}, {"dbeta", dbeta}});

  const std::int64_t channels = detail::batchnorm_channels(op, x);
  detail::require_alike(op, "x", x, "dy", dy);
  if (y.defined()) detail::require_alike(op, "x", x, "y", y);
  detail::require_alike(op, "x", x, "dx", dx);
  if (dresidual.defined()) detail::require_alike(op, "x", x, "dresidual", dresidual);
  detail::batchnorm_require_channel_vector(op, "gamma", gamma, x, channels);
  detail::batchnorm_require_channel_vector(op, "saved_mean", saved_mean, x, channels);
  detail::batchnorm_require_channel_vector(op, "saved_invstd", saved_invstd, x, channels);
  detail::batchnorm_require_channel_vector(op, "dgamma", dgamma, x, channels);
  detail::batchnorm_require_channel_vector(op, "dbeta", dbeta, x, channels);
  detail::batchnorm_require_variance(op, x, channels);

  detail::batchnorm_require_no_overlap(op,
                                       {{"dx", &dx}, {"dresidual", &dresidual}, {"dgamma", &dgamma}, {"dbeta", &dbeta}},
                                       {{"dy", &dy},
                                        {"x", &x},
                                        {"y", &y},
                                        {"gamma", &gamma},
                                        {"saved_mean", &saved_mean},
                                        {"saved_invstd", &saved_invstd}},
                                       &dresidual, &dy);

  const std::int64_t rows = x.numel() / channels;
  const std::optional<ChannelSumsOverRanks> over_ranks = detail::batchnorm_sums_over_ranks(op, synchronize_over, x);
  dispatch_activation_type(x.dtype(), op, [&]<class T>() {
    using P = compute_t<T>;
    const T* mask = relu ? y.data<T>() : nullptr;
    CUMTL_DISPATCH(ctx, T, batchnorm_backward, ctx, rows, channels, dy.data<T>(), x.data<T>(), mask, gamma.data<P>(),
                   saved_mean.data<P>(), saved_invstd.data<P>(), activation, dx.data<T>(),
                   detail::batchnorm_optional<T>(dresidual), dgamma.data<P>(), dbeta.data<P>(), mode,
                   over_ranks ? &*over_ranks : nullptr);
  });
}

}  // namespace cumtl::ops
