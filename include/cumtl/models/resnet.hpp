#pragma once
// Residual networks built at run time from a description: BasicBlock (ResNet-
// 18/34) and Bottleneck (ResNet-50) stages after a stem, ending in global
// average pooling. Each block's forward and its backward, which calls its parts
// in reverse, are written out; parameter names follow torchvision
// ("layer1.0.conv1.weight", "layer2.0.downsample.1.running_mean").

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cumtl/layers/batchnorm2d.hpp"
#include "cumtl/layers/conv2d.hpp"
#include "cumtl/layers/pooling.hpp"

namespace cumtl {

enum class BlockKind : std::uint8_t { basic, bottleneck };

// imagenet: 7×7/2 convolution and 3×3/2 max pooling (224-pixel inputs);
// small: one 3×3/1 convolution (64-pixel and smaller inputs);
// small_strided: one 3×3/2 convolution, which reads every input pixel but
// leaves the stages a quarter of the positions (64-pixel inputs on a CPU).
enum class StemKind : std::uint8_t { imagenet, small, small_strided };

inline constexpr std::string_view stem_kind_names[] = {"imagenet", "small", "small_strided"};

inline std::string_view name_of(StemKind stem) {
  return stem_kind_names[static_cast<std::size_t>(stem)];
}

inline std::optional<StemKind> parse_stem_kind(std::string_view name) {
  for (std::size_t i = 0; i < std::size(stem_kind_names); ++i)
    if (stem_kind_names[i] == name) return static_cast<StemKind>(i);
  return std::nullopt;
}

struct ResNetSpec {
  BlockKind block = BlockKind::basic;
  std::vector<int> blocks{2, 2, 2, 2};         // blocks per stage
  std::vector<int> widths{64, 128, 256, 512};  // block width per stage (×4 at a bottleneck's output)
  StemKind stem = StemKind::imagenet;
  int stem_width = 64;
  int in_channels = 3;

  static ResNetSpec resnet18() { return {}; }
  static ResNetSpec resnet34() { return {.blocks = {3, 4, 6, 3}}; }
  static ResNetSpec resnet50() { return {.block = BlockKind::bottleneck, .blocks = {3, 4, 6, 3}}; }
  // A CPU-sized network: widths 16-32-64-128, one BasicBlock per stage, small stem.
  static ResNetSpec small() {
    return {.blocks = {1, 1, 1, 1}, .widths = {16, 32, 64, 128}, .stem = StemKind::small, .stem_width = 16};
  }
  // small() behind the strided stem: a 64-pixel face for about the cost of a
  // 32-pixel one, and more accurate per second of CPU training than small() at 48.
  static ResNetSpec compact() {
    ResNetSpec spec = small();
    spec.stem = StemKind::small_strided;
    return spec;
  }

  int expansion() const { return block == BlockKind::bottleneck ? 4 : 1; }
  int feature_count() const { return widths.back() * expansion(); }
};

template <class T>
class ResidualBlock {
 public:
  virtual ~ResidualBlock() = default;
  virtual void initialize(Context& ctx, Generator& generator) = 0;
  virtual Tensor forward(Context& ctx, const Tensor& x, Phase phase) = 0;
  virtual Tensor backward(Context& ctx, const Tensor& dy, GradientMode mode) = 0;
  virtual void synchronize_batch_norm(distributed::Communicator* ranks) noexcept = 0;
};

namespace detail {

// The shortcut of a block whose shape changes: a 1×1 convolution with the
// block's stride and a batch norm ("<block>.downsample.0" and ".1").
template <class T>
class Projection {
 public:
  Projection(ParameterStore& store, const std::string& block, int in, int out, int stride)
      : conv_(store, block + ".downsample.0", in, out, {.kernel = 1, .stride = stride}),
        bn_(store, block + ".downsample.1", out) {}
  void initialize(Context& ctx, Generator& generator) {
    conv_.initialize(ctx, generator);
    bn_.initialize(ctx);
  }
  Tensor forward(Context& ctx, const Tensor& x, Phase phase) { return bn_.forward(ctx, conv_.forward(ctx, x), phase); }
  Tensor backward(Context& ctx, const Tensor& dy, GradientMode mode) {
    return conv_.backward(ctx, bn_.backward(ctx, dy, mode).input, mode);
  }
  void synchronize_batch_norm(distributed::Communicator* ranks) noexcept { bn_.synchronize_statistics(ranks); }

 private:
  Conv2d<T> conv_;
  BatchNorm2d<T> bn_;
};

// dx += the shortcut's gradient (through the projection when there is one).
template <class T>
void add_shortcut_gradient(Context& ctx, std::unique_ptr<Projection<T>>& projection, const Tensor& dshortcut,
                           GradientMode mode, Tensor& dx) {
  const Tensor through = projection ? projection->backward(ctx, dshortcut, mode) : dshortcut;
  ops::add(ctx, dx, through, dx);
}

constexpr BatchNormOptions relu_bn{.activation = Activation::relu};

}  // namespace detail

// conv3×3(stride) → BN+ReLU → conv3×3 → BN + shortcut + ReLU (fused).
template <class T>
class BasicBlock final : public ResidualBlock<T> {
 public:
  BasicBlock(ParameterStore& store, const std::string& name, int in, int width, int stride)
      : conv1_(store, name + ".conv1", in, width, {.kernel = 3, .stride = stride, .padding = 1}),
        bn1_(store, name + ".bn1", width, detail::relu_bn),
        conv2_(store, name + ".conv2", width, width, {.kernel = 3, .padding = 1}),
        bn2_(store, name + ".bn2", width, detail::relu_bn) {
    if (stride != 1 || in != width)
      projection_ = std::make_unique<detail::Projection<T>>(store, name, in, width, stride);
  }

