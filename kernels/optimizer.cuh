#pragma once
// Optimizer updates: SGD (momentum, Nesterov) and AdamW, each fused into one
// grid-stride pass over the flat parameter buffer of a ParameterStore.
//
// Layout. Every array is the store's flat buffer of `count` elements: values,
// gradients, the optimizer state and a decay mask (1 where weight decay
// applies, 0 for exempt BN affine parameters and biases). The mask turns "which
// parameters decay" into data, so one launch covers every parameter instead of
// one launch per parameter group.
//
// Bytes per element (T-sized words): SGD reads value, gradient, buffer, mask and
// writes value, buffer: 6; AdamW reads value, gradient, m, v, mask and writes
// value, m, v: 8. Purely bandwidth-bound; the per-step scalars (bias
// corrections, lr·wd) are computed once on the host in double.
//
// Mixed precision. Given a working copy (bf16 or f16), the same pass also
// writes each updated value rounded to it: 2 more bytes per element, instead
// of a separate conversion that would read the float32 values again.

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cumtl/core/config.hpp"
#include "cumtl/core/dtype.hpp"
#include "cumtl/kernels/grid.cuh"

namespace cumtl {

// One SGD step, as PyTorch's torch.optim.SGD (dampening 0).
struct SgdStep {
  double lr = 0;
  double momentum = 0;
  double weight_decay = 0;
  bool nesterov = false;
  bool first_step = true;  // the buffer is then set to the gradient, whatever it held
};

// One AdamW step, as PyTorch's torch.optim.AdamW (amsgrad off).
struct AdamWStep {
  double lr = 0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  std::uint64_t step = 1;  // 1-based: the bias corrections divide by 1 − β^step
};

}  // namespace cumtl

namespace cumtl::kernels {

template <class T>
struct SgdCoefficients {
  T lr, momentum, weight_decay;
  bool nesterov, first_step;
};

template <class T>
SgdCoefficients<T> sgd_coefficients(const SgdStep& step) {
  return {T(step.lr), T(step.momentum), T(step.weight_decay), step.nesterov, step.first_step};
}

template <class T>
CUMTL_HOST_DEVICE void sgd_element(T& value, T gradient, T& buffer, T mask, const SgdCoefficients<T>& c) {
  const T g = gradient + c.weight_decay * mask * value;
  buffer = c.first_step ? g : c.momentum * buffer + g;
  const T direction = c.nesterov ? g + c.momentum * buffer : buffer;
  value -= c.lr * direction;
}

template <class T>
struct AdamWCoefficients {
  T lr_times_decay, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, step_size, bias_correction2_sqrt;
};

// The bias corrections in double: in float, 1 − 0.999^step loses most of its
// digits for small steps.
template <class T>
AdamWCoefficients<T> adamw_coefficients(const AdamWStep& step) {
  const double bias_correction1 = 1 - std::pow(step.beta1, double(step.step));
  const double bias_correction2 = 1 - std::pow(step.beta2, double(step.step));
  return {T(step.lr * step.weight_decay),
          T(step.beta1),
          T(step.beta2),
          T(1 - step.beta1),
          T(1 - step.beta2),
          T(step.eps),
          T(step.lr / bias_correction1),
          T(std::sqrt(bias_correction2))};
}

template <class T>
CUMTL_HOST_DEVICE void adamw_element(T& value, T gradient, T& m, T& v, T mask, const AdamWCoefficients<T>& c) {
  // Decoupled decay: applied to the weight before the Adam step, never through the moments.
  value -= c.lr_times_decay * mask * value;
  m = c.beta1 * m + c.one_minus_beta1 * gradient;
  v = c.beta2 * v + c.one_minus_beta2 * gradient * gradient;
  const T denominator = std::sqrt(v) / c.bias_correction2_sqrt + c.eps;
  value -= c.step_size * m / denominator;
}

// Calls fn(copy) with the working copy `working` typed as the 2-byte type
// `type` names, or with a null void* when there is none (working is null).
template <class Fn>
void with_working_copy(ScalarType type, std::uint16_t* working, Fn&& fn) {
  if (working == nullptr)
    fn(static_cast<void*>(nullptr));
  else if (type == ScalarType::bf16)
    fn(reinterpret_cast<bfloat16_t*>(working));
  else
    fn(reinterpret_cast<float16_t*>(working));
}

// working[i] = value rounded once to the working type; nothing without a working copy.
template <class Working, class T>
CUMTL_HOST_DEVICE inline void store_working(Working* working, std::int64_t i, T value) {
  if constexpr (!std::is_void_v<Working>) working[i] = Working(float(value));
}

#if defined(CUMTL_KERNEL_CODE)
template <class T, class Working>
__global__ void sgd_update_kernel(std::int64_t count, T* __restrict__ values, const T* __restrict__ gradients,
                                  T* __restrict__ buffer, const T* __restrict__ mask, SgdCoefficients<T> c,
                                  Working* __restrict__ working) {
  CUMTL_GRID_STRIDE_LOOP(i, count) {
    T value = values[i], momentum = buffer[i];
    sgd_element(value, gradients[i], momentum, mask[i], c);
    values[i] = value;
    buffer[i] = momentum;
    store_working(working, i, value);
  }
}

template <class T, class Working>
__global__ void adamw_update_kernel(std::int64_t count, T* __restrict__ values, const T* __restrict__ gradients,
                                    T* __restrict__ m, T* __restrict__ v, const T* __restrict__ mask,
                                    AdamWCoefficients<T> c, Working* __restrict__ working) {
  CUMTL_GRID_STRIDE_LOOP(i, count) {
    T value = values[i], first = m[i], second = v[i];
    adamw_element(value, gradients[i], first, second, mask[i], c);
    values[i] = value;
    m[i] = first;
    v[i] = second;
    store_working(working, i, value);
  }
}
#endif

}  // namespace cumtl::kernels
