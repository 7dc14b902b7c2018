// cumtl-train: trains a multi-task ResNet (emotions, Action Units, compound
// expressions) on the synthetic faces or on real datasets, and writes a run
// folder (docs/training.md lists its files and every flag).
//
//   cumtl-train [--data synth] [--scheme selective] [--epochs N] [--out runs/NAME] ...
//   cumtl-train --resume runs/NAME
//
// Exit status: 0 when the run finished, 2 on a usage error (with the usage),
// 130 when stopped by Ctrl-C (after writing a checkpoint to resume from), and
// 1 on any other error (with a message on stderr; no weights are written).
#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <cumtl/distributed/world.hpp>
#include <cumtl/train/trainer.hpp>
#if CUMTL_HAVE_GLOO
#include <cumtl/distributed/gloo.hpp>
#endif
#if CUMTL_HAVE_NCCL
#include <cumtl/distributed/nccl.hpp>
#endif

#include "program.hpp"

namespace train = cumtl::train;

namespace {

std::atomic<bool> stop_requested{false};

// The first Ctrl-C asks the loop to stop at the next step and checkpoint; a
// second one ends the process at once (the default action).
extern "C" void on_interrupt(int) {
  stop_requested.store(true);
  std::signal(SIGINT, SIG_DFL);
}

CLI::Validator one_of(std::vector<std::string> names) {
  std::string description;
  for (const std::string& name : names) description += (description.empty() ? "" : "|") + name;
  return CLI::Validator(
      [names](std::string& value) {
        for (const std::string& name : names)
          if (value == name) return std::string();
        return "'" + value + "' is not one of the choices";
      },
      description);
}

}  // namespace

