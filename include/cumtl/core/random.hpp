#pragma once
// Generator: the whole state of a counter-based random stream, a seed and the
// next unused counter. Device fills and host draws take counters from it, so
// the same seed gives the same numbers on the CPU and on any GPU, and saving
// the two integers saves the stream (kernels/random.cuh has the math).

#include <cstdint>

#include "cumtl/kernels/random.cuh"

namespace cumtl {

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0, std::uint64_t offset = 0) : seed_(seed), offset_(offset) {}

  std::uint64_t seed() const noexcept { return seed_; }
  std::uint64_t offset() const noexcept { return offset_; }

  // Takes `count` unused counters and returns the first; a fill of n elements takes n.
  std::uint64_t advance(std::uint64_t count) noexcept {
    const std::uint64_t first = offset_;
    offset_ += count;
    return first;
  }

  // One uniform double in [0, 1) drawn on the host, taking one counter.
  double uniform() noexcept { return kernels::uniform_element(seed_, advance(1), 0.0, 1.0); }

  friend bool operator==(const Generator&, const Generator&) = default;

 private:
  std::uint64_t seed_;
  std::uint64_t offset_;
};

}  // namespace cumtl
