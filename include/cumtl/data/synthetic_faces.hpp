#pragma once
// Synthetic FACS faces: the embedded default dataset. No real face dataset can
// be downloaded where cumtl is built and tested, so this header draws cartoon
// faces whose Action Units are known exactly, in two domains that reproduce the
// paper's setting (EmotioNet-like faces with AU labels only, RAF-DB-like faces
// in the wild with emotion labels only) plus a test domain with every label.
//
// The generative story of one face (SyntheticFaces::parameters):
//  1. Expression. With probability compound_fraction a compound expression
//     (uniform over the 11), otherwise a basic emotion drawn with probabilities
//     proportional to emotion_weights (uniform by default: per-class results
//     are then easy to read; set the weights to mimic RAF-DB's imbalance). Its
//     prototype (emotion_prototypes; a compound takes the union of its two
//     parts) names core AUs, "likely" AUs (shown 70% of the time) and
//     "possible" AUs (30%). Each core AU is dropped with probability
//     au_dropout (0.12) and each AU outside the prototype appears with
//     probability au_extra (0.05): an emotion is likely but not certain from
//     its AUs. Every domain draws expressions the same way; only the labels
//     it keeps differ.
//  2. Intensities. A shown AU has intensity 0.35 + 0.65·s·U(0.6, 1), where the
//     face's expressiveness s ~ U(0.2, 1); an AU not shown keeps a trace below
//     0.2 one time in five. An AU is labelled present when its intensity is at
//     least au_present_threshold (0.3): AU labels are exact functions of what
//     is drawn, with no face in the 0.2–0.35 band where one could not tell.
//  3. Identity: face width and jaw, eye spacing and size, brows, mouth, lips,
//     nose, skin tone, iris, hair colour and style (short, long, bald, side
//     part), clothes, gaze.
//  4. Scene, by domain. emotionet: near-frontal (roll σ 3°, yaw σ 0.06 rad),
//     scale 0.92–1.05, brightness 0.9–1.1 with a gradient ≤ 15%, pale
//     backgrounds with at most 2 faint shapes, blur σ ≤ 0.4 px, noise σ ≤ 2%.
//     rafdb and test (in the wild): roll σ 9° (≤ 20°), yaw σ 0.18 rad (≤ 0.4),
//     scale 0.82–1.1, shift σ 4.5% of the image, brightness 0.6–1.25 with a
//     gradient ≤ 45% and colour casts σ 7%, 2–8 opaque shapes on any
//     background, blur σ ≤ 0.8 px, noise σ ≤ 4%. Blur is in pixels of a 64-px
//     image and scales with the size.
//
// What each AU moves (Painter's functions draw it):
//   1 inner brow up, central forehead lines    2 outer brow up, lateral lines
//   4 brows down and together, vertical furrows 5 upper lid up (white above the iris)
//   6 cheeks up, lower lid up, crow's feet      7 lids tightened, lower lid straight
//   9 nose wrinkles, nostrils up and flared     12 lip corners up and out, folds deepen
//  15 lip corners down                          17 lower lip and chin up, chin bumps
//  20 mouth wider, lips flatter                 23 lips thinner, mouth narrower
//  25 lips parted, teeth                        26 jaw and chin down (mouth taller with 25)
//  43 eyes closed
// Rendering draws anti-aliased ellipses, strokes and convex polygons into a
// float RGB buffer (coverage from signed distances, painter's order), then
// blurs, lights, adds Philox pixel noise and quantizes to 8-bit HWC. Yaw is
// drawn as on a cylinder: features shift sideways, the far side foreshortened.
//
// Randomness: every draw is a Philox4x32-10 block at counter (index · 4096 +
// section · 1024 + k) under a key derived from (seed, domain), so a face
// depends only on (seed, domain, options, index), never on thread or order,
// and the domains never share a face. Expression, identity and scene draw from
// separate sections, so changing compound_fraction keeps every face's person
// and scene. Parameters are size-independent: the same index at 64 and 112 px
// is the same face.
//
// Ambiguity built in: the AU-to-emotion oracle (nearest prototype by AU
// pattern, oracle_emotion) is right about 93% of the time with the default
// knobs (oracle_accuracy); fearfully_surprised's union is fear's own AU set.
//
// Speed (SyntheticFaces::sample, one core, g++ -O2, the development machine):
// about 4,700 faces/s at 64 px and 1,650 at 112 px in the wild domains, 5,700
// and 1,950 in emotionet (less clutter and blur).

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "cumtl/core/error.hpp"
#include "cumtl/data/dataset.hpp"
#include "cumtl/data/sample.hpp"
#include "cumtl/kernels/random.cuh"

namespace cumtl::data {

enum class SynthDomain : std::uint8_t { emotionet, rafdb, test };

inline std::string_view name_of(SynthDomain domain) {
  switch (domain) {
    case SynthDomain::emotionet: return "emotionet";
    case SynthDomain::rafdb: return "rafdb";
    case SynthDomain::test: return "test";
  }
  return "unknown";
}

inline std::optional<SynthDomain> parse_synth_domain(std::string_view name) {
  for (SynthDomain domain : {SynthDomain::emotionet, SynthDomain::rafdb, SynthDomain::test})
    if (name_of(domain) == name) return domain;
  return std::nullopt;
}

// An AU is labelled present when its intensity (0..1) is at least this.
inline constexpr float au_present_threshold = 0.3f;

// A set of AUs as a bit mask over au_numbers (bit i = au_numbers[i]).
inline constexpr std::uint16_t au_mask(std::initializer_list<int> numbers) {
  unsigned mask = 0;
  for (int number : numbers) {
    int position = -1;
    for (std::size_t i = 0; i < au_numbers.size(); ++i)
      if (au_numbers[i] == number) position = int(i);
    // Thrown during constant evaluation, this is a compile error in the table that names the AU.
    if (position < 0) throw std::invalid_argument("au_mask: not an AU of au_numbers");
    mask |= 1u << position;
  }
  return std::uint16_t(mask);
}

// The AUs of a prototypical expression. Core AUs are what the oracle matches;
// likely and possible AUs vary between faces of the same expression, so the
// oracle ignores them.
struct ExpressionPrototype {
  std::uint16_t core = 0;
  std::uint16_t likely = 0;    // shown with probability prototype_likely_probability
  std::uint16_t possible = 0;  // shown with probability prototype_possible_probability
};

inline constexpr double prototype_likely_probability = 0.7;
inline constexpr double prototype_possible_probability = 0.3;

// EMFACS-style prototypes (FACTS.md), in emotion_names order. 16 (disgust) and
// 10 are not among au_numbers; fear's 7 and disgust's 4 are frequent but not
// defining, so they are optional here.
inline constexpr std::array<ExpressionPrototype, 7> emotion_prototypes{{
    {},                                                            // neutral
    {au_mask({6, 12}), au_mask({25}), 0},                          // happiness
    {au_mask({1, 4, 15}), 0, au_mask({17})},                       // sadness
    {au_mask({1, 2, 5, 26}), au_mask({25}), 0},                    // surprise
    {au_mask({1, 2, 4, 5, 20, 26}), au_mask({25}), au_mask({7})},  // fear
    {au_mask({9, 15}), 0, au_mask({4, 17, 25})},                   // disgust
    {au_mask({4, 5, 7, 23}), 0, au_mask({17})},                    // anger
}};

// The two basic emotions (emotion_names indices) of each compound, in compound_names order.
inline constexpr std::array<std::array<int, 2>, 11> compound_parts{{
    {1, 3},  // happily surprised
    {1, 5},  // happily disgusted
    {2, 4},  // sadly fearful
    {2, 6},  // sadly angry
    {2, 3},  // sadly surprised
    {2, 5},  // sadly disgusted
    {4, 6},  // fearfully angry
    {4, 3},  // fearfully surprised (surprise's core is inside fear's: the union is fear's core)
    {6, 3},  // angrily surprised
    {6, 5},  // angrily disgusted
    {5, 3},  // disgustedly surprised
}};

// A compound's prototype: the union of its parts, each AU at its strongest role.
inline constexpr ExpressionPrototype compound_prototype(int compound) {
  const ExpressionPrototype& a = emotion_prototypes[std::size_t(compound_parts[std::size_t(compound)][0])];
  const ExpressionPrototype& b = emotion_prototypes[std::size_t(compound_parts[std::size_t(compound)][1])];
  const unsigned core = a.core | b.core;
  const unsigned likely = (a.likely | b.likely) & ~core;
  const unsigned possible = (a.possible | b.possible) & ~(core | likely);
  return {std::uint16_t(core), std::uint16_t(likely), std::uint16_t(possible)};
}

// The AUs the emotionet domain labels: the EmotioNet challenge 2017 AUs plus
// 43, which the 2018 challenge added. 7, 15 and 23 are missing there.
inline constexpr std::array<int, 12> emotionet_labelled_aus{1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43};

// Whether `domain` labels AU au_numbers[position].
inline bool synth_labels_au(SynthDomain domain, std::size_t position) {
  if (domain == SynthDomain::rafdb) return false;
  if (domain == SynthDomain::test) return true;
  return std::find(emotionet_labelled_aus.begin(), emotionet_labelled_aus.end(), au_numbers[position]) !=
         emotionet_labelled_aus.end();
}

struct SynthOptions {
  int size = 64;  // square images of size × size pixels, 16..1024
  SynthDomain domain = SynthDomain::test;
  std::uint64_t seed = 0;
  double compound_fraction = 0;  // the probability that a face shows a compound expression
  // Relative frequencies of the basic emotions in emotion_names order (uniform by default).
  std::array<double, 7> emotion_weights{1, 1, 1, 1, 1, 1, 1};
  double au_dropout = 0.12;  // probability that a core AU of the expression is not shown
  double au_extra = 0.05;    // probability that an AU outside the expression's prototype is shown
};

// Throws cumtl::Error naming the first invalid option.
inline void validate(const SynthOptions& options) {
  CUMTL_REQUIRE(options.size >= 16 && options.size <= 1024, "SynthOptions::size must be in 16..1024, got ",
                options.size);
  CUMTL_REQUIRE(options.compound_fraction >= 0 && options.compound_fraction <= 1,
                "SynthOptions::compound_fraction must be in [0, 1], got ", options.compound_fraction);
  CUMTL_REQUIRE(options.au_dropout >= 0 && options.au_dropout <= 1, "SynthOptions::au_dropout must be in [0, 1], got ",
                options.au_dropout);
  CUMTL_REQUIRE(options.au_extra >= 0 && options.au_extra <= 1, "SynthOptions::au_extra must be in [0, 1], got ",
                options.au_extra);
  double total = 0;
  for (std::size_t i = 0; i < options.emotion_weights.size(); ++i) {
    const double weight = options.emotion_weights[i];
    CUMTL_REQUIRE(weight >= 0 && std::isfinite(weight), "SynthOptions::emotion_weights[", i, "] (", emotion_names[i],
                  ") must be finite and non-negative, got ", weight);
    total += weight;
  }
  CUMTL_REQUIRE(total > 0 || options.compound_fraction == 1,
                "SynthOptions::emotion_weights must not all be zero unless compound_fraction is 1");
}

// A background shape, in image units (0..1 across the image).
struct SynthClutter {
  enum Kind : std::uint8_t { ellipse, rectangle, bar };
  Kind kind = ellipse;
  float x = 0, y = 0;           // centre
  float width = 0, height = 0;  // half extents
  float angle = 0;              // radians
  float alpha = 0;
  std::array<float, 3> color{};
};

// Everything that decides a face's pixels. Lengths are in face units (the
// face's half-height) unless noted; colours are 0..1 RGB.
struct FaceParameters {
  using Rgb = std::array<float, 3>;

