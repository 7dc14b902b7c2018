#pragma once
// MultiDomainSampler: which samples of which datasets make up each batch of
// each epoch, for training on several domains at once (Pons & Masip's
// EmotioNet-with-AUs plus RAF-DB-with-emotions setting).
//
// Mixing. Each dataset d has a ratio r_d (normalized to sum to 1). In the mixed
// scheme every full batch of B samples takes floor(r_d·B) or ceil(r_d·B) from
// dataset d; which datasets get the leftover samples is decided by how far
// each lags its cumulative share r_d·B·(batches so far), so every dataset's
// running count stays within about one sample of its share (under 1.04 in
// randomized checks of up to 9 datasets) and no dataset is favoured by its
// position in the list. In the alternating scheme (the alternating-batches
// baseline) each batch comes whole from one dataset, the one lagging its share
// of batches most (ratios {0.5, 0.5}: A B A B ...; {2, 1}: A B A A B A ...).
//
// Epochs. An epoch is one pass over the chosen epoch dataset: every one of its
// samples appears exactly once, and its last batch is shorter if need be (it
// takes the rest of the epoch dataset and the other datasets in the same
// proportion). The other datasets are drawn as a continuing stream of passes,
// each pass a fresh shuffle, carried over from epoch to epoch, so a small
// domain is revisited evenly rather than restarted every epoch.
//
// Shuffling. Every pass over a dataset is a pseudo-random permutation keyed by
// (seed, dataset, pass): a balanced Feistel network with Philox4x32-10 as its
// round function, cycle-walked into [0, size). One index costs a few Philox
// blocks, no permutation is ever stored, and batch(epoch, b) is a pure function
// of its arguments and the constructor's: a run resumed at (epoch, batch index)
// draws exactly the batches the interrupted run would have drawn, so that pair
// is the sampler's whole state.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cumtl/core/error.hpp"
#include "cumtl/data/dataset.hpp"
#include "cumtl/kernels/random.cuh"

namespace cumtl::data {

// One sample of one dataset of a sampler.
struct SampleRef {
  std::size_t dataset = 0;  // position in the sampler's list of datasets
  std::size_t index = 0;    // sample index within that dataset

  friend bool operator==(const SampleRef&, const SampleRef&) = default;
};

namespace detail {

// The `index`-th element of a pseudo-random permutation of [0, size) keyed by
// (seed, stream, pass). Four Feistel rounds over 2h bits (4^h ≥ size, so fewer
// than 4 walks are expected) make a permutation indistinguishable from a random
// one for shuffling purposes (Luby–Rackoff).
inline std::uint64_t shuffled_index(std::uint64_t index, std::uint64_t size, std::uint64_t seed, std::uint32_t stream,
                                    std::uint64_t pass) {
  int half_bits = 1;
  while (half_bits < 32 && (std::uint64_t(1) << (2 * half_bits)) < size) ++half_bits;
  const std::uint64_t mask = (std::uint64_t(1) << half_bits) - 1;
  const auto key0 = std::uint32_t(seed), key1 = std::uint32_t(seed >> 32);
  std::uint64_t value = index;
  do {
    std::uint64_t left = value >> half_bits, right = value & mask;
    for (std::uint32_t round = 0; round < 4; ++round) {
      const kernels::PhiloxBlock block =
          kernels::philox4x32_10(kernels::PhiloxBlock{{std::uint32_t(right), round | (stream << 8), std::uint32_t(pass),
                                                       std::uint32_t(pass >> 32)}},
                                 key0, key1);
      const std::uint64_t mixed = left ^ (block.word[0] & mask);
      left = right;
      right = mixed;
    }
    value = (left << half_bits) | right;
  } while (value >= size);
  return value;
}

}  // namespace detail

class MultiDomainSampler {
 public:
  enum class Scheme : std::uint8_t {
    mixed,        // every batch mixes the datasets at their ratios
    alternating,  // every batch comes from one dataset, in turn at their ratios
  };

  MultiDomainSampler(std::vector<std::shared_ptr<const Dataset>> datasets, std::vector<double> ratios,
                     std::size_t epoch_dataset, std::size_t batch_size, std::uint64_t seed,
                     Scheme scheme = Scheme::mixed)
      : datasets_(std::move(datasets)),
        ratios_(std::move(ratios)),
        epoch_dataset_(epoch_dataset),
        batch_size_(batch_size),
        seed_(seed),
        scheme_(scheme) {
    validate();
    if (scheme_ == Scheme::mixed)
      plan_mixed();
    else
      plan_alternating();
  }

  // A sampler over one dataset, shuffled, one pass per epoch (for evaluation or single-domain training).
  MultiDomainSampler(std::shared_ptr<const Dataset> dataset, std::size_t batch_size, std::uint64_t seed)
      : MultiDomainSampler({std::move(dataset)}, {1.0}, 0, batch_size, seed) {}

