// cumtl-synth: writes synthetic FACS faces as PNG files with a manifest that
// cumtl (or anything that reads CSV) can train on, and optionally the contact
// sheet that shows what each expression and AU looks like.
//
//   cumtl-synth --out DIR --count N [--seed S] [--size PX] [--domain emotionet|rafdb|test]
//               [--compound-fraction F] [--sheet FILE.png]
//
// Exit status: 0 on success, 2 on a usage error (with the usage), 1 on any other error.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <cumtl/data/image_io.hpp>
#include <cumtl/data/manifest.hpp>
#include <cumtl/data/synthetic_faces.hpp>

#include "program.hpp"

namespace fs = std::filesystem;
namespace data = cumtl::data;

namespace {

struct Arguments {
  fs::path out;
  std::uint64_t count = 0;
  std::uint64_t seed = 0;
  int size = 64;
  std::string domain = "test";
  double compound_fraction = 0;
  fs::path sheet;
};

// "images/000042.png", with enough digits that the names sort in index order.
std::string image_name(std::uint64_t index, std::uint64_t count) {
  const int digits = std::max(6, int(std::to_string(count - 1).size()));
  std::string number = std::to_string(index);
  return "images/" + std::string(std::size_t(std::max(0, digits - int(number.size()))), '0') + number + ".png";
}

int run(const Arguments& arguments) {
  data::SynthOptions options;
  options.size = arguments.size;
  options.domain = *data::parse_synth_domain(arguments.domain);
  options.seed = arguments.seed;
  options.compound_fraction = arguments.compound_fraction;
  const data::SyntheticFaces faces(options);

  std::error_code code;
  fs::create_directories(arguments.out / "images", code);
  CUMTL_REQUIRE(!code, "cannot create the folder '", (arguments.out / "images").string(), "': ", code.message());

  std::vector<data::ManifestRow> rows;
  rows.reserve(std::size_t(arguments.count));
  const std::uint64_t step = std::max<std::uint64_t>(1, arguments.count / 10);
  for (std::uint64_t i = 0; i < arguments.count; ++i) {
    data::Sample sample = faces.sample(i);
    const std::string name = image_name(i, arguments.count);
    data::write_png(arguments.out / name, sample.image);
    rows.push_back({name, sample.domain.empty() ? arguments.domain : sample.domain, sample.labels});
    if ((i + 1) % step == 0 || i + 1 == arguments.count)
      std::fprintf(stderr, "cumtl-synth: %llu/%llu faces\n", static_cast<unsigned long long>(i + 1),
                   static_cast<unsigned long long>(arguments.count));
  }
  // The manifest comes last, so it never lists an image that was not written.
  const fs::path manifest = arguments.out / "manifest.csv";
  data::write_manifest(manifest, rows, data::au_numbers);
  std::fprintf(stderr, "cumtl-synth: wrote %s\n", manifest.string().c_str());

  if (!arguments.sheet.empty()) {
    data::write_png(arguments.sheet, data::contact_sheet(arguments.size));
    std::fprintf(stderr, "cumtl-synth: wrote %s\n", arguments.sheet.string().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "Writes synthetic FACS faces as PNG files plus a manifest.csv (columns path, domain, emotion, "
      "compound and one per AU).",
      "cumtl-synth");
  Arguments arguments;
  app.add_option("--out", arguments.out, "Folder to write images/ and manifest.csv into")->required();
  app.add_option("--count", arguments.count, "Number of faces")->required()->check(CLI::PositiveNumber);
  app.add_option("--seed", arguments.seed, "Seed: the same seed gives the same faces")->capture_default_str();
  app.add_option("--size", arguments.size, "Side of the square images in pixels")
      ->capture_default_str()
      ->check(CLI::Range(16, 1024));
  app.add_option("--domain", arguments.domain, "emotionet (AU labels only), rafdb (emotion labels only) or test (both)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& value) {
            return data::parse_synth_domain(value) ? std::string() : "unknown domain '" + value + "'";
          },
          "emotionet|rafdb|test"));
  app.add_option("--compound-fraction", arguments.compound_fraction,
                 "Probability that a face shows a compound expression")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--sheet", arguments.sheet, "Also write the contact sheet of expressions and AUs to this PNG");

  if (const std::optional<int> status = parse_command_line(app, argc, argv)) return *status;

  try {
    return run(arguments);
  } catch (const std::exception& error) {
    std::cerr << "cumtl-synth: error: " << error.what() << "\n";
    return 1;
  }
}