  // What the face shows.
  int emotion = 0;                             // index into emotion_names; -1 for a compound expression
  int compound = -1;                           // index into compound_names, or -1
  std::array<float, au_numbers.size()> aus{};  // intensities 0..1, au_numbers order

  // Identity.
  float face_width = 1, jaw = 0.5f, eye_spacing = 1, eye_size = 1, brow_thickness = 1;
  float mouth_width = 1, lip_thickness = 1, nose_size = 1;
  Rgb skin{0.87f, 0.69f, 0.56f}, hair{0.2f, 0.13f, 0.08f}, iris{0.3f, 0.2f, 0.1f}, clothes{0.3f, 0.4f, 0.6f};
  enum HairStyle : std::uint8_t { short_hair, long_hair, bald, side_part };
  HairStyle hair_style = short_hair;
  float hairline = -0.8f;        // y of the hairline at the midline (face units, y down)
  float gaze_x = 0, gaze_y = 0;  // -1..1

  // Pose: roll in radians, yaw in radians (drawn as on a cylinder), scale of
  // the face, shift of its centre in image units.
  float roll = 0, yaw = 0, scale = 1, shift_x = 0, shift_y = 0;

  // Lighting: global brightness, a linear gradient of relative strength
  // light_gradient across the image along light_angle, and a colour cast.
  float brightness = 1, light_gradient = 0, light_angle = 0;
  Rgb tint{1, 1, 1};

  // Background: a vertical gradient and up to 8 shapes.
  Rgb background_top{0.75f, 0.78f, 0.8f}, background_bottom{0.6f, 0.63f, 0.66f};
  int clutter_count = 0;
  std::array<SynthClutter, 8> clutter{};

  // Camera: Gaussian blur σ in pixels of a 64-pixel image (scaled with the
  // size), pixel noise σ (0..1 scale) and the key of its Philox stream.
  float blur = 0, noise = 0;
  std::uint64_t noise_key = 0;
};

// Whether the AU at `position` of au_numbers is present (intensity ≥ threshold).
inline bool au_present(const FaceParameters& face, std::size_t position) {
  return face.aus[position] >= au_present_threshold;
}

// The labels `domain` provides for `face`: emotionet labels emotionet_labelled_aus
// only; rafdb labels the emotion, or the compound of a compound face; test
// labels the emotion or compound and all 15 AUs.
inline Labels synth_labels(const FaceParameters& face, SynthDomain domain) {
  Labels labels;
  if (domain != SynthDomain::emotionet) {
    labels.emotion = face.compound >= 0 ? -1 : face.emotion;
    labels.compound = face.compound;
  }
  for (std::size_t i = 0; i < au_numbers.size(); ++i)
    if (synth_labels_au(domain, i)) labels.aus[i] = au_present(face, i) ? 1 : 0;
  return labels;
}

// Removes pose, lighting, clutter, blur and noise: a frontal studio portrait
// of the same person with the same expression (for contact sheets and tests).
inline void make_frontal(FaceParameters& face) {
  face.roll = face.yaw = 0;
  face.scale = 1;
  face.shift_x = face.shift_y = 0;
  face.gaze_x = face.gaze_y = 0;
  face.brightness = 1;
  face.light_gradient = 0;
  face.tint = {1, 1, 1};
  face.background_top = {0.78f, 0.8f, 0.82f};
  face.background_bottom = {0.64f, 0.67f, 0.7f};
  face.clutter_count = 0;
  face.blur = face.noise = 0;
}

// The pixel position of face point (x, y) (face units, y down) in a size × size
// rendering of `face`, ignoring yaw: landmarks for tests and crops.
inline std::array<double, 2> face_to_pixel(const FaceParameters& face, int size, double x, double y) {
  const double unit = 0.4 * size * face.scale, c = std::cos(double(face.roll)), s = std::sin(double(face.roll));
  return {(0.5 + face.shift_x) * size + unit * (c * x - s * y), (0.52 + face.shift_y) * size + unit * (s * x + c * y)};
}

namespace synth_detail {

// Consecutive Philox blocks of one stream: one block per draw.
class Draws {
 public:
  Draws(std::uint64_t key, std::uint64_t counter) : key_(key), counter_(counter) {}

  double uniform() {
    const kernels::PhiloxBlock block = kernels::philox_at(key_, counter_++);
    return kernels::unit_uniform<double>(block.word[0], block.word[1]);
  }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  float uniformf(double low, double high) { return float(uniform(low, high)); }
  double normal(double stddev, double limit) {
    return std::clamp(kernels::normal_element<double>(key_, counter_++, 0.0, stddev), -limit, limit);
  }
  int below(int count) { return std::min(count - 1, int(uniform() * count)); }
  std::uint64_t bits() {
    const kernels::PhiloxBlock block = kernels::philox_at(key_, counter_++);
    return (std::uint64_t(block.word[0]) << 32) | block.word[1];
  }

 private:
  std::uint64_t key_, counter_;
};

// Counters per face and per section of a face's draws.
inline constexpr std::uint64_t counters_per_face = 4096, counters_per_section = 1024;
enum Section : std::uint64_t { expression_section, identity_section, scene_section };

// The key of a (seed, domain) stream, so that the domains never share faces.
inline std::uint64_t stream_key(std::uint64_t seed, SynthDomain domain) {
  const kernels::PhiloxBlock block = kernels::philox_at(seed, 0x53594E5448000000ull + std::uint64_t(domain));
  return (std::uint64_t(block.word[0]) << 32) | block.word[1];
}

using Rgb = FaceParameters::Rgb;

inline Rgb mix(const Rgb& a, const Rgb& b, double t) {
  const auto f = float(t);
  return {a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f};
}
inline Rgb shade(const Rgb& a, double factor) {
  const auto f = float(factor);
  return {std::min(a[0] * f, 1.f), std::min(a[1] * f, 1.f), std::min(a[2] * f, 1.f)};
}

struct Point {
  double u = 0, v = 0;
};

// An affine map from a drawing's own coordinates (u, v) to pixel coordinates.
struct Frame {
  double xx = 1, xy = 0, x0 = 0, yx = 0, yy = 1, y0 = 0;

