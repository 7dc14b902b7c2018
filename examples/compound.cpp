// cumtl-compound: how well a trained run's model tells the 11 compound
// expressions of RAF-DB apart although it never saw a compound label (Pons &
// Masip's compound experiment), two ways, on synthetic in-the-wild faces that
// all show a compound expression:
//  (a) linear probes — multinomial logistic regression fitted on one set of
//      faces and scored on a disjoint one — on the frozen trunk's features and
//      on the emotion + AU probabilities;
//  (b) zero-shot: compound (a, b) scores p(a)·p(b) times the geometric mean of
//      p(AU) over the core AUs of a's and b's prototypes that the AU head has.
//
//   cumtl-compound --run runs/demo [--device auto|cpu|cuda] [--train 1100] [--test 1100] [--synth-seed 0]
//                  [--epochs 200] [--json]
//
// Exit status: 0 on success, 1 on an error (with a message on stderr), 2 on a
// usage error (with the usage).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
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

#include <cumtl/cpu/gemm.hpp>
#include <cumtl/data/augment.hpp>
#include <cumtl/data/synthetic_faces.hpp>
#include <cumtl/io/checkpoint.hpp>
#include <cumtl/loss/metrics.hpp>
#include <cumtl/models/multi_head.hpp>
#include <cumtl/train/model_file.hpp>
#include <cumtl/train/trainer.hpp>

#include "program.hpp"

namespace fs = std::filesystem;
namespace data = cumtl::data;
namespace train = cumtl::train;

namespace {

constexpr std::size_t compounds = data::compound_names.size();
// The test faces start here, so the two sets never share a face for any --train the CLI accepts.
constexpr std::uint64_t test_first_index = 1'000'000;

// What the model says about a set of faces, on the host.
struct Outputs {
  std::size_t feature_count = 0;
  std::vector<double> features;      // rows × feature_count: the pooled trunk
  std::vector<double> emotion, au;   // rows × the head's outputs, log-probabilities; empty without the head
  std::vector<std::int32_t> labels;  // the compound of each face
};

double log_sigmoid(double z) { return z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z)); }

const cumtl::HeadSpec* find_head(const train::ModelDescription& model, const std::string& name, cumtl::HeadKind kind) {
  for (const cumtl::HeadSpec& head : model.heads)
    if (head.name == name && head.kind == kind) return &head;
  return nullptr;
}

Outputs describe_faces(train::RunModel& network, cumtl::Context& ctx, const data::SyntheticFaces& faces,
                       std::uint64_t first, std::int64_t count) {
  const train::ModelDescription& description = network.description();
  constexpr std::int64_t batch = 64;
  const cumtl::MultiTaskLoss layout(description.heads);  // where each head's logits are
  const cumtl::HeadSpec* emotion = find_head(description, "emotion", cumtl::HeadKind::softmax);
  const cumtl::HeadSpec* au = find_head(description, "au", cumtl::HeadKind::sigmoid);
  const int size = description.image_size;
  Outputs out;
  for (std::int64_t start = 0; start < count; start += batch) {
    const std::int64_t rows = std::min(batch, count - start);
    std::vector<std::uint8_t> pixels;
    for (std::int64_t r = 0; r < rows; ++r) {
      const data::Sample sample = faces.sample(first + std::uint64_t(start + r));
      CUMTL_REQUIRE(sample.labels.compound >= 0, sample.source, " is not a compound expression");
      const data::Image image = data::center_resize(sample.image, size);
      pixels.insert(pixels.end(), image.pixels.begin(), image.pixels.end());
      out.labels.push_back(sample.labels.compound);
    }
    const std::vector<float> logits = network.forward(ctx, std::move(pixels)).to_vector<float>(ctx);
    const std::vector<float> features = network.model().features().to_vector<float>(ctx);
    out.feature_count = features.size() / std::size_t(rows);
    out.features.insert(out.features.end(), features.begin(), features.end());
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* row = logits.data() + r * network.model().logit_count();
      if (emotion != nullptr) {
        const float* z = row + layout.logit_offset(emotion->name);
        const double largest = *std::max_element(z, z + emotion->outputs);
        double total = 0;
        for (int k = 0; k < emotion->outputs; ++k) total += std::exp(double(z[k]) - largest);
        for (int k = 0; k < emotion->outputs; ++k) out.emotion.push_back(double(z[k]) - largest - std::log(total));
      }
      if (au != nullptr) {
        const float* z = row + layout.logit_offset(au->name);
        for (int k = 0; k < au->outputs; ++k) out.au.push_back(log_sigmoid(double(z[k])));
      }
    }
  }
  return out;
}

