#pragma once
// Parameters and buffers of a network, and the store that owns their memory.
//
// Layers declare what they need (a name as PyTorch names it, a shape, whether
// weight decay applies) and hold Tensor handles; ParameterStore then allocates
// every parameter value in one flat tensor, every gradient in another, and
// every buffer (BN running statistics) in a third, and points each layer's
// handles at views into them. So the optimizer updates all parameters in one
// launch, a gradient all-reduce is one call, and zeroing gradients is one fill.
//
// Mixed precision: the values (the master weights), the gradients and the
// buffers are of the master type (float32), and a fourth flat tensor holds
// the working copy of the values in the activation type (bf16 or f16), which
// the layers that compute in the activation type (the convolutions) read.
// The optimizer's step writes it in the same pass as the update. Any other
// write to the master values marks it stale, and a model's next forward pass
// rounds the values again (make_working_current()): taking the flat values
// through the non-const values() does, and a write through a parameter's own
// view (initialization, loaded weights, a resumed checkpoint) is followed by
// values_written(), which code that writes such views itself calls too.
// Without mixed precision the working copy is the values themselves.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cumtl/core/modes.hpp"
#include "cumtl/core/tensor.hpp"
#include "cumtl/ops/elementwise.hpp"

namespace cumtl {

// One parameter: its value, its working copy and its gradient are views into the store's flat tensors.
struct Parameter {
  std::string name;
  Shape shape;
  bool decay = true;  // false for BN affine parameters and biases, when the optimizer exempts them
  Tensor value;
  Tensor gradient;
  Tensor working;  // the value in the activation type; `value` itself without mixed precision
};

// One buffer: state that is saved and loaded but not trained (running statistics).
struct Buffer {
  std::string name;
  Shape shape;
  double initial_value = 0;
  Tensor value;
};

class ParameterStore {
 public:
  // Declares a parameter. The pointer stays valid for the store's lifetime; the
  // layer reads value and gradient through it once allocate() has run.
  Parameter* add_parameter(std::string name, Shape shape, bool decay) {
    CUMTL_REQUIRE(!allocated(), "ParameterStore: parameter '", name, "' declared after allocate()");
    parameters_.push_back(std::make_unique<Parameter>(Parameter{std::move(name), shape, decay, {}, {}, {}}));
    return parameters_.back().get();
  }

  Buffer* add_buffer(std::string name, Shape shape, double initial_value) {
    CUMTL_REQUIRE(!allocated(), "ParameterStore: buffer '", name, "' declared after allocate()");
    buffers_.push_back(std::make_unique<Buffer>(Buffer{std::move(name), shape, initial_value, {}}));
    return buffers_.back().get();
  }

  // Allocates the flat tensors on ctx's device, points every parameter and
  // buffer at its view, zeroes the gradients and sets buffers to their initial
  // values. `working`, when it differs from `dtype`, is the activation type of
  // mixed precision (bfloat16 or float16 with float32 master values).
  void allocate(Context& ctx, ScalarType dtype, std::optional<ScalarType> working = std::nullopt) {
    CUMTL_REQUIRE(!allocated(), "ParameterStore::allocate called twice");
    const bool mixed = working && *working != dtype;
    CUMTL_REQUIRE(!mixed || (dtype == ScalarType::f32 && (*working == ScalarType::bf16 || *working == ScalarType::f16)),
                  "ParameterStore::allocate: mixed precision keeps float32 master values with bfloat16 or float16 "
                  "working copies, not ",
                  name_of(dtype), " with ", name_of(*working));
    values_ = Tensor::empty(ctx, Shape{parameter_count()}, dtype);
    working_values_ = mixed ? Tensor::empty(ctx, Shape{parameter_count()}, *working) : values_;
    gradients_ = Tensor::zeros(ctx, Shape{parameter_count()}, dtype);
    std::int64_t buffer_elements = 0;
    for (const auto& buffer : buffers_) buffer_elements += buffer->shape.numel();
    buffer_values_ = Tensor::empty(ctx, Shape{buffer_elements}, dtype);
    std::int64_t offset = 0;
    for (const auto& parameter : parameters_) {
      const std::int64_t count = parameter->shape.numel();
      parameter->value = values_.slice(offset, offset + count).view(parameter->shape);
      parameter->gradient = gradients_.slice(offset, offset + count).view(parameter->shape);
      parameter->working = working_values_.slice(offset, offset + count).view(parameter->shape);
      offset += count;
    }
    offset = 0;
    for (const auto& buffer : buffers_) {
      const std::int64_t count = buffer->shape.numel();
      buffer->value = buffer_values_.slice(offset, offset + count).view(buffer->shape);
      ops::fill(ctx, buffer->value, buffer->initial_value);
      offset += count;
    }
  }

  bool allocated() const noexcept { return values_.defined(); }
  bool mixed() const noexcept { return allocated() && working_values_.dtype() != values_.dtype(); }

  // The working copy becomes the master values rounded to the activation type (nothing without mixed precision).
  void refresh_working(Context& ctx) {
    CUMTL_REQUIRE(allocated(), "ParameterStore::refresh_working before allocate");
    if (mixed()) ops::convert(ctx, values_, working_values_);
    working_current_ = true;
  }