  // The frame whose coordinates go through `inner` first, then this one.
  Frame after(const Frame& inner) const {
    return {xx * inner.xx + xy * inner.yx, xx * inner.xy + xy * inner.yy, xx * inner.x0 + xy * inner.y0 + x0,
            yx * inner.xx + yy * inner.yx, yx * inner.xy + yy * inner.yy, yx * inner.x0 + yy * inner.y0 + y0};
  }
  static Frame placed(double x, double y, double angle = 0, double scale_x = 1, double scale_y = 1) {
    const double c = std::cos(angle), s = std::sin(angle);
    return {c * scale_x, -s * scale_y, x, s * scale_x, c * scale_y, y};
  }
};

// Approximate signed distance to an axis-aligned ellipse (exact on circles),
// good to a fraction of a pixel near the boundary, which is all coverage needs.
// Farther than `settled` from the edge only the side matters: the bound
// (k − 1)·min(rx, ry), which has the distance's sign and is no larger in
// magnitude, then answers with one square root (most pixels of a large shape).
struct Ellipse {
  double inverse_rx, inverse_ry, smaller;

  Ellipse(double rx, double ry) : inverse_rx(1 / rx), inverse_ry(1 / ry), smaller(std::min(rx, ry)) {}

  double distance(double u, double v, double settled = 1e30) const {
    const double a = u * inverse_rx, b = v * inverse_ry;
    const double k0 = std::sqrt(a * a + b * b), bound = (k0 - 1) * smaller;
    if (std::abs(bound) >= settled) return bound;
    const double c = a * inverse_rx, d = b * inverse_ry;
    const double k1 = std::sqrt(c * c + d * d);
    return k1 < 1e-12 ? -smaller : k0 * (k0 - 1) / k1;
  }
};

inline double box_distance(double u, double v, double half_width, double half_height) {
  return std::max(std::abs(u) - half_width, std::abs(v) - half_height);
}

// A quadratic Bézier through `from` and `to` pulled towards `control`, as N points.
template <std::size_t N>
std::array<Point, N> bezier(Point from, Point control, Point to) {
  std::array<Point, N> points;
  for (std::size_t i = 0; i < N; ++i) {
    const double t = double(i) / double(N - 1), a = (1 - t) * (1 - t), b = 2 * (1 - t) * t, c = t * t;
    points[i] = {a * from.u + b * control.u + c * to.u, a * from.v + b * control.v + c * to.v};
  }
  return points;
}

// A float RGB image drawn in painter's order with coverage from signed distances.
class Canvas {
 public:
  explicit Canvas(int size) : size_(size), pixels_(std::size_t(size) * std::size_t(size) * 3, 0.f) {}

  int size() const { return size_; }
  std::vector<float>& pixels() { return pixels_; }

  // Blends `color` over every pixel whose centre maps into the box [low, high]
  // of frame coordinates with coverage 0.5 − d/edge, d = sdf(u, v) in frame
  // units and edge the larger of `feather` and one pixel: one-pixel
  // anti-aliasing, or a soft edge `feather` wide. An sdf taking a third
  // argument `settled` may answer inexactly (but with the right sign and no
  // larger magnitude) farther than that from the edge, where coverage is 0 or 1.
  template <class Sdf>
  void fill(const Frame& frame, Point low, Point high, const Rgb& color, double alpha, double feather, Sdf&& sdf) {
    if (alpha <= 1e-3) return;
    const float r = color[0], g = color[1], b = color[2];
    scan(frame, low, high, feather, [&](double u, double v, double edge, float* out) {
      double d;
      if constexpr (std::is_invocable_v<Sdf, double, double, double>)
        d = sdf(u, v, 0.5 * edge);
      else
        d = sdf(u, v);
      const double coverage = 0.5 - d / edge;
      if (coverage <= 0) return;
      const auto a = float(alpha * std::min(coverage, 1.0));
      out[0] += (r - out[0]) * a;
      out[1] += (g - out[1]) * a;
      out[2] += (b - out[2]) * a;
    });
  }

  // fill() of a shape whose colour goes from `rim` at its edge to `centre`
  // deeper than `depth`, over a soft band `feather` wide: shading in one pass.
  // sdf(u, v, settled) may be inexact farther than `settled` from the edge.
  template <class Sdf>
  void fill_shaded(const Frame& frame, Point low, Point high, const Rgb& rim, const Rgb& centre, double depth,
                   double feather, Sdf&& sdf) {
    scan(frame, low, high, 0, [&](double u, double v, double edge, float* out) {
      const double d = sdf(u, v, std::max(0.5 * edge, depth + 0.5 * feather)), coverage = 0.5 - d / edge;
      if (coverage <= 0) return;
      const auto a = float(std::min(coverage, 1.0));
      const auto t = float(std::clamp(0.5 - (d + depth) / feather, 0.0, 1.0));
      for (std::size_t c = 0; c < 3; ++c) out[c] += (rim[c] + (centre[c] - rim[c]) * t - out[c]) * a;
    });
  }

  void ellipse(const Frame& frame, Point center, double rx, double ry, const Rgb& color, double alpha,
               double feather = 0) {
    const Ellipse shape(rx, ry);
    fill(frame, {center.u - rx, center.v - ry}, {center.u + rx, center.v + ry}, color, alpha, feather,
         [&](double u, double v, double settled) { return shape.distance(u - center.u, v - center.v, settled); });
  }

  // A polyline whose half-width goes linearly from its first point's to its last's.
  template <std::size_t N>
  void stroke(const Frame& frame, const std::array<Point, N>& points, double width_from, double width_to,
              const Rgb& color, double alpha) {
    std::array<double, N> widths;
    for (std::size_t i = 0; i < N; ++i) widths[i] = width_from + (width_to - width_from) * double(i) / double(N - 1);
    Point low{1e30, 1e30}, high{-1e30, -1e30};
    for (std::size_t i = 0; i < N; ++i) {
      low = {std::min(low.u, points[i].u - widths[i]), std::min(low.v, points[i].v - widths[i])};
      high = {std::max(high.u, points[i].u + widths[i]), std::max(high.v, points[i].v + widths[i])};
    }
    fill(frame, low, high, color, alpha, 0, [&](double u, double v) {
      double best = 1e30;
      for (std::size_t i = 0; i + 1 < N; ++i) {
        const double du = points[i + 1].u - points[i].u, dv = points[i + 1].v - points[i].v;
        const double pu = u - points[i].u, pv = v - points[i].v;
        const double length2 = du * du + dv * dv;
        const double t = length2 > 0 ? std::clamp((pu * du + pv * dv) / length2, 0.0, 1.0) : 0.0;
        const double eu = pu - t * du, ev = pv - t * dv;
        best = std::min(best, std::sqrt(eu * eu + ev * ev) - (widths[i] + t * (widths[i + 1] - widths[i])));
      }
      return best;
    });
  }

  // A convex polygon, its points in either order.
  template <std::size_t N>
  void polygon(const Frame& frame, const std::array<Point, N>& points, const Rgb& color, double alpha) {
    double area = 0;
    for (std::size_t i = 0; i < N; ++i)
      area += points[i].u * points[(i + 1) % N].v - points[(i + 1) % N].u * points[i].v;
    const double outward = area > 0 ? 1 : -1;
    std::array<Point, N> normals;
    Point low{1e30, 1e30}, high{-1e30, -1e30};
    for (std::size_t i = 0; i < N; ++i) {
      const Point a = points[i], b = points[(i + 1) % N];
      const double du = b.u - a.u, dv = b.v - a.v, length = std::max(std::sqrt(du * du + dv * dv), 1e-12);
      normals[i] = {outward * dv / length, -outward * du / length};
      low = {std::min(low.u, a.u), std::min(low.v, a.v)};
      high = {std::max(high.u, a.u), std::max(high.v, a.v)};
    }
    fill(frame, low, high, color, alpha, 0, [&](double u, double v) {
      double d = -1e30;
      for (std::size_t i = 0; i < N; ++i)
        d = std::max(d, (u - points[i].u) * normals[i].u + (v - points[i].v) * normals[i].v);
      return d;
    });
  }

