// The synthetic FACS faces: determinism, image shapes, where each AU moves the
// face, which labels each domain provides, label consistency, class
// frequencies, the oracle's built-in ambiguity, the contact sheet and option
// validation.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <thread>
#include <utility>
#include <vector>

#include "../support/testing.hpp"
#include "cumtl/data/synthetic_faces.hpp"

using cumtl::data::au_numbers;
using cumtl::data::FaceParameters;
using cumtl::data::Image;
using cumtl::data::Labels;
using cumtl::data::SynthDomain;
using cumtl::data::SyntheticDataset;
using cumtl::data::SyntheticFaces;
using cumtl::data::SynthOptions;

namespace {

SynthOptions options_for(SynthDomain domain, int size = 64, std::uint64_t seed = 7) {
  SynthOptions options;
  options.domain = domain;
  options.size = size;
  options.seed = seed;
  return options;
}

// Mean absolute byte difference per horizontal band of a frontal face, bands
// given by their face-unit heights (top of the forehead −0.8, brows −0.35,
// eyes −0.1, nose 0.15, mouth 0.5, chin 1).
constexpr std::array<double, 5> band_edges{-0.8, -0.22, 0.0, 0.32, 1.2};
enum Band { brows, eyes, nose, mouth };

std::array<double, 4> band_differences(const Image& a, const Image& b, const FaceParameters& face) {
  std::array<double, 4> sums{}, counts{};
  const double centre = cumtl::data::face_to_pixel(face, a.height, 0, 0)[1];
  const double unit = cumtl::data::face_to_pixel(face, a.height, 0, 1)[1] - centre;
  for (int y = 0; y < a.height; ++y) {
    const double face_y = (y + 0.5 - centre) / unit;
    for (std::size_t band = 0; band < 4; ++band) {
      if (face_y < band_edges[band] || face_y >= band_edges[band + 1]) continue;
      for (int x = 0; x < a.width * a.channels; ++x) sums[band] += std::abs(int(a.at(y, 0)[x]) - int(b.at(y, 0)[x]));
      counts[band] += a.width * a.channels;
    }
  }
  for (std::size_t band = 0; band < 4; ++band) sums[band] /= counts[band];
  return sums;
}

}  // namespace

