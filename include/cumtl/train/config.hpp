#pragma once
// TrainConfig: everything that defines a training run, as cumtl-train's flags
// set it and as a checkpoint stores it (JSON), so that `--resume` rebuilds the
// very same run from the checkpoint alone.
//
// The training schemes of Pons & Masip's ablation (docs/training.md):
//   selective       mixed-domain batches, the selective loss (per available label)
//   alternating     each batch from one domain in turn, the selective loss
//   naive           mixed-domain batches, per-batch normalization, missing AU labels as negatives
//   single-emotion  the emotion-labelled data and the emotion head alone
//   single-au       the AU-labelled data and the AU head alone

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cumtl/core/error.hpp"
#include "cumtl/data/augment.hpp"
#include "cumtl/data/sample.hpp"
#include "cumtl/loss/multitask_loss.hpp"
#include "cumtl/models/resnet.hpp"

namespace cumtl::train {

enum class Scheme : std::uint8_t { selective, alternating, naive, single_emotion, single_au };

inline constexpr std::string_view scheme_names[] = {"selective", "alternating", "naive", "single-emotion", "single-au"};

inline std::string_view name_of(Scheme scheme) {
  return scheme_names[static_cast<std::size_t>(scheme)];
}

inline std::optional<Scheme> parse_scheme(std::string_view text) {
  for (std::size_t i = 0; i < std::size(scheme_names); ++i)
    if (scheme_names[i] == text) return static_cast<Scheme>(i);
  return std::nullopt;
}

inline constexpr std::string_view normalization_names[] = {"per-label", "per-sample", "per-batch"};

inline std::string_view name_of(LossNormalization normalization) {
  return normalization_names[static_cast<std::size_t>(normalization)];
}

inline std::optional<LossNormalization> parse_normalization(std::string_view text) {
  for (std::size_t i = 0; i < std::size(normalization_names); ++i)
    if (normalization_names[i] == text) return static_cast<LossNormalization>(i);
  return std::nullopt;
}

// The data sources cumtl-train reads (--data), with what each one needs.
inline constexpr std::string_view data_source_names[] = {"synth",     "manifest", "rafdb",
                                                         "emotionet", "fer2013",  "affectnet"};

struct TrainConfig {
  // Data.
  std::vector<std::string> data{"synth"};
  std::vector<double> ratios;        // one per training dataset; empty: equal shares
  std::int64_t synth_train = 26000;  // faces per synthetic training domain
  std::int64_t synth_rafdb = 0;      // overrides synth_train for the emotion-labelled domain when > 0
  std::int64_t synth_emotionet = 0;  // overrides synth_train for the AU-labelled domain when > 0
  std::int64_t synth_test = 3000;    // in-the-wild test faces with every label (RAF-DB tests on 3,068)
  std::int64_t synth_au_test = 0;    // held-out EmotioNet-like faces (AU labels) for a second AU score; 0: none
  double synth_compound_fraction = 0;
  std::uint64_t synth_seed = 0;  // the synthetic faces' seed: fixed while --seed varies, so seeds share a test set
  std::string train_manifest, test_manifest;
  std::string rafdb_root;
  std::string emotionet_table, emotionet_images, emotionet_test_table;
  std::string fer2013_csv;
  std::string affectnet_train_csv, affectnet_test_csv, affectnet_images;
  bool skip_bad = false;

  // Model.
  std::string model =
      "auto";  // auto (compact on the CPU, resnet18 on a GPU), compact, small, resnet18, resnet34, resnet50
  std::vector<int> widths, blocks;  // override the preset's stages when given
  int image_size = 0;               // 0: 64 for compact, 48 for small, 112 otherwise
  std::vector<std::string> heads;   // empty: from the scheme; else any of emotion, au, compound
  std::vector<int> aus{data::emotionet_challenge_aus.begin(), data::emotionet_challenge_aus.end()};
  double emotion_weight = 1, au_weight = 1, compound_weight = 1;