 private:
  // Calls visit(u, v, edge, pixel) for every pixel whose centre maps into [low, high] grown by the edge width.
  template <class Visit>
  void scan(const Frame& frame, Point low, Point high, double feather, Visit&& visit) {
    const double det = frame.xx * frame.yy - frame.xy * frame.yx;
    if (std::abs(det) < 1e-12) return;
    const double edge = std::max(feather, 1 / std::sqrt(std::abs(det)));
    low.u -= edge, low.v -= edge, high.u += edge, high.v += edge;
    double x_min = 1e30, x_max = -1e30, y_min = 1e30, y_max = -1e30;
    for (const Point corner : {low, high, Point{low.u, high.v}, Point{high.u, low.v}}) {
      const double x = frame.xx * corner.u + frame.xy * corner.v + frame.x0;
      const double y = frame.yx * corner.u + frame.yy * corner.v + frame.y0;
      x_min = std::min(x_min, x), x_max = std::max(x_max, x), y_min = std::min(y_min, y), y_max = std::max(y_max, y);
    }
    const int x_begin = std::max(0, int(std::floor(x_min))), x_end = std::min(size_, int(std::ceil(x_max)) + 1);
    const int y_begin = std::max(0, int(std::floor(y_min))), y_end = std::min(size_, int(std::ceil(y_max)) + 1);
    if (x_begin >= x_end || y_begin >= y_end) return;
    const double ixx = frame.yy / det, ixy = -frame.xy / det, iyx = -frame.yx / det, iyy = frame.xx / det;
    for (int y = y_begin; y < y_end; ++y) {
      const double py = y + 0.5 - frame.y0, px0 = x_begin + 0.5 - frame.x0;
      double u = ixx * px0 + ixy * py, v = iyx * px0 + iyy * py;
      float* out = pixels_.data() + (std::size_t(y) * std::size_t(size_) + std::size_t(x_begin)) * 3;
      for (int x = x_begin; x < x_end; ++x, u += ixx, v += iyx, out += 3)
        if (u >= low.u && u <= high.u && v >= low.v && v <= high.v) visit(u, v, edge, out);
    }
  }

  int size_;
  std::vector<float> pixels_;
};

// Separable Gaussian blur with clamped edges, written as whole-row sums so that they vectorize.
inline void gaussian_blur(std::vector<float>& pixels, int size, double sigma) {
  if (sigma < 0.25) return;
  const int radius = std::max(1, int(std::ceil(2.5 * sigma)));
  std::vector<float> weights(std::size_t(2 * radius + 1));
  float total = 0;
  for (int k = -radius; k <= radius; ++k)
    total += weights[std::size_t(k + radius)] = float(std::exp(-0.5 * k * k / (sigma * sigma)));
  for (float& w : weights) w /= total;
  const auto row = std::size_t(size) * 3, r = std::size_t(radius);
  std::vector<float> padded(row + 6 * r), scratch(pixels.size());
  for (std::size_t y = 0; y < std::size_t(size); ++y) {
    float* line = pixels.data() + y * row;
    std::copy_n(line, row, padded.data() + 3 * r);
    for (std::size_t k = 0; k < r; ++k) {
      std::copy_n(line, 3, padded.data() + 3 * k);
      std::copy_n(line + row - 3, 3, padded.data() + 3 * r + row + 3 * k);
    }
    float* out = scratch.data() + y * row;
    std::fill_n(out, row, 0.f);
    for (std::size_t k = 0; k < weights.size(); ++k) {
      const float w = weights[k];
      const float* in = padded.data() + 3 * k;
      for (std::size_t j = 0; j < row; ++j) out[j] += w * in[j];
    }
  }
  for (int y = 0; y < size; ++y) {
    float* out = pixels.data() + std::size_t(y) * row;
    std::fill_n(out, row, 0.f);
    for (int k = -radius; k <= radius; ++k) {
      const float w = weights[std::size_t(k + radius)];
      const float* in = scratch.data() + std::size_t(std::clamp(y + k, 0, size - 1)) * row;
      for (std::size_t j = 0; j < row; ++j) out[j] += w * in[j];
    }
  }
}

// Draws one face into a canvas. Face frame: x right, y down, the face centre
// at the origin, its top at y = -1 and its chin at y = 1.
class Painter {
 public:
  Painter(const FaceParameters& face, Canvas& canvas) : p_(face), canvas_(canvas) {
    const int size = canvas.size();
    const double unit = 0.4 * size * face.scale;
    face_frame_ = Frame::placed((0.5 + face.shift_x) * size, (0.52 + face.shift_y) * size, face.roll, unit, unit);
    image_frame_ = Frame::placed(0, 0, 0, size, size);
    for (std::size_t i = 0; i < au_numbers.size(); ++i) a_[std::size_t(au_numbers[i])] = double(face.aus[i]);
    skin_ = face.skin;
    rx_ = 0.7 * face.face_width;
  }

  void draw() {
    background();
    if (p_.hair_style == FaceParameters::long_hair) long_hair();
    body();
    ears();
    head();
    cheeks();
    nose();
    mouth();
    for (int side : {-1, 1}) eye(side);
    for (int side : {-1, 1}) brow(side);
    forehead();
    hair();
  }

 private:
  double au(int number) const { return a_[std::size_t(number)]; }

  // The frame of a feature centred at face point (x, y) standing `depth` in
  // front of the face: on a head turned by yaw it moves sideways and is
  // foreshortened like a point of a vertical cylinder. side = -1 mirrors it, so
  // that +u points away from the face's midline for features of either side.
  Frame feature(double x, double y, double depth, int side = 1) const {
    const double radius = 0.8 * p_.face_width, yaw = p_.yaw;
    const double z = std::sqrt(std::max(radius * radius - x * x, 0.04 * radius * radius));
    // Less a quarter of the midline's shift, so that the near side's features stay inside the oval.
    const double moved = x * std::cos(yaw) + (z + depth) * std::sin(yaw) - radius * std::sin(yaw) * 0.25;
    const double squash = std::max(0.3, std::cos(yaw) - x / z * std::sin(yaw));
    return face_frame_.after(Frame{squash * side, 0, moved, 0, 1, y});
  }

  void background() {
    std::vector<float>& pixels = canvas_.pixels();
    const int size = canvas_.size();
    for (int y = 0; y < size; ++y) {
      const Rgb color = mix(p_.background_top, p_.background_bottom, (y + 0.5) / size);
      for (int x = 0; x < size; ++x) {
        float* out = pixels.data() + (std::size_t(y) * std::size_t(size) + std::size_t(x)) * 3;
        out[0] = color[0], out[1] = color[1], out[2] = color[2];
      }
    }
    for (int i = 0; i < p_.clutter_count; ++i) {
      const SynthClutter& c = p_.clutter[std::size_t(i)];
      const Frame frame = image_frame_.after(Frame::placed(c.x, c.y, c.angle));
      const double w = c.width, h = c.height;
      switch (c.kind) {
        case SynthClutter::ellipse: canvas_.ellipse(frame, {0, 0}, w, h, c.color, c.alpha); break;
        case SynthClutter::rectangle:
          canvas_.fill(frame, {-w, -h}, {w, h}, c.color, c.alpha, 0,
                       [&](double u, double v) { return box_distance(u, v, w, h); });
          break;
        case SynthClutter::bar:
          canvas_.stroke(frame, std::array<Point, 2>{Point{-w, 0}, Point{w, 0}}, h * 0.3, h * 0.3, c.color, c.alpha);
          break;
      }
    }
  }

  void long_hair() { canvas_.ellipse(face_frame_, {0, 0.25}, rx_ + 0.2, 1.45, shade(p_.hair, 0.85), 1); }

  void body() {
    const Rgb neck = shade(skin_, 0.8);
    canvas_.polygon(face_frame_, std::array<Point, 4>{Point{-0.27, 0.3}, {-0.33, 1.4}, {0.33, 1.4}, {0.27, 0.3}}, neck,
                    1);
    canvas_.ellipse(face_frame_, {0, 1.66}, 1.3, 0.52, p_.clothes, 1);
    // The neckline: a V of skin into the clothes.
    canvas_.polygon(face_frame_, std::array<Point, 3>{Point{-0.25, 1.1}, {0, 1.45}, {0.25, 1.1}}, neck, 1);
  }

  void ears() {
    const double shift = -0.2 * std::sin(double(p_.yaw));
    for (int side : {-1, 1}) {
      const Point center{side * rx_ + shift, 0.04};
      canvas_.ellipse(face_frame_, center, 0.09, 0.17, shade(skin_, 0.9), 1);
      canvas_.ellipse(face_frame_, {center.u + side * 0.015, center.v}, 0.045, 0.11, shade(skin_, 0.75), 0.5, 0.02);
    }
  }

