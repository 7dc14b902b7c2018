#pragma once
// model.json: what a run folder's weights.safetensors belong to — the trunk,
// the heads, the input the network expects and the loss it was trained with —
// so cumtl-predict and benchmarks/pytorch_reference.py rebuild the same network
// from the folder alone.
//
// {"format": "cumtl-model-1",
//  "trunk": {"block": "basic", "blocks": [...], "widths": [...], "stem": "small", "stem_width": 16, "in_channels": 3},
//  "heads": [{"name": "emotion", "kind": "softmax", "outputs": 7, "weight": 1, "output_names": [...]}, ...],
//  "input": {"size": 48, "layout": "NHWC", "mean": [...], "std": [...]},
//  "loss": {"normalization": "per_label", "missing_sigmoid_labels": "ignore"},
//  "dtype": "float32"}

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cumtl/io/atomic_file.hpp"
#include "cumtl/io/checkpoint.hpp"
#include "cumtl/loss/multitask_loss.hpp"
#include "cumtl/models/multi_head.hpp"
#include "cumtl/models/resnet.hpp"
#include "cumtl/ops/preprocess.hpp"

namespace cumtl::train {

inline constexpr std::string_view model_format = "cumtl-model-1";

struct ModelDescription {
  ResNetSpec trunk;
  std::vector<HeadSpec> heads;
  int image_size = 64;
  std::array<float, 3> mean = ops::imagenet_mean;
  std::array<float, 3> stddev = ops::imagenet_std;
  LossOptions loss;
};

inline nlohmann::json to_json(const ModelDescription& m) {
  nlohmann::json heads = nlohmann::json::array();
  for (const HeadSpec& head : m.heads)
    heads.push_back({{"name", head.name},
                     {"kind", head.kind == HeadKind::softmax ? "softmax" : "sigmoid"},
                     {"outputs", head.outputs},
                     {"weight", head.weight},
                     {"output_names", head.output_names}});
  constexpr const char* normalizations[] = {"per_label", "per_sample", "per_batch"};
  return {
      {"format", model_format},
      {"trunk",
       {{"block", m.trunk.block == BlockKind::basic ? "basic" : "bottleneck"},
        {"blocks", m.trunk.blocks},
        {"widths", m.trunk.widths},
        {"stem", name_of(m.trunk.stem)},
        {"stem_width", m.trunk.stem_width},
        {"in_channels", m.trunk.in_channels}}},
      {"heads", heads},
      {"input", {{"size", m.image_size}, {"layout", "NHWC"}, {"mean", m.mean}, {"std", m.stddev}}},
      {"loss",
       {{"normalization", normalizations[static_cast<int>(m.loss.normalization)]},
        {"missing_sigmoid_labels", m.loss.missing_sigmoid_labels == MissingLabels::ignore ? "ignore" : "as_negative"}}},
      {"dtype", "float32"}};
}

inline void write_model_description(const std::filesystem::path& file, const ModelDescription& m) {
  const std::string text = to_json(m).dump(2) + "\n";
  io::detail::write_pieces_atomically(file, {std::as_bytes(std::span(text))});
}

inline ModelDescription read_model_description(const std::filesystem::path& file) {
  const std::string where = "model description '" + file.string() + "'";
  std::ifstream in(file, std::ios::binary);
  CUMTL_REQUIRE(in.good(), "cannot read ", where, ": ", std::filesystem::exists(file) ? "unreadable" : "no such file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    CUMTL_FAIL(where, " is not valid JSON: ", error.what());
  }
  ModelDescription m;
  try {
    CUMTL_REQUIRE(j.value("format", "") == model_format, where, " has format '", j.value("format", ""), "', expected '",
                  model_format, "'");
    const nlohmann::json& t = j.at("trunk");
    const std::string block = t.at("block"), stem = t.at("stem");
    CUMTL_REQUIRE(block == "basic" || block == "bottleneck", where, ": unknown block '", block, "'");
    const std::optional<StemKind> stem_kind = parse_stem_kind(stem);
    CUMTL_REQUIRE(stem_kind.has_value(), where, ": unknown stem '", stem, "'");
    m.trunk.block = block == "basic" ? BlockKind::basic : BlockKind::bottleneck;
    m.trunk.stem = *stem_kind;
    t.at("blocks").get_to(m.trunk.blocks);
    t.at("widths").get_to(m.trunk.widths);
    t.at("stem_width").get_to(m.trunk.stem_width);
    t.at("in_channels").get_to(m.trunk.in_channels);
    for (const nlohmann::json& h : j.at("heads")) {
      HeadSpec head;
      h.at("name").get_to(head.name);
      const std::string kind = h.at("kind");
      CUMTL_REQUIRE(kind == "softmax" || kind == "sigmoid", where, ": head '", head.name, "' has unknown kind '", kind,
                    "'");
      head.kind = kind == "softmax" ? HeadKind::softmax : HeadKind::sigmoid;
      h.at("outputs").get_to(head.outputs);
      head.weight = h.value("weight", 1.0);
      if (h.contains("output_names")) h.at("output_names").get_to(head.output_names);
      m.heads.push_back(std::move(head));
    }
    const nlohmann::json& input = j.at("input");
    input.at("size").get_to(m.image_size);
    input.at("mean").get_to(m.mean);
    input.at("std").get_to(m.stddev);
    if (j.contains("loss")) {
      const std::string normalization = j["loss"].value("normalization", "per_label");
      m.loss.normalization = normalization == "per_batch"    ? LossNormalization::per_batch
                             : normalization == "per_sample" ? LossNormalization::per_sample
                                                             : LossNormalization::per_label;
      m.loss.missing_sigmoid_labels = j["loss"].value("missing_sigmoid_labels", "ignore") == "as_negative"
                                          ? MissingLabels::as_negative
                                          : MissingLabels::ignore;
    }
  } catch (const nlohmann::json::exception& error) {
    CUMTL_FAIL(where, " is incomplete or has a field of the wrong type: ", error.what());
  }
  CUMTL_REQUIRE(!m.heads.empty(), where, " has no heads");
  CUMTL_REQUIRE(m.image_size >= 8 && m.image_size <= 4096, where, ": input size ", m.image_size, " is out of range");
  return m;
}

// A finished run's network for inference: model.json and weights.safetensors
// of a run folder, on ctx's device, its trunk computing in `activations`
// (float32, or bfloat16 with the weights rounded from the file's float32).
class RunModel {
 public:
  RunModel(Context& ctx, const std::filesystem::path& run, ScalarType activations = ScalarType::f32)
      : description_(read_model_description(run / "model.json")),
        model_(description_.trunk, description_.heads, activations) {
    model_.allocate(ctx);
    io::import_model_weights(ctx, model_.parameters(), run / "weights.safetensors");
  }

  const ModelDescription& description() const noexcept { return description_; }
  MultiHeadModel<float>& model() noexcept { return model_; }

  // Evaluation-mode logits [N, T] of N square RGB images of the model's input
  // size, given as their 8-bit pixels one after another (HWC).
  Tensor forward(Context& ctx, std::vector<std::uint8_t> pixels) {
    const std::int64_t size = description_.image_size, image_bytes = size * size * 3;
    CUMTL_REQUIRE(std::int64_t(pixels.size()) % image_bytes == 0, "RunModel::forward: ", pixels.size(),
                  " bytes are not a whole number of ", size, "x", size, " RGB images");
    const Shape shape = Shape::nhwc(std::int64_t(pixels.size()) / image_bytes, size, size, 3);
    const Tensor on_device = Tensor::from_vector(std::move(pixels), shape).to(ctx, ctx.device());
    Tensor images = Tensor::empty(ctx, shape, model_.activations());
    ops::normalize_images(ctx, on_device, description_.mean, description_.stddev, images);
    return model_.forward(ctx, images, Phase::eval);
  }

 private:
  ModelDescription description_;
  MultiHeadModel<float> model_;
};

}  // namespace cumtl::train