// Multinomial logistic regression with L2 on standardized inputs, fitted by
// Nesterov's accelerated full-batch gradient descent with step 1/L for a bound
// L on the loss's curvature: nothing to tune and nothing random.
// Returns the test logits, rows × compounds.
std::vector<float> fit_probe(const std::vector<double>& train_x, const std::vector<std::int32_t>& train_y,
                             const std::vector<double>& test_x, std::size_t inputs, int epochs) {
  constexpr double decay = 1e-3;
  const std::size_t n = train_y.size(), width = inputs + 1, K = compounds;
  std::vector<double> mean(inputs, 0), scale(inputs, 0);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < inputs; ++j) mean[j] += train_x[r * inputs + j] / double(n);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < inputs; ++j) scale[j] += std::pow(train_x[r * inputs + j] - mean[j], 2) / double(n);
  // A feature constant on the training set (a ReLU never on) stays 0 rather than blowing up on the test set.
  for (double& s : scale) s = s > 1e-12 ? std::sqrt(s) : 1.0;
  const auto design = [&](const std::vector<double>& x) {  // standardized inputs and a 1 for the bias
    const std::size_t rows = x.size() / inputs;
    std::vector<double> z(rows * width, 1.0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < inputs; ++j) z[r * width + j] = (x[r * inputs + j] - mean[j]) / scale[j];
    return z;
  };
  // out[rows × columns] = z[rows × width] · w[width × columns], or zᵀ · w when `transpose` (then w has z's rows).
  const auto product = [width](bool transpose, const std::vector<double>& z, const std::vector<double>& w,
                               std::size_t columns, double alpha, std::vector<double>& out) {
    const auto rows = std::int64_t(z.size() / width), m = transpose ? std::int64_t(width) : rows;
    out.resize(std::size_t(m) * columns);
    cumtl::cpu::gemm(transpose, false, m, std::int64_t(columns), transpose ? rows : std::int64_t(width), alpha,
                     z.data(), std::int64_t(width), w.data(), std::int64_t(columns), 0.0, out.data(),
                     std::int64_t(columns));
  };
  const std::vector<double> z = design(train_x);

  // Softmax cross-entropy has curvature at most ½·λmax(ZᵀZ/n); power iteration
  // approaches λmax from below, hence the margin.
  std::vector<double> v(width, 1.0), zv, next;
  double lambda = 1;
  for (int iteration = 0; iteration < 100; ++iteration) {
    product(false, z, v, 1, 1.0, zv);
    product(true, z, zv, 1, 1.0 / double(n), next);
    double norm = 0;
    for (double x : next) norm += x * x;
    lambda = std::sqrt(norm);
    if (lambda <= 0) break;
    for (std::size_t j = 0; j < width; ++j) v[j] = next[j] / lambda;
  }
  const double step = 1.0 / (0.5 * 1.1 * std::max(lambda, 1e-12) + decay);

  std::vector<double> weights(width * K, 0.0), look = weights, previous, gradient, p;
  for (int t = 0; t < epochs; ++t) {
    product(false, z, look, K, 1.0, p);
    for (std::size_t r = 0; r < n; ++r) {  // p ← (softmax − one-hot) / n: dLoss/dlogits
      double* row = p.data() + r * K;
      const double largest = *std::max_element(row, row + K);
      double total = 0;
      for (std::size_t c = 0; c < K; ++c) total += (row[c] = std::exp(row[c] - largest));
      for (std::size_t c = 0; c < K; ++c) row[c] /= total * double(n);
      row[std::size_t(train_y[r])] -= 1.0 / double(n);
    }
    product(true, z, p, K, 1.0, gradient);
    previous = weights;
    const double momentum = double(t) / double(t + 3);
    for (std::size_t i = 0; i < weights.size(); ++i) {
      const double penalty = i < inputs * K ? decay * look[i] : 0.0;  // the bias row is not decayed
      weights[i] = look[i] - step * (gradient[i] + penalty);
      look[i] = weights[i] + momentum * (weights[i] - previous[i]);
    }
  }

  std::vector<double> test_logits;
  product(false, design(test_x), weights, K, 1.0, test_logits);
  return {test_logits.begin(), test_logits.end()};
}