  // The face oval: an ellipse above the centre line, a tapered one below whose
  // chin a jaw drop (AU26) lowers and a chin raise (AU17) lifts.
  void head() {
    const double chin = 1.0 + 0.16 * au(26) - 0.03 * au(17), taper = 0.3 * p_.jaw, rx = rx_;
    const Ellipse top(rx, 1.0), bottom(rx, chin);
    const double inverse_chin = 1 / chin;
    const auto sdf = [&](double x, double y, double settled) {
      if (y < 0) return top.distance(x, y, settled);
      const double t = std::min(y * inverse_chin, 1.0);
      return bottom.distance(x / (1 - taper * t * t), y, settled);
    };
    // A darker rim around a lighter centre, for roundness.
    canvas_.fill_shaded(face_frame_, {-rx, -1}, {rx, chin}, shade(skin_, 0.88), skin_, 0.16, 0.12, sdf);
  }

  // Cheek apples: AU6 lifts and rounds them.
  void cheeks() {
    const double a6 = au(6);
    for (int side : {-1, 1}) {
      const Frame frame = feature(side * 0.36, 0.2 - 0.08 * a6, 0.05, side);
      canvas_.ellipse(frame, {0, 0}, 0.12, 0.075, mix(skin_, {0.85f, 0.4f, 0.4f}, 0.35), 0.15 + 0.35 * a6, 0.07);
      canvas_.ellipse(frame, {-0.02, -0.06}, 0.09, 0.045, shade(skin_, 1.12), 0.5 * a6, 0.04);
      // The lower rim of the raised cheek.
      canvas_.stroke(frame, bezier<5>({-0.1, 0.03}, {0.0, 0.1}, {0.1, 0.02}), 0.012, 0.008, shade(skin_, 0.7),
                     0.55 * a6);
    }
  }

  // Nose: AU9 wrinkles its bridge and lifts and flares its wings.
  void nose() {
    const double a9 = au(9), s = p_.nose_size, lift = 0.04 * a9;
    const Frame frame = feature(0, 0, 0.18);
    const Rgb dark = shade(skin_, 0.55);
    canvas_.stroke(frame, bezier<4>({0.07 * s, -0.26}, {0.085 * s, -0.05}, {0.09 * s, 0.12 * s}), 0.012, 0.016,
                   shade(skin_, 0.8), 0.4);
    canvas_.ellipse(frame, {0, 0.17 * s}, 0.07 * s, 0.05 * s, shade(skin_, 1.1), 0.5, 0.04);
    canvas_.ellipse(frame, {0, 0.27 * s - lift}, 0.1 * s, 0.025, shade(skin_, 0.7), 0.35, 0.02);
    for (int side : {-1, 1}) {
      canvas_.stroke(frame,
                     bezier<5>({side * 0.05 * s, 0.14 * s - lift}, {side * 0.14 * s * (1 + 0.2 * a9), 0.17 * s - lift},
                               {side * 0.07 * s, 0.27 * s - lift}),
                     0.012, 0.014, dark, 0.5 + 0.2 * a9);
      canvas_.ellipse(frame, {side * 0.05 * s, 0.25 * s - lift}, 0.03 * s * (1 + 0.35 * a9), 0.015, shade(skin_, 0.3),
                      0.9);
    }
    for (int k = 0; k < 3; ++k) {
      const double y = -0.14 + 0.045 * k;
      canvas_.stroke(frame, bezier<4>({-0.075, y + 0.015}, {0, y - 0.02}, {0.075, y + 0.015}), 0.01, 0.01, dark,
                     0.7 * a9);
    }
  }

  // Mouth: AU12 pulls the corners up and out, AU15 pulls them down, AU20
  // stretches the mouth wide, AU23 thins the lips, AU17 pushes the lower lip
  // and chin up, AU25 parts the lips, AU26 drops the jaw; AU9 lifts the upper lip.
  void mouth() {
    const double a9 = au(9), a12 = au(12), a15 = au(15), a17 = au(17), a20 = au(20), a23 = au(23), a25 = au(25),
                 a26 = au(26);
    const double width = 0.25 * p_.mouth_width * (1 + 0.28 * a20 + 0.14 * a12 - 0.14 * a23 - 0.06 * a17);
    const double corner = -0.13 * a12 + 0.11 * a15 + 0.02 * a20, middle = -0.035 * a17;
    const double gap = a25 * (0.07 + 0.24 * a26), drop = 0.16 * a26;
    const double thin = (1 - 0.65 * a23) * (1 - 0.3 * a20) * (1 - 0.2 * a12);
    const double upper = 0.05 * p_.lip_thickness * thin * (1 + 0.3 * a9);
    const double lower = 0.07 * p_.lip_thickness * thin * (1 + 0.4 * a17) * (1 + 0.5 * a26 * (1 - a25));
    const double squareness = 2 + 3 * a20;
    const Frame frame = feature(0, 0.5, 0.12);

    const auto line = [=](double t) { return middle * (1 - t * t) + corner * t * t; };
    const auto opening = [=](double t) { return std::sqrt(std::max(0.0, 1 - std::pow(std::abs(t), squareness))); };
    const auto inner_top = [=](double t) { return line(t) - 0.3 * gap * opening(t); };
    const auto inner_bottom = [=](double t) { return line(t) + 0.7 * gap * opening(t); };
    const auto outer_top = [=](double t) {
      const double bow = 1 - 0.3 * std::exp(-t * t / 0.03);
      return inner_top(t) - (upper * bow + 0.03 * a9) * std::pow(1 - t * t, 0.6);
    };
    const auto outer_bottom = [=](double t) { return inner_bottom(t) + lower * std::pow(1 - t * t, 0.55); };
    const auto band = [=](auto&& top, auto&& bottom, double half_width) {
      return [=](double u, double v) {
        const double t = std::clamp(u / width, -1.0, 1.0);
        return std::max({top(t) - v, v - bottom(t), std::abs(u) - half_width});
      };
    };
    const double top_v = std::min({outer_top(0), corner, middle}) - 0.05, bottom_v = outer_bottom(0) + 0.05;
    const Point low{-width - 0.05, top_v}, high{width + 0.05, std::max(bottom_v, corner + 0.05)};

    // Folds and chin first: the lips are drawn over them.
    const Rgb crease = shade(skin_, 0.62);
    for (int side : {-1, 1}) {
      const double end_u = side * (width + 0.045), end_v = corner + 0.07;
      canvas_.stroke(frame, bezier<6>({side * 0.14, -0.26}, {side * (width + 0.1), -0.16}, {end_u, end_v}), 0.011,
                     0.014, crease, 0.15 + 0.45 * a12 + 0.3 * a9 + 0.15 * au(6) + 0.1 * a20);
    }
    const double chin_v = outer_bottom(0) + 0.09 + 0.7 * drop * (1 - a25) - 0.035 * a17;
    canvas_.stroke(
        frame, bezier<5>({-0.11, chin_v - 0.02 - 0.02 * a17}, {0, chin_v + 0.03}, {0.11, chin_v - 0.02 - 0.02 * a17}),
        0.012, 0.012, crease, 0.18 + 0.5 * a17);
    const double boss_v = 0.33 + drop - 0.05 * a17;
    canvas_.ellipse(frame, {0, boss_v}, 0.13, 0.075, shade(skin_, 1.12), 0.5 * a17, 0.05);
    for (const Point dimple : {Point{-0.05, boss_v - 0.01}, Point{0.04, boss_v + 0.02}, Point{-0.01, boss_v + 0.04},
                               Point{0.06, boss_v - 0.025}})
      canvas_.ellipse(frame, dimple, 0.012, 0.012, crease, 0.5 * a17);

    const Rgb lip = mix(shade(skin_, 0.9), {0.72f, 0.27f, 0.3f}, 0.45);
    if (gap > 0.002) {
      canvas_.fill(frame, low, high, {0.25f, 0.07f, 0.08f}, 1, 0, band(inner_top, inner_bottom, width));
      const auto teeth_bottom = [=](double t) { return std::min(inner_top(t) + 0.05, inner_bottom(t)); };
      canvas_.fill(frame, low, high, {0.94f, 0.92f, 0.86f}, 1, 0, band(inner_top, teeth_bottom, 0.8 * width));
    }
    canvas_.fill(frame, low, high, shade(lip, 0.92), 1, 0, band(outer_top, inner_top, width));
    canvas_.fill(frame, low, high, lip, 1, 0, band(inner_bottom, outer_bottom, width));
    // The line between closed lips, running a little past the corners so that they read.
    std::array<Point, 9> seam;
    for (std::size_t i = 0; i < seam.size(); ++i) {
      const double t = -1.08 + 2.16 * double(i) / double(seam.size() - 1);
      seam[i] = {t * width,
                 line(std::clamp(t, -1.0, 1.0)) + (std::abs(t) > 1 ? (corner - middle) * 2 * (std::abs(t) - 1) : 0)};
    }
    canvas_.stroke(frame, seam, 0.012, 0.012, mix(lip, {0.2f, 0.05f, 0.05f}, 0.7),
                   0.85 * std::clamp(1 - gap / 0.03, 0.0, 1.0));
    for (int side : {-1, 1})
      canvas_.ellipse(frame, {side * width, corner}, 0.018, 0.018, mix(lip, {0.2f, 0.05f, 0.05f}, 0.6), 0.7);
  }

