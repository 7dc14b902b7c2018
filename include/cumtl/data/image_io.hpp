#pragma once
// Image files in and out: JPEG, PNG and BMP decoding through stb_image, PNG
// encoding through stb_image_write, bilinear resizing, cropping and grey → RGB.
//
// A file is checked before stb sees it: its magic bytes must name one of the
// three formats, the size its header claims must fit ImageLimits (so a crafted
// or corrupt header cannot make us allocate gigabytes), and JPEG and BMP files
// must be complete (stb fills a truncated JPEG or BMP with zeros instead of
// failing, which would silently feed half-grey faces to training).
//
// The stb implementations come from the compiled libstb (link -lstb); no
// STB_*_IMPLEMENTATION macro is defined here, so every translation unit can
// include this header.

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "cumtl/core/error.hpp"
#include "cumtl/data/sample.hpp"
#include "cumtl/io/atomic_file.hpp"

namespace cumtl::data {

struct ImageLimits {
  // The most pixels (width × height) a header may claim; 64 megapixels by default.
  std::int64_t max_pixels = std::int64_t(64) << 20;
};

namespace detail {
using io::detail::quoted;

enum class ImageFormat : std::uint8_t { unknown, jpeg, png, bmp };

inline ImageFormat sniff_format(std::span<const std::uint8_t> b) {
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat::jpeg;
  static constexpr std::uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (b.size() >= 8 && std::equal(b.begin(), b.begin() + 8, png_signature)) return ImageFormat::png;
  if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') return ImageFormat::bmp;
  return ImageFormat::unknown;
}

inline std::int64_t read_be16(std::span<const std::uint8_t> b, std::size_t at) {
  return (std::int64_t(b[at]) << 8) | b[at + 1];
}
inline std::int64_t read_be32(std::span<const std::uint8_t> b, std::size_t at) {
  return (read_be16(b, at) << 16) | read_be16(b, at + 2);
}
inline std::int64_t read_le16(std::span<const std::uint8_t> b, std::size_t at) {
  return std::int64_t(b[at]) | (std::int64_t(b[at + 1]) << 8);
}
inline std::int64_t read_le32(std::span<const std::uint8_t> b, std::size_t at) {
  return read_le16(b, at) | (read_le16(b, at + 2) << 16);
}

// What a header says before any pixel is decoded; `problem` is empty when the
// file looks whole.
struct HeaderFacts {
  std::int64_t width = 0, height = 0;
  std::string problem;
};

inline HeaderFacts png_header(std::span<const std::uint8_t> b) {
  // The signature is followed by the IHDR chunk: length, "IHDR", width, height (big-endian).
  if (b.size() < 24) return {0, 0, "truncated: the file ends inside the PNG header"};
  if (!(b[12] == 'I' && b[13] == 'H' && b[14] == 'D' && b[15] == 'R'))
    return {0, 0, "corrupt: the PNG header has no IHDR chunk"};
  return {read_be32(b, 16), read_be32(b, 20), {}};
}

inline HeaderFacts bmp_header(std::span<const std::uint8_t> b) {
  if (b.size() < 26) return {0, 0, "truncated: the file ends inside the BMP header"};
  const std::int64_t pixel_offset = read_le32(b, 10), info_size = read_le32(b, 14);
  std::int64_t width = 0, height = 0, bits = 0, compression = 0;
  if (info_size == 12) {  // BITMAPCOREHEADER: 16-bit sizes
    width = read_le16(b, 18);
    height = read_le16(b, 20);
    bits = read_le16(b, 24);
  } else {
    if (b.size() < 34) return {0, 0, "truncated: the file ends inside the BMP header"};
    width = std::int32_t(std::uint32_t(read_le32(b, 18)));
    height = std::int32_t(std::uint32_t(read_le32(b, 22)));  // negative: rows stored top-down
    bits = read_le16(b, 28);
    compression = read_le32(b, 30);
  }
  height = height < 0 ? -height : height;
  HeaderFacts facts{width, height, {}};
  // Only uncompressed rows have a size known from the header; RLE files are left to stb.
  const bool uncompressed = compression == 0 || compression == 3 || compression == 6;
  if (uncompressed && width > 0 && bits > 0 && bits <= 32) {
    const std::int64_t row_bytes = (width * bits + 31) / 32 * 4;
    const std::int64_t needed = pixel_offset + row_bytes * height;
    if (std::int64_t(b.size()) < needed)
      facts.problem = "truncated: the BMP header needs " + std::to_string(needed) + " bytes, the file has " +
                      std::to_string(b.size());
  }
  return facts;
}

inline HeaderFacts jpeg_header(std::span<const std::uint8_t> b) {
  // Walk the marker segments up to the first scan (SOS); the frame header
  // (SOFn) on the way holds the size. The scan data ends with EOI: a file
  // without an EOI after its first scan was cut short.
  HeaderFacts facts;
  bool have_frame = false;
  std::size_t at = 2;
  while (true) {
    if (at + 4 > b.size()) {
      facts.problem = "truncated: the file ends inside the JPEG header";
      return facts;
    }
    if (b[at] != 0xFF) {
      facts.problem = "corrupt: bad JPEG marker at byte " + std::to_string(at);
      return facts;
    }
    const std::uint8_t marker = b[at + 1];
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    at += 2;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;  // markers without a length
    if (marker == 0xD9) {
      facts.problem = "corrupt: the JPEG ends before its first scan";
      return facts;
    }
    const std::int64_t length = read_be16(b, at);
    if (length < 2) {
      facts.problem = "corrupt: bad JPEG segment length at byte " + std::to_string(at);
      return facts;
    }
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame) {
      if (at + 7 > b.size()) {
        facts.problem = "truncated: the file ends inside the JPEG frame header";
        return facts;
      }
      facts.height = read_be16(b, at + 3);
      facts.width = read_be16(b, at + 5);
      have_frame = true;
    }
    if (marker == 0xDA) break;
    at += std::size_t(length);
  }
  if (!have_frame) {
    facts.problem = "corrupt: the JPEG has no frame header before its first scan";
    return facts;
  }
  for (std::size_t i = at; i + 1 < b.size(); ++i)
    if (b[i] == 0xFF && b[i + 1] == 0xD9) return facts;
  facts.problem = "truncated: the JPEG data ends without its end-of-image marker";
  return facts;
}

// Throws unless `image` is a non-empty 1–4 channel image whose pixel count matches its size.
inline void check_image(const Image& image, std::string_view what) {
  CUMTL_REQUIRE(image.height > 0 && image.width > 0, what, ": the image is empty (", image.height, "x", image.width,
                ")");
  CUMTL_REQUIRE(image.channels >= 1 && image.channels <= 4, what, ": an image has 1 to 4 channels, not ",
                image.channels);
  CUMTL_REQUIRE(image.pixels.size() == std::size_t(image.height) * image.width * image.channels, what,
                ": the image holds ", image.pixels.size(), " values, its size says ",
                std::size_t(image.height) * image.width * image.channels);
}

// The whole file, with an error naming it when it is missing, not a regular file or unreadable.
inline std::vector<std::uint8_t> read_file(const std::filesystem::path& file, std::string_view what = "file") {
  std::error_code code;
  const auto status = std::filesystem::status(file, code);
  CUMTL_REQUIRE(status.type() != std::filesystem::file_type::not_found, "cannot read ", what, " ", quoted(file),
                ": no such file");
  CUMTL_REQUIRE(status.type() == std::filesystem::file_type::regular, "cannot read ", what, " ", quoted(file),
                ": not a regular file");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> stream(std::fopen(file.string().c_str(), "rb"), &std::fclose);
  if (!stream) CUMTL_FAIL("cannot read ", what, " ", quoted(file), ": ", std::generic_category().message(errno));
  std::vector<std::uint8_t> bytes;
  if (const auto size = std::filesystem::file_size(file, code); !code) bytes.reserve(std::size_t(size));
  std::uint8_t buffer[1 << 16];
  while (const std::size_t got = std::fread(buffer, 1, sizeof buffer, stream.get()))
    bytes.insert(bytes.end(), buffer, buffer + got);
  CUMTL_REQUIRE(!std::ferror(stream.get()), "cannot read ", what, " ", quoted(file), ": read error");
  return bytes;
}

// Writes `bytes` atomically (io/atomic_file.hpp): never a partial file.
inline void write_file_atomically(const std::filesystem::path& file, std::span<const std::uint8_t> bytes) {
  io::detail::write_pieces_atomically(file, {std::as_bytes(bytes)});
}

// Weights of a separable resampling along one axis: output i reads `count[i]`
// inputs from `first[i]`, with weights at weights[i * taps ...].
struct ResampleAxis {
  int taps = 0;
  std::vector<int> first, count;
  std::vector<double> weights;
};

inline ResampleAxis resample_axis(int in, int out) {
  // A triangle (bilinear) filter on pixel centres; when shrinking, its radius
  // grows with the factor so every input pixel contributes (no aliasing).
  // Taps past the border are dropped and the rest renormalized.
  const double scale = double(in) / out, radius = std::max(scale, 1.0);
  ResampleAxis axis;
  axis.taps = int(std::ceil(radius)) * 2 + 1;
  axis.first.resize(out);
  axis.count.resize(out);
  axis.weights.assign(std::size_t(out) * axis.taps, 0.0);
  for (int i = 0; i < out; ++i) {
    const double centre = (i + 0.5) * scale;
    const int lo = std::max(int(std::floor(centre - radius + 0.5)), 0);
    const int hi = std::min(int(std::floor(centre + radius + 0.5)), in);
    double* w = axis.weights.data() + std::size_t(i) * axis.taps;
    double total = 0;
    for (int x = lo; x < hi && x - lo < axis.taps; ++x) {
      w[x - lo] = std::max(0.0, 1.0 - std::abs((x + 0.5 - centre) / radius));
      total += w[x - lo];
    }
    axis.first[i] = lo;
    axis.count[i] = std::min(hi - lo, axis.taps);
    for (int k = 0; k < axis.count[i]; ++k) w[k] /= total;
  }
  return axis;
}

}  // namespace detail

