// cumtl-predict: runs a trained model from a run folder on images and prints
// one JSON line per image: the file, the emotion probabilities, each AU's
// probability and, when the model has that head, the compound expression's.
//
//   cumtl-predict --run runs/demo [--device auto|cpu|cuda] [--precision auto|fp32|tf32|bf16|fp16] [--batch N]
//   [--strict]
//                 PATH...
//
// A PATH is an image (JPEG, PNG, BMP) or a folder, searched recursively for
// images in name order. An unreadable image is reported on stderr and skipped
// (--strict: it stops the run); a broken model.json or weights file stops it.
//
// Exit status: 0 when every image was predicted, 1 on an error or when any
// image was skipped, 2 on a usage error (with the usage).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <cumtl/data/augment.hpp>
#include <cumtl/data/image_io.hpp>
#include <cumtl/io/checkpoint.hpp>
#include <cumtl/models/multi_head.hpp>
#include <cumtl/train/model_file.hpp>
#include <cumtl/train/trainer.hpp>

#include "program.hpp"

namespace fs = std::filesystem;
namespace data = cumtl::data;
namespace train = cumtl::train;

namespace {

bool is_image_file(const fs::path& file) {
  std::string extension = file.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return extension == ".png" || extension == ".jpg" || extension == ".jpeg" || extension == ".bmp";
}

// Every image a list of files and folders names, folders expanded in name order.
std::vector<fs::path> collect_images(const std::vector<std::string>& paths) {
  std::vector<fs::path> files;
  for (const std::string& path : paths) {
    if (fs::is_directory(path)) {
      std::vector<fs::path> found;
      for (const auto& entry : fs::recursive_directory_iterator(path))
        if (entry.is_regular_file() && is_image_file(entry.path())) found.push_back(entry.path());
      std::sort(found.begin(), found.end());
      if (found.empty()) std::cerr << "cumtl-predict: warning: folder '" << path << "' holds no image\n";
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.emplace_back(path);  // a missing file is reported when it is read
    }
  }
  return files;
}

double sigmoid(double z) {
  return 1 / (1 + std::exp(-z));
}

nlohmann::json softmax_object(const float* logits, const cumtl::HeadSpec& head) {
  double largest = logits[0];
  for (int k = 1; k < head.outputs; ++k) largest = std::max(largest, double(logits[k]));
  double total = 0;
  for (int k = 0; k < head.outputs; ++k) total += std::exp(double(logits[k]) - largest);
  nlohmann::json probabilities = nlohmann::json::object();
  for (int k = 0; k < head.outputs; ++k) {
    const std::string name = head.output_names.empty() ? std::to_string(k) : head.output_names[std::size_t(k)];
    probabilities[name] = std::exp(double(logits[k]) - largest) / total;
  }
  return probabilities;
}

std::string top_name(const nlohmann::json& probabilities) {
  std::string best;
  double value = -1;
  for (const auto& [name, p] : probabilities.items())
    if (p.get<double>() > value) {
      value = p.get<double>();
      best = name;
    }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  keep_freed_memory_for_reuse();
  CLI::App app("Predicts emotions, Action Units and compound expressions with a trained run's model.", "cumtl-predict");
  std::string run, device = "auto", precision = "auto";
  std::vector<std::string> paths;
  std::int64_t batch_size = 32;
  bool strict = false;
  app.add_option("--run", run, "Run folder holding model.json and weights.safetensors")->required();
  app.add_option("--device", device, "auto (the GPU if there is one), cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--precision", precision,
                 "auto (bf16 on a GPU with bf16 tensor cores, else fp32), fp32, tf32 (GPU only), bf16 or fp16")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "tf32", "bf16", "fp16"}));
  app.add_option("--batch", batch_size, "Images per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--strict", strict, "Stop at the first unreadable image instead of skipping it");
  app.add_option("paths", paths, "Images or folders of images")->required();
  if (const std::optional<int> status = parse_command_line(app, argc, argv)) return *status;

  try {
    const cumtl::Device chosen = train::choose_device(device);
    cumtl::Context& ctx = cumtl::Context::default_for(chosen);
    const cumtl::Precision chosen_precision = cumtl::choose_precision(precision, chosen);
    cumtl::apply_math_mode(chosen_precision, ctx.numerics());
    train::RunModel network(ctx, run, chosen_precision.activations);
    const train::ModelDescription& description = network.description();
    const cumtl::MultiTaskLoss layout(description.heads);  // where each head's logits are

    const std::vector<fs::path> files = collect_images(paths);
    const int size = description.image_size;
    std::size_t skipped = 0;
    for (std::size_t start = 0; start < files.size(); start += std::size_t(batch_size)) {
      const std::size_t end = std::min(files.size(), start + std::size_t(batch_size));
      std::vector<std::uint8_t> pixels;
      std::vector<fs::path> names;
      for (std::size_t i = start; i < end; ++i) {
        try {
          const data::Image image = data::center_resize(data::to_rgb(data::decode_image(files[i])), size);
          pixels.insert(pixels.end(), image.pixels.begin(), image.pixels.end());
          names.push_back(files[i]);
        } catch (const std::exception& error) {
          if (strict) throw;
          std::cerr << "cumtl-predict: skipped: " << error.what() << "\n";
          ++skipped;
        }
      }
      if (names.empty()) continue;
      const auto rows = std::int64_t(names.size());
      const std::vector<float> logits = network.forward(ctx, std::move(pixels)).to_vector<float>(ctx);
      const std::int64_t columns = network.model().logit_count();
      for (std::int64_t r = 0; r < rows; ++r) {
        nlohmann::json line = {{"file", names[std::size_t(r)].string()}};
        for (const cumtl::HeadSpec& head : description.heads) {
          const float* z = logits.data() + r * columns + layout.logit_offset(head.name);
          if (head.kind == cumtl::HeadKind::softmax) {
            nlohmann::json probabilities = softmax_object(z, head);
            line[head.name + "_top"] = top_name(probabilities);
            line[head.name] = std::move(probabilities);
          } else {
            nlohmann::json probabilities = nlohmann::json::object();
            for (int k = 0; k < head.outputs; ++k)
              probabilities[head.output_names.empty() ? std::to_string(k) : head.output_names[std::size_t(k)]] =
                  sigmoid(double(z[k]));
            line[head.name] = std::move(probabilities);
          }
        }
        std::printf("%s\n", line.dump().c_str());
      }
      std::fflush(stdout);
    }
    if (skipped > 0) {
      std::cerr << "cumtl-predict: " << skipped << " of " << files.size() << " images could not be read\n";
      return 1;
    }
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "cumtl-predict: error: " << error.what() << "\n";
    return 1;
  }
}
