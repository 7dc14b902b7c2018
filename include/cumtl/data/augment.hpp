#pragma once
// Training augmentation and the evaluation resize, on the host (they run on the
// loader's worker threads, one image at a time). Both always produce a square
// RGB image; a grey source is replicated into the three channels and a fourth
// (alpha) channel is ignored.
//
// augment() draws its parameters from Philox4x32-10 at (seed, counter), so an
// image's augmentation depends on nothing but those two numbers: the same on
// every thread, in every run, in any order. The crop, scale, flip and rotation
// compose into one affine map from output to source pixels, sampled once with
// bilinear interpolation (edges replicated), so no intermediate image is made
// and the image is interpolated only once. Brightness and contrast then act
// through a 256-entry table.
//
// Crops are measured against the largest centred square of the source: a scale
// of 1 with aspect 1 is that square, which is what center_resize() takes. A crop
// whose sampled aspect does not fit the image is shrunk until it does.
//
// Bilinear sampling aliases when it shrinks by more than 2×, as a large photo
// cropped to 64×64 would; the source is then first box-averaged by the whole
// factor k = ⌊crop side / output side⌋, which costs one pass over the source.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <vector>

#include "cumtl/core/error.hpp"
#include "cumtl/data/sample.hpp"
#include "cumtl/kernels/random.cuh"

namespace cumtl::data {

struct AugmentOptions {
  int size = 64;                                  // output height and width
  std::array<double, 2> scale{0.80, 1.0};         // crop area over the centred square's area, uniform in [lo, hi]
  std::array<double, 2> aspect{0.90, 1.0 / 0.9};  // crop width over height, log-uniform in [lo, hi]
  double flip_probability = 0.5;                  // horizontal mirror
  double rotation_degrees = 10;                   // uniform in [−r, r]
  double brightness = 0.2;                        // pixel values times a factor uniform in [1 − b, 1 + b]
  double contrast = 0.2;  // distance to the mean grey level times a factor uniform in [1 − c, 1 + c]

