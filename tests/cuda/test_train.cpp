// The Trainer on a GPU against the same run on the CPU. Needs a GPU.
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <cumtl/train/trainer.hpp>

#include "../support/testing.hpp"
#include "../support/train_runs.hpp"

namespace fs = std::filesystem;
namespace train = cumtl::train;

namespace {

std::vector<nlohmann::json> run_on(const std::string& device, const std::string& name) {
  const fs::path folder = fs::temp_directory_path() / ("cumtl_gpu_train_" + name);
  fs::remove_all(folder);
  train::TrainConfig config = cumtl_test::tiny_train_config();
  config.device = device;
  config.deterministic = true;  // no TF32: the runs differ by rounding only
  config.epochs = 2;
  const std::atomic<bool> never{false};
  train::Trainer trainer(config, {.run_folder = folder, .quiet = true});
  REQUIRE(trainer.run(never).finished);
  std::ifstream in(folder / "metrics.jsonl");
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

}  // namespace

TEST_SUITE("train") {
  TEST_CASE("train: a short run on the GPU tracks the same run on the CPU") {
    const std::vector<nlohmann::json> cpu = run_on("cpu", "cpu"), gpu = run_on("cuda", "gpu");
    REQUIRE(cpu.size() == 2);
    REQUIRE(gpu.size() == 2);
    CHECK(gpu[0]["step"] == cpu[0]["step"]);
    // Same batches, same initialization; float rounding differs in reduction order only.
    for (std::size_t e = 0; e < cpu.size(); ++e)
      for (const char* key : {"train_loss", "test_loss"}) {
        const double a = cpu[e][key].get<double>(), b = gpu[e][key].get<double>();
        INFO("epoch ", e + 1, " ", key, ": cpu ", a, " gpu ", b);
        CHECK(std::abs(a - b) <= 1e-3 * std::abs(a));
      }
    CHECK(train::device_description(cumtl::Device::cuda(0)).starts_with("cuda:0 ("));
  }
}
