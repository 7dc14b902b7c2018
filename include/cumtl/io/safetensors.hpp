#pragma once
// safetensors files: an 8-byte little-endian header length N, N bytes of JSON
// naming each tensor's dtype, shape and byte range, then the raw little-endian
// data. The format PyTorch (safetensors.torch) and Hugging Face read and write.
//
// A file is validated before any of it is trusted: a corrupt or crafted header
// must not make us allocate what the file does not hold, read outside it, or
// hand back tensors whose bytes belong to another tensor. The byte ranges must
// tile the data region exactly, in order, as the format requires.
//
// Writing is atomic: a temporary file beside the target is written, fsynced
// and renamed over it, then the folder is fsynced, so after a crash the target
// is either the old file or the whole new one. POSIX only.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/core/dtype.hpp"
#include "cumtl/core/error.hpp"
#include "cumtl/core/shape.hpp"
#include "cumtl/core/tensor.hpp"
#include "cumtl/io/atomic_file.hpp"

namespace cumtl::io {

// The data is written as it lies in memory; safetensors is little-endian.
static_assert(std::endian::native == std::endian::little, "cumtl::io assumes a little-endian host");

using cumtl::NamedTensor;

// "__metadata__": free-form string pairs.
using Metadata = std::map<std::string, std::string>;

// What read_safetensors returns: CPU tensors in file (data offset) order.
struct SafetensorsFile {
  std::vector<NamedTensor> tensors;
  Metadata metadata;