  // Eye: AU5 raises the upper lid, AU7 tightens the lids (lower lid up and
  // straight), AU6 pushes the lower lid up from below with crow's feet, AU43
  // closes the eye.
  void eye(int side) {
    const double a5 = au(5), a6 = au(6), a7 = au(7), a43 = au(43), size = p_.eye_size;
    const double width = 0.135 * size;
    const double lid_up = 0.065 * size * (1 + 1.0 * a5) * (1 - 0.35 * a7) * (1 - 0.15 * a6);
    const double lid_down = 0.045 * size * (1 + 0.3 * a5) * (1 - 0.7 * a7) * (1 - 0.6 * a6);
    const double closed = a43;
    const Frame frame = feature(side * 0.28 * p_.eye_spacing, -0.1, 0.0, side);

    const auto lower = [=](double t) { return lid_down * (1 - t * t) * (1 + 0.15 * t); };
    const auto upper_open = [=](double t) { return -lid_up * (1 - t * t) * (1 - 0.12 * t); };
    const auto upper = [=](double t) { return (1 - closed) * upper_open(t) + closed * 0.75 * lower(t); };
    const auto inside = [=](double u, double v) {
      const double t = std::clamp(u / width, -1.0, 1.0);
      return std::max({upper(t) - v, v - lower(t), std::abs(u) - width});
    };
    const Point low{-width, -lid_up - 0.01}, high{width, lid_down + 0.01};
    const Rgb dark = mix(p_.hair, {0.05f, 0.04f, 0.04f}, 0.7);

    // Socket shadow and upper-lid crease, which a raised lid (AU5) hides.
    canvas_.ellipse(frame, {0, -0.05}, 0.19 * size, 0.1 * size, shade(skin_, 0.82), 0.35, 0.06);
    canvas_.stroke(frame,
                   bezier<5>({-0.9 * width, -0.4 * lid_up - 0.035}, {0, upper_open(0) * 1.9 - 0.045},
                             {1.05 * width, -0.3 * lid_up - 0.03}),
                   0.008, 0.01, shade(skin_, 0.6), 0.5 * (1 - 0.8 * a5));

    canvas_.fill(frame, low, high, {0.95f, 0.94f, 0.91f}, 1, 0, inside);
    const double iris = 0.062 * size, ix = side * 0.035 * p_.gaze_x, iy = 0.012 + p_.gaze_y * 0.012;
    canvas_.fill(frame, {ix - iris, iy - iris}, {ix + iris, iy + iris}, p_.iris, 1, 0, [&](double u, double v) {
      return std::max(std::sqrt((u - ix) * (u - ix) + (v - iy) * (v - iy)) - iris, inside(u, v));
    });
    canvas_.fill(frame, {ix - iris, iy - iris}, {ix + iris, iy + iris}, {0.03f, 0.03f, 0.03f}, 1, 0,
                 [&](double u, double v) {
                   return std::max(std::sqrt((u - ix) * (u - ix) + (v - iy) * (v - iy)) - 0.45 * iris, inside(u, v));
                 });

    // Lash line along the upper lid, flicking past the outer corner.
    std::array<Point, 9> lash;
    for (std::size_t i = 0; i < 8; ++i) {
      const double t = -1 + 2 * double(i) / 7;
      lash[i] = {t * width, upper(t)};
    }
    lash[8] = {1.2 * width, upper(1) - 0.02 * (1 - closed)};
    canvas_.stroke(frame, lash, 0.012, 0.02, dark, 0.95);
    std::array<Point, 7> lid;
    for (std::size_t i = 0; i < lid.size(); ++i) {
      const double t = -1 + 2 * double(i) / double(lid.size() - 1);
      lid[i] = {t * width, lower(t) + 0.005};
    }
    canvas_.stroke(frame, lid, 0.007 + 0.008 * a7, 0.007 + 0.008 * a7, shade(skin_, 0.55), 0.35 + 0.45 * a7);

    // Below the eye: the bulge of a raised cheek (AU6) and crow's feet.
    canvas_.stroke(frame,
                   bezier<5>({-0.8 * width, lid_down + 0.06}, {0.1 * width, lid_down + 0.1 - 0.03 * a6},
                             {1.0 * width, lid_down + 0.04}),
                   0.01, 0.01, shade(skin_, 0.65), 0.15 + 0.5 * a6);
    for (const double slope : {-0.5, 0.0, 0.5})
      canvas_.stroke(frame, std::array<Point, 2>{Point{width + 0.03, slope * 0.02}, {width + 0.11, slope * 0.09}},
                     0.008, 0.006, shade(skin_, 0.6), 0.65 * a6);
  }

  // Brow: AU1 raises its inner end, AU2 its outer part, AU4 lowers it and
  // pulls it towards the midline.
  void brow(int side) {
    const double a1 = au(1), a2 = au(2), a4 = au(4), t = p_.brow_thickness;
    const Frame frame = feature(side * 0.28 * p_.eye_spacing, -0.36, 0.02, side);
    const Point inner{-0.17 - 0.06 * a4, 0.02 - 0.15 * a1 + 0.1 * a4 - 0.02 * a2};
    const Point middle{0.0, -0.09 - 0.05 * a1 - 0.12 * a2 + 0.08 * a4};
    const Point outer{0.18, 0.0 - 0.12 * a2 + 0.07 * a4 + 0.02 * a1};
    const Rgb color = mix(p_.hair, {0.06f, 0.05f, 0.04f}, 0.45);
    canvas_.stroke(frame, bezier<7>(inner, middle, outer), 0.038 * t, 0.02 * t, color, 0.95);
  }

  // Forehead lines: AU1 draws them in the middle, AU2 at the sides; AU4 draws
  // vertical furrows between the brows.
  void forehead() {
    const double a1 = au(1), a2 = au(2), a4 = au(4);
    const Frame frame = feature(0, -0.6, 0.02);
    const Rgb line = shade(skin_, 0.62);
    for (int k = 0; k < 2; ++k) {
      const double v = -0.085 * k;
      canvas_.stroke(frame, bezier<5>({-0.17, v + 0.01}, {0, v - 0.03}, {0.17, v + 0.01}), 0.009, 0.009, line,
                     0.6 * a1);
      for (int side : {-1, 1})
        canvas_.stroke(frame, bezier<5>({side * 0.13, v}, {side * 0.27, v - 0.04}, {side * 0.4, v + 0.03}), 0.009,
                       0.007, line, 0.6 * a2);
    }
    const Frame glabella = feature(0, -0.33, 0.05);
    for (int side : {-1, 1})
      canvas_.stroke(glabella, bezier<4>({side * 0.03, -0.08}, {side * 0.045, -0.02}, {side * 0.035, 0.05}), 0.01, 0.01,
                     line, 0.75 * a4);
  }

  // Hair over the top of the head, bounded below by the hairline.
  void hair() {
    if (p_.hair_style == FaceParameters::bald) return;
    const double part = p_.hair_style == FaceParameters::side_part ? 0.12 : 0.0, rx = rx_ + 0.07;
    const double line = p_.hairline;
    const Ellipse crown(rx, 0.97), sheen(0.3, 0.1);
    const double inverse_width = 1 / rx_;
    const auto cap = [&](double x, double y, double settled) {
      const double q = x * inverse_width;
      const double hairline = std::min(line + 0.45 * q * q + part * q, 0.0);
      return std::max(crown.distance(x, y + 0.32, settled), y - hairline);
    };
    canvas_.fill(face_frame_, {-rx, -1.3}, {rx, 0.0}, p_.hair, 1, 0, cap);
    // A sheen and a few strands, so that the cap reads as hair rather than a hat.
    canvas_.fill(face_frame_, {-0.6, -1.3}, {0.3, -0.7}, mix(p_.hair, {1, 1, 1}, 0.2), 0.45, 0.08,
                 [&](double x, double y, double settled) {
                   return std::max(cap(x, y, settled), sheen.distance(x + 0.18, y + 1.02, settled));
                 });
    const Rgb strand = shade(p_.hair, 0.6);
    for (const double x : {-0.45, -0.15, 0.2, 0.5})
      canvas_.stroke(face_frame_, bezier<5>({x * 0.4 + part, -1.2}, {x * 0.9, -1.05}, {x, line + 0.1 + 0.3 * x * x}),
                     0.012, 0.012, strand, 0.4);
  }

