// How many images per second the loader delivers on this machine: decoding
// (PNG files through a manifest) or drawing (the synthetic generator in
// memory), augmenting, normalizing and encoding labels, with its worker threads.
// The consumer takes each batch and drops it, so this is the loader's ceiling.
// Names carry "cpu": the batches are delivered to a CPU context.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

using namespace cumtl::data;

const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7}};

constexpr std::size_t dataset_size = 1024;
constexpr std::size_t batch_size = 64;

// One epoch of `dataset` at `size` pixels; reports images per second.
void run_epochs(benchmark::State& state, std::shared_ptr<const Dataset> dataset, int size) {
  cumtl::Context& ctx = cumtl::Context::default_for(cumtl::Device::cpu());
  Loader loader(ctx, MultiDomainSampler(dataset, batch_size, 1), heads, {.image_size = size});
  std::uint64_t epoch = 0, images = 0;
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    while (const auto batch = loader.next()) images += batch->size;
  }
  state.counters["images_per_second"] = benchmark::Counter(double(images), benchmark::Counter::kIsRate);
  state.counters["threads"] = double(loader.threads());
}

void BM_loader_generator_cpu(benchmark::State& state) {
  const int size = int(state.range(0));
  run_epochs(state,
             std::make_shared<SyntheticDataset>(SynthOptions{.size = size, .domain = SynthDomain::rafdb}, dataset_size),
             size);
}
BENCHMARK(BM_loader_generator_cpu)->Arg(64)->Arg(112)->Unit(benchmark::kMillisecond)->UseRealTime();

// PNG files written once (at the loader's output size) and read back through a manifest.
void BM_loader_files_cpu(benchmark::State& state) {
  const int size = int(state.range(0));
  const std::filesystem::path folder =
      std::filesystem::temp_directory_path() / ("cumtl-bench-loader-" + std::to_string(size));
  if (!std::filesystem::exists(folder / "manifest.csv")) {
    std::filesystem::create_directories(folder / "images");
    const SyntheticFaces faces({.size = size, .domain = SynthDomain::rafdb});
    std::vector<ManifestRow> rows;
    for (std::size_t index = 0; index < dataset_size; ++index) {
      const Sample sample = faces.sample(index);
      const std::string name = "images/" + std::to_string(index) + ".png";
      write_png(folder / name, sample.image);
      rows.push_back({name, sample.domain, sample.labels});
    }
    write_manifest(folder / "manifest.csv", rows, au_numbers);
  }
  run_epochs(state, std::make_shared<ManifestDataset>(folder / "manifest.csv"), size);
}
BENCHMARK(BM_loader_files_cpu)->Arg(64)->Arg(112)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