  void initialize(Context& ctx, Generator& generator) override {
    conv1_.initialize(ctx, generator);
    bn1_.initialize(ctx);
    conv2_.initialize(ctx, generator);
    bn2_.initialize(ctx);
    if (projection_) projection_->initialize(ctx, generator);
  }

  Tensor forward(Context& ctx, const Tensor& x, Phase phase) override {
    const Tensor h = bn1_.forward(ctx, conv1_.forward(ctx, x), phase);
    const Tensor shortcut = projection_ ? projection_->forward(ctx, x, phase) : x;
    return bn2_.forward(ctx, conv2_.forward(ctx, h), phase, shortcut);
  }

  Tensor backward(Context& ctx, const Tensor& dy, GradientMode mode) override {
    const typename BatchNorm2d<T>::Gradients out = bn2_.backward(ctx, dy, mode);
    const Tensor dh = conv2_.backward(ctx, out.input, mode);
    Tensor dx = conv1_.backward(ctx, bn1_.backward(ctx, dh, mode).input, mode);
    detail::add_shortcut_gradient(ctx, projection_, out.residual, mode, dx);
    return dx;
  }

  void synchronize_batch_norm(distributed::Communicator* ranks) noexcept override {
    bn1_.synchronize_statistics(ranks);
    bn2_.synchronize_statistics(ranks);
    if (projection_) projection_->synchronize_batch_norm(ranks);
  }

 private:
  Conv2d<T> conv1_;
  BatchNorm2d<T> bn1_;
  Conv2d<T> conv2_;
  BatchNorm2d<T> bn2_;
  std::unique_ptr<detail::Projection<T>> projection_;
};

// conv1×1 → BN+ReLU → conv3×3(stride) → BN+ReLU → conv1×1 (×4 channels) → BN + shortcut + ReLU.
template <class T>
class Bottleneck final : public ResidualBlock<T> {
 public:
  Bottleneck(ParameterStore& store, const std::string& name, int in, int width, int stride)
      : conv1_(store, name + ".conv1", in, width, {.kernel = 1}),
        bn1_(store, name + ".bn1", width, detail::relu_bn),
        conv2_(store, name + ".conv2", width, width, {.kernel = 3, .stride = stride, .padding = 1}),
        bn2_(store, name + ".bn2", width, detail::relu_bn),
        conv3_(store, name + ".conv3", width, 4 * width, {.kernel = 1}),
        bn3_(store, name + ".bn3", 4 * width, detail::relu_bn) {
    if (stride != 1 || in != 4 * width)
      projection_ = std::make_unique<detail::Projection<T>>(store, name, in, 4 * width, stride);
  }

  void initialize(Context& ctx, Generator& generator) override {
    conv1_.initialize(ctx, generator);
    bn1_.initialize(ctx);
    conv2_.initialize(ctx, generator);
    bn2_.initialize(ctx);
    conv3_.initialize(ctx, generator);
    bn3_.initialize(ctx);
    if (projection_) projection_->initialize(ctx, generator);
  }

  Tensor forward(Context& ctx, const Tensor& x, Phase phase) override {
    const Tensor h1 = bn1_.forward(ctx, conv1_.forward(ctx, x), phase);
    const Tensor h2 = bn2_.forward(ctx, conv2_.forward(ctx, h1), phase);
    const Tensor shortcut = projection_ ? projection_->forward(ctx, x, phase) : x;
    return bn3_.forward(ctx, conv3_.forward(ctx, h2), phase, shortcut);
  }

  Tensor backward(Context& ctx, const Tensor& dy, GradientMode mode) override {
    const typename BatchNorm2d<T>::Gradients out = bn3_.backward(ctx, dy, mode);
    const Tensor dh2 = conv3_.backward(ctx, out.input, mode);
    const Tensor dh1 = conv2_.backward(ctx, bn2_.backward(ctx, dh2, mode).input, mode);
    Tensor dx = conv1_.backward(ctx, bn1_.backward(ctx, dh1, mode).input, mode);
    detail::add_shortcut_gradient(ctx, projection_, out.residual, mode, dx);
    return dx;
  }

  void synchronize_batch_norm(distributed::Communicator* ranks) noexcept override {
    bn1_.synchronize_statistics(ranks);
    bn2_.synchronize_statistics(ranks);
    bn3_.synchronize_statistics(ranks);
    if (projection_) projection_->synchronize_batch_norm(ranks);
  }

