#pragma once
// The umbrella header. A host compiler sees the CPU backend; nvcc also sees the
// CUDA backend (cumtl/core/config.hpp explains the split).

#include "cumtl/core/config.hpp"
#include "cumtl/core/context.hpp"
#include "cumtl/core/device.hpp"
#include "cumtl/core/dtype.hpp"
#include "cumtl/core/error.hpp"
#include "cumtl/core/memory.hpp"
#include "cumtl/core/random.hpp"
#include "cumtl/core/shape.hpp"
#include "cumtl/core/tensor.hpp"
#include "cumtl/ops/elementwise.hpp"
#include "cumtl/ops/random.hpp"
#include "cumtl/loss/multitask_loss.hpp"
#include "cumtl/loss/metrics.hpp"
