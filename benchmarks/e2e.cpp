// cumtl-bench-e2e: end-to-end throughput of a multi-head ResNet — training
// images/s (forward, the multi-task loss, backward, the optimizer update) and
// inference images/s (forward in evaluation mode) — on synthetic tensors, or
// with the data loader in the loop (--loader). benchmarks/pytorch_reference.py
// times the same network, loss and optimizer the same way, so the two numbers
// make a ratio.
//
//   cumtl-bench-e2e --model resnet18 --size 112 --batch 64 --steps 20 --device cuda --json
//   cumtl-bench-e2e --check-out DIR   # inputs, logits, loss and gradients for pytorch_reference.py --check
//
// Timing: `--warmup` untimed steps (cuDNN plans are built and cached there),
// then every step timed from the host with the context synchronized before and
// after; the median step is reported (and the mean), so a stray slow step does
// not move the figure. Images/s = batch / median step time.
//
// Started by a launcher (cumtl-launch --nproc-per-node N -- cumtl-bench-e2e
// --device cpu ...), every rank trains its own batch of --batch and the
// gradients are averaged over the ranks each step, as cumtl-train does;
// training images/s is then the world's: N × batch / the slowest rank's
// median step. Rank 0 prints.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <cumtl/cumtl.hpp>
#include <cumtl/distributed/data_parallel.hpp>
#include <cumtl/distributed/world.hpp>
#include <cumtl/train/trainer.hpp>
#if CUMTL_HAVE_GLOO
#include <cumtl/distributed/gloo.hpp>
#endif

namespace fs = std::filesystem;
using namespace cumtl;