  std::size_t batches_per_epoch() const noexcept { return batch_count_; }
  std::size_t batch_size() const noexcept { return batch_size_; }  // the largest batch; the last may be shorter
  std::size_t epoch_dataset() const noexcept { return epoch_dataset_; }
  std::uint64_t seed() const noexcept { return seed_; }
  Scheme scheme() const noexcept { return scheme_; }
  const std::vector<std::shared_ptr<const Dataset>>& datasets() const noexcept { return datasets_; }
  const Dataset& dataset(std::size_t d) const { return *datasets_.at(d); }
  const std::vector<double>& ratios() const noexcept { return ratios_; }  // normalized to sum to 1

  // How many samples batch `batch_index` takes from dataset d (the same in every epoch).
  std::size_t count(std::size_t batch_index, std::size_t d) const {
    require_batch(batch_index);
    return std::size_t(starts_[(batch_index + 1) * width() + d] - starts_[batch_index * width() + d]);
  }
  // The samples in batch `batch_index`; the same in every epoch but the last batch's may be fewer.
  std::size_t batch_length(std::size_t batch_index) const {
    std::size_t length = 0;
    for (std::size_t d = 0; d < width(); ++d) length += count(batch_index, d);
    return length;
  }
  // Samples drawn from dataset d per epoch (the epoch dataset's size for the epoch dataset).
  std::uint64_t draws_per_epoch(std::size_t d) const { return starts_.at(batch_count_ * width() + d); }

  // The samples of batch `batch_index` of `epoch`, dataset by dataset. A pure
  // function of its arguments and the constructor's.
  std::vector<SampleRef> batch(std::uint64_t epoch, std::size_t batch_index) const {
    require_batch(batch_index);
    std::vector<SampleRef> samples;
    samples.reserve(batch_length(batch_index));
    for (std::size_t d = 0; d < width(); ++d) {
      const std::uint64_t size = datasets_[d]->size();
      const std::uint64_t first = epoch * draws_per_epoch(d) + starts_[batch_index * width() + d];
      const std::size_t n = count(batch_index, d);
      for (std::size_t j = 0; j < n; ++j) {
        const std::uint64_t position = first + j;
        const std::uint64_t index =
            detail::shuffled_index(position % size, size, seed_, std::uint32_t(d), position / size);
        samples.push_back(SampleRef{d, std::size_t(index)});
      }
    }
    return samples;
  }

 private:
  static constexpr std::size_t max_batches = std::size_t(1) << 24;

  std::size_t width() const noexcept { return datasets_.size(); }

  void require_batch(std::size_t batch_index) const {
    CUMTL_REQUIRE(batch_index < batch_count_, "MultiDomainSampler: batch ", batch_index, " is past the epoch's ",
                  batch_count_, " batches");
  }

  void validate() {
    CUMTL_REQUIRE(!datasets_.empty(), "MultiDomainSampler: no datasets");
    CUMTL_REQUIRE(ratios_.size() == datasets_.size(), "MultiDomainSampler: ", ratios_.size(), " ratios for ",
                  datasets_.size(), " datasets");
    // The dataset index is packed into 24 bits of the shuffle's Philox counter.
    CUMTL_REQUIRE(datasets_.size() < (1u << 24), "MultiDomainSampler: too many datasets (", datasets_.size(), ")");
    CUMTL_REQUIRE(batch_size_ >= 1, "MultiDomainSampler: batch size 0");
    double sum = 0;
    for (std::size_t d = 0; d < datasets_.size(); ++d) {
      CUMTL_REQUIRE(datasets_[d] != nullptr, "MultiDomainSampler: dataset ", d, " is null");
      CUMTL_REQUIRE(std::isfinite(ratios_[d]) && ratios_[d] >= 0, "MultiDomainSampler: dataset '", datasets_[d]->name(),
                    "' has ratio ", ratios_[d], ", expected a non-negative number");
      CUMTL_REQUIRE(ratios_[d] == 0 || datasets_[d]->size() > 0, "MultiDomainSampler: dataset '", datasets_[d]->name(),
                    "' is empty but has ratio ", ratios_[d]);
      sum += ratios_[d];
    }
    CUMTL_REQUIRE(epoch_dataset_ < datasets_.size(), "MultiDomainSampler: epoch dataset ", epoch_dataset_,
                  " is not one of the ", datasets_.size(), " datasets");
    CUMTL_REQUIRE(ratios_[epoch_dataset_] > 0, "MultiDomainSampler: the epoch dataset '",
                  datasets_[epoch_dataset_]->name(), "' has ratio 0, so an epoch would never end");
    CUMTL_REQUIRE(datasets_[epoch_dataset_]->size() > 0, "MultiDomainSampler: the epoch dataset '",
                  datasets_[epoch_dataset_]->name(), "' is empty");
    for (double& ratio : ratios_) ratio /= sum;
    // The plan keeps a row per batch, and either scheme takes about r·B samples
    // of the epoch dataset per batch: an epoch this long is a mistake, not a workload.
    const double batches = double(datasets_[epoch_dataset_]->size()) / (ratios_[epoch_dataset_] * double(batch_size_));
    CUMTL_REQUIRE(batches < double(max_batches), "MultiDomainSampler: an epoch of '", datasets_[epoch_dataset_]->name(),
                  "' would take about ", batches, " batches, more than ", max_batches,
                  "; raise the batch size or the epoch dataset's ratio");
  }