// Decodes a JPEG, PNG or BMP image held in memory; `name` is what errors call it.
// Grey (and grey + alpha) images come back with 1 channel, everything else with
// 3: alpha is dropped, not composited. 16-bit PNGs are reduced to 8 bits.
inline Image decode_image_memory(std::span<const std::uint8_t> bytes, std::string_view name,
                                 const ImageLimits& limits = {}) {
  using detail::ImageFormat;
  const std::string where = "image '" + std::string(name) + "'";
  CUMTL_REQUIRE(!bytes.empty(), "cannot decode ", where, ": the file is empty");
  const ImageFormat format = detail::sniff_format(bytes);
  CUMTL_REQUIRE(format != ImageFormat::unknown, "cannot decode ", where, ": not an image (not JPEG, PNG or BMP)");
  const detail::HeaderFacts header = format == ImageFormat::png   ? detail::png_header(bytes)
                                     : format == ImageFormat::bmp ? detail::bmp_header(bytes)
                                                                  : detail::jpeg_header(bytes);
  // The size is checked first: a truncated file claiming a huge size is refused as too large.
  if (header.width > 0 && header.height > 0)
    CUMTL_REQUIRE(header.width * header.height <= limits.max_pixels, "cannot decode ", where,
                  ": too large: its header claims ", header.width, "x", header.height, " pixels (",
                  header.width * header.height, "), more than the limit of ", limits.max_pixels);
  CUMTL_REQUIRE(header.problem.empty(), "cannot decode ", where, ": ", header.problem);
  CUMTL_REQUIRE(header.width > 0 && header.height > 0, "cannot decode ", where, ": corrupt: its header claims ",
                header.width, "x", header.height, " pixels");
  CUMTL_REQUIRE(bytes.size() <= std::size_t(INT32_MAX), "cannot decode ", where, ": files over 2 GiB are not read");

  const int length = int(bytes.size());
  int width = 0, height = 0, components = 0;
  if (!stbi_info_from_memory(bytes.data(), length, &width, &height, &components))
    CUMTL_FAIL("cannot decode ", where, ": corrupt or truncated (stb: ", stbi_failure_reason(), ")");
  CUMTL_REQUIRE(std::int64_t(width) * height <= limits.max_pixels, "cannot decode ", where, ": too large: it holds ",
                width, "x", height, " pixels, more than the limit of ", limits.max_pixels);
  const int channels = components <= 2 ? 1 : 3;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(bytes.data(), length, &width, &height, &components, channels), &stbi_image_free);
  if (!pixels) CUMTL_FAIL("cannot decode ", where, ": corrupt or truncated (stb: ", stbi_failure_reason(), ")");
  Image image(height, width, channels);
  std::copy_n(pixels.get(), image.pixels.size(), image.pixels.begin());
  return image;
}

