#pragma once
// MultiHeadModel: a ResNet trunk, global average pooling, and one linear head
// per task, described at run time. The heads' parameters ("heads.<name>.weight"
// [classes, features], "heads.<name>.bias") are declared one after another, so
// together they are one [T, features] matrix and all heads run as one GEMM,
// writing the N×T logits that MultiTaskLoss reads (heads side by side, in order).
//
// The model owns its ParameterStore: after construction, allocate() puts all
// parameters, gradients and buffers on a device in three flat tensors.
//
// Mixed precision: a float32 model may run its trunk in bfloat16 or float16
// (the `activations` of its constructor). Its parameters stay float32 master
// values, the convolutions read their rounded working copy (written by the
// optimizer's step, rounded afresh here when anything else wrote the values),
// and the heads stay float32: the trunk's features are widened
// before them, so the logits, the loss and the heads' gradients are float32,
// and their gradient is rounded to the activation type on the way back. The
// heads are a few thousand multiply-adds per image, which float32 costs nothing.

#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "cumtl/layers/linear.hpp"
#include "cumtl/loss/multitask_loss.hpp"
#include "cumtl/models/resnet.hpp"

namespace cumtl {

template <class T>
class MultiHeadModel {
  // The trunks a model of T can run: in T itself, and a float32 model also in bfloat16 or float16.
  using Trunk =
      std::conditional_t<std::is_same_v<T, float>, std::variant<ResNet<float>, ResNet<bfloat16_t>, ResNet<float16_t>>,
                         std::variant<ResNet<T>>>;

 public:
  // `activations`: the scalar type the trunk computes in (T itself, or for a float32 model bfloat16 or float16).
  MultiHeadModel(const ResNetSpec& trunk, std::vector<HeadSpec> heads, ScalarType activations = scalar_type_v<T>)
      : heads_(std::move(heads)), activations_(activations), trunk_(make_trunk(store_, trunk, activations)) {
    CUMTL_REQUIRE(!heads_.empty(), "MultiHeadModel: no heads");
    const int features = trunk.feature_count();
    first_head_parameter_ = store_.parameters().size();
    for (const HeadSpec& head : heads_) {
      CUMTL_REQUIRE(head.outputs > 0, "MultiHeadModel: head '", head.name, "' has ", head.outputs, " outputs");
      head_weights_.push_back(
          store_.add_parameter("heads." + head.name + ".weight", Shape{head.outputs, features}, true));
      logit_count_ += head.outputs;
    }
    for (const HeadSpec& head : heads_)
      head_biases_.push_back(store_.add_parameter("heads." + head.name + ".bias", Shape{head.outputs}, false));
  }

  const std::vector<HeadSpec>& heads() const noexcept { return heads_; }
  const ResNetSpec& trunk_spec() const noexcept {
    return std::visit([](const auto& trunk) -> const ResNetSpec& { return trunk.spec(); }, trunk_);
  }
  // The scalar type the trunk computes in.
  ScalarType activations() const noexcept { return activations_; }
  ParameterStore& parameters() noexcept { return store_; }
  std::int64_t logit_count() const noexcept { return logit_count_; }

  // Puts parameters, gradients (zeroed) and buffers on ctx's device.
  void allocate(Context& ctx) {
    store_.allocate(ctx, scalar_type_v<T>, activations_);
    const std::int64_t features = trunk_spec().feature_count();
    weight_ = store_.joint_view(head_weights_, Shape{logit_count_, features}, false);
    weight_gradient_ = store_.joint_view(head_weights_, Shape{logit_count_, features}, true);
    bias_ = store_.joint_view(head_biases_, Shape{logit_count_}, false);
    bias_gradient_ = store_.joint_view(head_biases_, Shape{logit_count_}, true);
  }

  // He initialization of the convolutions, unit BN, PyTorch's default for the
  // heads (uniform in ±1/sqrt(features)); deterministic for a generator state.
  void initialize(Context& ctx, Generator& generator) {
    CUMTL_REQUIRE(store_.allocated(), "MultiHeadModel::initialize before allocate");
    std::visit([&](auto& trunk) { trunk.initialize(ctx, generator); }, trunk_);
    const double bound = 1.0 / std::sqrt(double(trunk_spec().feature_count()));
    ops::uniform(ctx, weight_, generator, -bound, bound);
    ops::uniform(ctx, bias_, generator, -bound, bound);
    store_.values_written();
  }

