#pragma once
// Where a tensor lives: the CPU or one CUDA GPU. Every operation dispatches at
// run time on this, so one binary runs on machines with and without a GPU.

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "cumtl/core/error.hpp"
#if CUMTL_HAS_CUDA
#include "cumtl/core/cuda_status.hpp"
#endif

namespace cumtl::inline CUMTL_ABI {

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
#if CUMTL_HAS_CUDA
    const cudaError_t status = cudaGetDeviceCount(&result.count);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      result.count = 0;
      result.reason =
          concat("cudaGetDeviceCount failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ")");
      if (const std::string hint = cuda_hint(status); !hint.empty()) result.reason += "; " + hint;
    } else if (result.count == 0) {
      result.reason = "the CUDA runtime found no device (check nvidia-smi and CUDA_VISIBLE_DEVICES)";
    }
#else
    result.reason =
        "this translation unit was compiled without CUDA: compile it with nvcc, with cumtl "
        "configured with CUMTL_CUDA=ON";
#endif
    return result;
  }();
  return query;
}

}  // namespace detail

// True when this translation unit has the CUDA backend and at least one GPU is
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
  const CudaDeviceQuery& query = cuda_device_query();
  if (query.count == 0)
    throw Error(concat("cannot use ", device, ": no CUDA device is available"), __FILE__, __LINE__, query.reason);
  CUMTL_REQUIRE(device.index() < query.count, "cannot use ", device, ": this process sees ", query.count,
                " CUDA device(s)");
}

}  // namespace detail
}  // namespace cumtl::inline CUMTL_ABI
