#pragma once
// A Dataset is an indexed collection of labelled images: files on disk read by
// one of the format readers, or faces drawn on demand by the generator. The
// sampler and the loader see only this interface.

#include <cstddef>
#include <string>

#include "cumtl/data/sample.hpp"

namespace cumtl::data {

class Dataset {
 public:
  virtual ~Dataset() = default;

  // A short name for messages and for mixing ratios ("rafdb", "synth-emotionet").
  virtual std::string name() const = 0;
  virtual std::size_t size() const = 0;

  // The image and labels of sample `index`. Safe to call from several threads
  // at once. A file that cannot be read is a cumtl::Error naming the file.
  virtual Sample load(std::size_t index) const = 0;

  // The labels alone, without reading the image (for class counts and splits).
  virtual Labels labels(std::size_t index) const = 0;
};

}  // namespace cumtl::data