  const FaceParameters& p_;
  Canvas& canvas_;
  Frame face_frame_, image_frame_;
  std::array<double, 44> a_{};  // intensity by AU number
  Rgb skin_;
  double rx_;
};

}  // namespace synth_detail

class SyntheticFaces {
 public:
  explicit SyntheticFaces(SynthOptions options) : options_(options) {
    validate(options_);
    key_ = synth_detail::stream_key(options_.seed, options_.domain);
  }

  const SynthOptions& options() const { return options_; }

  // The face drawn for `index`: its expression, AU intensities, identity and scene.
  FaceParameters parameters(std::uint64_t index) const {
    FaceParameters face;
    draw_expression(face, index);
    draw_identity(face, index);
    draw_scene(face, index);
    return face;
  }

  // Face `index`'s expression and AU intensities alone (identity and scene
  // left at their defaults): what labels and the oracle need, for a fraction
  // of the draws.
  FaceParameters expression(std::uint64_t index) const {
    FaceParameters face;
    draw_expression(face, index);
    return face;
  }

  // The labels of face `index` as its domain provides them, without drawing its identity or scene.
  Labels labels(std::uint64_t index) const { return synth_labels(expression(index), options_.domain); }

  // The face at options().size, as 8-bit RGB; a pure function of the parameters and the size.
  Image render(const FaceParameters& face) const { return render_face(face, options_.size); }

  // The same at any size (16..1024).

  static Image render_face(const FaceParameters& face, int size) {
    CUMTL_REQUIRE(size >= 16 && size <= 1024, "render: size must be in 16..1024, got ", size);
    CUMTL_REQUIRE(face.clutter_count >= 0 && face.clutter_count <= int(face.clutter.size()),
                  "render: FaceParameters::clutter_count must be in 0..", face.clutter.size(), ", got ",
                  face.clutter_count);
    synth_detail::Canvas canvas(size);
    synth_detail::Painter(face, canvas).draw();
    std::vector<float>& pixels = canvas.pixels();
    synth_detail::gaussian_blur(pixels, size, double(face.blur) * size / 64.0);

    Image image(size, size, 3);
    const double gx = std::cos(double(face.light_angle)) * 2 * face.light_gradient / size,
                 gy = std::sin(double(face.light_angle)) * 2 * face.light_gradient / size;
    // Uniform noise of σ `noise` from one random byte per value.
    const float noise_scale = face.noise * 3.4641016f / 256.f;
    // Per row: the noise of each value, then one plain loop over the row.
    const auto row = std::size_t(size) * 3;
    std::vector<float> noise(row, 0.f);
    std::array<std::uint8_t, 16> bytes{};
    const float tint[3] = {face.tint[0], face.tint[1], face.tint[2]};
    const auto step = float(face.brightness * gx);
    for (int y = 0; y < size; ++y) {
      if (face.noise > 0) {
        // Value k of the image (row-major HWC) takes byte k mod 16 of Philox block k / 16.
        const std::uint64_t first = std::uint64_t(y) * std::uint64_t(size) * 3;
        std::uint64_t block_index = first / 16;
        std::size_t offset = std::size_t(first % 16);
        const auto load = [&] {
          const kernels::PhiloxBlock block = kernels::philox_at(face.noise_key, block_index);
          for (std::size_t b = 0; b < 16; ++b) bytes[b] = std::uint8_t(block.word[b / 4] >> (8 * (b % 4)));
        };
        load();
        for (std::size_t j = 0; j < row; ++j) {
          noise[j] = (float(bytes[offset]) - 127.5f) * noise_scale;
          if (++offset == 16) offset = 0, ++block_index, load();
        }
      }
      const float* in = pixels.data() + std::size_t(y) * row;
      std::uint8_t* out = image.pixels.data() + std::size_t(y) * row;
      auto light = float(face.brightness * (1 + gy * (y + 0.5 - size / 2.0) + gx * (0.5 - size / 2.0)));
      for (std::size_t j = 0; j < row; j += 3, light += step)
        for (std::size_t c = 0; c < 3; ++c) {
          const float value = in[j + c] * light * tint[c] + noise[j + c];
          out[j + c] = std::uint8_t(std::min(std::max(value, 0.f), 1.f) * 255.f + 0.5f);
        }
    }
    return image;
  }

  // Render plus the labels its domain provides; source "synth:<domain>:<index>".
  Sample sample(std::uint64_t index) const {
    const FaceParameters face = parameters(index);
    Sample sample;
    sample.source = "synth:" + std::string(name_of(options_.domain)) + ":" + std::to_string(index);
    sample.domain = std::string(name_of(options_.domain));
    sample.image = render(face);
    sample.labels = synth_labels(face, options_.domain);
    return sample;
  }

 private:
  synth_detail::Draws draws(std::uint64_t index, synth_detail::Section section) const {
    return {key_,
            index * synth_detail::counters_per_face + std::uint64_t(section) * synth_detail::counters_per_section};
  }

  void draw_expression(FaceParameters& face, std::uint64_t index) const {
    synth_detail::Draws draw = draws(index, synth_detail::expression_section);
    ExpressionPrototype prototype;
    if (draw.uniform() < options_.compound_fraction) {
      face.emotion = -1;
      face.compound = draw.below(int(compound_names.size()));
      prototype = compound_prototype(face.compound);
    } else {
      double total = 0;
      for (double weight : options_.emotion_weights) total += weight;
      double pick = draw.uniform() * total;
      face.emotion = 0;
      for (std::size_t e = 0; e < options_.emotion_weights.size(); ++e) {
        if (options_.emotion_weights[e] <= 0) continue;
        face.emotion = int(e);
        if (pick < options_.emotion_weights[e]) break;
        pick -= options_.emotion_weights[e];
      }
      face.compound = -1;
      prototype = emotion_prototypes[std::size_t(face.emotion)];
    }
    const double expressiveness = draw.uniform(0.2, 1.0);
    for (std::size_t i = 0; i < au_numbers.size(); ++i) {
      const unsigned bit = 1u << i;
      const double state = draw.uniform(), strength = draw.uniform(0.6, 1.0), trace = draw.uniform();
      const double probability = (prototype.core & bit)       ? 1 - options_.au_dropout
                                 : (prototype.likely & bit)   ? prototype_likely_probability
                                 : (prototype.possible & bit) ? prototype_possible_probability
                                                              : options_.au_extra;
      const double intensity = state < probability ? 0.35 + 0.65 * expressiveness * strength : trace < 0.2 ? trace : 0;
      face.aus[i] = float(intensity);
    }
  }

  void draw_identity(FaceParameters& face, std::uint64_t index) const {
    synth_detail::Draws draw = draws(index, synth_detail::identity_section);
    face.face_width = draw.uniformf(0.88, 1.1);
    face.jaw = draw.uniformf(0.1, 1.0);
    face.eye_spacing = draw.uniformf(0.92, 1.08);
    face.eye_size = draw.uniformf(0.88, 1.15);
    face.brow_thickness = draw.uniformf(0.8, 1.35);
    face.mouth_width = draw.uniformf(0.88, 1.12);
    face.lip_thickness = draw.uniformf(0.75, 1.3);
    face.nose_size = draw.uniformf(0.85, 1.15);
    const double tone = draw.uniform();
    face.skin = synth_detail::mix({0.96f, 0.8f, 0.69f}, {0.34f, 0.22f, 0.15f}, tone * tone * 0.6 + tone * 0.4);
    for (float& c : face.skin) c = std::clamp(c + draw.uniformf(-0.03, 0.03), 0.f, 1.f);
    static constexpr std::array<FaceParameters::Rgb, 7> hair_colors{{{0.07f, 0.05f, 0.04f},
                                                                     {0.16f, 0.1f, 0.06f},
                                                                     {0.33f, 0.2f, 0.1f},
                                                                     {0.78f, 0.64f, 0.4f},
                                                                     {0.55f, 0.24f, 0.1f},
                                                                     {0.6f, 0.6f, 0.6f},
                                                                     {0.1f, 0.08f, 0.07f}}};
    face.hair = hair_colors[std::size_t(draw.below(int(hair_colors.size())))];
    static constexpr std::array<FaceParameters::Rgb, 5> iris_colors{
        {{0.25f, 0.14f, 0.07f}, {0.1f, 0.07f, 0.05f}, {0.3f, 0.45f, 0.65f}, {0.35f, 0.45f, 0.3f}, {0.4f, 0.3f, 0.15f}}};
    face.iris = iris_colors[std::size_t(draw.below(int(iris_colors.size())))];
    face.clothes = {draw.uniformf(0.05, 0.9), draw.uniformf(0.05, 0.9), draw.uniformf(0.05, 0.9)};
    const double style = draw.uniform();
    face.hair_style = style < 0.35  ? FaceParameters::short_hair
                      : style < 0.7 ? FaceParameters::long_hair
                      : style < 0.8 ? FaceParameters::bald
                                    : FaceParameters::side_part;
    face.hairline = draw.uniformf(-0.9, -0.78);
    face.gaze_x = float(draw.normal(0.35, 1));
    face.gaze_y = float(draw.normal(0.35, 1));
  }