  void push_batch(const std::vector<std::uint64_t>& counts) {
    for (std::size_t d = 0; d < width(); ++d) starts_.push_back(starts_[batch_count_ * width() + d] + counts[d]);
    ++batch_count_;
  }

  // The starts of each batch (cumulative draws per dataset) are planned once:
  // they are the same in every epoch, and the lagging-share rule that fills
  // batch b depends on every batch before it.
  void plan_mixed() {
    const std::uint64_t epoch_size = datasets_[epoch_dataset_]->size();
    starts_.assign(width(), 0);
    std::vector<std::uint64_t> counts(width());
    std::vector<double> lag(width());
    std::vector<std::size_t> order(width());
    // A tolerance keeps ratios like 0.3·10 from flooring to 2 after rounding.
    constexpr double tolerance = 1e-9;
    for (;;) {
      const std::size_t b = batch_count_;
      std::uint64_t assigned = 0;
      for (std::size_t d = 0; d < width(); ++d) {
        const double share = ratios_[d] * double(batch_size_);
        counts[d] = std::uint64_t(std::floor(share + tolerance));
        assigned += counts[d];
        const double target = ratios_[d] * double(batch_size_) * double(b + 1);
        lag[d] = target - double(starts_[b * width() + d] + counts[d]);
        order[d] = d;
      }
      // The leftover samples go, one each, to the datasets lagging their share most (ties: the lower index).
      std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return lag[x] > lag[y]; });
      for (std::size_t k = 0; assigned < batch_size_ && k < order.size(); ++k) {
        const std::size_t d = order[k];
        const double share = ratios_[d] * double(batch_size_);
        if (share - std::floor(share + tolerance) <= tolerance) continue;  // an exact share gets no extra
        ++counts[d];
        ++assigned;
      }
      const std::uint64_t seen = starts_[b * width() + epoch_dataset_];
      if (seen + counts[epoch_dataset_] >= epoch_size) {
        const std::uint64_t rest = epoch_size - seen;
        const double fraction = double(rest) / double(counts[epoch_dataset_]);
        for (std::size_t d = 0; d < width(); ++d)
          counts[d] = d == epoch_dataset_ ? rest : std::uint64_t(std::floor(double(counts[d]) * fraction + 0.5));
        push_batch(counts);
        return;
      }
      push_batch(counts);
    }
  }

  void plan_alternating() {
    const std::uint64_t epoch_size = datasets_[epoch_dataset_]->size();
    starts_.assign(width(), 0);
    std::vector<std::uint64_t> batches_of(width(), 0);
    std::vector<std::uint64_t> counts(width());
    for (;;) {
      const std::size_t b = batch_count_;
      std::size_t chosen = 0;
      double worst = -1e300;
      for (std::size_t d = 0; d < width(); ++d) {
        if (ratios_[d] == 0) continue;
        const double lag = ratios_[d] * double(b + 1) - double(batches_of[d]);
        if (lag > worst + 1e-12) {
          worst = lag;
          chosen = d;
        }
      }
      std::fill(counts.begin(), counts.end(), 0);
      const std::uint64_t seen = starts_[b * width() + epoch_dataset_];
      counts[chosen] = chosen == epoch_dataset_ ? std::min<std::uint64_t>(batch_size_, epoch_size - seen) : batch_size_;
      ++batches_of[chosen];
      push_batch(counts);
      if (chosen == epoch_dataset_ && seen + counts[chosen] == epoch_size) return;
    }
  }

  std::vector<std::shared_ptr<const Dataset>> datasets_;
  std::vector<double> ratios_;
  std::size_t epoch_dataset_;
  std::size_t batch_size_;
  std::uint64_t seed_;
  Scheme scheme_;
  std::size_t batch_count_ = 0;
  std::vector<std::uint64_t> starts_;  // [batches + 1][datasets]: draws per dataset before each batch
};

}  // namespace cumtl::data