  // refresh_working() if the master values were written since the working copy was last made.
  void make_working_current(Context& ctx) {
    if (!working_current_) refresh_working(ctx);
  }

  // The master values were written by something other than an optimizer step.
  void values_written() noexcept { working_current_ = false; }
  // An optimizer step wrote the master values and, in the same pass, the working copy.
  void working_written() noexcept { working_current_ = true; }
  bool working_current() const noexcept { return working_current_; }

  std::int64_t parameter_count() const {
    std::int64_t count = 0;
    for (const auto& parameter : parameters_) count += parameter->shape.numel();
    return count;
  }

  // All values, all gradients, all buffers, each one flat tensor. The values
  // taken to be written (the non-const overload) mark the working copy stale;
  // read them through a const store.
  Tensor& values() {
    working_current_ = false;
    return values_;
  }
  const Tensor& values() const { return values_; }
  Tensor& gradients() { return gradients_; }
  Tensor& buffer_values() { return buffer_values_; }
  Tensor& working_values() { return working_values_; }
  const Tensor& working_values() const { return working_values_; }

  const std::vector<std::unique_ptr<Parameter>>& parameters() const noexcept { return parameters_; }
  const std::vector<std::unique_ptr<Buffer>>& buffers() const noexcept { return buffers_; }

  Parameter& parameter(std::string_view name) const {
    for (const auto& parameter : parameters_)
      if (parameter->name == name) return *parameter;
    CUMTL_FAIL("no parameter is named '", name, "'");
  }

  Buffer& buffer(std::string_view name) const {
    for (const auto& buffer : buffers_)
      if (buffer->name == name) return *buffer;
    CUMTL_FAIL("no buffer is named '", name, "'");
  }

  void zero_gradients(Context& ctx) { gradients_.set_zero(ctx); }

  // Where the parameter declared `index`-th (0-based; parameters().size() for the end) starts in the flat tensors.
  std::int64_t element_offset(std::size_t index) const {
    CUMTL_REQUIRE(index <= parameters_.size(), "ParameterStore::element_offset: parameter ", index, " of ",
                  parameters_.size());
    std::int64_t offset = 0;
    for (std::size_t i = 0; i < index; ++i) offset += parameters_[i]->shape.numel();
    return offset;
  }

  // One tensor of `shape` over the values (or gradients) of `parameters`, which
  // must have been declared one after another: e.g. several heads' weights seen
  // as one matrix, so that all heads run as one GEMM.
  Tensor joint_view(const std::vector<Parameter*>& parameters, const Shape& shape, bool gradients) {
    CUMTL_REQUIRE(allocated() && !parameters.empty(), "ParameterStore::joint_view: nothing to view");
    std::int64_t offset = 0;
    std::size_t index = 0;
    while (index < parameters_.size() && parameters_[index].get() != parameters.front()) {
      offset += parameters_[index]->shape.numel();
      ++index;
    }
    std::int64_t count = 0;
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      CUMTL_REQUIRE(index + i < parameters_.size() && parameters_[index + i].get() == parameters[i],
                    "ParameterStore::joint_view: '", parameters[i]->name, "' does not follow '",
                    parameters.front()->name, "' in declaration order");
      count += parameters[i]->shape.numel();
    }
    CUMTL_REQUIRE(shape.numel() == count, "ParameterStore::joint_view: ", count, " elements cannot be seen as ", shape);
    return (gradients ? gradients_ : values_).slice(offset, offset + count).view(shape);
  }

 private:
  std::vector<std::unique_ptr<Parameter>> parameters_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
  Tensor values_, gradients_, buffer_values_, working_values_;
  bool working_current_ = false;
};

namespace detail {

// Where a layer that computes in the activation type `type` writes a
// parameter's gradient: the gradient itself when it is of that type;
// otherwise (mixed precision: a 2-byte result for a float32 gradient) a
// temporary of `type`, overwritten, which finish() widens into the gradient,
// replacing it or adding to it in float32 per `mode`.
class ActivationTypeGradient {
 public:
  ActivationTypeGradient(Context& ctx, Parameter& parameter, ScalarType type, GradientMode mode)
      : parameter_(parameter),
        mode_(mode),
        temporary_(parameter.gradient.dtype() != type),
        tensor_(temporary_ ? Tensor::empty(ctx, parameter.shape, type) : parameter.gradient) {}

  Tensor& tensor() noexcept { return tensor_; }
  GradientMode mode() const noexcept { return temporary_ ? GradientMode::overwrite : mode_; }

  void finish(Context& ctx) {
    if (!temporary_) return;
    if (mode_ == GradientMode::overwrite) {
      ops::convert(ctx, tensor_, parameter_.gradient);
      return;
    }
    Tensor wide = Tensor::empty(ctx, parameter_.shape, parameter_.gradient.dtype());
    ops::convert(ctx, tensor_, wide);
    ops::add(ctx, parameter_.gradient, wide, parameter_.gradient);
  }

 private:
  Parameter& parameter_;
  GradientMode mode_;
  bool temporary_;
  Tensor tensor_;
};

}  // namespace detail

}  // namespace cumtl