// Decodes a JPEG, PNG or BMP file (see decode_image_memory).
inline Image decode_image(const std::filesystem::path& file, const ImageLimits& limits = {}) {
  const std::vector<std::uint8_t> bytes = detail::read_file(file, "image");
  return decode_image_memory(bytes, file.string(), limits);
}

// The image resampled to height × width with a bilinear (triangle) filter on
// pixel centres, widened when shrinking so that every source pixel counts.
inline Image resize(const Image& image, int height, int width) {
  detail::check_image(image, "resize");
  CUMTL_REQUIRE(height > 0 && width > 0, "resize: the target size must be positive, not ", height, "x", width);
  const int c = image.channels;
  const detail::ResampleAxis across = detail::resample_axis(image.width, width);
  const detail::ResampleAxis down = detail::resample_axis(image.height, height);
  // Rows first, into doubles, so the second pass rounds only once.
  std::vector<double> rows(std::size_t(image.height) * width * c, 0.0);
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < width; ++x) {
      const double* w = across.weights.data() + std::size_t(x) * across.taps;
      double* out = rows.data() + (std::size_t(y) * width + x) * c;
      for (int k = 0; k < across.count[x]; ++k) {
        const std::uint8_t* in = image.at(y, across.first[x] + k);
        for (int ch = 0; ch < c; ++ch) out[ch] += w[k] * in[ch];
      }
    }
  Image result(height, width, c);
  for (int y = 0; y < height; ++y) {
    const double* w = down.weights.data() + std::size_t(y) * down.taps;
    for (int x = 0; x < width; ++x)
      for (int ch = 0; ch < c; ++ch) {
        double value = 0;
        for (int k = 0; k < down.count[y]; ++k)
          value += w[k] * rows[(std::size_t(down.first[y] + k) * width + x) * c + ch];
        result.at(y, x)[ch] = std::uint8_t(std::clamp(std::lround(value), 0L, 255L));
      }
  }
  return result;
}