TEST_SUITE("synthetic") {
  TEST_CASE("synthetic: the same seed and index give identical bytes") {
    const SyntheticFaces first(options_for(SynthDomain::rafdb)), second(options_for(SynthDomain::rafdb));
    for (std::uint64_t index : {0u, 5u, 1234567u}) {
      const auto a = first.sample(index), b = second.sample(index);
      CHECK(a.image.pixels == b.image.pixels);
      CHECK(a.labels.emotion == b.labels.emotion);
      CHECK(a.source == b.source);
    }
    CHECK(first.sample(5).image.pixels != first.sample(6).image.pixels);
    const SyntheticFaces reseeded(options_for(SynthDomain::rafdb, 64, 8));
    CHECK(first.sample(5).image.pixels != reseeded.sample(5).image.pixels);
    // The domain is part of the stream: a test set never repeats a training face.
    const SyntheticFaces test(options_for(SynthDomain::test));
    CHECK(first.sample(5).image.pixels != test.sample(5).image.pixels);
  }

  TEST_CASE("synthetic: faces drawn on several threads match the serial ones") {
    const SyntheticFaces faces(options_for(SynthDomain::rafdb, 48));
    std::vector<std::vector<std::uint8_t>> serial, parallel(16);
    for (std::uint64_t index = 0; index < 16; ++index) serial.push_back(faces.sample(index).image.pixels);
    std::vector<std::thread> threads;
    for (std::uint64_t start = 0; start < 4; ++start)
      threads.emplace_back([&, start] {
        for (std::uint64_t index = start; index < 16; index += 4) parallel[index] = faces.sample(index).image.pixels;
      });
    for (std::thread& thread : threads) thread.join();
    CHECK(parallel == serial);
  }

  TEST_CASE("synthetic: images have the requested size and three channels") {
    for (int size : {16, 64, 97, 112}) {
      const SyntheticFaces faces(options_for(SynthDomain::test, size));
      const Image image = faces.sample(3).image;
      CHECK(image.height == size);
      CHECK(image.width == size);
      CHECK(image.channels == 3);
      CHECK(image.pixels.size() == std::size_t(size) * size * 3);
    }
    // Parameters are size-independent: the same index is the same face at any size.
    const FaceParameters small = SyntheticFaces(options_for(SynthDomain::test, 32)).parameters(9);
    const FaceParameters large = SyntheticFaces(options_for(SynthDomain::test, 128)).parameters(9);
    CHECK(small.aus == large.aus);
    CHECK(small.skin == large.skin);
    CHECK(small.roll == large.roll);
  }

  TEST_CASE("synthetic: each AU alone moves its own region of the face") {
    const SyntheticFaces faces(options_for(SynthDomain::test, 64));
    std::array<Band, au_numbers.size()> expected{};
    for (std::size_t i = 0; i < au_numbers.size(); ++i) {
      switch (au_numbers[i]) {
        case 1:
        case 2:
        case 4: expected[i] = brows; break;
        case 5:
        case 6:
        case 7:
        case 43: expected[i] = eyes; break;
        case 9: expected[i] = nose; break;
        default: expected[i] = mouth; break;
      }
    }
    std::array<std::array<double, 4>, au_numbers.size()> totals{};
    for (std::uint64_t person = 0; person < 3; ++person) {
      FaceParameters neutral = faces.parameters(person);
      cumtl::data::make_frontal(neutral);
      neutral.aus.fill(0);
      const Image reference = faces.render(neutral);
      for (std::size_t i = 0; i < au_numbers.size(); ++i) {
        FaceParameters moved = neutral;
        moved.aus[i] = 1;
        const std::array<double, 4> difference = band_differences(faces.render(moved), reference, neutral);
        for (std::size_t band = 0; band < 4; ++band) totals[i][band] += difference[band];
      }
    }
    for (std::size_t i = 0; i < au_numbers.size(); ++i) {
      INFO("AU", au_numbers[i], " mean differences (brows, eyes, nose, mouth): ", totals[i][0], " ", totals[i][1], " ",
           totals[i][2], " ", totals[i][3]);
      const double own = totals[i][expected[i]];
      CHECK(own > 0.3);
      for (std::size_t band = 0; band < 4; ++band)
        if (band != std::size_t(expected[i])) CHECK(own > 1.3 * totals[i][band]);
    }
  }

  TEST_CASE("synthetic: each domain labels what it promises") {
    for (double compound_fraction : {0.0, 0.5}) {
      SynthOptions emotionet = options_for(SynthDomain::emotionet), rafdb = options_for(SynthDomain::rafdb),
                   test = options_for(SynthDomain::test);
      emotionet.compound_fraction = rafdb.compound_fraction = test.compound_fraction = compound_fraction;
      const SyntheticFaces emotionet_faces(emotionet), rafdb_faces(rafdb), test_faces(test);
      int compounds = 0;
      for (std::uint64_t index = 0; index < 60; ++index) {
        const Labels e = emotionet_faces.labels(index);
        CHECK(e.emotion == -1);
        CHECK(e.compound == -1);
        for (std::size_t i = 0; i < au_numbers.size(); ++i) {
          const bool challenge =
              std::find(cumtl::data::emotionet_challenge_aus.begin(), cumtl::data::emotionet_challenge_aus.end(),
                        au_numbers[i]) != cumtl::data::emotionet_challenge_aus.end();
          if (challenge || au_numbers[i] == 43)
            CHECK((e.aus[i] == 0 || e.aus[i] == 1));
          else
            CHECK(e.aus[i] == -1);  // 7, 15 and 23
        }

        const Labels r = rafdb_faces.labels(index);
        for (std::int8_t au : r.aus) CHECK(au == -1);
        CHECK(((r.emotion >= 0 && r.emotion < 7 && r.compound == -1) ||
               (r.emotion == -1 && r.compound >= 0 && r.compound < 11)));
        compounds += r.compound >= 0;

        const Labels t = test_faces.labels(index);
        for (std::int8_t au : t.aus) CHECK((au == 0 || au == 1));
        CHECK(((t.emotion >= 0 && t.compound == -1) || (t.emotion == -1 && t.compound >= 0)));
      }
      if (compound_fraction == 0)
        CHECK(compounds == 0);
      else
        CHECK(compounds > 10);
    }
    const auto sample = SyntheticFaces(options_for(SynthDomain::rafdb)).sample(3);
    CHECK(sample.source == "synth:rafdb:3");
    CHECK(sample.domain == "rafdb");
  }

  TEST_CASE("synthetic: labels agree with the drawn parameters") {
    SynthOptions options = options_for(SynthDomain::test, 32);
    options.compound_fraction = 0.3;
    const SyntheticDataset dataset(options, 200);
    CHECK(dataset.name() == "synth-test");
    CHECK(dataset.size() == 200);
    for (std::size_t index = 0; index < dataset.size(); ++index) {
      const FaceParameters face = dataset.faces().parameters(index);
      const Labels labels = dataset.labels(index);
      CHECK(labels.emotion == face.emotion);
      CHECK(labels.compound == face.compound);
      for (std::size_t i = 0; i < au_numbers.size(); ++i)
        CHECK(labels.aus[i] == (face.aus[i] >= cumtl::data::au_present_threshold ? 1 : 0));
      if (index % 20 == 0) {
        const auto sample = dataset.load(index);
        CHECK(sample.labels.aus == labels.aus);
        CHECK(sample.labels.emotion == labels.emotion);
      }
    }
    CHECK(SyntheticDataset(options_for(SynthDomain::emotionet), 1).name() == "synth-emotionet");
  }

  TEST_CASE("synthetic: a dataset's loads are the renderer's faces, kept or drawn again") {
    const SynthOptions options = options_for(SynthDomain::rafdb, 32);
    const SyntheticDataset dataset(options, 40);  // small enough to keep its faces
    std::vector<std::thread> threads;
    std::vector<std::vector<std::uint8_t>> pixels(4);
    for (std::size_t t = 0; t < pixels.size(); ++t)  // all at once: one draws face 7, the others wait for it
      threads.emplace_back([&, t] { pixels[t] = dataset.load(7).image.pixels; });
    for (std::thread& thread : threads) thread.join();
    const auto drawn = dataset.faces().sample(7);
    for (const std::vector<std::uint8_t>& copy : pixels) CHECK(copy == drawn.image.pixels);
    const auto again = dataset.load(7);
    CHECK(again.image.pixels == drawn.image.pixels);
    CHECK(again.labels.aus == drawn.labels.aus);
    CHECK(again.source == drawn.source);

    // Faces of 1024 px would take 3 MiB each: 400 of them are not kept, and load the same.
    const SynthOptions large = options_for(SynthDomain::test, 1024);
    REQUIRE(std::size_t(400) * 1024 * 1024 * 3 > cumtl::data::synth_cache_bytes);
    const SyntheticDataset uncached(large, 400);
    CHECK(uncached.load(3).image.pixels == uncached.faces().sample(3).image.pixels);
  }

  TEST_CASE("synthetic: emotion frequencies follow the weights") {
    const auto count = [](const SynthOptions& options, int faces) {
      std::array<int, 7> emotions{};
      int compounds = 0;
      const SyntheticFaces source(options);
      for (int index = 0; index < faces; ++index) {
        const FaceParameters face = source.parameters(std::uint64_t(index));
        if (face.compound >= 0)
          ++compounds;
        else
          ++emotions[std::size_t(face.emotion)];
      }
      return std::pair{emotions, compounds};
    };
    // Uniform by default: 2000/7 ≈ 286 each, σ ≈ 16.
    const auto [uniform, none] = count(options_for(SynthDomain::rafdb), 2000);
    for (int n : uniform) CHECK(std::abs(n - 2000.0 / 7) < 70);
    CHECK(none == 0);

    SynthOptions weighted = options_for(SynthDomain::rafdb);
    weighted.emotion_weights = {0, 3, 1, 1, 1, 1, 1};
    weighted.compound_fraction = 0.25;
    const auto [emotions, compounds] = count(weighted, 2000);
    CHECK(emotions[0] == 0);
    CHECK(std::abs(compounds - 500) < 80);
    CHECK(std::abs(emotions[1] - 1500 * 3.0 / 8) < 90);
    for (std::size_t e = 2; e < 7; ++e) CHECK(std::abs(emotions[e] - 1500 / 8.0) < 60);
  }

  TEST_CASE("synthetic: compound_fraction changes expressions but keeps people and scenes") {
    SynthOptions basic = options_for(SynthDomain::rafdb), mixed = basic;
    mixed.compound_fraction = 1;
    const SyntheticFaces a(basic), b(mixed);
    for (std::uint64_t index = 0; index < 20; ++index) {
      const FaceParameters x = a.parameters(index), y = b.parameters(index);
      CHECK(x.compound == -1);
      CHECK(y.compound >= 0);
      CHECK(x.skin == y.skin);
      CHECK(x.hair_style == y.hair_style);
      CHECK(x.yaw == y.yaw);
      CHECK(x.noise_key == y.noise_key);
    }
  }

  TEST_CASE("synthetic: the AU oracle is right most of the time but not always") {
    for (SynthDomain domain : {SynthDomain::emotionet, SynthDomain::rafdb, SynthDomain::test}) {
      const double accuracy = cumtl::data::oracle_accuracy(domain, 11, 3000);
      INFO(cumtl::data::name_of(domain), " oracle accuracy ", accuracy);
      CHECK(accuracy >= 0.85);
      CHECK(accuracy <= 0.97);
    }
    // Every prototype, shown exactly, is recognized.
    for (std::size_t e = 0; e < cumtl::data::emotion_prototypes.size(); ++e) {
      std::array<float, au_numbers.size()> aus{};
      for (std::size_t i = 0; i < aus.size(); ++i)
        if (cumtl::data::emotion_prototypes[e].core >> i & 1u) aus[i] = 1;
      CHECK(cumtl::data::oracle_emotion(aus) == int(e));
    }
    // Without noise the oracle is perfect: the ambiguity comes from the noise knobs.
    SynthOptions exact = options_for(SynthDomain::test);
    exact.au_dropout = exact.au_extra = 0;
    CHECK(cumtl::data::oracle_accuracy(exact, 500) == 1.0);
  }

  TEST_CASE("synthetic: rafdb varies pose and clutter more than emotionet") {
    const SyntheticFaces emotionet(options_for(SynthDomain::emotionet)), rafdb(options_for(SynthDomain::rafdb));
    double emotionet_yaw = 0, rafdb_yaw = 0, emotionet_clutter = 0, rafdb_clutter = 0;
    for (std::uint64_t index = 0; index < 300; ++index) {
      const FaceParameters e = emotionet.parameters(index), r = rafdb.parameters(index);
      emotionet_yaw += std::abs(e.yaw) + std::abs(e.roll);
      rafdb_yaw += std::abs(r.yaw) + std::abs(r.roll);
      emotionet_clutter += e.clutter_count;
      rafdb_clutter += r.clutter_count;
    }
    CHECK(rafdb_yaw > 2 * emotionet_yaw);
    CHECK(rafdb_clutter > 2 * emotionet_clutter);
  }

  TEST_CASE("synthetic: the contact sheet has a row per expression and one for the AUs") {
    const Image sheet = cumtl::data::contact_sheet(32);
    CHECK(sheet.channels == 3);
    CHECK(sheet.width == 32 * int(au_numbers.size()));
    CHECK(sheet.height == 32 * int(7 + 11 + 1));
  }

  TEST_CASE("synthetic: invalid options are refused with messages naming the option") {
    const auto with = [](auto change) {
      SynthOptions options;
      change(options);
      return options;
    };
    CHECK_ERROR_WITH(SyntheticFaces(with([](SynthOptions& o) { o.size = 8; })), "SynthOptions::size", "8");
    CHECK_ERROR_WITH(SyntheticFaces(with([](SynthOptions& o) { o.size = 2048; })), "SynthOptions::size", "2048");
    CHECK_ERROR_WITH(SyntheticFaces(with([](SynthOptions& o) { o.compound_fraction = 1.5; })),
                     "SynthOptions::compound_fraction", "1.5");
    CHECK_ERROR_WITH(SyntheticFaces(with([](SynthOptions& o) { o.compound_fraction = -0.1; })),
                     "SynthOptions::compound_fraction");
    CHECK_ERROR_WITH(
        SyntheticFaces(with([](SynthOptions& o) { o.compound_fraction = std::numeric_limits<double>::quiet_NaN(); })),
        "SynthOptions::compound_fraction");
    CHECK_ERROR_WITH(SyntheticFaces(with([](SynthOptions& o) { o.au_dropout = 2; })), "SynthOptions::au_dropout");
    CHECK_ERROR_WITH(SyntheticFaces(with([](SynthOptions& o) { o.au_extra = -1; })), "SynthOptions::au_extra");
    CHECK_ERROR_WITH(SyntheticFaces(with([](SynthOptions& o) { o.emotion_weights[4] = -1; })),
                     "SynthOptions::emotion_weights[4]", "fear");
    CHECK_ERROR_WITH(SyntheticFaces(with([](SynthOptions& o) { o.emotion_weights.fill(0); })),
                     "SynthOptions::emotion_weights");
    CHECK_ERROR_WITH(SyntheticDataset(SynthOptions{.size = 4}, 10), "SynthOptions::size");
    CHECK_ERROR_WITH(SyntheticDataset(SynthOptions{}, 10).load(10), "synth-test", "10");
    CHECK_ERROR_WITH(cumtl::data::oracle_accuracy(SynthDomain::test, 0, 0), "count");
    CHECK_ERROR_WITH(cumtl::data::contact_sheet(8), "size");

    // Only compounds: no basic emotion is needed.
    CHECK_NOTHROW(SyntheticFaces(with([](SynthOptions& o) {
      o.emotion_weights.fill(0);
      o.compound_fraction = 1;
    })));
    CHECK(cumtl::data::parse_synth_domain("emotionet") == SynthDomain::emotionet);
    CHECK(cumtl::data::parse_synth_domain("rafdb") == SynthDomain::rafdb);
    CHECK(cumtl::data::parse_synth_domain("test") == SynthDomain::test);
    CHECK_FALSE(cumtl::data::parse_synth_domain("affectnet").has_value());
    CHECK(cumtl::data::name_of(SynthDomain::rafdb) == "rafdb");
  }
}
