#pragma once
// CPU twins of batch normalization (kernels/batchnorm.cuh): the oracle for the
// CUDA kernels, with the same signatures as cuda::. The statistics are the
// textbook two passes in double (the mean, then the squared deviations from
// it), independent of the kernels' shifted sums and merges, so the GPU tests
// compare two different sound algorithms; the per-element and per-channel math
// is the kernels' own.

#include <cstdint>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/core/modes.hpp"
#include "cumtl/kernels/batchnorm.cuh"

namespace cumtl::inline CUMTL_ABI::cpu {

// y = act(bn(x) + residual) with a given normalization; shared by train and eval.
template <class T>
void batchnorm_apply(std::int64_t rows, std::int64_t channels, const T* x, const T* residual, const T* gamma,
                     const T* beta, const kernels::BatchnormNormalization<T>& normalization, Activation activation,
                     T* y) {
  std::vector<kernels::BatchnormAffine<T>> affine(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c)
    affine[std::size_t(c)] = kernels::batchnorm_affine(normalization, gamma, beta, c);
  const bool relu = activation == Activation::relu;
  for (std::int64_t row = 0; row < rows; ++row)
    for (std::int64_t c = 0; c < channels; ++c) {
      const std::int64_t i = row * channels + c;
      y[i] = kernels::batchnorm_output(x[i], residual != nullptr ? residual[i] : T(0), affine[std::size_t(c)], relu);
    }
}

template <class T>
void batchnorm_forward_train(Context&, std::int64_t rows, std::int64_t channels, const T* x, const T* gamma,
                             const T* beta, const T* residual, Activation activation, double momentum, double eps,
                             T* running_mean, T* running_var, T* saved_mean, T* saved_invstd, T* y) {
  const std::size_t width = static_cast<std::size_t>(channels);
  std::vector<double> mean(width, 0.0), m2(width, 0.0);
  for (std::int64_t row = 0; row < rows; ++row)
    for (std::int64_t c = 0; c < channels; ++c) mean[std::size_t(c)] += double(x[row * channels + c]);
  for (double& value : mean) value /= double(rows);
  for (std::int64_t row = 0; row < rows; ++row)
    for (std::int64_t c = 0; c < channels; ++c) {
      const double deviation = double(x[row * channels + c]) - mean[std::size_t(c)];
      m2[std::size_t(c)] += deviation * deviation;
    }
  for (std::int64_t c = 0; c < channels; ++c)
    kernels::batchnorm_store_statistics(c, mean[std::size_t(c)], m2[std::size_t(c)], double(rows), momentum, eps,
                                        running_mean, running_var, saved_mean, saved_invstd);
  batchnorm_apply(rows, channels, x, residual, gamma, beta,
                  kernels::BatchnormNormalization<T>{saved_mean, saved_invstd, nullptr, eps}, activation, y);
}

template <class T>
void batchnorm_forward_eval(Context&, std::int64_t rows, std::int64_t channels, const T* x, const T* gamma,
                            const T* beta, const T* residual, Activation activation, double eps, const T* running_mean,
                            const T* running_var, T* y) {
  batchnorm_apply(rows, channels, x, residual, gamma, beta,
                  kernels::BatchnormNormalization<T>{running_mean, nullptr, running_var, eps}, activation, y);
}

template <class T>
void batchnorm_backward(Context&, std::int64_t rows, std::int64_t channels, const T* dy, const T* x, const T* y,
                        const T* gamma, const T* saved_mean, const T* saved_invstd, Activation activation, T* dx,
                        T* dresidual, T* dgamma, T* dbeta, GradientMode mode) {
  const bool relu = activation == Activation::relu;
  const std::size_t width = static_cast<std::size_t>(channels);
  std::vector<double> dpre_sum(width, 0.0), centered_sum(width, 0.0);
  for (std::int64_t row = 0; row < rows; ++row)
    for (std::int64_t c = 0; c < channels; ++c) {
      const std::int64_t i = row * channels + c;
      const double dpre = double(kernels::batchnorm_pre_gradient(dy[i], relu ? y[i] : T(0), relu));
      dpre_sum[std::size_t(c)] += dpre;
      centered_sum[std::size_t(c)] += dpre * (double(x[i]) - double(saved_mean[c]));
    }

  std::vector<kernels::BatchnormGradientAffine<T>> affine(width);
  for (std::int64_t c = 0; c < channels; ++c) {
    const kernels::BatchnormChannelGradient sums{dpre_sum[std::size_t(c)],
                                                 double(saved_invstd[c]) * centered_sum[std::size_t(c)]};
    kernels::batchnorm_store_gradient(dgamma[c], sums.dgamma, mode == GradientMode::accumulate);
    kernels::batchnorm_store_gradient(dbeta[c], sums.dbeta, mode == GradientMode::accumulate);
    affine[std::size_t(c)] =
        kernels::batchnorm_gradient_affine(saved_mean[c], saved_invstd[c], gamma[c], sums, double(rows));
  }

  // dresidual may be dy: each element of dy is read before it is overwritten.
  for (std::int64_t row = 0; row < rows; ++row)
    for (std::int64_t c = 0; c < channels; ++c) {
      const std::int64_t i = row * channels + c;
      const T dpre = kernels::batchnorm_pre_gradient(dy[i], relu ? y[i] : T(0), relu);
      if (dresidual != nullptr) dresidual[i] = dpre;
      dx[i] = kernels::batchnorm_input_gradient(dpre, x[i], affine[std::size_t(c)]);
    }
}

}  // namespace cumtl::inline CUMTL_ABI::cpu
