#pragma once
// The launch layer of cumtl/cuda/launch.hpp for the kernel emulation tests:
// the same names as nvcc's layer, with each kernel run on the CPU by the
// emulated execution model and ctx's memory on the host. The device's
// multiprocessors and occupancy come from emulation::device_model(), so a test
// chooses the grids the launchers build.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cumtl/core/context.hpp"
#include "cumtl/core/error.hpp"
#include "cumtl_emulation/execution_model.hpp"

namespace cumtl::cuda {

class LaunchScope {
 public:
  LaunchScope(const Context&, const char*) {}
};

inline int multiprocessor_count(const Context&) {
  return emulation::device_model().multiprocessors;
}

// As many blocks as the threads and block slots of a multiprocessor allow (a
// GPU may fit fewer, for want of registers).
template <class... Parameters>
int resident_blocks(void (*)(Parameters...), int threads) {
  const emulation::DeviceModel& model = emulation::device_model();
  return std::max(1, std::min(model.blocks_per_multiprocessor, model.threads_per_multiprocessor / threads));
}

inline void memset_async(Context&, void* data, int value, std::size_t bytes) {
  std::memset(data, value, bytes);
}

// Every thread gets its own copy of the arguments, converted once to the
// kernel's parameter types, as a GPU copies them into each thread's view.
template <class... Parameters, class... Arguments>
void launch(Context&, const char* name, void (*kernel)(Parameters...), dim3 grid, dim3 block,
            Arguments&&... arguments) {
  const std::tuple<std::remove_cvref_t<Parameters>...> parameters(std::forward<Arguments>(arguments)...);
  const std::function<void()> body = [&] {
    std::tuple<std::remove_cvref_t<Parameters>...> own = parameters;
    std::apply(kernel, own);
  };
  try {
    emulation::run(name, grid, block, body);
  } catch (const std::invalid_argument& error) {
    CUMTL_FAIL(error.what());
  }
}

}  // namespace cumtl::cuda
