#pragma once
// MultiHeadModel: a ResNet trunk, global average pooling, and one linear head
// per task, described at run time. The heads' parameters ("heads.<name>.weight"
// [classes, features], "heads.<name>.bias") are declared one after another, so
// together they are one [T, features] matrix and all heads run as one GEMM,
// writing the N×T logits that MultiTaskLoss reads (heads side by side, in order).
//
// The model owns its ParameterStore: after construction, allocate() puts all
// parameters, gradients and buffers on a device in three flat tensors.

#include <string>
#include <vector>

#include "cumtl/layers/linear.hpp"
#include "cumtl/loss/multitask_loss.hpp"
#include "cumtl/models/resnet.hpp"

namespace cumtl {

template <class T>
class MultiHeadModel {
 public:
  MultiHeadModel(const ResNetSpec& trunk, std::vector<HeadSpec> heads)
      : heads_(std::move(heads)), trunk_(store_, trunk) {
    CUMTL_REQUIRE(!heads_.empty(), "MultiHeadModel: no heads");
    const int features = trunk.feature_count();
    first_head_parameter_ = store_.parameters().size();
    for (const HeadSpec& head : heads_) {
      CUMTL_REQUIRE(head.outputs > 0, "MultiHeadModel: head '", head.name, "' has ", head.outputs, " outputs");
      head_weights_.push_back(store_.add_parameter("heads." + head.name + ".weight", Shape{head.outputs, features},
                                                   true));
      logit_count_ += head.outputs;
    }
    for (const HeadSpec& head : heads_)
      head_biases_.push_back(store_.add_parameter("heads." + head.name + ".bias", Shape{head.outputs}, false));
  }

  const std::vector<HeadSpec>& heads() const noexcept { return heads_; }
  const ResNetSpec& trunk_spec() const noexcept { return trunk_.spec(); }
  ParameterStore& parameters() noexcept { return store_; }
  std::int64_t logit_count() const noexcept { return logit_count_; }

  // Puts parameters, gradients (zeroed) and buffers on ctx's device.
  void allocate(Context& ctx) {
    store_.allocate(ctx, scalar_type_v<T>);
    const std::int64_t features = trunk_.spec().feature_count();
    weight_ = store_.joint_view(head_weights_, Shape{logit_count_, features}, false);
    weight_gradient_ = store_.joint_view(head_weights_, Shape{logit_count_, features}, true);
    bias_ = store_.joint_view(head_biases_, Shape{logit_count_}, false);
    bias_gradient_ = store_.joint_view(head_biases_, Shape{logit_count_}, true);
  }

  // He initialization of the convolutions, unit BN, PyTorch's default for the
  // heads (uniform in ±1/sqrt(features)); deterministic for a generator state.
  void initialize(Context& ctx, Generator& generator) {
    CUMTL_REQUIRE(store_.allocated(), "MultiHeadModel::initialize before allocate");
    trunk_.initialize(ctx, generator);
    const double bound = 1.0 / std::sqrt(double(trunk_.spec().feature_count()));
    ops::uniform(ctx, weight_, generator, -bound, bound);
    ops::uniform(ctx, bias_, generator, -bound, bound);
  }

  // images [N, H, W, in_channels] → logits [N, T].
  Tensor forward(Context& ctx, const Tensor& images, Phase phase) {
    CUMTL_REQUIRE(store_.allocated(), "MultiHeadModel::forward before allocate");
    features_ = trunk_.forward(ctx, images, phase);
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
    trunk_.backward(ctx, dfeatures, mode, ready);
    features_ = Tensor();
  }

  // Data-parallel training: the trunk's batch norms normalize with the whole batch of `ranks` (null: each rank's own).
  void synchronize_batch_norm(distributed::Communicator* ranks) noexcept { trunk_.synchronize_batch_norm(ranks); }

  // The features of the last forward pass ([N, feature_count]), e.g. for a probe trained on a frozen trunk.
  const Tensor& features() const noexcept { return features_; }

 private:
  ParameterStore store_;
  std::vector<HeadSpec> heads_;
  ResNet<T> trunk_;
  std::vector<Parameter*> head_weights_, head_biases_;
  std::int64_t logit_count_ = 0;
  std::size_t first_head_parameter_ = 0;  // the index of the first head weight in the store
  Tensor weight_, weight_gradient_, bias_, bias_gradient_, features_;
};

}  // namespace cumtl