  const Tensor* find(std::string_view name) const {
    for (const NamedTensor& entry : tensors)
      if (entry.name == name) return &entry.tensor;
    return nullptr;
  }
};

// The dtype codes of the safetensors header.
inline constexpr std::string_view safetensors_code(ScalarType type) {
  switch (type) {
    case ScalarType::f32: return "F32";
    case ScalarType::f64: return "F64";
    case ScalarType::i32: return "I32";
    case ScalarType::i64: return "I64";
    case ScalarType::i8: return "I8";
    case ScalarType::u8: return "U8";
    case ScalarType::bf16: return "BF16";
    case ScalarType::f16: return "F16";
  }
  return "unknown";
}

inline std::optional<ScalarType> scalar_type_from_safetensors_code(std::string_view code) {
  for (ScalarType type : {ScalarType::f32, ScalarType::f64, ScalarType::i32, ScalarType::i64, ScalarType::i8,
                          ScalarType::u8, ScalarType::bf16, ScalarType::f16})
    if (safetensors_code(type) == code) return type;
  return std::nullopt;
}

namespace detail {
// The raw bytes of a CPU tensor.
inline std::span<const std::byte> bytes_of(const Tensor& tensor) {
  if (tensor.bytes() == 0) return {};
  return {static_cast<const std::byte*>(tensor.raw_data()), tensor.bytes()};
}

// One entry of a header, checked against the file.
struct HeaderEntry {
  std::string name;
  ScalarType dtype;
  Shape shape;
  std::uint64_t begin, end;
};

inline std::uint64_t header_integer(const nlohmann::json& value, const std::filesystem::path& file,
                                    const std::string& name, std::string_view field) {
  CUMTL_REQUIRE(value.is_number_unsigned() && value.get<std::uint64_t>() <= std::uint64_t(INT64_MAX), "safetensors ",
                quoted(file), ": tensor '", name, "': ", field, " holds ", value.dump(),
                ", not a non-negative integer");
  return value.get<std::uint64_t>();
}

inline HeaderEntry parse_header_entry(const std::string& name, const nlohmann::json& entry,
                                      const std::filesystem::path& file) {
  const std::string where = cumtl::detail::concat("safetensors ", quoted(file), ": tensor '", name, "'");
  CUMTL_REQUIRE(entry.is_object(), where, ": the entry is not a JSON object");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    CUMTL_REQUIRE(entry.contains(field), where, ": the entry has no \"", field, "\"");
  const nlohmann::json& code = entry["dtype"];
  CUMTL_REQUIRE(code.is_string(), where, ": dtype ", code.dump(), " is not a string");
  const std::optional<ScalarType> dtype = scalar_type_from_safetensors_code(code.get<std::string>());
  CUMTL_REQUIRE(dtype.has_value(), where, ": unknown dtype ", code.dump(),
                " (cumtl reads F32, F64, BF16, F16, I32, I64, I8, U8)");

  const nlohmann::json& shape_json = entry["shape"];
  CUMTL_REQUIRE(shape_json.is_array() && shape_json.size() <= std::size_t(Shape::max_rank), where, ": shape ",
                shape_json.dump(), " is not an array of at most ", Shape::max_rank, " extents");
  std::vector<std::int64_t> extents;
  // The product of the non-zero extents, checked for overflow: it bounds every
  // partial product Shape::numel forms, and a zero extent makes the byte count 0.
  std::uint64_t product = 1;
  bool has_zero = false;
  for (const nlohmann::json& extent_json : shape_json) {
    const std::uint64_t extent = header_integer(extent_json, file, name, "a shape extent");
    extents.push_back(std::int64_t(extent));
    if (extent == 0) {
      has_zero = true;
      continue;
    }
    CUMTL_REQUIRE(product <= std::uint64_t(INT64_MAX) / extent, where, ": shape ", shape_json.dump(),
                  " has too many elements");
    product *= extent;
  }
  const std::uint64_t element_bytes = size_of(*dtype);
  CUMTL_REQUIRE(product <= std::uint64_t(INT64_MAX) / element_bytes, where, ": shape ", shape_json.dump(),
                " has too many elements");
  const std::uint64_t bytes = has_zero ? 0 : product * element_bytes;

  const nlohmann::json& offsets = entry["data_offsets"];
  CUMTL_REQUIRE(offsets.is_array() && offsets.size() == 2, where, ": data_offsets ", offsets.dump(),
                " is not [begin, end]");
  const std::uint64_t begin = header_integer(offsets[0], file, name, "data_offsets");
  const std::uint64_t end = header_integer(offsets[1], file, name, "data_offsets");
  CUMTL_REQUIRE(begin <= end, where, ": data_offsets [", begin, ", ", end, "] end before they begin");
  CUMTL_REQUIRE(end - begin == bytes, where, ": shape ", shape_json.dump(), " of ", code.get<std::string>(), " needs ",
                bytes, " bytes but data_offsets [", begin, ", ", end, "] hold ", end - begin);
  return {name, *dtype, Shape(std::span<const std::int64_t>(extents)), begin, end};
}

}  // namespace detail

// Writes `tensors` (on any device; GPU tensors are copied to the host on ctx's
// stream first) and `metadata` to `file`, atomically, in the given order.
inline void write_safetensors(Context& ctx, const std::filesystem::path& file, const std::vector<NamedTensor>& tensors,
                              const Metadata& metadata = {}) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  std::set<std::string_view> names;
  std::uint64_t offset = 0;
  for (const NamedTensor& entry : tensors) {
    CUMTL_REQUIRE(!entry.name.empty() && entry.name != "__metadata__", "safetensors ", detail::quoted(file),
                  ": invalid tensor name '", entry.name, "'");
    CUMTL_REQUIRE(names.insert(entry.name).second, "safetensors ", detail::quoted(file), ": tensor '", entry.name,
                  "' is given twice");
    CUMTL_REQUIRE(entry.tensor.defined(), "safetensors ", detail::quoted(file), ": tensor '", entry.name,
                  "' is undefined");
    host.push_back(entry.tensor.device().is_cpu() ? entry.tensor : entry.tensor.to(ctx, Device::cpu()));
    const std::vector<std::int64_t> shape(entry.tensor.shape().extents().begin(), entry.tensor.shape().extents().end());
    header[entry.name] = {{"dtype", std::string(safetensors_code(entry.tensor.dtype()))},
                          {"shape", shape},
                          {"data_offsets", {offset, offset + entry.tensor.bytes()}}};
    offset += entry.tensor.bytes();
  }
  ctx.synchronize();

  std::string text = header.dump();
  // Padding with spaces (still valid JSON) aligns the data to 8 bytes, as the reference writer does, so a
  // memory-mapped reader can use the tensors in place.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::array<std::byte, 8> length{};
  const std::uint64_t size = text.size();
  std::memcpy(length.data(), &size, sizeof size);

  std::vector<std::span<const std::byte>> pieces{length, std::as_bytes(std::span(text))};
  for (const Tensor& tensor : host) pieces.push_back(detail::bytes_of(tensor));
  detail::write_pieces_atomically(file, pieces);
}