// The height × width part of the image whose top-left pixel is (top, left); the box must lie inside the image.
inline Image crop(const Image& image, int top, int left, int height, int width) {
  detail::check_image(image, "crop");
  CUMTL_REQUIRE(
      height > 0 && width > 0 && top >= 0 && left >= 0 && top + height <= image.height && left + width <= image.width,
      "crop: the box ", width, "x", height, " at (x ", left, ", y ", top, ") is not inside the ", image.width, "x",
      image.height, " image");
  Image result(height, width, image.channels);
  const std::size_t row = std::size_t(width) * image.channels;
  for (int y = 0; y < height; ++y) std::copy_n(image.at(top + y, left), row, result.at(y, 0));
  return result;
}

// The image with 3 channels: grey is repeated, alpha is dropped, RGB is copied.
inline Image to_rgb(const Image& image) {
  detail::check_image(image, "to_rgb");
  if (image.channels == 3) return image;
  Image result(image.height, image.width, 3);
  const std::size_t count = std::size_t(image.height) * image.width;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint8_t* in = image.pixels.data() + i * image.channels;
    std::uint8_t* out = result.pixels.data() + i * 3;
    if (image.channels <= 2) {
      out[0] = out[1] = out[2] = in[0];
    } else {
      std::copy_n(in, 3, out);
    }
  }
  return result;
}

// Encodes the image as PNG into `file`, atomically: on any error no file, partial or temporary, is left behind.
inline void write_png(const std::filesystem::path& file, const Image& image) {
  detail::check_image(image, "write_png " + detail::quoted(file));
  std::vector<std::uint8_t> encoded;
  const auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<std::uint8_t>*>(context);
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    out->insert(out->end(), bytes, bytes + size);
  };
  const int ok = stbi_write_png_to_func(append, &encoded, image.width, image.height, image.channels,
                                        image.pixels.data(), image.width * image.channels);
  CUMTL_REQUIRE(ok, "cannot write ", detail::quoted(file), ": PNG encoding failed");
  detail::write_file_atomically(file, encoded);
}

}  // namespace cumtl::data
