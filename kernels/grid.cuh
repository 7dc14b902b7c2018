#pragma once
// The loop every elementwise kernel of ours uses: a grid-stride loop with
// consecutive threads on consecutive elements (coalesced accesses) and 64-bit
// indices, so any grid size covers any element count.

#include <cstdint>

#include "cumtl/core/config.hpp"

#if defined(CUMTL_KERNEL_CODE)
#define CUMTL_GRID_STRIDE_LOOP(i, count)                                                  \
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < (count); \
       i += std::int64_t(gridDim.x) * blockDim.x)
#endif
