#pragma once
// Launcher of the image preprocessing kernel (nvcc only); same signature as cpu::.

#include <cstdint>

#include "cumtl/core/error.hpp"
#include "cumtl/cuda/launch.hpp"
#include "cumtl/kernels/preprocess.cuh"

namespace cumtl::cuda {

template <class T>
void normalize_images(Context& ctx, std::int64_t count, int channels, const std::uint8_t* pixels,
                      const kernels::ChannelAffine<compute_t<T>>& affine, T* out) {
  switch (channels) {
    case 1:
      launch_elementwise(ctx, "cumtl::normalize_images", kernels::normalize_images_kernel<T, 1>, count, count, pixels,
                         affine, out);
      return;
    case 3:
      launch_elementwise(ctx, "cumtl::normalize_images", kernels::normalize_images_kernel<T, 3>, count, count, pixels,
                         affine, out);
      return;
    default: CUMTL_FAIL("cuda::normalize_images: ", channels, " channels, expected 1 or 3");
  }
}

}  // namespace cumtl::cuda