  // images [N, H, W, in_channels] (of T, or of the activation type) → logits [N, T].
  Tensor forward(Context& ctx, const Tensor& images, Phase phase) {
    CUMTL_REQUIRE(store_.allocated(), "MultiHeadModel::forward before allocate");
    store_.make_working_current(ctx);
    features_ = std::visit(
        [&](auto& trunk) {
          return converted(ctx, trunk.forward(ctx, converted(ctx, images, scalar_type_v<T>, activations_), phase),
                           activations_, scalar_type_v<T>);
        },
        trunk_);
    Tensor logits = Tensor::empty(ctx, Shape{features_.shape()[0], logit_count_}, scalar_type_v<T>);
    ops::linear_forward(ctx, features_, weight_, bias_, logits);
    return logits;
  }

  // Adds the parameter gradients (or writes them, per mode) for dL/dlogits; `ready`, when set, hears as they
  // become final (GradientsReady, models/resnet.hpp), the heads' first.
  void backward(Context& ctx, const Tensor& dlogits, GradientMode mode = GradientMode::accumulate,
                const GradientsReady& ready = {}) {
    detail::require_forward_ran("MultiHeadModel", features_);
    Tensor dfeatures = Tensor::empty(ctx, features_.shape(), scalar_type_v<T>);
    ops::linear_backward(ctx, dlogits, features_, weight_, dfeatures, weight_gradient_, bias_gradient_, mode);
    if (ready) ready(store_.element_offset(first_head_parameter_));
    std::visit(
        [&](auto& trunk) {
          trunk.backward(ctx, converted(ctx, dfeatures, scalar_type_v<T>, activations_), mode, ready);
        },
        trunk_);
    features_ = Tensor();
  }

  // Data-parallel training: the trunk's batch norms normalize with the whole batch of `ranks` (null: each rank's own).
  void synchronize_batch_norm(distributed::Communicator* ranks) noexcept {
    std::visit([&](auto& trunk) { trunk.synchronize_batch_norm(ranks); }, trunk_);
  }

  // The features of the last forward pass ([N, feature_count] of T), e.g. for a probe trained on a frozen trunk.
  const Tensor& features() const noexcept { return features_; }

 private:
  static Trunk make_trunk(ParameterStore& store, const ResNetSpec& spec, ScalarType activations) {
    if constexpr (std::is_same_v<T, float>) {
      if (activations == ScalarType::bf16) return Trunk(std::in_place_type<ResNet<bfloat16_t>>, store, spec);
      if (activations == ScalarType::f16) return Trunk(std::in_place_type<ResNet<float16_t>>, store, spec);
    }
    CUMTL_REQUIRE(activations == scalar_type_v<T>, "MultiHeadModel: a ", name_of(scalar_type_v<T>),
                  " model runs its trunk in ", name_of(scalar_type_v<T>),
                  std::is_same_v<T, float> ? ", bfloat16 or float16" : "", ", not in ", name_of(activations));
    return Trunk(std::in_place_type<ResNet<T>>, store, spec);
  }

  // x converted to `to` when it is of `from` and the two differ (mixed precision); otherwise x itself, which
  // the next layer checks.
  static Tensor converted(Context& ctx, const Tensor& x, ScalarType from, ScalarType to) {
    if (from == to || x.dtype() != from) return x;
    Tensor y = Tensor::empty(ctx, x.shape(), to);
    ops::convert(ctx, x, y);
    return y;
  }

  ParameterStore store_;
  std::vector<HeadSpec> heads_;
  ScalarType activations_;
  Trunk trunk_;
  std::vector<Parameter*> head_weights_, head_biases_;
  std::int64_t logit_count_ = 0;
  std::size_t first_head_parameter_ = 0;  // the index of the first head weight in the store
  Tensor weight_, weight_gradient_, bias_, bias_gradient_, features_;
};

}  // namespace cumtl