namespace {

struct Options {
  std::string model = "resnet18";
  std::vector<int> widths, blocks;
  int size = 112;
  std::int64_t batch = 32;
  int steps = 10, warmup = 3;
  std::string device = "auto";
  std::string precision = "auto";
  std::string optimizer = "sgd";
  bool loader = false, json = false, deterministic = false;
  std::string check_out;
};

ResNetSpec trunk_of(const Options& o) {
  train::TrainConfig config;
  config.model = o.model;
  config.widths = o.widths;
  config.blocks = o.blocks;
  return train::trunk_spec(config, false);
}

// Mixed-domain labels as the selective loss sees them: the first half of the
// batch has an emotion and no AU, the second half AUs and no emotion.
MultiTaskLabels mixed_labels(Context& ctx, std::int64_t n, int aus, std::uint64_t seed) {
  std::vector<std::int32_t> classes(std::size_t(n), -1);
  std::vector<std::int8_t> binary(std::size_t(n * aus), -1);
  Generator generator(seed);
  for (std::int64_t i = 0; i < n; ++i) {
    if (i < n / 2)
      classes[std::size_t(i)] = std::int32_t(generator.uniform() * 7) % 7;
    else
      for (int k = 0; k < aus; ++k) binary[std::size_t(i * aus + k)] = generator.uniform() < 0.3 ? 1 : 0;
  }
  return {Tensor::from_vector(classes, Shape{n, 1}).to(ctx, ctx.device()),
          Tensor::from_vector(binary, Shape{n, aus}).to(ctx, ctx.device())};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t m = values.size() / 2;
  return values.size() % 2 ? values[m] : 0.5 * (values[m - 1] + values[m]);
}

double mean(const std::vector<double>& values) {
  return std::accumulate(values.begin(), values.end(), 0.0) / double(values.size());
}

// The --check-out files: model.json, the initial weights in PyTorch's layout,
// and one training-mode batch's inputs, logits, loss and some gradients.
void write_check(Context& ctx, MultiHeadModel<float>& model, const train::ModelDescription& description,
                 const Options& o) {
  const fs::path folder = o.check_out;
  fs::create_directories(folder);
  train::write_model_description(folder / "model.json", description);
  io::export_model_weights(ctx, model.parameters(), folder / "weights.safetensors");

  const std::int64_t n = std::min<std::int64_t>(o.batch, 8);
  Generator generator(99);
  Tensor images = Tensor::empty(ctx, Shape::nhwc(n, o.size, o.size, 3), ScalarType::f32);
  ops::normal(ctx, images, generator, 0.0, 1.0);
  const MultiTaskLabels labels = mixed_labels(ctx, n, description.heads[1].outputs, 5);
  MultiTaskLoss loss(description.heads, description.loss);
  const Tensor logits = model.forward(ctx, images, Phase::train);
  Tensor dlogits = Tensor::empty(ctx, logits.shape(), logits.dtype());
  loss.compute(ctx, LossMode::train, logits, labels, dlogits);
  model.backward(ctx, dlogits, GradientMode::overwrite);
  const double total = loss.read(ctx).total;

  std::vector<io::NamedTensor> tensors{{"images", images},
                                       {"classes", labels.classes},
                                       {"binary", labels.binary},
                                       {"logits", logits},
                                       {"loss", Tensor::from_vector(std::vector<double>{total}, Shape{1})}};
  const std::vector<std::unique_ptr<Parameter>>& parameters = model.parameters().parameters();
  // The first and last convolutions, a BN scale, and the heads: gradients from both ends of the network.
  std::vector<const Parameter*> chosen{parameters.front().get()};
  for (const auto& p : parameters)
    if (p->name.find("bn1.weight") != std::string::npos) {
      chosen.push_back(p.get());
      break;
    }
  const Parameter* last_conv = nullptr;
  for (const auto& p : parameters)
    if (p->shape.rank() == 4) last_conv = p.get();
  chosen.push_back(last_conv);
  for (const auto& p : parameters)
    if (p->name.starts_with("heads.")) chosen.push_back(p.get());
  for (const Parameter* p : chosen) {
    const Tensor host = p->gradient.to(ctx, Device::cpu());
    tensors.push_back({"grad." + p->name, p->shape.rank() == 4 ? io::krsc_to_kcrs(host) : host});
  }
  io::write_safetensors(ctx, folder / "check.safetensors", tensors, {{"format", "cumtl-check-1"}});
  std::fprintf(stderr, "cumtl-bench-e2e: wrote %s (model.json, weights.safetensors, check.safetensors)\n",
               folder.string().c_str());
}

int run(const Options& o) {
  const distributed::WorldInfo world = distributed::world_from_environment();
  std::unique_ptr<distributed::Communicator> communicator = std::make_unique<distributed::SingleProcess>();
  if (world.distributed()) {
#if CUMTL_HAVE_GLOO
    communicator = std::make_unique<distributed::GlooCommunicator>(world);
#else
    CUMTL_FAIL("a launcher started ", world.world_size, " ranks, but this cumtl-bench-e2e was built without Gloo");
#endif
  }
  const Device device = train::choose_device(o.device);
  CUMTL_REQUIRE(!world.distributed() || device.is_cpu(), "several ranks train on the CPU only so far: --device cpu");
  Context& ctx = Context::default_for(device);
  const Precision precision = choose_precision(o.precision, device, o.deterministic);
  CUMTL_REQUIRE(o.check_out.empty() || !precision.mixed(), "--check-out writes float32 references for ",
                "pytorch_reference.py --check, but the precision is ", precision.name,
                ": use --precision fp32 or tf32");
  apply_math_mode(precision, ctx.numerics());
  ctx.numerics().deterministic = o.deterministic;
  train::TrainConfig heads_config;
  const std::vector<HeadSpec> heads = train::head_specs(heads_config);
  const train::ModelDescription description{trunk_of(o), heads, o.size, ops::imagenet_mean, ops::imagenet_std, {}};
  MultiHeadModel<float> model(description.trunk, heads, precision.activations);
  model.allocate(ctx);
  Generator generator(1);
  model.initialize(ctx, generator);
  distributed::broadcast_parameters(*communicator, model.parameters());
  if (!o.check_out.empty()) {
    write_check(ctx, model, description, o);
    return 0;
  }

  MultiTaskLoss loss(heads);
  optim::AnyOptimizer optimizer =
      o.optimizer == "adamw"
          ? optim::AnyOptimizer(ctx, model.parameters(), optim::AdamWOptions{.lr = 1e-3, .weight_decay = 0.05})
          : optim::AnyOptimizer(ctx, model.parameters(),
                                optim::SgdOptions{.lr = 0.01, .momentum = 0.9, .weight_decay = 5e-4});
  // In the trunk's activation type, as the loader delivers them.
  Tensor images = Tensor::empty(ctx, Shape::nhwc(o.batch, o.size, o.size, 3), precision.activations);
  {
    Tensor drawn = Tensor::empty(ctx, images.shape(), ScalarType::f32);
    ops::normal(ctx, drawn, generator, 0.0, 1.0);
    ops::convert(ctx, drawn, images);
  }
  const MultiTaskLabels labels = mixed_labels(ctx, o.batch, heads[1].outputs, 3);

  std::optional<data::Loader> loader;
  if (o.loader) {
    // Enough faces that the timed steps never wrap an epoch.
    const auto faces = std::size_t(o.batch) * std::size_t(o.steps + o.warmup + 1);
    std::vector<std::shared_ptr<const data::Dataset>> datasets{
        std::make_shared<const data::SyntheticDataset>(
            data::SynthOptions{.size = o.size, .domain = data::SynthDomain::rafdb}, faces),
        std::make_shared<const data::SyntheticDataset>(
            data::SynthOptions{.size = o.size, .domain = data::SynthDomain::emotionet}, faces)};
    loader.emplace(ctx, data::MultiDomainSampler(datasets, {0.5, 0.5}, 0, std::size_t(o.batch), 0), heads,
                   data::LoaderOptions{.image_size = o.size, .image_type = precision.activations});
    loader->start_epoch(0);
  }

  const auto train_step = [&] {
    std::optional<data::Batch> batch;
    if (loader) batch = loader->next();
    const Tensor& x = batch ? batch->images : images;
    const MultiTaskLabels& y = batch ? batch->labels : labels;
    const Tensor logits = model.forward(ctx, x, Phase::train);
    Tensor dlogits = Tensor::empty(ctx, logits.shape(), logits.dtype());
    loss.compute(ctx, LossMode::train, logits, y, dlogits);
    model.backward(ctx, dlogits, GradientMode::overwrite);
    distributed::average_gradients(*communicator, model.parameters());
    optimizer.step(ctx);
  };
  const auto inference_step = [&] { (void)model.forward(ctx, images, Phase::eval); };
  const auto time_steps = [&](const auto& step) {
    for (int i = 0; i < o.warmup; ++i) step();
    ctx.synchronize();
    std::vector<double> seconds;
    for (int i = 0; i < o.steps; ++i) {
      const auto start = std::chrono::steady_clock::now();
      step();
      ctx.synchronize();
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return seconds;
  };
  const std::vector<double> train_seconds = time_steps(train_step);
  const std::vector<double> inference_seconds = time_steps(inference_step);
  (void)loss.read(ctx);  // surfaces an invalid label or a kernel error, if any
  // The world trains at the pace of its slowest rank.
  std::vector<double> rank_medians(std::size_t(communicator->world_size()), 0.0);
  rank_medians[std::size_t(communicator->rank())] = median(train_seconds);
  communicator->all_reduce_sum(std::span<double>(rank_medians));
  const double train_step_seconds = *std::max_element(rank_medians.begin(), rank_medians.end());
  if (!communicator->is_root()) return 0;

  nlohmann::ordered_json result = {
      {"framework", "cumtl"},
      {"device", train::device_description(device)},
      {"model", o.model},
      {"widths", description.trunk.widths},
      {"blocks", description.trunk.blocks},
      {"size", o.size},
      {"batch", o.batch},
      {"world_size", communicator->world_size()},
      {"steps", o.steps},
      {"optimizer", o.optimizer},
      {"data", o.loader ? "loader" : "tensors"},
      {"precision", std::string(precision.name)},
      {"tf32", precision.math == MathMode::tf32},
      {"train_images_per_second", double(o.batch * communicator->world_size()) / train_step_seconds},
      {"inference_images_per_second", double(o.batch) / median(inference_seconds)},
      {"train_step_ms_median", 1e3 * train_step_seconds},
      {"train_step_ms_mean", 1e3 * mean(train_seconds)},
      {"inference_step_ms_median", 1e3 * median(inference_seconds)},
      {"parameters", model.parameters().parameter_count()}};
  if (o.json) {
    std::printf("%s\n", result.dump().c_str());
  } else {
    std::printf(
        "%s %s %dpx batch %lld x %d ranks on %s: training %.1f images/s (%.2f ms/step), inference %.1f "
        "images/s\n",
        o.model.c_str(), o.loader ? "with the loader" : "on tensors", o.size, static_cast<long long>(o.batch),
        communicator->world_size(), result["device"].get<std::string>().c_str(),
        result["train_images_per_second"].get<double>(), result["train_step_ms_median"].get<double>(),
        result["inference_images_per_second"].get<double>());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("End-to-end training and inference throughput of a multi-head ResNet.", "cumtl-bench-e2e");
  Options o;
  app.add_option("--model", o.model, "compact, small, resnet18, resnet34 or resnet50")->capture_default_str();
  app.add_option("--widths", o.widths, "Stage widths replacing the preset's")->delimiter(',');
  app.add_option("--blocks", o.blocks, "Blocks per stage replacing the preset's")->delimiter(',');
  app.add_option("--size", o.size, "Input side in pixels")->capture_default_str()->check(CLI::Range(16, 1024));
  app.add_option("--batch", o.batch, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--steps", o.steps, "Timed steps")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "Untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--optimizer", o.optimizer, "sgd (momentum 0.9, weight decay 5e-4) or adamw")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "adamw"}));
  app.add_flag("--loader", o.loader, "Feed synthetic faces through the data loader (decode and augmentation included)");
  app.add_option(
         "--precision", o.precision,
         "auto (bf16 on a GPU with bf16 tensor cores, fp32 elsewhere and with --deterministic), fp32, tf32, bf16 or "
         "fp16")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "tf32", "bf16", "fp16"}));
  app.add_flag("--deterministic", o.deterministic,
               "Deterministic cuDNN engines; fp32 unless --precision says otherwise");
  app.add_flag("--json", o.json, "Print one JSON object");
  app.add_option("--check-out", o.check_out,
                 "Write model.json, weights.safetensors and one batch's logits, loss and gradients here, then exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& success) {
    return app.exit(success);
  } catch (const CLI::ParseError& error) {
    std::cerr << "cumtl-bench-e2e: " << error.what() << "\n\n" << app.help();
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& error) {
    std::cerr << "cumtl-bench-e2e: error: " << error.what() << "\n";
    return 1;
  }
}