// Rows of emotion then AU probabilities: the probe's inputs for (a2).
std::vector<double> probabilities(const Outputs& o) {
  const std::size_t rows = o.labels.size(), e = o.emotion.size() / rows, a = o.au.size() / rows;
  std::vector<double> x;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t k = 0; k < e; ++k) x.push_back(std::exp(o.emotion[r * e + k]));
    for (std::size_t k = 0; k < a; ++k) x.push_back(std::exp(o.au[r * a + k]));
  }
  return x;
}

// Log scores log p(a) + log p(b) + mean log p(AU) over the gate; nothing when
// the emotion head lacks one of the parts.
std::optional<std::vector<float>> zero_shot(const Outputs& o, const cumtl::HeadSpec* emotion,
                                            const cumtl::HeadSpec* au) {
  if (emotion == nullptr) return std::nullopt;
  std::array<int, data::emotion_names.size()> column{};
  for (std::size_t e = 0; e < column.size(); ++e) {
    const auto& names = emotion->output_names;
    const auto found = std::find(names.begin(), names.end(), data::emotion_names[e]);
    column[e] = names.empty() ? (int(e) < emotion->outputs ? int(e) : -1)
                              : (found == names.end() ? -1 : int(found - names.begin()));
  }
  std::vector<int> au_position;  // bit of au_numbers of each AU output, −1 when it names no AU cumtl knows
  if (au != nullptr)
    for (const std::string& name : au->output_names) {
      int number = -1;
      const char* end = name.data() + name.size();
      if (name.starts_with("AU") && std::from_chars(name.data() + 2, end, number).ptr != end) number = -1;
      au_position.push_back(data::au_index(number).value_or(-1));
    }
  const std::size_t rows = o.labels.size(), e = std::size_t(emotion->outputs), a = au_position.size();
  std::vector<float> scores(rows * compounds);
  for (std::size_t c = 0; c < compounds; ++c) {
    const auto [first, second] = data::compound_parts[c];
    if (column[std::size_t(first)] < 0 || column[std::size_t(second)] < 0) return std::nullopt;
    const unsigned core = data::emotion_prototypes[std::size_t(first)].core |
                          data::emotion_prototypes[std::size_t(second)].core;
    for (std::size_t r = 0; r < rows; ++r) {
      double gate = 0;
      int gated = 0;
      for (std::size_t k = 0; k < a; ++k)
        if (au_position[k] >= 0 && (core >> au_position[k]) & 1u) gate += o.au[r * a + k], ++gated;
      scores[r * compounds + c] = float(o.emotion[r * e + std::size_t(column[std::size_t(first)])] +
                                        o.emotion[r * e + std::size_t(column[std::size_t(second)])] +
                                        (gated > 0 ? gate / gated : 0.0));
    }
  }
  return scores;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Evaluates compound-expression recognition with a trained run's model: linear probes and zero-shot.",
               "cumtl-compound");
  std::string run, device = "auto";
  std::int64_t train_count = 1100, test_count = 1100;
  std::uint64_t seed = 0;
  int epochs = 200;
  bool json = false;
  app.add_option("--run", run, "Run folder holding model.json and weights.safetensors")->required();
  app.add_option("--device", device, "auto (the GPU if there is one), cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--train", train_count, "Synthetic compound faces the probes are fitted on")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(1), std::int64_t(test_first_index)));
  app.add_option("--test", test_count, "Synthetic compound faces every method is scored on")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(1), std::int64_t(test_first_index)));
  app.add_option("--synth-seed", seed, "Seed of the synthetic faces")->capture_default_str();
  app.add_option("--epochs", epochs, "Full-batch gradient steps of each probe")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  app.add_flag("--json", json, "Print one JSON object instead of the table");
  if (const std::optional<int> status = parse_command_line(app, argc, argv)) return *status;

  try {
    const auto started = std::chrono::steady_clock::now();
    const cumtl::Device target = train::choose_device(device);
    cumtl::Context& ctx = cumtl::Context::default_for(target);
    train::RunModel network(ctx, run);
    const train::ModelDescription& description = network.description();

    // Faces are drawn at the model's size when the generator can, and resized when it cannot.
    const data::SyntheticFaces faces({.size = std::clamp(description.image_size, 16, 1024),
                                      .domain = data::SynthDomain::test,
                                      .seed = seed,
                                      .compound_fraction = 1});
    const Outputs train_set = describe_faces(network, ctx, faces, 0, train_count);
    const Outputs test_set = describe_faces(network, ctx, faces, test_first_index, test_count);
    const cumtl::HeadSpec* emotion = find_head(description, "emotion", cumtl::HeadKind::softmax);
    const cumtl::HeadSpec* au = find_head(description, "au", cumtl::HeadKind::sigmoid);

    struct Result {
      std::string key, method, why_not;  // why_not: why the method does not apply to this model
      std::optional<cumtl::ClassificationMetrics> metrics;
    };
    std::vector<Result> results;
    const auto add = [&](std::string key, std::string method, const std::optional<std::vector<float>>& scores,
                         std::string why_not) {
      Result& result = results.emplace_back(Result{std::move(key), std::move(method), std::move(why_not), {}});
      if (!scores) return;
      result.metrics.emplace(result.key, int(compounds));
      result.metrics->add(*scores, test_set.labels);
    };
    add("probe_features", "probe on trunk features (" + std::to_string(train_set.feature_count) + ")",
        fit_probe(train_set.features, train_set.labels, test_set.features, train_set.feature_count, epochs), "");
    add("probe_probabilities", "probe on emotion + AU probabilities",
        emotion != nullptr && au != nullptr
            ? std::optional(fit_probe(probabilities(train_set), train_set.labels, probabilities(test_set),
                                      std::size_t(emotion->outputs + au->outputs), epochs))
            : std::nullopt,
        "needs an emotion and an AU head");
    add("zero_shot", au != nullptr ? "zero-shot: emotion pairs gated by AUs" : "zero-shot: emotion pairs, no AU gate",
        zero_shot(test_set, emotion, au), "needs an emotion head naming the basic emotions");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    if (json) {
      nlohmann::ordered_json out = {{"run", run},
                            {"device", train::device_description(target)},
                            {"train", train_count},
                            {"test", test_count},
                            {"synth_seed", seed},
                            {"epochs", epochs},
                            {"chance", 1.0 / double(compounds)},
                            {"seconds", seconds}};
      for (const Result& result : results)
        if (result.metrics) {
          out[result.key + "_accuracy"] = result.metrics->accuracy();
          out[result.key + "_mean_class_accuracy"] = result.metrics->mean_class_accuracy();
        }
      std::printf("%s\n", out.dump().c_str());
      return 0;
    }
    std::printf("compound expressions (%zu classes): %lld training and %lld test faces, seed %llu; %s on %s, %.1f s\n",
                compounds, static_cast<long long>(train_count), static_cast<long long>(test_count),
                static_cast<unsigned long long>(seed), run.c_str(), train::device_description(target).c_str(),
                seconds);
    std::printf("%-42s %9s %15s\n", "method", "accuracy", "mean class acc");
    for (const Result& result : results)
      if (result.metrics)
        std::printf("%-42s %9.4f %15.4f\n", result.method.c_str(), result.metrics->accuracy(),
                    result.metrics->mean_class_accuracy());
      else
        std::printf("%-42s not available (%s)\n", result.method.c_str(), result.why_not.c_str());
    std::printf("%-42s %9.4f %15.4f\n", "chance", 1.0 / double(compounds), 1.0 / double(compounds));
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "cumtl-compound: error: " << error.what() << "\n";
    return 1;
  }
}