 private:
  Conv2d<T> conv1_;
  BatchNorm2d<T> bn1_;
  Conv2d<T> conv2_;
  BatchNorm2d<T> bn2_;
  Conv2d<T> conv3_;
  BatchNorm2d<T> bn3_;
  std::unique_ptr<detail::Projection<T>> projection_;
};

// Told during backward that the gradients from a flat-tensor element on are
// final (ParameterStore::gradients()): backward produces them from the last
// declared parameter to the first, so the element only decreases. Data-parallel
// training starts averaging those gradients while backward goes on.
using GradientsReady = std::function<void(std::int64_t first_final_element)>;

// The trunk: stem, stages ("layer1" … "layerK"), global average pooling.
// forward maps [N, H, W, in_channels] images to [N, feature_count] features.
template <class T>
class ResNet {
 public:
  ResNet(ParameterStore& store, const ResNetSpec& spec)
      : store_(store),
        spec_(spec),
        stem_conv_(store, "conv1", spec.in_channels, spec.stem_width,
                   spec.stem == StemKind::imagenet ? Conv2dOptions{.kernel = 7, .stride = 2, .padding = 3}
                   : spec.stem == StemKind::small  ? Conv2dOptions{.kernel = 3, .stride = 1, .padding = 1}
                                                   : Conv2dOptions{.kernel = 3, .stride = 2, .padding = 1}),
        stem_bn_(store, "bn1", spec.stem_width, detail::relu_bn),
        pool_("avgpool") {
    CUMTL_REQUIRE(!spec.blocks.empty() && spec.blocks.size() == spec.widths.size(), "ResNet: ", spec.blocks.size(),
                  " stage block counts for ", spec.widths.size(), " stage widths");
    if (spec.stem == StemKind::imagenet)
      stem_pool_.emplace(
          "maxpool", ops::Pool2d{.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1});
    int channels = spec.stem_width;
    for (std::size_t stage = 0; stage < spec.blocks.size(); ++stage) {
      CUMTL_REQUIRE(spec.blocks[stage] > 0 && spec.widths[stage] > 0, "ResNet: stage ", stage + 1, " has ",
                    spec.blocks[stage], " blocks of width ", spec.widths[stage]);
      for (int index = 0; index < spec.blocks[stage]; ++index) {
        const std::string name = "layer" + std::to_string(stage + 1) + "." + std::to_string(index);
        const int stride = stage > 0 && index == 0 ? 2 : 1;
        block_first_parameter_.push_back(store.parameters().size());
        if (spec.block == BlockKind::basic)
          blocks_.push_back(std::make_unique<BasicBlock<T>>(store, name, channels, spec.widths[stage], stride));
        else
          blocks_.push_back(std::make_unique<Bottleneck<T>>(store, name, channels, spec.widths[stage], stride));
        channels = spec.widths[stage] * spec.expansion();
      }
    }
  }

  const ResNetSpec& spec() const noexcept { return spec_; }

  void initialize(Context& ctx, Generator& generator) {
    stem_conv_.initialize(ctx, generator);
    stem_bn_.initialize(ctx);
    for (auto& block : blocks_) block->initialize(ctx, generator);
    store_.values_written();
  }

  Tensor forward(Context& ctx, const Tensor& images, Phase phase) {
    Tensor h = stem_bn_.forward(ctx, stem_conv_.forward(ctx, images), phase);
    if (stem_pool_) h = stem_pool_->forward(ctx, h);
    for (auto& block : blocks_) h = block->forward(ctx, h, phase);
    return pool_.forward(ctx, h);
  }

  // Back from the features' gradient; the images' gradient is not computed. `ready`, when set, hears after each
  // block and after the stem which gradients are final.
  void backward(Context& ctx, const Tensor& dfeatures, GradientMode mode = GradientMode::accumulate,
                const GradientsReady& ready = {}) {
    Tensor dh = pool_.backward(ctx, dfeatures);
    for (std::size_t block = blocks_.size(); block-- > 0;) {
      dh = blocks_[block]->backward(ctx, dh, mode);
      if (ready) ready(store_.element_offset(block_first_parameter_[block]));
    }
    if (stem_pool_) dh = stem_pool_->backward(ctx, dh);
    stem_conv_.backward(ctx, stem_bn_.backward(ctx, dh, mode).input, mode, InputGradient::skip);
    if (ready) ready(0);
  }

  // Every batch norm's training statistics over the whole batch of `ranks` (null: each rank's own batch).
  void synchronize_batch_norm(distributed::Communicator* ranks) noexcept {
    stem_bn_.synchronize_statistics(ranks);
    for (auto& block : blocks_) block->synchronize_batch_norm(ranks);
  }

 private:
  ParameterStore& store_;
  ResNetSpec spec_;
  Conv2d<T> stem_conv_;
  BatchNorm2d<T> stem_bn_;
  std::optional<MaxPool2d<T>> stem_pool_;
  std::vector<std::unique_ptr<ResidualBlock<T>>> blocks_;
  std::vector<std::size_t> block_first_parameter_;  // per block, the index of its first parameter in the store
  GlobalAvgPool<T> pool_;
};

}  // namespace cumtl
