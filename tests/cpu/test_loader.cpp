// The data pipeline's feeding side on the CPU: the multi-domain sampler, the
// augmentation, image normalization and the threaded loader, over small
// datasets drawn procedurally in the test.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../support/pattern_dataset.hpp"
#include "../support/testing.hpp"
#include "cumtl/data/augment.hpp"
#include "cumtl/data/loader.hpp"
#include "cumtl/data/sampler.hpp"
#include "cumtl/ops/preprocess.hpp"

using cumtl::Context;
using cumtl::HeadKind;
using cumtl::HeadSpec;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl::data::AugmentOptions;
using cumtl::data::Batch;
using cumtl::data::Dataset;
using cumtl::data::Image;
using cumtl::data::Labels;
using cumtl::data::Loader;
using cumtl::data::LoaderOptions;
using cumtl::data::MultiDomainSampler;
using cumtl::data::Sample;
using cumtl::data::SampleRef;
using Scheme = cumtl::data::MultiDomainSampler::Scheme;

using cumtl_test::PatternDataset;

namespace {

std::shared_ptr<const Dataset> patterns(std::string name, std::size_t size, std::set<std::size_t> bad = {}) {
  return std::make_shared<PatternDataset>(std::move(name), size, 20, 24, 3, std::move(bad));
}

// An RGB and a grey dataset of other image sizes, mixed half and half in batches of 12.
MultiDomainSampler rgb_and_grey_sampler() {
  return MultiDomainSampler(
      {std::make_shared<PatternDataset>("a", 45, 40, 36), std::make_shared<PatternDataset>("b", 30, 28, 28, 1)},
      {0.5, 0.5}, 0, 12, 8);
}

std::vector<HeadSpec> three_heads() {
  HeadSpec emotion{"emotion", HeadKind::softmax, 7};
  HeadSpec au{"au", HeadKind::sigmoid, 2};
  au.output_names = {"AU1", "AU12"};
  HeadSpec compound{"compound", HeadKind::softmax, 11};
  return {emotion, au, compound};
}

std::vector<std::size_t> counts_of(const std::vector<SampleRef>& batch, std::size_t datasets) {
  std::vector<std::size_t> counts(datasets, 0);
  for (const SampleRef& ref : batch) ++counts[ref.dataset];
  return counts;
}

// Every batch of one epoch, in order.
std::vector<Batch> whole_epoch(Loader& loader, std::uint64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> batches;
  while (std::optional<Batch> batch = loader.next()) batches.push_back(std::move(*batch));
  return batches;
}

// The normalized pixels an image becomes in an evaluation batch, by the formula.
std::vector<float> expected_eval_pixels(const Image& image, int size) {
  const Image resized = cumtl::data::center_resize(image, size);
  std::vector<float> values(resized.pixels.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::size_t c = i % 3;
    values[i] = float((resized.pixels[i] / 255.0 - cumtl::ops::imagenet_mean[c]) / cumtl::ops::imagenet_std[c]);
  }
  return values;
}

}  // namespace

