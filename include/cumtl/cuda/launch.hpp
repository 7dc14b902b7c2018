#pragma once
// The launch layer: what every launcher of ours does around a kernel.
//   LaunchScope           for a launcher's scope: a profiler range named in
//                         cumtl's terms, and ctx's device made current;
//   launch                one kernel on ctx's stream, the launch checked;
//   launch_elementwise    a grid-stride kernel over `count` elements;
//   resident_blocks       blocks of a kernel that fit on one multiprocessor;
//   multiprocessor_count  ctx's device's multiprocessors;
//   memset_async          bytes set on ctx's stream;
// and the grid shapes built from them (the end of this file). nvcc's layer
// follows. The kernel emulation tests (tests/emulation) compile the launchers
// with the host compiler and bring a layer of their own with the same names,
// which runs each kernel on the CPU: the launchers above this layer and
// the kernels below it are the ones a GPU runs.
//
// Launch errors are checked after every launch. With CUMTL_SYNC=1 in the
// environment the stream is also synchronized after each launch, so a fault
// is reported by the launcher of the kernel that caused it instead of by some
// later call (slow: for debugging only).

#include <algorithm>
#include <bit>
#include <cstdint>
#include <utility>

#include "cumtl/core/context.hpp"

#if defined(CUMTL_EMULATE_CUDA)
#include "cumtl_emulation/launch_layer.hpp"
#else
#if !defined(__CUDACC__)
#error "cumtl/cuda/launch.hpp is for the CUDA backend's implementation unit, compiled by nvcc"
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nvtx3/nvToolsExt.h>

#include <cstdlib>
#include <cstring>

#include "cumtl/cuda/cudnn_conv.hpp"
#include "cumtl/cuda/status.hpp"

namespace cumtl::cuda {

inline bool sync_after_launch() {
  static const bool enabled = [] {
    const char* value = std::getenv("CUMTL_SYNC");
    return value != nullptr && std::strcmp(value, "") != 0 && std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

inline void check_launch(Context& ctx, const char* kernel, const char* file, int line) {
  if (const cudaError_t status = cudaGetLastError(); status != cudaSuccess)
    detail::check_cuda(status, detail::concat("launch of ", kernel).c_str(), file, line);
  if (sync_after_launch()) {
    if (const cudaError_t status = cudaStreamSynchronize(ctx.stream()); status != cudaSuccess)
      detail::check_cuda(status, detail::concat(kernel, " (reported by CUMTL_SYNC=1)").c_str(), file, line);
  }
}

// A range on the profiler's timeline under the "cumtl" domain, for the scope.
class ProfileRange {
 public:
  explicit ProfileRange(const char* name) {
    nvtxEventAttributes_t attributes{};
    attributes.version = NVTX_VERSION;
    attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
    attributes.message.ascii = name;
    nvtxDomainRangePushEx(domain(), &attributes);
  }
  ~ProfileRange() { nvtxDomainRangePop(domain()); }
  ProfileRange(const ProfileRange&) = delete;
  ProfileRange& operator=(const ProfileRange&) = delete;

 private:
  static nvtxDomainHandle_t domain() {
    static const nvtxDomainHandle_t handle = nvtxDomainCreateA("cumtl");
    return handle;
  }
};

// The context's cuDNN and cuBLAS handles, created on first use (creating a
// cuDNN handle takes a noticeable time) and bound to the context's stream.
inline cudnnHandle_t cudnn_handle(Context& ctx) {
  CUMTL_REQUIRE(ctx.device().is_cuda(), "a cuDNN handle needs a CUDA context, this one is on ", ctx.device());
  Context::LibraryHandles& handles = ctx.library_handles();
  if (handles.cudnn == nullptr) {
    // Once per process, before cuDNN is first used; a mismatch throws here
    // for every context, never half way into a plan.
    static const bool version_checked = (check_cudnn_version(), true);
    (void)version_checked;
    const detail::DeviceGuard guard(ctx.device().index());
    cudnnHandle_t handle = nullptr;
    CUMTL_CHECK_CUDNN(cudnnCreate(&handle));
    handles.cudnn = handle;
    CUMTL_CHECK_CUDNN(cudnnSetStream(handle, ctx.stream()));
  }
  return static_cast<cudnnHandle_t>(handles.cudnn);
}

// cuBLAS's math mode for a numerics policy. TF32 applies to fp32 products
// only; CUBLAS_DEFAULT_MATH keeps at least the operands' precision throughout.
// Deterministic mode needs no mode of its own: cuBLAS guarantees bit-identical
// results from run to run on GPUs of one architecture and multiprocessor
// count with one toolkit version, as long as one stream is active at a time
// (with several, it may pick other kernels; CUBLAS_WORKSPACE_CONFIG=:4096:8
// restores the guarantee, as PyTorch's determinism notes say). The only
// routines using atomics (symv, hemv) do so after cublasSetAtomicsMode allows
// it, which cumtl never does. CUBLAS_PEDANTIC_MATH is about accuracy, not
// reproducibility, and is not needed for either.
inline cublasMath_t cublas_math_mode(const NumericsPolicy& numerics) {
  return numerics.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
}

// The context's cuBLAS handle, in the math mode of the context's numerics as
// they are now: the policy may change after the handle was created, so every
// use re-reads it.
inline cublasHandle_t cublas_handle(Context& ctx) {
  CUMTL_REQUIRE(ctx.device().is_cuda(), "a cuBLAS handle needs a CUDA context, this one is on ", ctx.device());
  Context::LibraryHandles& handles = ctx.library_handles();
  if (handles.cublas == nullptr) {
    const detail::DeviceGuard guard(ctx.device().index());
    cublasHandle_t handle = nullptr;
    CUMTL_CHECK_CUBLAS(cublasCreate(&handle));
    handles.cublas = handle;
    CUMTL_CHECK_CUBLAS(cublasSetStream(handle, ctx.stream()));
  }
  const auto handle = static_cast<cublasHandle_t>(handles.cublas);
  if (const cublasMath_t mode = cublas_math_mode(ctx.numerics()); handles.cublas_math_mode != int(mode)) {
    CUMTL_CHECK_CUBLAS(cublasSetMathMode(handle, mode));
    handles.cublas_math_mode = int(mode);
  }
  return handle;
}

#define CUMTL_CHECK_LAUNCH(ctx, kernel) ::cumtl::cuda::check_launch((ctx), (kernel), __FILE__, __LINE__)

// For a launcher's scope: its profiler range, and ctx's device current.
class LaunchScope {
 public:
  LaunchScope(const Context& ctx, const char* name) : range_(name), guard_(ctx.device().index()) {}

 private:
  ProfileRange range_;
  detail::DeviceGuard guard_;
};

inline int multiprocessor_count(const Context& ctx) {
  return ctx.multiprocessor_count();
}

// Blocks of `threads` threads of `kernel` that fit on one multiprocessor at once (at least 1).
template <class... Parameters>
int resident_blocks(void (*kernel)(Parameters...), int threads) {
  int blocks = 0;
  CUMTL_CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, 0));
  return std::max(blocks, 1);
}

inline void memset_async(Context& ctx, void* data, int value, std::size_t bytes) {
  CUMTL_CHECK_CUDA(cudaMemsetAsync(data, value, bytes, ctx.stream()));
}

// `kernel` on ctx's stream, in a grid of `grid` blocks of `block` threads; a
// launch error is reported under `name`.
template <class... Parameters, class... Arguments>
void launch(Context& ctx, const char* name, void (*kernel)(Parameters...), dim3 grid, dim3 block,
            Arguments&&... arguments) {
  // clang-format takes a .hpp for plain C++ and would split the chevrons.
  // clang-format off
  kernel<<<grid, block, 0, ctx.stream()>>>(std::forward<Arguments>(arguments)...);
  // clang-format on
  CUMTL_CHECK_LAUNCH(ctx, name);
}

}  // namespace cumtl::cuda
#endif

