#pragma once
// ReLU and Dropout layers. Inside residual networks ReLU is usually fused into
// BatchNorm2d; the standalone layer is for the other places.

#include <optional>
#include <string>

#include "cumtl/core/random.hpp"
#include "cumtl/layers/layer_checks.hpp"
#include "cumtl/ops/activation.hpp"
#include "cumtl/ops/elementwise.hpp"

namespace cumtl {

template <class T>
class ReLU {
 public:
  explicit ReLU(std::string name) : name_(std::move(name)) {}

  Tensor forward(Context& ctx, const Tensor& x) {
    CUMTL_REQUIRE(x.defined() && x.dtype() == scalar_type_v<T>, label(), ": the input is ", x.description());
    output_ = Tensor::empty(ctx, x.shape(), scalar_type_v<T>);
    ops::relu_forward(ctx, x, output_);
    return output_;
  }

  Tensor backward(Context& ctx, const Tensor& dy) {
    detail::require_forward_ran(label(), output_);
    Tensor dx = Tensor::empty(ctx, output_.shape(), scalar_type_v<T>);
    ops::relu_backward(ctx, dy, output_, dx);
    output_ = Tensor();
    return dx;
  }

 private:
  std::string label() const { return "ReLU '" + name_ + "'"; }

  std::string name_;
  Tensor output_;
};

// The residual addition y = a + b on its own (the blocks fuse it into
// BatchNorm2d); backward hands the same gradient to both inputs.
template <class T>
class ResidualAdd {
 public:
  explicit ResidualAdd(std::string name) : name_(std::move(name)) {}

  Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    CUMTL_REQUIRE(a.defined() && a.dtype() == scalar_type_v<T>, label(), ": the input is ", a.description());
    Tensor y = Tensor::empty(ctx, a.shape(), scalar_type_v<T>);
    ops::add(ctx, a, b, y);
    return y;
  }

  // dL/da = dL/db = dy: one tensor serves both.
  const Tensor& backward(const Tensor& dy) const { return dy; }

 private:
  std::string label() const { return "ResidualAdd '" + name_ + "'"; }

  std::string name_;
};

// Inverted dropout: in training each element is zeroed with probability p and
// the others are scaled by 1/(1 − p); in evaluation it is the identity. The
// mask is a function of counters from the generator, recomputed in backward.
template <class T>
class Dropout {
 public:
  Dropout(std::string name, double p) : name_(std::move(name)), p_(p) {
    CUMTL_REQUIRE(p >= 0 && p < 1, label(), ": p = ", p, ", expected [0, 1)");
  }

  Tensor forward(Context& ctx, const Tensor& x, Phase phase, Generator& generator) {
    CUMTL_REQUIRE(x.defined() && x.dtype() == scalar_type_v<T>, label(), ": the input is ", x.description());
    if (phase == Phase::eval || p_ == 0) {
      mask_.reset();
      return x;
    }
    Tensor y = Tensor::empty(ctx, x.shape(), scalar_type_v<T>);
    mask_ = ops::dropout_forward(ctx, x, p_, generator, y);
    return y;
  }

  Tensor backward(Context& ctx, const Tensor& dy) {
    if (!mask_) return dy;  // the identity in evaluation or with p = 0
    Tensor dx = Tensor::empty(ctx, dy.shape(), scalar_type_v<T>);
    ops::dropout_backward(ctx, dy, *mask_, dx);
    mask_.reset();
    return dx;
  }

 private:
  std::string label() const { return "Dropout '" + name_ + "'"; }

  std::string name_;
  double p_;
  std::optional<ops::DropoutMask> mask_;
};

}  // namespace cumtl