TEST_SUITE("data") {
  TEST_CASE("data: shuffled indices are a permutation for any size") {
    for (std::uint64_t size : {1u, 2u, 3u, 5u, 17u, 64u, 100u, 1000u, 4097u}) {
      CAPTURE(size);
      std::vector<std::uint64_t> seen;
      for (std::uint64_t i = 0; i < size; ++i) seen.push_back(cumtl::data::detail::shuffled_index(i, size, 7, 1, 3));
      std::sort(seen.begin(), seen.end());
      std::vector<std::uint64_t> all(size);
      std::iota(all.begin(), all.end(), 0);
      CHECK(seen == all);
    }
    std::vector<std::uint64_t> a, b;
    for (std::uint64_t i = 0; i < 100; ++i) {
      a.push_back(cumtl::data::detail::shuffled_index(i, 100, 7, 1, 3));
      b.push_back(cumtl::data::detail::shuffled_index(i, 100, 7, 1, 4));
    }
    CHECK(a != b);
  }

  TEST_CASE("data: sampler mixed batches take each dataset's share") {
    const MultiDomainSampler sampler({patterns("a", 50), patterns("b", 70), patterns("c", 9)}, {5, 3, 2}, 1, 16, 11);
    // Shares 8, 4.8 and 3.2 samples per batch.
    std::vector<std::size_t> totals(3, 0);
    for (std::size_t b = 0; b < sampler.batches_per_epoch(); ++b) {
      CAPTURE(b);
      const std::vector<std::size_t> counts = counts_of(sampler.batch(0, b), 3);
      for (std::size_t d = 0; d < 3; ++d) CHECK(counts[d] == sampler.count(b, d));
      if (b + 1 < sampler.batches_per_epoch()) {
        CHECK(counts[0] == 8);
        CHECK((counts[1] == 4 || counts[1] == 5));
        CHECK((counts[2] == 3 || counts[2] == 4));
        CHECK(counts[0] + counts[1] + counts[2] == 16);
        for (std::size_t d = 0; d < 3; ++d) {
          totals[d] += counts[d];
          CHECK(std::abs(double(totals[d]) - sampler.ratios()[d] * 16.0 * double(b + 1)) < 1.0);
        }
      }
    }
    // Equal thirds of 64: 21 or 22 each, the extra sample rotating among them.
    const MultiDomainSampler thirds({patterns("a", 500), patterns("b", 500), patterns("c", 500)}, {1, 1, 1}, 0, 64, 3);
    std::vector<std::size_t> extras(3, 0);
    for (std::size_t b = 0; b + 1 < thirds.batches_per_epoch(); ++b) {
      const std::vector<std::size_t> counts = counts_of(thirds.batch(0, b), 3);
      for (std::size_t d = 0; d < 3; ++d) {
        CHECK((counts[d] == 21 || counts[d] == 22));
        extras[d] += counts[d] - 21;
      }
    }
    CHECK(*std::max_element(extras.begin(), extras.end()) - *std::min_element(extras.begin(), extras.end()) <= 1);
  }

  TEST_CASE("data: sampler epoch length comes from the epoch dataset") {
    const MultiDomainSampler sampler({patterns("a", 50), patterns("b", 70)}, {0.7, 0.3}, 1, 10, 5);
    // Three samples of b per batch: 23 full batches and a last one with b's last sample.
    CHECK(sampler.batches_per_epoch() == 24);
    CHECK(sampler.draws_per_epoch(1) == 70);
    const std::vector<SampleRef> last = sampler.batch(0, 23);
    CHECK(counts_of(last, 2) == std::vector<std::size_t>{2, 1});
    CHECK(sampler.batch_length(23) == 3);

    const MultiDomainSampler by_a({patterns("a", 50), patterns("b", 70)}, {0.7, 0.3}, 0, 10, 5);
    CHECK(by_a.batches_per_epoch() == 8);  // 7 of a per batch: 50 = 7·7 + 1
    CHECK(by_a.draws_per_epoch(0) == 50);

    const MultiDomainSampler single(patterns("a", 37), 8, 1);
    CHECK(single.batches_per_epoch() == 5);
    CHECK(single.batch_length(4) == 5);
  }

  TEST_CASE("data: sampler shows every sample of the epoch dataset once per epoch") {
    const MultiDomainSampler sampler({patterns("a", 13), patterns("b", 70), patterns("c", 5)}, {2, 5, 3}, 1, 12, 99);
    std::map<std::size_t, std::size_t> drawn_c;
    for (std::uint64_t epoch = 0; epoch < 3; ++epoch) {
      CAPTURE(epoch);
      std::vector<std::size_t> seen;
      for (std::size_t b = 0; b < sampler.batches_per_epoch(); ++b)
        for (const SampleRef& ref : sampler.batch(epoch, b)) {
          CHECK(ref.index < sampler.dataset(ref.dataset).size());
          if (ref.dataset == 1) seen.push_back(ref.index);
          if (ref.dataset == 2) ++drawn_c[ref.index];
        }
      std::sort(seen.begin(), seen.end());
      std::vector<std::size_t> all(70);
      std::iota(all.begin(), all.end(), 0);
      CHECK(seen == all);
    }
    // The other datasets are passes of fresh shuffles carried across epochs: evenly drawn.
    const std::uint64_t draws = 3 * sampler.draws_per_epoch(2);
    REQUIRE(drawn_c.size() == 5);
    for (const auto& [index, times] : drawn_c) CHECK((times == draws / 5 || times == draws / 5 + 1));
  }

  TEST_CASE("data: sampler is reproducible for a seed and differs across epochs") {
    const auto make = [](std::uint64_t seed) {
      return MultiDomainSampler({patterns("a", 40), patterns("b", 60)}, {0.5, 0.5}, 0, 8, seed);
    };
    const MultiDomainSampler first = make(42), again = make(42), other = make(43);
    for (std::size_t b = 0; b < first.batches_per_epoch(); ++b) {
      CHECK(first.batch(0, b) == again.batch(0, b));
      CHECK(first.batch(5, b) == again.batch(5, b));
    }
    CHECK(first.batch(0, 0) != first.batch(1, 0));
    CHECK(first.batch(0, 0) != other.batch(0, 0));
    // A pure function: asking in any order gives the same batches.
    const std::vector<SampleRef> late = first.batch(3, 4);
    CHECK(first.batch(0, 1) == again.batch(0, 1));
    CHECK(first.batch(3, 4) == late);
  }

  TEST_CASE("data: sampler alternating scheme takes whole batches in turn") {
    const MultiDomainSampler sampler({patterns("a", 50), patterns("b", 200)}, {0.5, 0.5}, 0, 16, 1,
                                     Scheme::alternating);
    // a: 16, 16, 16, 2 in batches 0, 2, 4, 6; b fills 1, 3, 5.
    REQUIRE(sampler.batches_per_epoch() == 7);
    std::vector<std::size_t> seen_a;
    for (std::size_t b = 0; b < 7; ++b) {
      CAPTURE(b);
      const std::vector<SampleRef> batch = sampler.batch(0, b);
      const std::size_t expected = b % 2;
      CHECK(batch.size() == (b == 6 ? 2u : 16u));
      for (const SampleRef& ref : batch) {
        CHECK(ref.dataset == expected);
        if (ref.dataset == 0) seen_a.push_back(ref.index);
      }
    }
    std::sort(seen_a.begin(), seen_a.end());
    std::vector<std::size_t> all(50);
    std::iota(all.begin(), all.end(), 0);
    CHECK(seen_a == all);

    // Ratios weight the turns: two batches of a for one of b.
    const MultiDomainSampler weighted({patterns("a", 64), patterns("b", 64)}, {2, 1}, 0, 8, 1, Scheme::alternating);
    std::string order;
    for (std::size_t b = 0; b < weighted.batches_per_epoch(); ++b) order += char('a' + weighted.batch(0, b)[0].dataset);
    CHECK(order == "abaabaabaaba");
  }

  TEST_CASE("data: sampler rejects bad configurations") {
    CHECK_ERROR_WITH(MultiDomainSampler({patterns("a", 5)}, {1, 1}, 0, 4, 0), "2 ratios for 1 datasets");
    CHECK_ERROR_WITH(MultiDomainSampler({patterns("a", 5), patterns("b", 5)}, {0, 1}, 0, 4, 0), "'a' has ratio 0");
    CHECK_ERROR_WITH(MultiDomainSampler({patterns("a", 5), patterns("b", 0)}, {1, 1}, 0, 4, 0), "'b' is empty");
    CHECK_ERROR_WITH(MultiDomainSampler({patterns("a", 5)}, {-1}, 0, 4, 0), "'a' has ratio -1");
    CHECK_ERROR_WITH(MultiDomainSampler({patterns("a", 5)}, {1}, 2, 4, 0), "epoch dataset 2");
    CHECK_ERROR_WITH(MultiDomainSampler({patterns("a", 5)}, {1}, 0, 0, 0), "batch size 0");
    const MultiDomainSampler sampler(patterns("a", 5), 4, 0);
    CHECK_ERROR_WITH(sampler.batch(0, 2), "batch 2 is past the epoch's 2 batches");
  }

  TEST_CASE("data: augment is deterministic for a seed and counter") {
    const Sample sample = PatternDataset("p", 10, 48, 40).load(3);
    const AugmentOptions options;  // the defaults: everything on, mildly
    const Image a = cumtl::data::augment(sample.image, options, 7, 100);
    const Image b = cumtl::data::augment(sample.image, options, 7, 100);
    CHECK(a.pixels == b.pixels);
    CHECK(cumtl::data::augment(sample.image, options, 7, 101).pixels != a.pixels);
    CHECK(cumtl::data::augment(sample.image, options, 8, 100).pixels != a.pixels);
  }

  TEST_CASE("data: augment flip mirrors exactly with the other jitter off") {
    const Image image = PatternDataset("p", 10, 32, 32).load(5).image;
    AugmentOptions options = AugmentOptions::none(32);
    const Image same = cumtl::data::augment(image, options, 1, 2);
    CHECK(same.pixels == image.pixels);
    options.flip_probability = 1;
    for (std::uint64_t counter : {0u, 1u, 2u}) {
      const Image mirrored = cumtl::data::augment(image, options, 1, counter);
      bool exact = true;
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x)
          for (int c = 0; c < 3; ++c) exact = exact && mirrored.at(y, x)[c] == image.at(y, 31 - x)[c];
      CHECK(exact);
    }
  }

  TEST_CASE("data: a pixel-aligned sampling is copied, with the bytes bilinear sampling gives") {
    const Image image = PatternDataset("p", 10, 24, 20).load(3).image;  // 24 high, 20 wide
    namespace detail = cumtl::data::detail;
    struct Case {
      detail::PixelMap map;
      bool copied;
    };
    const std::vector<Case> cases{
        {{2, 3, 1, 0, 0, 1}, true},      // a 16×16 window at (2, 3)
        {{17, 5, -1, 0, 0, 1}, true},    // mirrored: columns 17 down to 2
        {{2.5f, 3, 1, 0, 0, 1}, false},  // between pixel centres
        {{2, 3, 1, 0, 0.5f, 1}, false},  // sheared
        {{8, 3, 1, 0, 0, 1}, false},     // the window would leave the image: edges replicated
    };
    for (const Case& test : cases) {
      CAPTURE(test.map.x0);
      std::vector<std::uint8_t> copied(16 * 16 * 3), sampled(16 * 16 * 3);
      CHECK(detail::copy_if_pixel_aligned(image, test.map, 16, copied.data()) == test.copied);
      if (!test.copied) continue;
      detail::sample_bilinear<3>(image, test.map, 16, sampled.data());
      CHECK(copied == sampled);
    }
  }

  TEST_CASE("data: augment and center_resize give square RGB images of the output size") {
    const Image grey = PatternDataset("p", 4, 50, 40, 1).load(1).image;
    AugmentOptions options;
    options.size = 24;
    const Image out = cumtl::data::augment(grey, options, 3, 4);
    CHECK(out.height == 24);
    CHECK(out.width == 24);
    CHECK(out.channels == 3);
    REQUIRE(out.pixels.size() == 24u * 24u * 3u);
    bool grey_everywhere = true;
    for (int y = 0; y < 24; ++y)
      for (int x = 0; x < 24; ++x)
        grey_everywhere = grey_everywhere && out.at(y, x)[0] == out.at(y, x)[1] && out.at(y, x)[1] == out.at(y, x)[2];
    CHECK(grey_everywhere);

    const Image rgba = PatternDataset("p", 4, 30, 30, 4).load(2).image;
    CHECK(cumtl::data::augment(rgba, options, 3, 4).pixels.size() == 24u * 24u * 3u);

    // The evaluation transform takes the centred square: columns 4..35 of a 40×32 image, exactly.
    const Image wide = PatternDataset("p", 4, 32, 40).load(3).image;
    const Image centred = cumtl::data::center_resize(wide, 32);
    bool exact = true;
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        for (int c = 0; c < 3; ++c) exact = exact && centred.at(y, x)[c] == wide.at(y, x + 4)[c];
    CHECK(exact);

    // Shrinking by 2 or more averages boxes first: a flat image stays flat.
    Image flat(96, 128, 3);
    std::fill(flat.pixels.begin(), flat.pixels.end(), std::uint8_t(77));
    const Image small = cumtl::data::center_resize(flat, 20);
    CHECK(std::all_of(small.pixels.begin(), small.pixels.end(), [](std::uint8_t v) { return v == 77; }));
    const Image jittered = cumtl::data::augment(flat, AugmentOptions{.size = 20, .brightness = 0, .contrast = 0}, 5, 6);
    CHECK(std::all_of(jittered.pixels.begin(), jittered.pixels.end(), [](std::uint8_t v) { return v == 77; }));
  }

  TEST_CASE("data: augment rejects bad options and images") {
    const Image image(8, 8, 3);
    AugmentOptions options;
    options.scale = {0.9, 0.5};
    CHECK_ERROR_WITH(cumtl::data::augment(image, options, 0, 0), "scale range [0.9, 0.5]");
    options = {};
    options.flip_probability = 2;
    CHECK_ERROR_WITH(cumtl::data::augment(image, options, 0, 0), "flip probability 2");
    options = {};
    options.size = 0;
    CHECK_ERROR_WITH(cumtl::data::augment(image, options, 0, 0), "output size 0");
    CHECK_ERROR_WITH(cumtl::data::augment(Image(8, 8, 2), {}, 0, 0), "2 channels");
    CHECK_ERROR_WITH(cumtl::data::center_resize(Image(), 8), "image of 0x0 pixels");
  }

  TEST_CASE("data: normalize_images on the CPU matches the formula") {
    Context ctx;
    std::mt19937 random(5);
    for (std::int64_t channels : {1, 3}) {
      CAPTURE(channels);
      const Shape shape{3, 5, 7, channels};
      Tensor pixels = Tensor::empty(shape, ScalarType::u8);
      for (std::int64_t i = 0; i < pixels.numel(); ++i) pixels.data<std::uint8_t>()[i] = std::uint8_t(random() % 256);
      pixels.data<std::uint8_t>()[0] = 0;
      pixels.data<std::uint8_t>()[1] = 255;
      Tensor out = Tensor::empty(shape, ScalarType::f32);
      const std::array<float, 3> mean{0.5f, 0.25f, 0.125f}, stddev{0.2f, 0.3f, 0.4f};
      cumtl::ops::normalize_images(ctx, pixels, mean, stddev, out);
      std::vector<double> expected;
      for (std::int64_t i = 0; i < pixels.numel(); ++i) {
        const std::size_t c = std::size_t(i % channels);
        expected.push_back((pixels.data<std::uint8_t>()[i] / 255.0 - mean[c]) / stddev[c]);
      }
      CHECK(cumtl_test::error_over_scale(out, expected) < 1e-6);

      cumtl::ops::normalize_images(ctx, pixels, out);  // ImageNet's statistics
      for (std::int64_t i = 0; i < pixels.numel(); ++i) {
        const std::size_t c = std::size_t(i % channels);
        expected[std::size_t(i)] =
            (pixels.data<std::uint8_t>()[i] / 255.0 - cumtl::ops::imagenet_mean[c]) / cumtl::ops::imagenet_std[c];
      }
      CHECK(cumtl_test::error_over_scale(out, expected) < 1e-6);
    }
    Tensor empty_pixels = Tensor::empty(Shape{0, 4, 4, 3}, ScalarType::u8);
    Tensor empty_out = Tensor::empty(Shape{0, 4, 4, 3}, ScalarType::f32);
    cumtl::ops::normalize_images(ctx, empty_pixels, empty_out);
    CHECK(empty_out.numel() == 0);
  }

  TEST_CASE("data: normalize_images names what breaks its contract") {
    Context ctx;
    const Tensor pixels = Tensor::zeros(Shape{2, 4, 4, 3}, ScalarType::u8);
    Tensor out = Tensor::zeros(Shape{2, 4, 4, 3}, ScalarType::f32);
    Tensor wrong_shape = Tensor::zeros(Shape{2, 4, 3, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::normalize_images(ctx, pixels, wrong_shape), "ops::normalize_images",
                     "'out' is float32[2, 4, 3, 3]", "expected float32[2, 4, 4, 3]");
    const Tensor floats = Tensor::zeros(Shape{2, 4, 4, 3}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::normalize_images(ctx, floats, out), "'pixels' is float32[2, 4, 4, 3]", "uint8");
    const Tensor four = Tensor::zeros(Shape{2, 4, 4, 4}, ScalarType::u8);
    Tensor four_out = Tensor::zeros(Shape{2, 4, 4, 4}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::normalize_images(ctx, four, four_out), "4 channels");
    CHECK_ERROR_WITH(cumtl::ops::normalize_images(ctx, pixels, {0, 0, 0}, {1, 0, 1}, out), "stddev[1] is 0");
    Tensor doubles = Tensor::zeros(Shape{2, 4, 4, 3}, ScalarType::f64);
    CHECK_ERROR_WITH(cumtl::ops::normalize_images(ctx, pixels, doubles), "'out' is float64[2, 4, 4, 3]",
                     "expected float32, bfloat16 or float16");
  }

  // The map runs in float and a 2-byte output rounds once, so it is the fp32 output rounded, bit for bit.
  TEST_CASE_TEMPLATE("data: normalize_images into bf16 and f16 is the fp32 output rounded once", Half,
                     cumtl::bfloat16_t, cumtl::float16_t) {
    Context ctx;
    const Shape shape{2, 16, 16, 3};  // every byte value appears
    Tensor pixels = Tensor::empty(shape, ScalarType::u8);
    for (std::int64_t i = 0; i < pixels.numel(); ++i) pixels.data<std::uint8_t>()[i] = std::uint8_t(i * 7 % 256);
    Tensor out = Tensor::empty(shape, cumtl::scalar_type_v<Half>), out32 = Tensor::empty(shape, ScalarType::f32);
    cumtl::ops::normalize_images(ctx, pixels, out);
    cumtl::ops::normalize_images(ctx, pixels, out32);
    CHECK(out.to_vector<Half>() == cumtl_test::rounded<Half>(out32));
    const std::vector<float> exact = out32.to_vector<float>();
    CHECK(std::any_of(exact.begin(), exact.end(), [](float v) { return float(Half(v)) != v; }));
  }

  TEST_CASE("data: loader batches cover the epoch") {
    Context ctx;
    const auto dataset = std::make_shared<PatternDataset>("faces", 37, 20, 24);
    LoaderOptions options;
    options.image_size = 16;
    options.augment = false;
    options.threads = 3;
    Loader loader(ctx, MultiDomainSampler(dataset, 8, 4), three_heads(), options);
    CHECK(loader.threads() == 3);
    CHECK_ERROR_WITH(loader.next(), "call start_epoch");
    for (std::uint64_t epoch = 0; epoch < 2; ++epoch) {
      CAPTURE(epoch);
      const std::vector<Batch> batches = whole_epoch(loader, epoch);
      REQUIRE(batches.size() == 5);
      std::vector<std::size_t> seen;
      for (std::size_t b = 0; b < batches.size(); ++b) {
        const Batch& batch = batches[b];
        CHECK(batch.size == (b == 4 ? 5u : 8u));
        CHECK(batch.samples == loader.sampler().batch(epoch, b));
        CHECK(batch.images.shape() == Shape{std::int64_t(batch.size), 16, 16, 3});
        CHECK(batch.images.dtype() == ScalarType::f32);
        const std::vector<float> images = batch.images.to_vector<float>();
        for (std::size_t row = 0; row < batch.size; ++row) {
          seen.push_back(batch.samples[row].index);
          const std::vector<float> expected = expected_eval_pixels(dataset->load(batch.samples[row].index).image, 16);
          const std::vector<float> actual(images.begin() + std::ptrdiff_t(row * expected.size()),
                                          images.begin() + std::ptrdiff_t((row + 1) * expected.size()));
          CHECK(cumtl_test::error_over_scale(actual, expected) < 1e-6);
        }
      }
      std::sort(seen.begin(), seen.end());
      std::vector<std::size_t> all(37);
      std::iota(all.begin(), all.end(), 0);
      CHECK(seen == all);
      CHECK(!loader.next().has_value());
      CHECK(loader.skipped() == 0);
    }
  }

  TEST_CASE("data: loader encodes labels into the loss's columns") {
    Context ctx;
    const auto a = std::make_shared<PatternDataset>("a", 30);
    const auto b = std::make_shared<PatternDataset>("b", 20);
    const std::vector<HeadSpec> heads = three_heads();
    const cumtl::MultiTaskLoss loss(heads);
    REQUIRE(loss.class_columns() == 2);
    REQUIRE(loss.binary_columns() == 2);
    const int emotion = loss.label_column("emotion"), compound = loss.label_column("compound");
    const int au = loss.label_column("au");
    LoaderOptions options;
    options.image_size = 8;
    Loader loader(ctx, MultiDomainSampler({a, b}, {0.6, 0.4}, 0, 10, 2), heads, options);
    const std::vector<Batch> batches = whole_epoch(loader, 0);
    REQUIRE(!batches.empty());
    std::size_t rows = 0;
    for (const Batch& batch : batches) {
      CHECK(batch.labels.classes.shape() == Shape{std::int64_t(batch.size), 2});
      CHECK(batch.labels.binary.shape() == Shape{std::int64_t(batch.size), 2});
      const std::vector<std::int32_t> classes = batch.labels.classes.to_vector<std::int32_t>();
      const std::vector<std::int8_t> binary = batch.labels.binary.to_vector<std::int8_t>();
      for (std::size_t row = 0; row < batch.size; ++row) {
        const SampleRef ref = batch.samples[row];
        const Labels expected = loader.sampler().dataset(ref.dataset).labels(ref.index);
        CHECK(classes[row * 2 + std::size_t(emotion)] == expected.emotion);
        CHECK(classes[row * 2 + std::size_t(compound)] == expected.compound);
        CHECK(binary[row * 2 + std::size_t(au)] == expected.aus[std::size_t(*cumtl::data::au_index(1))]);
        CHECK(binary[row * 2 + std::size_t(au) + 1] == expected.aus[std::size_t(*cumtl::data::au_index(12))]);
        ++rows;
      }
    }
    CHECK(rows == 50);  // 30 of a (the epoch dataset) and 20 of b
  }

  TEST_CASE("data: loader rejects heads it cannot label") {
    Context ctx;
    const MultiDomainSampler sampler(patterns("a", 4), 2, 0);
    CHECK_ERROR_WITH(Loader(ctx, sampler, {HeadSpec{"age", HeadKind::softmax, 5}}),
                     "softmax head 'age' has no labels to take", "'emotion'", "'compound'");
    CHECK_ERROR_WITH(Loader(ctx, sampler, {HeadSpec{"emotion", HeadKind::softmax, 6}}),
                     "softmax head 'emotion' has 6 outputs but cumtl has 7 emotions");
    CHECK_ERROR_WITH(Loader(ctx, sampler, {HeadSpec{"au", HeadKind::sigmoid, 2}}),
                     "sigmoid head 'au' needs output_names");
    HeadSpec au{"au", HeadKind::sigmoid, 2};
    au.output_names = {"AU1", "AU3"};
    CHECK_ERROR_WITH(Loader(ctx, sampler, {au}), "output 'AU3' is not an Action Unit");
  }

  TEST_CASE("data: loader with skip_bad replaces and counts a bad sample") {
    Context ctx;
    const auto dataset = std::make_shared<PatternDataset>("faces", 20, 20, 24, 3, std::set<std::size_t>{3});
    LoaderOptions options;
    options.image_size = 8;
    options.skip_bad = true;
    options.augment = false;
    options.threads = 2;
    Loader loader(ctx, MultiDomainSampler(dataset, 6, 9), three_heads(), options);
    const std::vector<Batch> batches = whole_epoch(loader, 0);
    CHECK(loader.skipped() == 1);
    CHECK(cumtl_test::contains_all(loader.first_skip_reason(), {"faces-3.png", "sample 3 of dataset 'faces'"}));
    std::map<std::size_t, std::vector<float>> images_of_4;
    std::size_t rows = 0;
    for (const Batch& batch : batches) {
      const std::vector<float> images = batch.images.to_vector<float>();
      for (std::size_t row = 0; row < batch.size; ++row, ++rows) {
        CHECK(batch.samples[row].index != 3);
        if (batch.samples[row].index == 4)
          images_of_4[rows] = std::vector<float>(images.begin() + std::ptrdiff_t(row * 192),
                                                 images.begin() + std::ptrdiff_t((row + 1) * 192));
      }
    }
    CHECK(rows == 20);
    REQUIRE(images_of_4.size() == 2);  // sample 4 in its own place and in 3's
    CHECK(images_of_4.begin()->second == images_of_4.rbegin()->second);

    // Nothing good to replace it with.
    const auto hopeless = std::make_shared<PatternDataset>("broken", 3, 20, 24, 3, std::set<std::size_t>{0, 1, 2});
    Loader none(ctx, MultiDomainSampler(hopeless, 2, 0), three_heads(), options);
    none.start_epoch(0);
    CHECK_ERROR_WITH(none.next(), "every sample of dataset 'broken' failed to load");
  }

  TEST_CASE("data: loader without skip_bad surfaces the error naming the file") {
    Context ctx;
    const auto dataset = std::make_shared<PatternDataset>("faces", 20, 20, 24, 3, std::set<std::size_t>{7});
    LoaderOptions options;
    options.image_size = 8;
    options.threads = 2;
    Loader loader(ctx, MultiDomainSampler(dataset, 4, 1), three_heads(), options);
    loader.start_epoch(0);
    std::string message;
    std::size_t good = 0;
    try {
      while (loader.next()) ++good;
    } catch (const cumtl::Error& error) {
      message = error.what();
    }
    INFO(message);
    CHECK(cumtl_test::contains_all(message, {"faces-7.png", "truncated file", "sample 7 of dataset 'faces'"}));
    CHECK(good < 5);
    CHECK(!loader.next().has_value());  // the epoch ended with the error
    // The next epoch runs until the bad sample again.
    loader.start_epoch(1);
    CHECK_ERROR_WITH(
        [&] {
          while (loader.next()) {
          }
        }(),
        "faces-7.png");
  }

  TEST_CASE("data: loader batches do not depend on threads or prefetch") {
    Context ctx;
    const MultiDomainSampler sampler = rgb_and_grey_sampler();
    LoaderOptions options;
    options.image_size = 20;
    options.threads = 1;
    Loader one(ctx, sampler, three_heads(), options);
    options.threads = 3;
    options.prefetch = 4;
    Loader three(ctx, sampler, three_heads(), options);
    for (std::uint64_t epoch : {0u, 1u}) {
      const std::vector<Batch> x = whole_epoch(one, epoch), y = whole_epoch(three, epoch);
      REQUIRE(x.size() == y.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        CHECK(x[i].samples == y[i].samples);
        CHECK(x[i].images.to_vector<float>() == y[i].images.to_vector<float>());
        CHECK(x[i].labels.classes.to_vector<std::int32_t>() == y[i].labels.classes.to_vector<std::int32_t>());
        CHECK(x[i].labels.binary.to_vector<std::int8_t>() == y[i].labels.binary.to_vector<std::int8_t>());
      }
    }
  }

  // For a mixed-precision trunk: the same batches, each image the float32
  // image rounded once; any other type is refused.
  TEST_CASE_TEMPLATE("data: loader batches in bf16 and f16 are the float32 batches rounded once", Half,
                     cumtl::bfloat16_t, cumtl::float16_t) {
    Context ctx;
    const MultiDomainSampler sampler = rgb_and_grey_sampler();
    LoaderOptions options;
    options.image_size = 20;
    options.threads = 2;
    Loader wide(ctx, sampler, three_heads(), options);
    options.image_type = cumtl::scalar_type_v<Half>;
    Loader narrow(ctx, sampler, three_heads(), options);
    const std::vector<Batch> x = whole_epoch(wide, 0), y = whole_epoch(narrow, 0);
    REQUIRE(x.size() == y.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      CHECK(y[i].images.dtype() == cumtl::scalar_type_v<Half>);
      CHECK(y[i].samples == x[i].samples);
      CHECK(y[i].images.to_vector<Half>() == cumtl_test::rounded<Half>(x[i].images));
      CHECK(y[i].labels.classes.to_vector<std::int32_t>() == x[i].labels.classes.to_vector<std::int32_t>());
    }
    CHECK(cumtl_test::any_rounded<Half>(x[0].images));
    options.image_type = ScalarType::f64;
    CHECK_ERROR_WITH(Loader(ctx, sampler, three_heads(), options), "Loader", "images of float64");
  }

  TEST_CASE("data: loader resumes at a batch index") {
    Context ctx;
    const MultiDomainSampler sampler(patterns("a", 50), 8, 3);
    LoaderOptions options;
    options.image_size = 12;
    Loader loader(ctx, sampler, three_heads(), options);
    const std::vector<Batch> full = whole_epoch(loader, 2);
    loader.start_epoch(2, 3);
    CHECK(loader.batch_index() == 3);
    std::size_t b = 3;
    while (std::optional<Batch> batch = loader.next()) {
      REQUIRE(b < full.size());
      CHECK(batch->samples == full[b].samples);
      CHECK(batch->images.to_vector<float>() == full[b].images.to_vector<float>());
      ++b;
    }
    CHECK(b == full.size());
    CHECK_ERROR_WITH(loader.start_epoch(0, 8), "batch 8 is past the epoch's 7 batches");
  }

  TEST_CASE("data: stopping early and destroying the loader does not hang") {
    Context ctx;
    const MultiDomainSampler sampler(patterns("a", 400), 16, 3);
    LoaderOptions options;
    options.image_size = 16;
    options.threads = 3;
    options.prefetch = 3;
    { Loader never_started(ctx, sampler, three_heads(), options); }
    {
      Loader started(ctx, sampler, three_heads(), options);
      started.start_epoch(0);
    }
    {
      Loader one_batch(ctx, sampler, three_heads(), options);
      one_batch.start_epoch(0);
      const std::optional<Batch> batch = one_batch.next();
      CHECK(batch.has_value());
    }
    std::optional<Batch> kept;
    {
      Loader restarted(ctx, sampler, three_heads(), options);
      restarted.start_epoch(0);
      (void)restarted.next();
      restarted.start_epoch(1);  // abandons epoch 0 midway
      kept = restarted.next();
    }
    REQUIRE(kept.has_value());
    CHECK(kept->samples == sampler.batch(1, 0));
    CHECK(kept->images.numel() == 16 * 16 * 16 * 3);  // the batch outlives its loader
  }
}