namespace cumtl::cuda {

inline constexpr int elementwise_block = 256;

// Blocks for a grid-stride loop over `count` elements: enough to fill every
// multiprocessor several times over, no more than the elements need.
inline unsigned elementwise_grid(const Context& ctx, std::int64_t count) {
  const std::int64_t needed = (count + elementwise_block - 1) / elementwise_block;
  const std::int64_t resident = std::int64_t(multiprocessor_count(ctx)) * 8;
  return unsigned(std::clamp<std::int64_t>(needed, 1, std::max<std::int64_t>(resident, 1)));
}

// Launches a grid-stride `kernel` over `count` elements on ctx's stream,
// inside a profiler range named `name`, and checks the launch.
template <class... Parameters, class... Arguments>
void launch_elementwise(Context& ctx, const char* name, void (*kernel)(Parameters...), std::int64_t count,
                        Arguments&&... arguments) {
  if (count == 0) return;
  const LaunchScope scope(ctx, name);
  launch(ctx, name, kernel, dim3(elementwise_grid(ctx, count)), dim3(elementwise_block),
         std::forward<Arguments>(arguments)...);
}

// The tile of the column-sum kernels (kernels/batchnorm.cuh, kernels/bias.cuh)
// over a row-major rows × columns array: a block of `threads` threads is TX
// columns × TY rows (TX = min(32, columns rounded up to a power of two), TY =
// threads / TX); the grid is column tiles × row blocks, and each row block owns
// rows_per_block consecutive rows.
struct ColumnSumGrid {
  dim3 block;
  dim3 grid;
  std::int64_t rows_per_block = 0;
  std::int64_t row_blocks = 0;
};

// `resident` is how many blocks of the launch's kernels fit on one
// multiprocessor: the row blocks make about one wave of them, so no tail of
// blocks waits for a second wave and there are as few partials as keep the
// device busy, but no more than leave each thread `min_rows_per_thread` rows.
inline ColumnSumGrid column_sum_grid(const Context& ctx, std::int64_t rows, std::int64_t columns, int threads,
                                     int resident, std::int64_t min_rows_per_thread) {
  const std::int64_t tile = std::min<std::int64_t>(32, std::int64_t(std::bit_ceil(std::uint64_t(columns))));
  const std::int64_t tile_rows = threads / tile;
  const std::int64_t column_tiles = (columns + tile - 1) / tile;
  const std::int64_t wave = std::int64_t(resident) * multiprocessor_count(ctx);
  const std::int64_t wanted = std::max<std::int64_t>(1, wave / column_tiles);
  const std::int64_t fewest_rows_per_block = tile_rows * min_rows_per_thread;
  const std::int64_t limit = std::min<std::int64_t>((rows + fewest_rows_per_block - 1) / fewest_rows_per_block, 65535);
  const std::int64_t row_blocks = std::clamp<std::int64_t>(wanted, 1, std::max<std::int64_t>(limit, 1));
  ColumnSumGrid shape;
  shape.rows_per_block = std::max<std::int64_t>((rows + row_blocks - 1) / row_blocks, 1);
  shape.row_blocks = std::max<std::int64_t>((rows + shape.rows_per_block - 1) / shape.rows_per_block, 1);
  shape.block = dim3(unsigned(tile), unsigned(tile_rows));
  shape.grid = dim3(unsigned(column_tiles), unsigned(shape.row_blocks));
  return shape;
}

}  // namespace cumtl::cuda