int main(int argc, char** argv) {
  keep_freed_memory_for_reuse();
  CLI::App app("Trains a multi-task ResNet on faces (synthetic or real) and writes a run folder.", "cumtl-train");
  app.set_help_all_flag("--help-all", "Every flag, grouped");
  train::TrainConfig c;
  std::string out = "runs/latest", resume;
  bool overwrite = false, quiet = false, plain = false;

  const std::string data_group = "Data";
  app.add_option("--data", c.data,
                 "Training data: synth, manifest, rafdb, emotionet, fer2013, affectnet (several: a,b)")
      ->delimiter(',')
      ->capture_default_str()
      ->group(data_group);
  app.add_option("--ratios", c.ratios,
                 "Share of each training dataset in a batch (default: equal, but 3:1 for synth's emotion- and "
                 "AU-labelled faces)")
      ->delimiter(',')
      ->group(data_group);
  app.add_option("--synth-train", c.synth_train, "Synthetic training faces per domain")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(data_group);
  app.add_option("--synth-rafdb", c.synth_rafdb, "Emotion-labelled synthetic faces (overrides --synth-train)")
      ->check(CLI::PositiveNumber)
      ->group(data_group);
  app.add_option("--synth-emotionet", c.synth_emotionet, "AU-labelled synthetic faces (overrides --synth-train)")
      ->check(CLI::PositiveNumber)
      ->group(data_group);
  app.add_option("--synth-test", c.synth_test, "Synthetic test faces (in the wild, every label)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->group(data_group);
  app.add_option("--synth-au-test", c.synth_au_test, "Held-out EmotioNet-like faces scored for AU F1 (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->group(data_group);
  app.add_option("--synth-compound-fraction", c.synth_compound_fraction,
                 "Share of synthetic faces showing a compound expression")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0))
      ->group(data_group);
  app.add_option("--synth-seed", c.synth_seed, "Seed of the synthetic faces (kept when --seed changes)")
      ->capture_default_str()
      ->group(data_group);
  app.add_option("--train-manifest", c.train_manifest, "Manifest CSV to train on (--data manifest)")->group(data_group);
  app.add_option("--test-manifest", c.test_manifest, "Manifest CSV to evaluate on")->group(data_group);
  app.add_option("--rafdb-root", c.rafdb_root, "RAF-DB folder holding basic/")->group(data_group);
  app.add_option("--emotionet-table", c.emotionet_table, "EmotioNet AU table")->group(data_group);
  app.add_option("--emotionet-images", c.emotionet_images, "Folder of the EmotioNet images")->group(data_group);
  app.add_option("--emotionet-test-table", c.emotionet_test_table, "EmotioNet AU table to evaluate on")
      ->group(data_group);
  app.add_option("--fer2013-csv", c.fer2013_csv, "FER2013's fer2013.csv")->group(data_group);
  app.add_option("--affectnet-train-csv", c.affectnet_train_csv, "AffectNet training.csv")->group(data_group);
  app.add_option("--affectnet-test-csv", c.affectnet_test_csv, "AffectNet validation.csv")->group(data_group);
  app.add_option("--affectnet-images", c.affectnet_images, "Folder of the AffectNet images")->group(data_group);
  app.add_flag("--skip-bad", c.skip_bad, "Skip and count unreadable images instead of failing")->group(data_group);
  app.add_option("--augment", c.augment, "none, flip (mirror only) or full (crop, mirror, rotation, colour)")
      ->capture_default_str()
      ->check(one_of({"none", "flip", "full"}))
      ->group(data_group);

  const std::string model_group = "Model and loss";
  app.add_option("--model", c.model,
                 "auto (compact on the CPU, resnet18 on a GPU), compact, small, resnet18, resnet34, resnet50")
      ->capture_default_str()
      ->check(one_of({"auto", "compact", "small", "resnet18", "resnet34", "resnet50"}))
      ->group(model_group);
  app.add_option("--widths", c.widths, "Stage widths, replacing the preset's (e.g. 16,32,64,128)")
      ->delimiter(',')
      ->group(model_group);
  app.add_option("--blocks", c.blocks, "Blocks per stage, replacing the preset's (e.g. 1,1,1,1)")
      ->delimiter(',')
      ->group(model_group);
  app.add_option("--size", c.image_size, "Input side in pixels (0: 64 for compact, 48 for small, 112 otherwise)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024))
      ->group(model_group);
  app.add_option("--heads", c.heads, "Heads: emotion, au, compound (default: the scheme's)")
      ->delimiter(',')
      ->group(model_group);
  app.add_option("--aus", c.aus, "AUs of the au head")->delimiter(',')->group(model_group);
  app.add_option("--emotion-weight", c.emotion_weight, "Task weight of the emotion head")
      ->capture_default_str()
      ->group(model_group);
  app.add_option("--au-weight", c.au_weight, "Task weight of the AU head")->capture_default_str()->group(model_group);
  app.add_option("--compound-weight", c.compound_weight, "Task weight of the compound head")
      ->capture_default_str()
      ->group(model_group);
  std::string scheme = "selective";
  app.add_option("--scheme", scheme, "selective, alternating, naive, single-emotion or single-au")
      ->capture_default_str()
      ->check(one_of({"selective", "alternating", "naive", "single-emotion", "single-au"}))
      ->group(model_group);
  app.add_option("--normalization", c.normalization, "Loss normalization: per-label, per-sample, per-batch")
      ->check(one_of({"per-label", "per-sample", "per-batch"}))
      ->group(model_group);

  const std::string optim_group = "Optimization";
  app.add_option("--optimizer", c.optimizer, "adamw or sgd")
      ->capture_default_str()
      ->check(one_of({"adamw", "sgd"}))
      ->group(optim_group);
  app.add_option("--lr", c.lr, "Peak learning rate (default: 4e-3 AdamW, 0.05 SGD)")
      ->check(CLI::PositiveNumber)
      ->group(optim_group);
  app.add_option("--momentum", c.momentum, "SGD momentum")->capture_default_str()->group(optim_group);
  app.add_flag("!--no-nesterov", c.nesterov, "Plain SGD momentum instead of Nesterov's")->group(optim_group);
  app.add_option("--weight-decay", c.weight_decay, "Weight decay (default: 0.1 AdamW, 5e-4 SGD; BN and biases exempt)")
      ->check(CLI::NonNegativeNumber)
      ->group(optim_group);
  app.add_option("--schedule", c.schedule, "constant, step or cosine")
      ->capture_default_str()
      ->check(one_of({"constant", "step", "cosine"}))
      ->group(optim_group);
  app.add_option("--warmup-steps", c.warmup_steps, "Linear warm-up steps (default: 1/30 of the run, at most 500)")
      ->check(CLI::NonNegativeNumber)
      ->group(optim_group);
  app.add_option("--step-every", c.step_every_epochs, "Step schedule: epochs between decays")->group(optim_group);
  app.add_option("--gamma", c.gamma, "Step schedule: decay factor")->capture_default_str()->group(optim_group);
  app.add_option("--epochs", c.epochs, "Epochs (passes over the first training dataset)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(optim_group);
  app.add_option("--steps", c.steps, "Train exactly this many steps instead (epochs then pace evaluation)")
      ->check(CLI::PositiveNumber)
      ->group(optim_group);
  app.add_option("--batch", c.batch, "Batch size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(optim_group);
  app.add_option("--seed", c.seed, "Seed of initialization, shuffling and augmentation")
      ->capture_default_str()
      ->group(optim_group);

  const std::string run_group = "Run";
  app.add_option("--device", c.device, "auto (the GPU if there is one), cpu, cuda or cuda:N")
      ->capture_default_str()
      ->group(run_group);
  app.add_option(
         "--precision", c.precision,
         "auto (bf16 on a GPU with bf16 tensor cores, fp32 elsewhere and with --deterministic), fp32, tf32 (GPU only), "
         "bf16 or fp16 "
         "(bfloat16 or float16 activations, float32 master weights; fp16 with dynamic loss scaling)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "tf32", "bf16", "fp16"}))
      ->group(run_group);
  app.add_flag("--deterministic", c.deterministic,
               "Bit-reproducible GPU runs (deterministic cuDNN engines; fp32 unless --precision says otherwise)")
      ->group(run_group);
  app.add_flag("--sync-bn", c.sync_batch_norm,
               "Distributed runs: batch norm normalizes with the statistics of every rank's shard (the global batch)")
      ->group(run_group);
  app.add_option("--loader-threads", c.loader_threads, "Decode threads (0: all cores but one)")
      ->capture_default_str()
      ->group(run_group);
  app.add_option("--eval-every", c.eval_every, "Evaluate every N epochs (0: only after the last)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->group(run_group);
  app.add_option("--keep-checkpoints", c.keep_checkpoints, "Checkpoints kept in the run folder")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(run_group);
  app.add_option("--out", out, "Run folder to write")->capture_default_str()->group(run_group);
  app.add_flag("--overwrite", overwrite, "Replace the run already in --out")->group(run_group);
  app.add_option("--resume", resume, "Continue the run in this folder from its last checkpoint")->group(run_group);
  app.add_flag("--quiet", quiet, "Print nothing but errors")->group(run_group);
  app.add_flag("--plain", plain, "Log lines instead of a progress bar, even on a terminal")->group(run_group);
  double rank_timeout = 60;
  app.add_option("--rank-timeout", rank_timeout,
                 "Distributed runs: seconds a rank waits for the others before it fails")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(run_group);

  if (const std::optional<int> status = parse_command_line(app, argc, argv)) return *status;
  if (!resume.empty()) {
    // A resumed run is the stored run: only how it is shown and where it runs may change.
    for (const CLI::Option* option : app.get_options()) {
      const std::string name = option->get_name();
      if (option->count() > 0 && name != "--resume" && name != "--device" && name != "--quiet" && name != "--plain" &&
          name != "--rank-timeout") {
        std::cerr << "cumtl-train: " << name << " cannot be combined with --resume (the run keeps its stored settings)"
                  << "\n\n"
                  << app.help();
        return 2;
      }
    }
  }
  c.scheme = *train::parse_scheme(scheme);

  std::string who = "cumtl-train";
  try {
    // A launcher (cumtl-launch, torchrun, mpirun, srun) makes this process one rank of a job.
    const cumtl::distributed::WorldInfo world = cumtl::distributed::world_from_environment();
    std::shared_ptr<cumtl::distributed::Communicator> communicator;
    if (world.distributed()) {
      who += ": rank " + std::to_string(world.rank);
#if CUMTL_HAVE_GLOO
      communicator = std::make_shared<cumtl::distributed::GlooCommunicator>(
          world,
          cumtl::distributed::GlooOptions{.timeout = std::chrono::milliseconds(std::int64_t(rank_timeout * 1000))});
#else
      CUMTL_FAIL("the environment starts a job of ", world.world_size, " ranks (", world.launcher,
                 "), but this cumtl-train was built without Gloo (configure with -DCUMTL_GLOO=ON)");
#endif
      if (world.rank != 0) quiet = true;
    }
    train::TrainerOptions options{.run_folder = resume.empty() ? out : resume,
                                  .overwrite = overwrite,
                                  .log = stdout,
                                  .interactive = !plain && train::Progress::is_terminal(stdout),
                                  .quiet = quiet,
                                  .communicator = communicator,
                                  .local_rank = world.local_rank};
#if CUMTL_HAVE_NCCL
    options.device_engine = [rank_timeout](cumtl::distributed::Communicator& host, cumtl::Context& gpu) {
      return std::make_shared<cumtl::distributed::NcclCommunicator>(
          host, gpu,
          cumtl::distributed::NcclOptions{.timeout = std::chrono::milliseconds(std::int64_t(rank_timeout * 1000))});
    };
#endif
    std::unique_ptr<train::Trainer> trainer =
        resume.empty() ? std::make_unique<train::Trainer>(c, options)
                       : train::Trainer::resume(options, app.count("--device") > 0 ? c.device : std::string());
    std::signal(SIGINT, on_interrupt);
    const train::RunResult result = trainer->run(stop_requested);
    std::signal(SIGINT, SIG_DFL);
    if (!result.finished) return 130;
    if (!quiet) {
      std::printf("\nfinal (%s):", options.run_folder.string().c_str());
      for (const char* key : {"emotion_accuracy", "emotion_mean_class_accuracy", "au_mean_f1", "compound_accuracy",
                              "emotionet_au_mean_f1"})
        if (result.summary.contains(key)) std::printf("  %s %.4f", key, result.summary[key].get<double>());
      std::printf("\n  %s, %.1f s training, %.0f images/s; open %s\n",
                  result.summary["device"].get<std::string>().c_str(), result.summary["train_seconds"].get<double>(),
                  result.summary["images_per_second"].get<double>(),
                  (options.run_folder / "report.html").string().c_str());
    }
    return 0;
  } catch (const std::exception& error) {
    std::cerr << who << ": error: " << error.what() << "\n";
    return 1;
  }
}
