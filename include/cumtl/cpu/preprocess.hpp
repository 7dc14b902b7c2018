#pragma once
// CPU twin of the image preprocessing kernel in kernels/preprocess.cuh, with
// the launcher's signature: the test oracle, and what the loader's worker
// threads run per image when the batch goes to the CPU.

#include <cstdint>

#include "cumtl/core/context.hpp"
#include "cumtl/kernels/preprocess.cuh"

namespace cumtl::cpu {

// `count` elements of an HWC (or NHWC) array with `channels` values per pixel;
// a 2-byte T gets the float map's result rounded once.
template <class T>
void normalize_images(Context&, std::int64_t count, int channels, const std::uint8_t* pixels,
                      const kernels::ChannelAffine<compute_t<T>>& affine, T* out) {
  // Pixel by pixel with the channel as the inner loop: no remainder per element.
  const std::int64_t pixel_count = count / channels;
  for (std::int64_t p = 0; p < pixel_count; ++p)
    for (int c = 0; c < channels; ++c) {
      const std::int64_t i = p * channels + c;
      out[i] = T(kernels::normalize_pixel(pixels[i], affine.scale[c], affine.shift[c]));
    }
}

}  // namespace cumtl::cpu