  void draw_scene(FaceParameters& face, std::uint64_t index) const {
    synth_detail::Draws draw = draws(index, synth_detail::scene_section);
    const bool wild = options_.domain != SynthDomain::emotionet;
    face.roll = float(wild ? draw.normal(0.16, 0.35) : draw.normal(0.05, 0.15));
    face.yaw = float(wild ? draw.normal(0.18, 0.4) : draw.normal(0.06, 0.2));
    face.scale = wild ? draw.uniformf(0.82, 1.1) : draw.uniformf(0.92, 1.05);
    face.shift_x = float(wild ? draw.normal(0.045, 0.1) : draw.normal(0.015, 0.04));
    face.shift_y = float(wild ? draw.normal(0.045, 0.1) : draw.normal(0.015, 0.04));
    face.brightness = wild ? draw.uniformf(0.6, 1.25) : draw.uniformf(0.9, 1.1);
    face.light_gradient = wild ? draw.uniformf(0, 0.45) : draw.uniformf(0, 0.15);
    face.light_angle = draw.uniformf(0, 6.283185307179586);
    for (float& c : face.tint) c = float(1 + (wild ? draw.normal(0.07, 0.2) : draw.normal(0.025, 0.08)));
    // Colours of natural scenes are rarely saturated: a grey of random lightness, tinted a random amount.
    const auto color = [&](double low, double high) {
      const double grey = draw.uniform(low, high), saturation = draw.uniform(0, 0.6);
      const FaceParameters::Rgb hue{draw.uniformf(0, 1), draw.uniformf(0, 1), draw.uniformf(0, 1)};
      return synth_detail::mix({float(grey), float(grey), float(grey)}, hue, saturation);
    };
    face.background_top = wild ? color(0.05, 0.95) : color(0.6, 0.95);
    face.background_bottom =
        wild ? color(0.05, 0.95) : synth_detail::mix(face.background_top, color(0.4, 0.8), draw.uniform(0, 0.5));
    face.clutter_count = wild ? 2 + draw.below(7) : draw.below(3);
    for (int i = 0; i < face.clutter_count; ++i) {
      SynthClutter& c = face.clutter[std::size_t(i)];
      c.kind = SynthClutter::Kind(draw.below(3));
      c.x = draw.uniformf(-0.05, 1.05);
      c.y = draw.uniformf(-0.05, 1.05);
      c.width = draw.uniformf(0.04, 0.3);
      c.height = draw.uniformf(0.04, 0.3);
      c.angle = draw.uniformf(0, 3.141592653589793);
      c.alpha = wild ? draw.uniformf(0.5, 1.0) : draw.uniformf(0.1, 0.3);
      c.color = color(0.0, 1.0);
    }
    face.blur = wild ? draw.uniformf(0, 0.8) : draw.uniformf(0, 0.4);
    face.noise = wild ? draw.uniformf(0.005, 0.04) : draw.uniformf(0.003, 0.02);
    face.noise_key = draw.bits();
  }

  SynthOptions options_;
  std::uint64_t key_ = 0;
};

// A face is a pure function of its index, and drawing one costs far more than
// keeping it (at 64 px, about a tenth of a millisecond against 12 KB), so a
// dataset whose images fit in synth_cache_bytes keeps every face it has drawn:
// from the second epoch on, loading one is a copy.
inline constexpr std::size_t synth_cache_bytes = std::size_t(1) << 30;

class SyntheticDataset final : public Dataset {
 public:
  SyntheticDataset(SynthOptions options, std::size_t count) : faces_(options), count_(count) {
    const std::size_t face_bytes = std::size_t(options.size) * std::size_t(options.size) * 3;
    if (count_ <= synth_cache_bytes / face_bytes) cache_ = std::make_unique<CachedSample[]>(count_);
  }

  std::string name() const override { return "synth-" + std::string(name_of(faces_.options().domain)); }
  std::size_t size() const override { return count_; }
  Sample load(std::size_t index) const override {
    CUMTL_REQUIRE(index < count_, name(), ": index ", index, " is out of range (size ", count_, ")");
    if (!cache_) return faces_.sample(index);
    CachedSample& cached = cache_[index];
    std::call_once(cached.drawn, [&] { cached.sample = faces_.sample(index); });
    return cached.sample;
  }
  Labels labels(std::size_t index) const override {
    CUMTL_REQUIRE(index < count_, name(), ": index ", index, " is out of range (size ", count_, ")");
    return faces_.labels(index);
  }
  const SyntheticFaces& faces() const { return faces_; }

 private:
  struct CachedSample {
    std::once_flag drawn;
    Sample sample;
  };

  SyntheticFaces faces_;
  std::size_t count_;
  std::unique_ptr<CachedSample[]> cache_;  // null when the faces would not fit in synth_cache_bytes
};

// The emotion an oracle names from the AUs present: the prototype at the
// smallest Hamming distance over the AUs it constrains (its optional AUs are
// free); ties go to the prototype with more core AUs (a dropped AU is likelier
// than an extra one), then to the lower emotion index.
inline int oracle_emotion(const std::array<float, au_numbers.size()>& aus) {
  unsigned present = 0;
  for (std::size_t i = 0; i < aus.size(); ++i)
    if (aus[i] >= au_present_threshold) present |= 1u << i;
  int best = 0, best_distance = 1 << 20, best_size = -1;
  for (std::size_t e = 0; e < emotion_prototypes.size(); ++e) {
    const ExpressionPrototype& prototype = emotion_prototypes[e];
    const unsigned free = unsigned(prototype.likely | prototype.possible);
    const int distance = std::popcount((present ^ prototype.core) & ~free & ((1u << au_numbers.size()) - 1));
    const int size = std::popcount(unsigned(prototype.core));
    if (distance < best_distance || (distance == best_distance && size > best_size)) {
      best = int(e), best_distance = distance, best_size = size;
    }
  }
  return best;
}

// The oracle's accuracy over the basic-emotion faces among the first `count`
// faces of `options`: the ceiling on emotion accuracy from the true AUs alone.
inline double oracle_accuracy(const SynthOptions& options, int count) {
  CUMTL_REQUIRE(count > 0, "oracle_accuracy: count must be positive, got ", count);
  const SyntheticFaces faces(options);
  int right = 0, total = 0;
  for (int i = 0; i < count; ++i) {
    const FaceParameters face = faces.expression(std::uint64_t(i));
    if (face.compound >= 0) continue;
    ++total;
    right += oracle_emotion(face.aus) == face.emotion;
  }
  return total == 0 ? 0.0 : double(right) / total;
}

inline double oracle_accuracy(SynthDomain domain, std::uint64_t seed, int count) {
  SynthOptions options;
  options.domain = domain;
  options.seed = seed;
  return oracle_accuracy(options, count);
}

// A grid of frontal studio faces of face_size pixels: one row per basic emotion
// and per compound expression (15 people, prototype AUs core and likely at full
// intensity), then one row with each AU of au_numbers alone on the first person.
inline Image contact_sheet(int face_size = 64) {
  constexpr int columns = int(au_numbers.size());
  constexpr int rows = int(emotion_names.size() + compound_names.size()) + 1;
  SynthOptions options;
  options.size = face_size;
  const SyntheticFaces faces(options);
  Image sheet(rows * face_size, columns * face_size, 3);
  const auto paste = [&](const Image& face, int row, int column) {
    for (int y = 0; y < face_size; ++y)
      std::copy_n(face.at(y, 0), std::size_t(face_size) * 3, sheet.at(row * face_size + y, column * face_size));
  };
  const auto show = [&](FaceParameters face, unsigned aus) {
    make_frontal(face);
    for (std::size_t i = 0; i < au_numbers.size(); ++i) face.aus[i] = (aus >> i) & 1u ? 1.f : 0.f;
    return faces.render(face);
  };
  for (int row = 0; row + 1 < rows; ++row) {
    const ExpressionPrototype prototype = row < int(emotion_names.size())
                                              ? emotion_prototypes[std::size_t(row)]
                                              : compound_prototype(row - int(emotion_names.size()));
    for (int column = 0; column < columns; ++column)
      paste(show(faces.parameters(std::uint64_t(column)), prototype.core | prototype.likely), row, column);
  }
  for (int column = 0; column < columns; ++column) paste(show(faces.parameters(0), 1u << column), rows - 1, column);
  return sheet;
}

}  // namespace cumtl::data
