// The Trainer: run folders, resuming bit for bit, failures that leave no
// weights, the schemes' settings, and model.json.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <cumtl/data/image_io.hpp>
#include <cumtl/data/manifest.hpp>
#include <cumtl/train/trainer.hpp>

#include "../support/loss_batches.hpp"
#include "../support/testing.hpp"
#include "../support/train_runs.hpp"

namespace fs = std::filesystem;

namespace cumtl {
namespace {

fs::path fresh_folder(const std::string& name) {
  const fs::path folder = fs::temp_directory_path() / ("cumtl_test_train_" + name);
  fs::remove_all(folder);
  return folder;
}

train::TrainerOptions quiet_in(const fs::path& folder) {
  return {.run_folder = folder, .overwrite = false, .log = stdout, .interactive = false, .quiet = true};
}

std::vector<nlohmann::json> read_lines(const fs::path& file) {
  std::ifstream in(file);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// The epoch records without their timings, which differ from run to run.
std::vector<nlohmann::json> without_timings(std::vector<nlohmann::json> records) {
  for (nlohmann::json& record : records) {
    record.erase("train_seconds");
    record.erase("images_per_second");
  }
  return records;
}

void check_same_tensors(const fs::path& a, const fs::path& b) {
  const io::SafetensorsFile first = io::read_safetensors(a), second = io::read_safetensors(b);
  REQUIRE(first.tensors.size() == second.tensors.size());
  for (const auto& named : first.tensors) {
    const Tensor* other = second.find(named.name);
    REQUIRE_MESSAGE(other != nullptr, named.name);
    REQUIRE(other->bytes() == named.tensor.bytes());
    CHECK_MESSAGE(std::memcmp(other->raw_data(), named.tensor.raw_data(), named.tensor.bytes()) == 0, named.name);
  }
}

TEST_CASE("train: the configuration survives a JSON round trip") {
  train::TrainConfig c = cumtl_test::tiny_train_config();
  c.scheme = train::Scheme::alternating;
  c.ratios = {0.25, 0.75};
  c.heads = {"emotion", "au", "compound"};
  c.aus = {1, 12, 43};
  c.optimizer = "sgd";
  c.lr = 0.125;
  c.seed = 12345678901234ull;
  c.synth_compound_fraction = 0.5;
  c.precision = "fp32";
  const nlohmann::json once = train::to_json(c);
  CHECK(train::to_json(train::config_from_json(once)) == once);
  CHECK(train::config_from_json(once).scheme == train::Scheme::alternating);
  CHECK(train::config_from_json(once).precision == "fp32");
  nlohmann::json older = once;  // a checkpoint from before the precision existed ran what auto means
  older.erase("precision");
  CHECK(train::config_from_json(older).precision == "auto");

  nlohmann::json wrong = once;
  wrong["batch"] = "sixteen";
  CHECK_ERROR_WITH(train::config_from_json(wrong), "'batch' has the wrong type");
  wrong = once;
  wrong["scheme"] = "greedy";
  CHECK_ERROR_WITH(train::config_from_json(wrong), "unknown scheme 'greedy'");
}

TEST_CASE("train: each scheme sets its heads loss and data") {
  train::TrainConfig c = cumtl_test::tiny_train_config();
  c.scheme = train::Scheme::naive;
  CHECK(train::loss_options(c).normalization == LossNormalization::per_batch);
  CHECK(train::loss_options(c).missing_sigmoid_labels == MissingLabels::as_negative);
  CHECK(train::head_names(c) == std::vector<std::string>{"emotion", "au"});
  const train::TrainingData both = train::make_training_data(c, 16);
  REQUIRE(both.train.size() == 2);
  CHECK(both.train[0]->name() == "synth-rafdb");
  CHECK(both.ratios == std::vector<double>{0.75, 0.25});  // synth's default: emotions 3 to AUs 1

  c.scheme = train::Scheme::single_emotion;
  CHECK(train::head_names(c) == std::vector<std::string>{"emotion"});
  const train::TrainingData emotion_only = train::make_training_data(c, 16);
  REQUIRE(emotion_only.train.size() == 1);
  CHECK(emotion_only.train[0]->name() == "synth-rafdb");

  c.scheme = train::Scheme::single_au;
  CHECK(train::head_names(c) == std::vector<std::string>{"au"});
  CHECK(train::make_training_data(c, 16).train[0]->name() == "synth-emotionet");

  c.scheme = train::Scheme::selective;
  CHECK(train::loss_options(c).normalization == LossNormalization::per_label);
  c.heads = {"emotion", "mood"};
  CHECK_ERROR_WITH(train::head_specs(c), "unknown head 'mood'");
  c.heads = {};
  c.ratios = {1, 2, 3};
  CHECK_ERROR_WITH(train::make_training_data(c, 16), "--ratios gives 3 shares for 2 training datasets");
}

TEST_CASE("train: --augment names the training transform") {
  train::TrainConfig c = cumtl_test::tiny_train_config();
  const std::optional<data::AugmentOptions> flip = train::augmentation(c, 24);  // the default
  REQUIRE(flip.has_value());
  CHECK(flip->size == 24);
  CHECK(flip->flip_probability == 0.5);
  CHECK(flip->rotation_degrees == 0);
  CHECK(flip->scale == std::array<double, 2>{1, 1});
  CHECK(flip->brightness == 0);
  c.augment = "full";
  const std::optional<data::AugmentOptions> full = train::augmentation(c, 24);
  REQUIRE(full.has_value());
  CHECK(full->size == 24);
  CHECK(full->rotation_degrees == data::AugmentOptions{}.rotation_degrees);
  CHECK(full->scale == data::AugmentOptions{}.scale);
  c.augment = "none";
  CHECK_FALSE(train::augmentation(c, 24).has_value());
  c.augment = "heavy";
  CHECK_ERROR_WITH(train::augmentation(c, 24), "unknown --augment 'heavy'");
  const fs::path folder = fresh_folder("bad_augment");
  CHECK_ERROR_WITH(train::Trainer(c, quiet_in(folder)), "unknown --augment 'heavy'");
  CHECK_FALSE(fs::exists(folder));
}

TEST_CASE("train: a precision the device cannot run is refused before anything is written") {
  train::TrainConfig c = cumtl_test::tiny_train_config();
  const fs::path folder = fresh_folder("bad_precision");
  c.precision = "tf32";
  CHECK_ERROR_WITH(train::Trainer(c, quiet_in(folder)), "precision tf32 is a GPU math mode");
  CHECK_FALSE(fs::exists(folder));
}

// In bf16 and fp16 too: the working copy is rounded afresh from the checkpointed float32 master weights, and
// the fp16 loss scale is checkpointed.
TEST_CASE("train: a resumed run reproduces the uninterrupted run bit for bit") {
  for (const char* precision : {"fp32", "bf16", "fp16"}) {
    CAPTURE(precision);
    train::TrainConfig config = cumtl_test::tiny_train_config();
    config.precision = precision;
    const std::atomic<bool> never{false};
    const fs::path straight = fresh_folder("straight"), paused = fresh_folder("paused");
    // Each step's loss, as the host received it: the same in both runs.
    std::vector<double> straight_losses, paused_losses;
    const auto into = [](std::vector<double>& losses) {
      return [&losses](const train::StepLoss& step) {
        CHECK(step.step == std::int64_t(losses.size()));
        losses.push_back(step.loss);
      };
    };
    {
      train::TrainerOptions options = quiet_in(straight);
      options.on_step_loss = into(straight_losses);
      train::Trainer trainer(config, options);
      REQUIRE(trainer.batches_per_epoch() == 4);  // 48 emotion-labelled faces, 12 in each batch of 16
      const train::RunResult result = trainer.run(never);
      CHECK(result.finished);
    }
    {
      train::TrainerOptions options = quiet_in(paused);
      options.pause_at_step = 6;  // inside the second epoch
      options.on_step_loss = into(paused_losses);
      train::Trainer trainer(config, options);
      const train::RunResult result = trainer.run(never);
      CHECK_FALSE(result.finished);
      CHECK(result.history.size() == 1);
      CHECK(fs::exists(result.checkpoint));
      CHECK_FALSE(fs::exists(paused / "weights.safetensors"));
      CHECK_FALSE(fs::exists(paused / "summary.json"));
    }
    {
      CHECK(paused_losses.size() == 6);
      train::TrainerOptions options = quiet_in(paused);
      options.on_step_loss = into(paused_losses);
      const std::unique_ptr<train::Trainer> trainer = train::Trainer::resume(options);
      CHECK(trainer->run(never).finished);
    }
    CHECK(paused_losses == straight_losses);
    const std::vector<nlohmann::json> expected = without_timings(read_lines(straight / "metrics.jsonl"));
    REQUIRE(expected.size() == 3);
    CHECK(without_timings(read_lines(paused / "metrics.jsonl")) == expected);
    check_same_tensors(straight / "weights.safetensors", paused / "weights.safetensors");
  }
}

// Checks a mixed-precision run folder: weights.safetensors keeps the float32
// master weights; weights.<precision>.safetensors has them rounded to `Half`
// in PyTorch's layout, and loads back widened.
template <class Half>
void check_mixed_weights(const fs::path& folder, const std::string& precision) {
  const io::SafetensorsFile weights = io::read_safetensors(folder / "weights.safetensors");
  std::size_t float32_tensors = 0;
  for (const auto& named : weights.tensors) {
    CHECK(named.tensor.dtype() != scalar_type_v<Half>);
    float32_tensors += named.tensor.dtype() == ScalarType::f32 ? 1 : 0;
  }
  CHECK(float32_tensors > 0);
  const fs::path narrow_file = folder / ("weights." + precision + ".safetensors");
  REQUIRE(fs::exists(narrow_file));
  const io::SafetensorsFile narrow = io::read_safetensors(narrow_file);
  REQUIRE(narrow.tensors.size() == weights.tensors.size());
  for (const auto& named : weights.tensors) {
    CAPTURE(named.name);
    const Tensor* rounded = narrow.find(named.name);
    REQUIRE(rounded != nullptr);
    CHECK(rounded->shape() == named.tensor.shape());
    if (named.tensor.dtype() == ScalarType::f32)
      CHECK(rounded->to_vector<Half>() == cumtl_test::rounded<Half>(named.tensor));
    else
      CHECK(rounded->dtype() == named.tensor.dtype());
  }
  Context cpu;
  train::RunModel network(cpu, folder);
  ParameterStore& store = network.model().parameters();
  io::import_model_weights(cpu, store, narrow_file);
  CHECK(store.values().to_vector<float>() ==
        cumtl_test::widened(cumtl_test::narrowed<Half>(store.values())).template to_vector<float>());
}

// bf16 and fp16 runs on the CPU against the fp32 run of the same
// configuration: the summary names the precision, the weights files are as
// check_mixed_weights says, only fp16 scales its loss, and the losses track
// the fp32 run's (held within 5% per epoch; measured within 1.3%).
TEST_CASE("train: bf16 and fp16 runs on the CPU track the fp32 run and keep float32 master weights") {
  const std::atomic<bool> never{false};
  std::vector<std::vector<nlohmann::json>> records;
  for (const std::string precision : {"fp32", "bf16", "fp16"}) {
    CAPTURE(precision);
    train::TrainConfig config = cumtl_test::tiny_train_config();
    config.precision = precision;
    const fs::path folder = fresh_folder("precision_" + precision);
    train::Trainer trainer(config, quiet_in(folder));
    REQUIRE(trainer.run(never).finished);
    records.push_back(read_lines(folder / "metrics.jsonl"));
    std::ifstream summary_file(folder / "summary.json");
    CHECK(nlohmann::json::parse(summary_file).at("precision") == precision);
    CHECK(records.back().back().contains("loss_scale") == (precision == "fp16"));
    if (precision == "bf16") check_mixed_weights<bfloat16_t>(folder, precision);
    if (precision == "fp16") check_mixed_weights<float16_t>(folder, precision);
    if (precision == "fp32") CHECK_FALSE(fs::exists(folder / "weights.fp32.safetensors"));
  }
  for (std::size_t run = 1; run < records.size(); ++run) {
    REQUIRE(records[run].size() == records[0].size());
    for (std::size_t epoch = 0; epoch < records[0].size(); ++epoch)
      for (const char* key : {"train_loss", "test_loss"}) {
        const double fp32 = records[0][epoch][key].get<double>(), mixed = records[run][epoch][key].get<double>();
        MESSAGE("run ", run, " epoch ", epoch + 1, " ", std::string(key), ": fp32 ", fp32, ", mixed ", mixed);
        CHECK(std::abs(mixed - fp32) <= 0.05 * std::abs(fp32));
      }
  }
}

TEST_CASE("train: step losses come back in step order, `lag` steps late, and all of them at the end") {
  MultiTaskLoss loss(cumtl_test::flagship_heads());
  Context ctx;
  for (int lag : {0, 2}) {
    CAPTURE(lag);
    train::StepLosses losses(lag);
    std::vector<double> expected;
    std::vector<train::StepLoss> taken;
    for (std::int64_t step = 0; step < 5; ++step) {
      const cumtl_test::Batch batch = cumtl_test::random_batch<float>(loss, 8 + step, std::uint64_t(step));
      Tensor gradient = Tensor::empty(batch.logits.shape(), ScalarType::f32);
      loss.compute(ctx, LossMode::train, batch.logits, batch.labels, gradient);
      expected.push_back(loss.read(ctx).total);
      const std::optional<train::StepLoss> due = losses.push(ctx, loss, step, 8 + step);
      CHECK(due.has_value() == (step >= lag));
      if (due) taken.push_back(*due);
      CHECK(losses.in_flight() == std::size_t(std::min<std::int64_t>(step + 1, lag)));
    }
    while (const std::optional<train::StepLoss> done = losses.take_oldest(ctx, loss)) taken.push_back(*done);
    REQUIRE(taken.size() == expected.size());
    for (std::size_t i = 0; i < taken.size(); ++i) {
      CHECK(taken[i].step == std::int64_t(i));
      CHECK(taken[i].images == 8 + std::int64_t(i));
      CHECK(taken[i].loss == expected[i]);
    }
  }
  CHECK_ERROR_WITH(train::StepLosses(-1), "lag must be >= 0");
}

TEST_CASE("train: every step's loss reaches the host once, in order, and makes the epoch's train loss") {
  const std::atomic<bool> never{false};
  const fs::path folder = fresh_folder("step_losses");
  std::vector<train::StepLoss> seen;
  train::TrainerOptions options = quiet_in(folder);
  options.on_step_loss = [&](const train::StepLoss& step) { seen.push_back(step); };
  train::Trainer trainer(cumtl_test::tiny_train_config(), options);
  REQUIRE(trainer.run(never).finished);
  const std::vector<nlohmann::json> epochs = read_lines(folder / "metrics.jsonl");
  REQUIRE(epochs.size() == 3);
  REQUIRE(seen.size() == 3 * std::size_t(trainer.batches_per_epoch()));
  for (std::size_t i = 0; i < seen.size(); ++i) CHECK(seen[i].step == std::int64_t(i));
  for (std::size_t e = 0; e < epochs.size(); ++e) {
    double sum = 0;
    std::int64_t images = 0;
    for (std::int64_t b = 0; b < trainer.batches_per_epoch(); ++b) {
      const train::StepLoss& step = seen[e * std::size_t(trainer.batches_per_epoch()) + std::size_t(b)];
      sum += step.loss * double(step.images);
      images += step.images;
    }
    CHECK(epochs[e]["train_loss"].get<double>() == doctest::Approx(sum / double(images)).epsilon(1e-12));
  }
}

TEST_CASE("train: a loss that stops being finite is named at its own step") {
  const std::atomic<bool> never{false};
  const fs::path folder = fresh_folder("diverges");
  train::TrainConfig config = cumtl_test::tiny_train_config();
  config.optimizer = "sgd";
  config.lr = 1e30;  // the first update sends the weights past float's range
  config.warmup_steps = 0;
  config.schedule = "constant";
  std::vector<train::StepLoss> seen;
  train::TrainerOptions options = quiet_in(folder);
  options.on_step_loss = [&](const train::StepLoss& step) { seen.push_back(step); };
  train::Trainer trainer(config, options);
  std::string message;
  try {
    trainer.run(never);
  } catch (const Error& error) {
    message = error.what();
  }
  // The steps before it arrived with finite losses; the error names the next one.
  REQUIRE_FALSE(message.empty());
  for (const train::StepLoss& step : seen) CHECK(std::isfinite(step.loss));
  CHECK(message.find("at step " + std::to_string(seen.size()) + ":") != std::string::npos);
  CHECK(message.find("lower the learning rate") != std::string::npos);
  CHECK(seen.size() < std::size_t(trainer.batches_per_epoch()));
}

TEST_CASE("train: the run folder gets every output and the summary its keys") {
  const std::atomic<bool> never{false};
  const fs::path folder = fresh_folder("outputs");
  train::TrainConfig c = cumtl_test::tiny_train_config();
  c.epochs = 1;
  c.heads = {"emotion", "au", "compound"};
  c.synth_compound_fraction = 0.4;
  train::Trainer trainer(c, quiet_in(folder));
  const train::RunResult result = trainer.run(never);
  REQUIRE(result.finished);
  for (const char* name : {"model.json", "weights.safetensors", "summary.json", "report.html", "metrics.jsonl"})
    CHECK_MESSAGE(fs::exists(folder / name), name);
  std::ifstream in(folder / "summary.json");
  const nlohmann::json summary = nlohmann::json::parse(in);
  for (const char* key : {"emotion_accuracy", "emotion_mean_class_accuracy", "au_mean_f1", "compound_accuracy",
                          "device", "train_seconds", "images_per_second"})
    CHECK_MESSAGE(summary.contains(key), key);
  CHECK(summary["device"] == "cpu");
  CHECK(summary["emotion_accuracy"].get<double>() >= 0);
  CHECK(summary["emotion_accuracy"].get<double>() <= 1);

  // The weights load back into the model model.json describes.
  const train::ModelDescription description = train::read_model_description(folder / "model.json");
  CHECK(description.image_size == 16);
  CHECK(description.trunk.widths == std::vector<int>{8, 8, 8, 8});
  REQUIRE(description.heads.size() == 3);
  CHECK(description.heads[2].name == "compound");
  Context& ctx = Context::default_for(Device::cpu());
  MultiHeadModel<float> model(description.trunk, description.heads);
  model.allocate(ctx);
  io::import_model_weights(ctx, model.parameters(), folder / "weights.safetensors");
  CHECK(model.parameters().values().to_vector<float>(ctx) ==
        trainer.model().parameters().values().to_vector<float>(ctx));
}

TEST_CASE("train: a folder holding a run is replaced only when asked") {
  const std::atomic<bool> never{false};
  const fs::path folder = fresh_folder("refuse");
  train::TrainConfig c = cumtl_test::tiny_train_config();
  c.epochs = 1;
  {
    train::Trainer trainer(c, quiet_in(folder));
    REQUIRE(trainer.run(never).finished);
  }
  train::Trainer again(c, quiet_in(folder));
  CHECK_ERROR_WITH(again.run(never), "already holds a run: pass --resume");
  CHECK(fs::exists(folder / "weights.safetensors"));
  train::TrainerOptions options = quiet_in(folder);
  options.overwrite = true;
  train::Trainer replacing(c, options);
  CHECK(replacing.run(never).finished);
  CHECK_ERROR_WITH(train::Trainer::resume(quiet_in(fresh_folder("empty"))), "has no checkpoints");
}

TEST_CASE("train: bad data fails before the folder is made or leaves no weights") {
  const std::atomic<bool> never{false};
  train::TrainConfig c = cumtl_test::tiny_train_config();
  c.data = {"manifest"};
  c.train_manifest = (fresh_folder("missing") / "manifest.csv").string();
  const fs::path untouched = fresh_folder("untouched");
  CHECK_ERROR_WITH(train::Trainer(c, quiet_in(untouched)), "manifest.csv");
  CHECK_FALSE(fs::exists(untouched));

  // A manifest whose fifth image is not an image: the run fails naming it, and writes no weights.
  const fs::path images = fresh_folder("bad_image");
  fs::create_directories(images);
  data::SynthOptions synth;
  synth.size = 16;
  synth.domain = data::SynthDomain::test;
  const data::SyntheticFaces faces(synth);
  std::vector<data::ManifestRow> rows;
  for (int i = 0; i < 24; ++i) {
    const std::string name = "face" + std::to_string(i) + ".png";
    if (i == 4)
      std::ofstream(images / name) << "not a png";
    else
      data::write_png(images / name, faces.sample(std::uint64_t(i)).image);
    rows.push_back({name, "test", faces.labels(std::uint64_t(i))});
  }
  data::write_manifest(images / "manifest.csv", rows, data::au_numbers);
  c.train_manifest = (images / "manifest.csv").string();
  const fs::path run = fresh_folder("failed_run");
  train::Trainer trainer(c, quiet_in(run));
  CHECK_ERROR_WITH(trainer.run(never), "face4.png");
  CHECK_FALSE(fs::exists(run / "weights.safetensors"));
  CHECK_FALSE(fs::exists(run / "summary.json"));
  CHECK_FALSE(fs::exists(run / "model.json"));
}

TEST_CASE("train: model.json round trip and a broken one named") {
  const fs::path folder = fresh_folder("model_json");
  fs::create_directories(folder);
  train::ModelDescription description;
  description.trunk = ResNetSpec::resnet50();
  description.heads = train::head_specs(cumtl_test::tiny_train_config());
  description.image_size = 224;
  description.loss.normalization = LossNormalization::per_sample;
  train::write_model_description(folder / "model.json", description);
  const train::ModelDescription back = train::read_model_description(folder / "model.json");
  CHECK(back.trunk.block == BlockKind::bottleneck);
  CHECK(back.trunk.blocks == std::vector<int>{3, 4, 6, 3});
  CHECK(back.trunk.stem == StemKind::imagenet);
  CHECK(back.image_size == 224);
  REQUIRE(back.heads.size() == 2);
  CHECK(back.heads[1].output_names == description.heads[1].output_names);
  CHECK(back.loss.normalization == LossNormalization::per_sample);
  description.trunk = ResNetSpec::compact();
  train::write_model_description(folder / "compact.json", description);
  CHECK(train::read_model_description(folder / "compact.json").trunk.stem == StemKind::small_strided);

  std::ofstream(folder / "broken.json") << R"({"format": "cumtl-model-1", "trunk": {"block": "basic"}})";
  CHECK_ERROR_WITH(train::read_model_description(folder / "broken.json"), "broken.json");
  CHECK_ERROR_WITH(train::read_model_description(folder / "absent.json"), "no such file");
}

}  // namespace
}  // namespace cumtl
