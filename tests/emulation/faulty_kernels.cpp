// Kernels with the faults the emulated execution model exists to catch, one
// per mode; tests/CMakeLists.txt runs each and expects its report.
//   shuffle-skipped-by-some-lanes    half a warp shuffles while the other half waits at a barrier: reported as stuck
//   shuffle-reads-a-returned-lane    a lane reads one that has returned: reported
//   shared-memory-without-a-barrier  (under ThreadSanitizer) a thread reads another's shared value unordered: a race
#include <cstdio>
#include <cstring>
#include <functional>

#include "cumtl_emulation/execution_model.hpp"

namespace {

__global__ void shuffle_skipped_by_some_lanes(int* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 1);
  else
    __syncthreads();
}

__global__ void shuffle_reads_a_returned_lane(int* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 16);
}

__global__ void shared_memory_without_a_barrier(int* out) {
  __shared__ int values[64];
  values[threadIdx.x] = int(threadIdx.x);
  out[threadIdx.x] = values[(threadIdx.x + 1) % 64];
}

}  // namespace

int main(int argc, char** argv) {
  int out[64] = {};
  const char* mode = argc == 2 ? argv[1] : "";
  std::function<void()> body;
  if (std::strcmp(mode, "shuffle-skipped-by-some-lanes") == 0)
    body = [&] { shuffle_skipped_by_some_lanes(out); };
  else if (std::strcmp(mode, "shuffle-reads-a-returned-lane") == 0)
    body = [&] { shuffle_reads_a_returned_lane(out); };
  else if (std::strcmp(mode, "shared-memory-without-a-barrier") == 0)
    body = [&] { shared_memory_without_a_barrier(out); };
  else {
    std::fprintf(stderr,
                 "usage: %s shuffle-skipped-by-some-lanes|shuffle-reads-a-returned-lane|"
                 "shared-memory-without-a-barrier\n",
                 argv[0]);
    return 2;
  }
  cumtl::emulation::run(mode, dim3(1), dim3(64), body);
  std::printf("%s: the kernel ran to its end\n", mode);
  return 0;
}