  // Nothing random: the centred square resized to `size` (what center_resize does).
  static AugmentOptions none(int size) {
    AugmentOptions options;
    options.size = size;
    options.scale = {1, 1};
    options.aspect = {1, 1};
    options.flip_probability = 0;
    options.rotation_degrees = 0;
    options.brightness = 0;
    options.contrast = 0;
    return options;
  }
};

namespace detail {

inline void validate(const AugmentOptions& options) {
  CUMTL_REQUIRE(options.size >= 1 && options.size <= 16384, "AugmentOptions: output size ", options.size);
  CUMTL_REQUIRE(options.scale[0] > 0 && options.scale[0] <= options.scale[1] && options.scale[1] <= 1,
                "AugmentOptions: scale range [", options.scale[0], ", ", options.scale[1],
                "], expected 0 < lo <= hi <= 1");
  CUMTL_REQUIRE(options.aspect[0] > 0 && options.aspect[0] <= options.aspect[1] && std::isfinite(options.aspect[1]),
                "AugmentOptions: aspect range [", options.aspect[0], ", ", options.aspect[1],
                "], expected 0 < lo <= hi");
  CUMTL_REQUIRE(options.flip_probability >= 0 && options.flip_probability <= 1, "AugmentOptions: flip probability ",
                options.flip_probability, ", expected [0, 1]");
  CUMTL_REQUIRE(options.rotation_degrees >= 0 && options.rotation_degrees <= 180, "AugmentOptions: rotation ",
                options.rotation_degrees, " degrees, expected [0, 180]");
  CUMTL_REQUIRE(options.brightness >= 0 && options.brightness < 1, "AugmentOptions: brightness ", options.brightness,
                ", expected [0, 1)");
  CUMTL_REQUIRE(options.contrast >= 0 && options.contrast < 1, "AugmentOptions: contrast ", options.contrast,
                ", expected [0, 1)");
}

inline void validate(const Image& image) {
  // Positions are 11-bit fixed point in an int (sample_bilinear).
  CUMTL_REQUIRE(image.height >= 1 && image.width >= 1 && image.height <= (1 << 19) && image.width <= (1 << 19),
                "image of ", image.height, "x", image.width, " pixels");
  CUMTL_REQUIRE(image.channels == 1 || image.channels == 3 || image.channels == 4, "image with ", image.channels,
                " channels, expected 1 (grey), 3 (RGB) or 4 (RGBA)");
  CUMTL_REQUIRE(
      image.pixels.size() == std::size_t(image.height) * std::size_t(image.width) * std::size_t(image.channels),
      "image of ", image.height, "x", image.width, "x", image.channels, " holds ", image.pixels.size(), " bytes");
}

// Where an output pixel looks in the source: the crop's centre and sides in
// source pixels (edges at integers), its rotation and whether it is mirrored.
struct Crop {
  double center_x = 0, center_y = 0, width = 0, height = 0;
  double radians = 0;
  bool flip = false;
};

inline Crop centred_square(const Image& image) {
  const double side = std::min(image.width, image.height);
  return Crop{image.width / 2.0, image.height / 2.0, side, side, 0, false};
}

// `image` box-averaged over k×k blocks (a remainder row or column is dropped).
// Rows are summed first, a contiguous loop the compiler vectorizes, then k
// neighbouring columns of the row sums.
inline Image box_shrink(const Image& image, int k) {
  Image small(image.height / k, image.width / k, image.channels);
  const int c = image.channels;
  const std::size_t row_length = std::size_t(small.width) * std::size_t(k) * std::size_t(c);
  std::vector<std::uint32_t> column_sums(row_length);
  const std::uint32_t area = std::uint32_t(k * k);
  for (int y = 0; y < small.height; ++y) {
    std::fill(column_sums.begin(), column_sums.end(), 0u);
    for (int dy = 0; dy < k; ++dy) {
      const std::uint8_t* row = image.at(y * k + dy, 0);
      for (std::size_t i = 0; i < row_length; ++i) column_sums[i] += row[i];
    }
    std::uint8_t* out = small.at(y, 0);
    for (int x = 0; x < small.width; ++x)
      for (int ch = 0; ch < c; ++ch) {
        std::uint32_t sum = 0;
        for (int dx = 0; dx < k; ++dx) sum += column_sums[std::size_t((x * k + dx) * c + ch)];
        out[x * c + ch] = std::uint8_t((sum + area / 2) / area);
      }
  }
  return small;
}

// Output pixel (u, v) reads the source at (x0 + u·x_du + v·x_dv, y0 + u·y_du + v·y_dv).
struct PixelMap {
  float x0, y0, x_du, y_du, x_dv, y_dv;
};

// Bilinear samples, the image's edge replicated outside it, into size×size RGB.
// This loop is where a loader thread spends most of its time, so a position is
// turned into fixed point once per pixel and the interpolation runs on integers
// with 11-bit weights, rounded once at the end: no int-to-float conversion per
// channel, an error under 0.13 of a grey level, and an exact copy where a
// position falls on a pixel centre. A template on the source's channel count
// keeps the channel loop free of branches.
inline constexpr int weight_bits = 11;

template <int Channels>
void sample_bilinear(const Image& image, const PixelMap& map, int size, std::uint8_t* out) {
  constexpr int one = 1 << weight_bits;
  const int width = image.width, height = image.height;
  const float x_max = float(width - 1), y_max = float(height - 1);
  const std::uint8_t* pixels = image.pixels.data();
  const std::ptrdiff_t row_stride = std::ptrdiff_t(width) * Channels;
  for (int v = 0; v < size; ++v) {
    const float x_row = map.x0 + float(v) * map.x_dv, y_row = map.y0 + float(v) * map.y_dv;
    std::uint8_t* o = out + std::size_t(v) * std::size_t(size) * 3;
    for (int u = 0; u < size; ++u, o += 3) {
      const float x = std::min(std::max(x_row + float(u) * map.x_du, 0.0f), x_max);
      const float y = std::min(std::max(y_row + float(u) * map.y_du, 0.0f), y_max);
      const int x_fixed = int(x * float(one)), y_fixed = int(y * float(one));
      const int x0 = x_fixed >> weight_bits, y0 = y_fixed >> weight_bits;
      const std::int32_t wx = x_fixed & (one - 1), wy = y_fixed & (one - 1);
      // The right and lower neighbours, or the pixel itself on the last column or row.
      const std::ptrdiff_t right = x0 < width - 1 ? Channels : 0, down = y0 < height - 1 ? row_stride : 0;
      const std::uint8_t* p = pixels + std::ptrdiff_t(y0) * row_stride + std::ptrdiff_t(x0) * Channels;
      const auto interpolate = [&](int ch) {
        const std::int32_t top = p[ch] * (one - wx) + p[ch + right] * wx;
        const std::int32_t bottom = p[ch + down] * (one - wx) + p[ch + down + right] * wx;
        return std::uint8_t((top * (one - wy) + bottom * wy + (1 << (2 * weight_bits - 1))) >> (2 * weight_bits));
      };
      if constexpr (Channels == 1) {
        o[0] = o[1] = o[2] = interpolate(0);
      } else {
        o[0] = interpolate(0);
        o[1] = interpolate(1);
        o[2] = interpolate(2);
      }
    }
  }
}

// The sampling where every output pixel lands on a source pixel centre, rows
// on rows (the whole image at its own size, mirrored or not): a copy, which
// is what sample_bilinear gives there, without its per-pixel arithmetic.
// Answers whether it applied.
inline bool copy_if_pixel_aligned(const Image& image, const PixelMap& map, int size, std::uint8_t* out) {
  const bool aligned = map.y_du == 0 && map.x_dv == 0 && map.y_dv == 1 && (map.x_du == 1 || map.x_du == -1) &&
                       map.x0 == std::floor(map.x0) && map.y0 == std::floor(map.y0);
  if (!aligned || image.channels != 3) return false;
  const int step = int(map.x_du), x_first = int(map.x0), y_first = int(map.y0);
  const int x_last = x_first + step * (size - 1);
  if (y_first < 0 || y_first + size > image.height || std::min(x_first, x_last) < 0 ||
      std::max(x_first, x_last) >= image.width)
    return false;
  for (int v = 0; v < size; ++v) {
    const std::uint8_t* source = image.at(y_first + v, x_first);
    std::uint8_t* row = out + std::size_t(v) * std::size_t(size) * 3;
    if (step == 1) {
      std::memcpy(row, source, std::size_t(size) * 3);
      continue;
    }
    for (int u = 0; u < size; ++u, source -= 3) std::memcpy(row + std::size_t(u) * 3, source, 3);
  }
  return true;
}

// Samples `crop` of `source` into a size×size RGB image at `out`.
inline void resample(const Image& source, Crop crop, int size, std::uint8_t* out) {
  const Image* image = &source;
  Image shrunk;
  const int factor = int(std::min(crop.width, crop.height) / size);
  if (factor >= 2 && source.width / factor >= 1 && source.height / factor >= 1) {
    shrunk = box_shrink(source, factor);
    image = &shrunk;
    const double inverse = 1.0 / factor;
    crop.center_x *= inverse;
    crop.center_y *= inverse;
    crop.width *= inverse;
    crop.height *= inverse;
  }
  // Output pixel (u, v) has centre a = (u + ½)/size − ½ across the crop (negated
  // when mirrored), b likewise down it; its source position, in pixel-index
  // coordinates (centres at integers), is affine in (u, v).
  const double cosine = std::cos(crop.radians), sine = std::sin(crop.radians);
  const double step_a = (crop.flip ? -crop.width : crop.width) / size, step_b = crop.height / size;
  const double a0 = (crop.flip ? -1 : 1) * (0.5 / size - 0.5) * crop.width, b0 = (0.5 / size - 0.5) * crop.height;
  const double x_origin = crop.center_x + a0 * cosine - b0 * sine - 0.5;
  const double y_origin = crop.center_y + a0 * sine + b0 * cosine - 0.5;
  const float x_du = float(step_a * cosine), y_du = float(step_a * sine);
  const double x_dv = -step_b * sine, y_dv = step_b * cosine;

  const PixelMap map{float(x_origin), float(y_origin), x_du, y_du, float(x_dv), float(y_dv)};
  if (copy_if_pixel_aligned(*image, map, size, out)) return;
  switch (image->channels) {
    case 1: sample_bilinear<1>(*image, map, size, out); break;
    case 3: sample_bilinear<3>(*image, map, size, out); break;
    default: sample_bilinear<4>(*image, map, size, out); break;
  }
}

// Eight uniform draws in [0, 1) for (seed, counter): two Philox blocks whose
// third counter word (1, 2) keeps them apart from Generator's fills, which use 0.
inline std::array<double, 8> augment_draws(std::uint64_t seed, std::uint64_t counter) {
  std::array<double, 8> draws{};
  for (std::uint32_t block = 0; block < 2; ++block) {
    const kernels::PhiloxBlock words = kernels::philox4x32_10(
        kernels::PhiloxBlock{{std::uint32_t(counter), std::uint32_t(counter >> 32), block + 1, 0}}, std::uint32_t(seed),
        std::uint32_t(seed >> 32));
    for (int k = 0; k < 4; ++k) draws[std::size_t(block * 4 + k)] = (words.word[k] >> 8) * (1.0 / 16777216.0);
  }
  return draws;
}

// Multiplies values by `brightness`, then moves them from the mean grey level by
// `contrast` (torchvision's order and definitions), through a table.
inline void adjust_colour(std::uint8_t* pixels, std::size_t count, double brightness, double contrast) {
  if (brightness == 1 && contrast == 1) return;
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < count; ++i) sum += pixels[i];
  const double mean = count == 0 ? 0 : brightness * double(sum) / double(count);
  std::array<std::uint8_t, 256> table{};
  for (int value = 0; value < 256; ++value) {
    const double adjusted = contrast * (brightness * value) + (1 - contrast) * mean;
    table[std::size_t(value)] = std::uint8_t(std::clamp(std::floor(adjusted + 0.5), 0.0, 255.0));
  }
  for (std::size_t i = 0; i < count; ++i) pixels[i] = table[pixels[i]];
}

// augment() into `out`, size×size×3 bytes (the loader's staging buffer).
inline void augment_into(const Image& image, const AugmentOptions& options, std::uint64_t seed, std::uint64_t counter,
                         std::uint8_t* out) {
  validate(options);
  validate(image);
  const std::array<double, 8> u = augment_draws(seed, counter);
  const double side = std::min(image.width, image.height);
  const double area = side * side * (options.scale[0] + u[0] * (options.scale[1] - options.scale[0]));
  const double log_aspect =
      std::log(options.aspect[0]) + u[1] * (std::log(options.aspect[1]) - std::log(options.aspect[0]));
  const double aspect = options.aspect[0] == options.aspect[1] ? options.aspect[0] : std::exp(log_aspect);
  double width = std::sqrt(area * aspect), height = std::sqrt(area / aspect);
  const double fit = std::min({1.0, image.width / width, image.height / height});
  width *= fit;
  height *= fit;
  Crop crop;
  crop.width = width;
  crop.height = height;
  crop.center_x = width / 2 + u[2] * (image.width - width);
  crop.center_y = height / 2 + u[3] * (image.height - height);
  crop.flip = u[4] < options.flip_probability;
  crop.radians = (2 * u[5] - 1) * options.rotation_degrees * (std::numbers::pi / 180);
  resample(image, crop, options.size, out);
  adjust_colour(out, std::size_t(options.size) * std::size_t(options.size) * 3, 1 + (2 * u[6] - 1) * options.brightness,
                1 + (2 * u[7] - 1) * options.contrast);
}

// center_resize() into `out`, size×size×3 bytes.
inline void center_resize_into(const Image& image, int size, std::uint8_t* out) {
  CUMTL_REQUIRE(size >= 1 && size <= 16384, "center_resize: output size ", size);
  validate(image);
  resample(image, centred_square(image), size, out);
}

}  // namespace detail

// A random crop, scale, flip, rotation and colour jitter of `image`, as an
// options.size² RGB image; the same for the same (seed, counter).
inline Image augment(const Image& image, const AugmentOptions& options, std::uint64_t seed, std::uint64_t counter) {
  detail::validate(options);
  Image out(options.size, options.size, 3);
  detail::augment_into(image, options, seed, counter, out.pixels.data());
  return out;
}

// The largest centred square of `image` resized to size², RGB: the evaluation transform.
inline Image center_resize(const Image& image, int size) {
  CUMTL_REQUIRE(size >= 1 && size <= 16384, "center_resize: output size ", size);
  Image out(size, size, 3);
  detail::center_resize_into(image, size, out.pixels.data());
  return out;
}

}  // namespace cumtl::data
