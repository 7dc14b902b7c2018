#pragma once
// How much freed memory the device's stream-ordered pool keeps, and byte
// counts as a person reads them (for out-of-memory errors). Plain C++: the
// CUDA backend applies the threshold, and the CPU tests check the parsing.
//
// Memory freed in stream order goes back to the pool, not to the driver. At
// each synchronization (stream, event or device) the pool returns what it
// holds unused beyond its release threshold. Keeping everything (the CUDA
// default being to keep nothing) spares a training step every driver call,
// but after a peak the pool sits on memory that cuDNN, cuBLAS, kernels loaded
// lazily and other processes then fail to get. So the threshold defaults to
// 90% of the device's memory: a steady-state step that fits in it reuses its
// blocks without the driver, and the last tenth stays free for others.
//
// CUMTL_POOL_RELEASE_THRESHOLD overrides it, as bytes ("8589934592",
// "512MiB", "8GiB") or as a share of the device's memory ("75%"; "100%"
// keeps everything, "0%" or "0" gives back all that is unused at each
// synchronization).

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>

#include "cumtl/core/error.hpp"

namespace cumtl::detail {

// A byte count, or a share of the device's memory in percent; 90% unless set.
struct PoolReleaseThreshold {
  enum class Unit : std::uint8_t { bytes, percent_of_device };
  std::uint64_t amount = 90;
  Unit unit = Unit::percent_of_device;

  // The threshold in bytes on a device of `device_bytes`.
  std::uint64_t bytes_for(std::uint64_t device_bytes) const noexcept {
    if (unit == Unit::bytes) return amount;
    // Split so that no product overflows, even for an exabyte device.
    return device_bytes / 100 * amount + device_bytes % 100 * amount / 100;
  }

  friend bool operator==(const PoolReleaseThreshold&, const PoolReleaseThreshold&) = default;
};

inline constexpr std::string_view pool_release_threshold_variable = "CUMTL_POOL_RELEASE_THRESHOLD";

// `text` as CUMTL_POOL_RELEASE_THRESHOLD spells it: digits, then nothing or B
// (bytes), KiB, MiB, GiB, TiB, or % (0 to 100). Units are binary and spelled
// out, since "8G" or "8GB" could mean 8·10⁹ as well as 8·2³⁰ bytes.
inline PoolReleaseThreshold parse_pool_release_threshold(std::string_view text) {
  const auto malformed = [text] {
    return Error(concat(pool_release_threshold_variable,
                        " must be a byte count (such as 8589934592, 512MiB or 8GiB) or a share of the device's "
                        "memory from 0% to 100% (such as 75%), got \"",
                        text, "\""),
                 __FILE__, __LINE__);
  };
  const auto too_large = [text] {
    return Error(concat(pool_release_threshold_variable, "=\"", text, "\" is past the largest byte count, 2^64 - 1"),
                 __FILE__, __LINE__);
  };
  std::uint64_t amount = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), amount);
  if (end == text.data()) throw malformed();
  if (error == std::errc::result_out_of_range) throw too_large();
  const std::string_view unit(end, std::size_t(text.data() + text.size() - end));
  if (unit == "%") {
    if (amount > 100) throw malformed();
    return {amount, PoolReleaseThreshold::Unit::percent_of_device};
  }
  struct Multiple {
    std::string_view name;
    int shift;
  };
  for (const auto& [name, shift] : {Multiple{"", 0}, Multiple{"B", 0}, Multiple{"KiB", 10}, Multiple{"MiB", 20},
                                    Multiple{"GiB", 30}, Multiple{"TiB", 40}}) {
    if (unit != name) continue;
    if (amount > (UINT64_MAX >> shift)) throw too_large();
    return {amount << shift, PoolReleaseThreshold::Unit::bytes};
  }
  throw malformed();
}

// The threshold CUMTL_POOL_RELEASE_THRESHOLD asks for; the default when it is unset or empty.
inline PoolReleaseThreshold pool_release_threshold_from_environment() {
  const char* text = std::getenv(pool_release_threshold_variable.data());
  if (text == nullptr || *text == '\0') return {};
  return parse_pool_release_threshold(text);
}

// "512 B", "1.5 KiB", "79.6 GiB": one decimal from a KiB on.
inline std::string byte_count_text(std::uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = double(bytes) / 1024;
  int unit = 0;
  // Rounding to one decimal must not print "1024.0 KiB" for a value just under a MiB.
  while (value >= 1023.95 && unit + 1 < int(std::size(units))) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f %s", value, units[unit]);
  return text;
}

}  // namespace cumtl::detail
