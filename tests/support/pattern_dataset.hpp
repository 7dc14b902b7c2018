#pragma once
// A Dataset for the data-pipeline tests whose images and labels are functions
// of the index, with chosen indices that fail to load.

#include <cstdint>
#include <set>
#include <string>

#include <cumtl/data/dataset.hpp>

namespace cumtl_test {

using cumtl::data::Dataset;
using cumtl::data::Image;
using cumtl::data::Labels;
using cumtl::data::Sample;

// Images and labels that are functions of the index; loading an index in
// `bad` fails the way a truncated file would.
class PatternDataset final : public Dataset {
 public:
  PatternDataset(std::string name, std::size_t size, int height = 20, int width = 24, int channels = 3,
                 std::set<std::size_t> bad = {})
      : name_(std::move(name)),
        size_(size),
        height_(height),
        width_(width),
        channels_(channels),
        bad_(std::move(bad)) {}

  std::string name() const override { return name_; }
  std::size_t size() const override { return size_; }

  Sample load(std::size_t index) const override {
    CUMTL_REQUIRE(index < size_, "index ", index, " out of range");
    if (bad_.count(index) != 0) CUMTL_FAIL("cannot decode '", source(index), "': truncated file");
    Sample sample;
    sample.source = source(index);
    sample.domain = name_;
    sample.image = Image(height_, width_, channels_);
    for (int y = 0; y < height_; ++y)
      for (int x = 0; x < width_; ++x)
        for (int c = 0; c < channels_; ++c)
          sample.image.at(y, x)[c] =
              std::uint8_t((index * 37 + std::size_t(y) * 7 + std::size_t(x * x) + c * 85) % 256);
    sample.labels = labels(index);
    return sample;
  }

  Labels labels(std::size_t index) const override {
    Labels labels;
    labels.emotion = index % 5 == 4 ? -1 : int(index % 7);
    labels.compound = index % 3 == 0 ? int(index % 11) : -1;
    labels.aus[std::size_t(*cumtl::data::au_index(1))] = std::int8_t(index % 2);
    labels.aus[std::size_t(*cumtl::data::au_index(12))] =
        index % 7 == 3 ? std::int8_t(-1) : std::int8_t((index / 2) % 2);
    labels.aus[std::size_t(*cumtl::data::au_index(4))] = 1;  // a label no head asks for
    return labels;
  }

  std::string source(std::size_t index) const { return name_ + "-" + std::to_string(index) + ".png"; }

 private:
  std::string name_;
  std::size_t size_;
  int height_, width_, channels_;
  std::set<std::size_t> bad_;
};

}  // namespace cumtl_test
