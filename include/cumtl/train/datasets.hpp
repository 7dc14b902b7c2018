#pragma once
// The datasets a TrainConfig names: what to train on (with mixing ratios and
// the dataset whose pass defines an epoch) and what to evaluate on. Every
// reader validates its files here, before a run folder is touched, so a bad
// manifest or a missing root fails without leaving anything behind.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cumtl/data/formats.hpp"
#include "cumtl/data/manifest.hpp"
#include "cumtl/data/synthetic_faces.hpp"
#include "cumtl/train/config.hpp"

namespace cumtl::train {

struct EvaluationSet {
  std::string name;  // the prefix of its metrics: "" for the primary set, else "<name>_"
  std::shared_ptr<const data::Dataset> dataset;
};

struct TrainingData {
  std::vector<std::shared_ptr<const data::Dataset>> train;
  std::vector<double> ratios;  // one per training dataset
  std::size_t epoch_dataset = 0;
  std::vector<EvaluationSet> evaluation;  // the first is the primary test split
};

namespace detail {

inline const std::string& require_path(const std::string& value, const char* flag, const char* source) {
  CUMTL_REQUIRE(!value.empty(), "--data ", source, " needs ", flag);
  return value;
}

// Adds the synthetic training domains with their default shares, and the test splits.
inline void add_synthetic(const TrainConfig& c, int size, TrainingData& out, std::vector<double>& default_shares) {
  const auto make = [&](data::SynthDomain domain, std::int64_t count, std::uint64_t seed) {
    CUMTL_REQUIRE(count > 0, "synthetic ", data::name_of(domain), " split needs a positive size, got ", count);
    data::SynthOptions options;
    options.size = size;
    options.domain = domain;
    options.seed = seed;
    options.compound_fraction = c.synth_compound_fraction;
    return std::make_shared<const data::SyntheticDataset>(options, std::size_t(count));
  };
  const std::int64_t rafdb = c.synth_rafdb > 0 ? c.synth_rafdb : c.synth_train;
  const std::int64_t emotionet = c.synth_emotionet > 0 ? c.synth_emotionet : c.synth_train;
  // An epoch is one pass over the emotion-labelled faces, as one over RAF-DB in the paper.
  if (c.scheme != Scheme::single_au) {
    out.train.push_back(make(data::SynthDomain::rafdb, rafdb, c.synth_seed));
    default_shares.push_back(3);
  }
  if (c.scheme != Scheme::single_emotion) {
    out.train.push_back(make(data::SynthDomain::emotionet, emotionet, c.synth_seed));
    default_shares.push_back(1);
  }
  if (c.synth_test > 0) out.evaluation.push_back({"", make(data::SynthDomain::test, c.synth_test, c.synth_seed)});
  // Held-out faces of the AU domain: a different seed draws different faces.
  if (c.synth_au_test > 0)
    out.evaluation.push_back({"emotionet_", make(data::SynthDomain::emotionet, c.synth_au_test, c.synth_seed + 1)});
}

}  // namespace detail

inline TrainingData make_training_data(const TrainConfig& c, int image_size) {
  using data::DataSplit;
  CUMTL_REQUIRE(!c.data.empty(), "--data names no dataset");
  TrainingData out;
  // Without --ratios every dataset weighs the same, except that the synthetic
  // emotion-labelled faces weigh three times the AU-labelled ones: the emotion
  // task is the harder one to learn from in-the-wild faces.
  std::vector<double> default_shares;
  for (const std::string& source : c.data) {
    if (source == "synth") {
      detail::add_synthetic(c, image_size, out, default_shares);
    } else if (source == "manifest") {
      out.train.push_back(std::make_shared<const data::ManifestDataset>(
          detail::require_path(c.train_manifest, "--train-manifest", "manifest")));
      if (!c.test_manifest.empty())
        out.evaluation.push_back({"", std::make_shared<const data::ManifestDataset>(c.test_manifest)});
    } else if (source == "rafdb") {
      const std::string& root = detail::require_path(c.rafdb_root, "--rafdb-root", "rafdb");
      out.train.push_back(
          std::make_shared<const data::RafdbBasic>(root, data::RafdbOptions{.split = DataSplit::train}));
      out.evaluation.push_back(
          {"", std::make_shared<const data::RafdbBasic>(root, data::RafdbOptions{.split = DataSplit::test})});
    } else if (source == "emotionet") {
      const std::string& images = detail::require_path(c.emotionet_images, "--emotionet-images", "emotionet");
      out.train.push_back(std::make_shared<const data::EmotionetTable>(
          detail::require_path(c.emotionet_table, "--emotionet-table", "emotionet"), images));
      if (!c.emotionet_test_table.empty())
        out.evaluation.push_back(
            {"emotionet_", std::make_shared<const data::EmotionetTable>(c.emotionet_test_table, images)});
    } else if (source == "fer2013") {
      const std::string& csv = detail::require_path(c.fer2013_csv, "--fer2013-csv", "fer2013");
      out.train.push_back(std::make_shared<const data::Fer2013>(csv, data::Fer2013Options{.split = DataSplit::train}));
      out.evaluation.push_back(
          {"", std::make_shared<const data::Fer2013>(csv, data::Fer2013Options{.split = DataSplit::test})});
    } else if (source == "affectnet") {
      const std::string& images = detail::require_path(c.affectnet_images, "--affectnet-images", "affectnet");
      out.train.push_back(std::make_shared<const data::Affectnet>(
          detail::require_path(c.affectnet_train_csv, "--affectnet-train-csv", "affectnet"), images));
      if (!c.affectnet_test_csv.empty())
        out.evaluation.push_back({"", std::make_shared<const data::Affectnet>(c.affectnet_test_csv, images)});
    } else {
      CUMTL_FAIL("unknown --data source '", source,
                 "': expected synth, manifest, rafdb, emotionet, fer2013 or affectnet");
    }
    default_shares.resize(out.train.size(), 1.0);
  }
  // Only the first split is primary; later ones are scored under their dataset's name.
  for (std::size_t i = 1; i < out.evaluation.size(); ++i)
    if (out.evaluation[i].name.empty()) out.evaluation[i].name = out.evaluation[i].dataset->name() + "_";
  for (std::size_t i = 1; i < out.evaluation.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      CUMTL_REQUIRE(out.evaluation[i].name != out.evaluation[j].name, "two test splits would both be scored as '",
                    out.evaluation[i].name, "'");

  if (c.ratios.empty()) {
    out.ratios = default_shares;
    double total = 0;
    for (double share : out.ratios) total += share;
    for (double& share : out.ratios) share /= total;
  } else {
    CUMTL_REQUIRE(c.ratios.size() == out.train.size(), "--ratios gives ", c.ratios.size(), " shares for ",
                  out.train.size(), " training datasets");
    out.ratios = c.ratios;
  }
  return out;
}

}  // namespace cumtl::train