// Reads and validates `file`; the tensors come back on the CPU, in file order.
inline SafetensorsFile read_safetensors(const std::filesystem::path& file) {
  using detail::quoted;
  std::error_code error;
  const std::uintmax_t file_size = std::filesystem::file_size(file, error);
  CUMTL_REQUIRE(!error, "cannot read safetensors ", quoted(file), ": ", error.message());
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> stream(std::fopen(file.c_str(), "rb"), &std::fclose);
  CUMTL_REQUIRE(stream != nullptr, "cannot read safetensors ", quoted(file), ": ", std::strerror(errno));
  const auto read = [&](void* into, std::size_t bytes, std::uint64_t at) {
    CUMTL_REQUIRE(bytes == 0 || std::fread(into, 1, bytes, stream.get()) == bytes, "safetensors ", quoted(file),
                  ": cannot read ", bytes, " bytes at byte ", at, " (the file changed or a read failed)");
  };

  CUMTL_REQUIRE(file_size >= 8, "safetensors ", quoted(file), ": the file has ", file_size,
                " bytes, too few for the 8-byte header length");
  std::uint64_t header_length = 0;
  read(&header_length, 8, 0);
  CUMTL_REQUIRE(header_length <= file_size - 8, "safetensors ", quoted(file), ": the header length ", header_length,
                " at offset 0 reaches beyond the end of the file (", file_size, " bytes)");
  std::string text(header_length, '\0');
  read(text.data(), text.size(), 8);

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& failure) {
    CUMTL_FAIL("safetensors ", quoted(file), ": the header (bytes 8 to ", 8 + header_length,
               ") is not valid JSON: ", failure.what());
  }
  CUMTL_REQUIRE(header.is_object(), "safetensors ", quoted(file), ": the header is not a JSON object");

  SafetensorsFile result;
  std::vector<detail::HeaderEntry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      CUMTL_REQUIRE(value.is_object(), "safetensors ", quoted(file), ": __metadata__ is not a JSON object");
      for (const auto& [key, entry] : value.items()) {
        CUMTL_REQUIRE(entry.is_string(), "safetensors ", quoted(file), ": __metadata__ '", key, "' holds ",
                      entry.dump(), ", not a string");
        result.metadata[key] = entry.get<std::string>();
      }
      continue;
    }
    entries.push_back(detail::parse_header_entry(name, value, file));
  }

  // Sorting by range lets one pass find every gap, overlap and overrun.
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return std::pair(a.begin, a.end) < std::pair(b.begin, b.end); });
  const std::uint64_t data_size = file_size - 8 - header_length;
  std::uint64_t covered = 0;
  const detail::HeaderEntry* previous = nullptr;
  for (const detail::HeaderEntry& entry : entries) {
    CUMTL_REQUIRE(entry.end <= data_size, "safetensors ", quoted(file), ": tensor '", entry.name, "': data_offsets [",
                  entry.begin, ", ", entry.end, "] reach beyond the data region (", data_size,
                  " bytes; the file may be truncated)");
    CUMTL_REQUIRE(entry.begin >= covered, "safetensors ", quoted(file), ": tensor '", entry.name, "': data_offsets [",
                  entry.begin, ", ", entry.end, "] overlap tensor '", previous ? previous->name : "", "' [",
                  previous ? previous->begin : 0, ", ", covered, "]");
    CUMTL_REQUIRE(entry.begin == covered, "safetensors ", quoted(file), ": bytes [", covered, ", ", entry.begin,
                  "] of the data region, before tensor '", entry.name, "', belong to no tensor");
    covered = entry.end;
    previous = &entry;
  }
  CUMTL_REQUIRE(covered == data_size, "safetensors ", quoted(file), ": bytes [", covered, ", ", data_size,
                "] at the end of the data region belong to no tensor");

  for (const detail::HeaderEntry& entry : entries) {
    Tensor tensor = Tensor::empty(entry.shape, entry.dtype);
    read(tensor.bytes() == 0 ? nullptr : tensor.raw_data(), tensor.bytes(), 8 + header_length + entry.begin);
    result.tensors.push_back({entry.name, std::move(tensor)});
  }
  return result;
}

}  // namespace cumtl::io