  // Loss and scheme.
  Scheme scheme = Scheme::selective;
  std::string normalization;  // empty: the scheme's

  // Optimization.
  std::string optimizer = "adamw";  // adamw or sgd
  double lr = 0;                    // 0: 4e-3 for AdamW, 0.05 for SGD
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = -1;         // < 0: 0.1 for AdamW, 5e-4 for SGD
  std::string schedule = "cosine";  // constant, step, cosine
  std::int64_t warmup_steps = -1;   // < 0: about 3% of the steps
  double step_every_epochs = 0;     // step schedule: epochs between decays (0: a third of the run)
  double gamma = 0.1;
  std::string augment = "flip";  // none, flip (mirror only), full (crop, mirror, rotation, brightness, contrast)

  // Length and run.
  std::int64_t epochs = 7;
  std::int64_t steps = 0;  // > 0: train exactly this many steps (epochs then only pace evaluation)
  std::int64_t batch = 64;
  std::uint64_t seed = 0;
  std::string device = "auto";     // auto, cpu, cuda, cuda:N
  std::string precision = "auto";  // auto, fp32, tf32, bf16, fp16 (core/precision.hpp)
  bool deterministic = false;
  bool sync_batch_norm = false;  // distributed runs: batch norm statistics over every rank's shard
  std::int64_t loader_threads = 0;
  std::int64_t keep_checkpoints = 2;
  std::int64_t eval_every = 1;  // evaluate every this many epochs (0: only after the last); the last always
};

inline nlohmann::json to_json(const TrainConfig& c) {
  return {
      {"data", c.data},
      {"ratios", c.ratios},
      {"synth_train", c.synth_train},
      {"synth_rafdb", c.synth_rafdb},
      {"synth_emotionet", c.synth_emotionet},
      {"synth_test", c.synth_test},
      {"synth_au_test", c.synth_au_test},
      {"synth_compound_fraction", c.synth_compound_fraction},
      {"synth_seed", c.synth_seed},
      {"train_manifest", c.train_manifest},
      {"test_manifest", c.test_manifest},
      {"rafdb_root", c.rafdb_root},
      {"emotionet_table", c.emotionet_table},
      {"emotionet_images", c.emotionet_images},
      {"emotionet_test_table", c.emotionet_test_table},
      {"fer2013_csv", c.fer2013_csv},
      {"affectnet_train_csv", c.affectnet_train_csv},
      {"affectnet_test_csv", c.affectnet_test_csv},
      {"affectnet_images", c.affectnet_images},
      {"skip_bad", c.skip_bad},
      {"model", c.model},
      {"widths", c.widths},
      {"blocks", c.blocks},
      {"image_size", c.image_size},
      {"heads", c.heads},
      {"aus", c.aus},
      {"emotion_weight", c.emotion_weight},
      {"au_weight", c.au_weight},
      {"compound_weight", c.compound_weight},
      {"scheme", std::string(name_of(c.scheme))},
      {"normalization", c.normalization},
      {"optimizer", c.optimizer},
      {"lr", c.lr},
      {"momentum", c.momentum},
      {"nesterov", c.nesterov},
      {"weight_decay", c.weight_decay},
      {"schedule", c.schedule},
      {"warmup_steps", c.warmup_steps},
      {"step_every_epochs", c.step_every_epochs},
      {"gamma", c.gamma},
      {"augment", c.augment},
      {"epochs", c.epochs},
      {"steps", c.steps},
      {"batch", c.batch},
      {"seed", c.seed},
      {"device", c.device},
      {"precision", c.precision},
      {"deterministic", c.deterministic},
      {"sync_batch_norm", c.sync_batch_norm},
      {"loader_threads", c.loader_threads},
      {"keep_checkpoints", c.keep_checkpoints},
      {"eval_every", c.eval_every},
  };
}

// Reads what to_json wrote; a key that is missing keeps its default, so older
// checkpoints still load, while a key of the wrong type is an error naming it.
inline TrainConfig config_from_json(const nlohmann::json& j) {
  CUMTL_REQUIRE(j.is_object(), "training configuration: expected a JSON object, got ", j.type_name());
  TrainConfig c;
  const auto read = [&](const char* key, auto& field) {
    const auto found = j.find(key);
    if (found == j.end()) return;
    try {
      found->get_to(field);
    } catch (const nlohmann::json::exception& error) {
      CUMTL_FAIL("training configuration: '", key, "' has the wrong type: ", error.what());
    }
  };
  read("data", c.data);
  read("ratios", c.ratios);
  read("synth_train", c.synth_train);
  read("synth_rafdb", c.synth_rafdb);
  read("synth_emotionet", c.synth_emotionet);
  read("synth_test", c.synth_test);
  read("synth_au_test", c.synth_au_test);
  read("synth_compound_fraction", c.synth_compound_fraction);
  read("synth_seed", c.synth_seed);
  read("train_manifest", c.train_manifest);
  read("test_manifest", c.test_manifest);
  read("rafdb_root", c.rafdb_root);
  read("emotionet_table", c.emotionet_table);
  read("emotionet_images", c.emotionet_images);
  read("emotionet_test_table", c.emotionet_test_table);
  read("fer2013_csv", c.fer2013_csv);
  read("affectnet_train_csv", c.affectnet_train_csv);
  read("affectnet_test_csv", c.affectnet_test_csv);
  read("affectnet_images", c.affectnet_images);
  read("skip_bad", c.skip_bad);
  read("model", c.model);
  read("widths", c.widths);
  read("blocks", c.blocks);
  read("image_size", c.image_size);
  read("heads", c.heads);
  read("aus", c.aus);
  read("emotion_weight", c.emotion_weight);
  read("au_weight", c.au_weight);
  read("compound_weight", c.compound_weight);
  std::string scheme(name_of(c.scheme));
  read("scheme", scheme);
  const std::optional<Scheme> parsed = parse_scheme(scheme);
  CUMTL_REQUIRE(parsed.has_value(), "training configuration: unknown scheme '", scheme, "'");
  c.scheme = *parsed;
  read("normalization", c.normalization);
  read("optimizer", c.optimizer);
  read("lr", c.lr);
  read("momentum", c.momentum);
  read("nesterov", c.nesterov);
  read("weight_decay", c.weight_decay);
  read("schedule", c.schedule);
  read("warmup_steps", c.warmup_steps);
  read("step_every_epochs", c.step_every_epochs);
  read("gamma", c.gamma);
  read("augment", c.augment);
  read("epochs", c.epochs);
  read("steps", c.steps);
  read("batch", c.batch);
  read("seed", c.seed);
  read("device", c.device);
  read("precision", c.precision);
  read("deterministic", c.deterministic);
  read("sync_batch_norm", c.sync_batch_norm);
  read("loader_threads", c.loader_threads);
  read("keep_checkpoints", c.keep_checkpoints);
  read("eval_every", c.eval_every);
  return c;
}

// The model's stages: the preset, with --widths/--blocks replacing its stages.
// The preset --model auto stands for: a network sized for the device.
inline std::string model_name(const TrainConfig& c, bool on_gpu) {
  return c.model == "auto" ? (on_gpu ? "resnet18" : "compact") : c.model;
}

inline ResNetSpec trunk_spec(const TrainConfig& c, bool on_gpu) {
  const std::string preset = model_name(c, on_gpu);
  ResNetSpec spec;
  if (preset == "small")
    spec = ResNetSpec::small();
  else if (preset == "compact")
    spec = ResNetSpec::compact();
  else if (preset == "resnet18")
    spec = ResNetSpec::resnet18();
  else if (preset == "resnet34")
    spec = ResNetSpec::resnet34();
  else if (preset == "resnet50")
    spec = ResNetSpec::resnet50();
  else
    CUMTL_FAIL("unknown model '", c.model, "': expected auto, compact, small, resnet18, resnet34 or resnet50");
  if (!c.widths.empty()) spec.widths = c.widths;
  if (!c.blocks.empty()) spec.blocks = c.blocks;
  CUMTL_REQUIRE(spec.widths.size() == spec.blocks.size(), "--widths has ", spec.widths.size(),
                " stages but --blocks has ", spec.blocks.size());
  return spec;
}

inline int image_size(const TrainConfig& c, const ResNetSpec& spec) {
  if (c.image_size > 0) return c.image_size;
  switch (spec.stem) {
    case StemKind::small: return 48;
    case StemKind::small_strided: return 64;
    case StemKind::imagenet: break;
  }
  return 112;
}

// The training transform --augment names, or none. The default mirrors only:
// the synthetic in-the-wild faces already vary in pose, light and framing, and
// on them crops and rotations cost accuracy within a short run; real datasets
// usually want full.
inline std::optional<data::AugmentOptions> augmentation(const TrainConfig& c, int image_size) {
  if (c.augment == "none") return std::nullopt;
  data::AugmentOptions options = data::AugmentOptions::none(image_size);
  if (c.augment == "flip") {
    options.flip_probability = 0.5;
    return options;
  }
  CUMTL_REQUIRE(c.augment == "full", "unknown --augment '", c.augment, "': expected none, flip or full");
  options = data::AugmentOptions{};
  options.size = image_size;
  return options;
}

// The heads the scheme trains, unless --heads names them.
inline std::vector<std::string> head_names(const TrainConfig& c) {
  if (!c.heads.empty()) return c.heads;
  switch (c.scheme) {
    case Scheme::single_emotion: return {"emotion"};
    case Scheme::single_au: return {"au"};
    default: return {"emotion", "au"};
  }
}

inline std::vector<HeadSpec> head_specs(const TrainConfig& c) {
  std::vector<HeadSpec> heads;
  for (const std::string& name : head_names(c)) {
    CUMTL_REQUIRE(std::none_of(heads.begin(), heads.end(), [&](const HeadSpec& h) { return h.name == name; }), "head '",
                  name, "' is named twice");
    if (name == "emotion") {
      heads.push_back({.name = "emotion",
                       .kind = HeadKind::softmax,
                       .outputs = int(data::emotion_names.size()),
                       .weight = c.emotion_weight,
                       .output_names = {data::emotion_names.begin(), data::emotion_names.end()}});
    } else if (name == "compound") {
      heads.push_back({.name = "compound",
                       .kind = HeadKind::softmax,
                       .outputs = int(data::compound_names.size()),
                       .weight = c.compound_weight,
                       .output_names = {data::compound_names.begin(), data::compound_names.end()}});
    } else if (name == "au") {
      CUMTL_REQUIRE(!c.aus.empty(), "the AU head needs at least one AU (--aus)");
      HeadSpec head{.name = "au", .kind = HeadKind::sigmoid, .outputs = int(c.aus.size()), .weight = c.au_weight};
      for (int au : c.aus) {
        CUMTL_REQUIRE(data::au_index(au).has_value(), "--aus: AU", au, " is not one cumtl knows");
        head.output_names.push_back("AU" + std::to_string(au));
      }
      heads.push_back(std::move(head));
    } else {
      CUMTL_FAIL("unknown head '", name, "': expected emotion, au or compound");
    }
  }
  CUMTL_REQUIRE(!heads.empty(), "no heads to train");
  return heads;
}

inline LossOptions loss_options(const TrainConfig& c) {
  LossOptions options;
  if (c.scheme == Scheme::naive) {
    options.normalization = LossNormalization::per_batch;
    options.missing_sigmoid_labels = MissingLabels::as_negative;
  }
  if (!c.normalization.empty()) {
    const std::optional<LossNormalization> parsed = parse_normalization(c.normalization);
    CUMTL_REQUIRE(parsed.has_value(), "unknown loss normalization '", c.normalization,
                  "': expected per-label, per-sample or per-batch");
    options.normalization = *parsed;
  }
  return options;
}

}  // namespace cumtl::train
