#pragma once
// Where a tensor lives: the CPU or one CUDA GPU. Every operation dispatches at
// run time on this, so one binary runs on machines with and without a GPU.

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "cumtl/core/cuda_backend.hpp"
#include "cumtl/core/error.hpp"

namespace cumtl {

enum class DeviceKind : std::uint8_t { cpu, cuda };

class Device {
 public:
  constexpr Device() = default;
  static constexpr Device cpu() { return Device(); }
  static Device cuda(int index = 0) {
    CUMTL_REQUIRE(index >= 0, "a CUDA device index must be non-negative, got ", index);
    return Device(DeviceKind::cuda, index);
  }

  // "cpu", "cuda" (device 0) or "cuda:N".
  static Device parse(std::string_view text) {
    if (text == "cpu") return cpu();
    if (text == "cuda") return cuda(0);
    if (text.starts_with("cuda:") && text.size() > 5) {
      int index = 0;
      for (char digit : text.substr(5)) {
        CUMTL_REQUIRE(digit >= '0' && digit <= '9' && index < 100000, "not a device: '", text,
                      "' (expected cpu, cuda or cuda:N)");
        index = index * 10 + (digit - '0');
      }
      return cuda(index);
    }
    CUMTL_FAIL("not a device: '", text, "' (expected cpu, cuda or cuda:N)");
  }

  constexpr DeviceKind kind() const noexcept { return kind_; }
  constexpr int index() const noexcept { return index_; }
  constexpr bool is_cpu() const noexcept { return kind_ == DeviceKind::cpu; }
  constexpr bool is_cuda() const noexcept { return kind_ == DeviceKind::cuda; }

  std::string str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index_); }

  friend constexpr bool operator==(Device, Device) noexcept = default;

 private:
  constexpr Device(DeviceKind kind, int index) : kind_(kind), index_(index) {}

  DeviceKind kind_ = DeviceKind::cpu;
  int index_ = 0;
};

inline std::ostream& operator<<(std::ostream& stream, Device device) {
  return stream << device.str();
}

namespace detail {

struct CudaDeviceQuery {
  int count = 0;
  std::string reason;  // why count is 0; empty when devices were found
};

// Asked once: the runtime fixes the visible devices when it starts.
inline const CudaDeviceQuery& cuda_device_query() {
  static const CudaDeviceQuery query = [] {
    CudaDeviceQuery result;
    if (CudaBackend* backend = registered_cuda_backend())
      result.count = backend->device_count(result.reason);
    else
      result.reason = concat("this program has no CUDA backend; ", cuda_backend_missing_hint);
    return result;
  }();
  return query;
}

}  // namespace detail

// True when this program links the CUDA backend and at least one GPU is
// usable. Never throws and never crashes: a machine without a driver answers false.
inline bool cuda_available() noexcept {
  try {
    return detail::cuda_device_query().count > 0;
  } catch (...) {
    return false;
  }
}

inline int cuda_device_count() noexcept {
  try {
    return detail::cuda_device_query().count;
  } catch (...) {
    return 0;
  }
}

// Why cuda_available() is false; empty when it is true.
inline std::string cuda_unavailable_reason() {
  return detail::cuda_device_query().reason;
}

namespace detail {

// Throws unless `device` can hold data in this process.
inline void require_usable(Device device) {
  if (device.is_cpu()) return;
  if (registered_cuda_backend() == nullptr)
    throw Error(concat("cannot use ", device, ": this program has no CUDA backend"), __FILE__, __LINE__,
                cuda_backend_missing_hint);
  const CudaDeviceQuery& query = cuda_device_query();
  if (query.count == 0)
    throw Error(concat("cannot use ", device, ": the CUDA backend is linked, but no GPU is usable"), __FILE__, __LINE__,
                query.reason);
  CUMTL_REQUIRE(device.index() < query.count, "cannot use ", device, ": this process sees ", query.count,
                " CUDA device(s)");
}

}  // namespace detail
}  // namespace cumtl
