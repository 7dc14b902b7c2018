#pragma once
// Image preprocessing, the last step of the data pipeline: an 8-bit image
// batch to the network's normalized float input, on the CPU or a GPU.
//
//   normalize_images(ctx, pixels, mean, stddev, out)   out[n,h,w,c] = (pixels[n,h,w,c] / 255 − mean[c]) / stddev[c]
//   normalize_images(ctx, pixels, out)                 the same with ImageNet's mean and standard deviation
//
// Requires: pixels uint8 [N, H, W, C] with C = 1 (only mean[0] and stddev[0]
// are used) or C = 3; out float32, bfloat16 or float16 (the float32 result
// rounded once) of the same shape; both on ctx's device;
// every stddev[c] used positive and every mean[c] used finite. The work is
// enqueued on ctx's stream. The GPU result equals the CPU's bit for bit
// (kernels/preprocess.cuh says why).

#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cumtl/cpu/preprocess.hpp"
#include "cumtl/ops/dispatch.hpp"

namespace cumtl::ops {

// The statistics torchvision's pretrained models expect, of pixel / 255 in RGB order.
inline constexpr std::array<float, 3> imagenet_mean{0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> imagenet_std{0.229f, 0.224f, 0.225f};

inline void normalize_images(Context& ctx, const Tensor& pixels, const std::array<float, 3>& mean,
                             const std::array<float, 3>& stddev, Tensor& out) {
  constexpr const char* operation = "ops::normalize_images";
  detail::require_on_context(ctx, operation, "pixels", pixels);
  detail::require_on_context(ctx, operation, "out", out);
  CUMTL_REQUIRE(pixels.dtype() == ScalarType::u8 && pixels.shape().rank() == 4, operation, ": 'pixels' is ",
                pixels.description(), ", expected uint8[N, H, W, C]");
  const std::int64_t channels = pixels.shape()[3];
  CUMTL_REQUIRE(channels == 1 || channels == 3, operation, ": 'pixels' is ", pixels.description(), " with ", channels,
                " channels, expected 1 (grey) or 3 (RGB)");
  CUMTL_REQUIRE(out.dtype() == ScalarType::f32 || out.dtype() == ScalarType::bf16 || out.dtype() == ScalarType::f16,
                operation, ": 'out' is ", out.description(), ", expected float32, bfloat16 or float16");
  detail::require_shape(operation, "out", out, pixels.shape(), out.dtype());
  for (std::size_t c = 0; c < std::size_t(channels); ++c) {
    CUMTL_REQUIRE(std::isfinite(mean[c]), operation, ": mean[", c, "] is ", mean[c]);
    CUMTL_REQUIRE(std::isfinite(stddev[c]) && stddev[c] > 0, operation, ": stddev[", c, "] is ", stddev[c],
                  ", expected a positive number");
  }
  const kernels::ChannelAffine<float> affine = kernels::normalize_affine<float>(mean, stddev);
  dispatch_activation_type(out.dtype(), operation, [&]<class T>() {
    if constexpr (!std::is_same_v<T, double>)
      CUMTL_DISPATCH(ctx, T, normalize_images, ctx, pixels.numel(), int(channels), pixels.data<std::uint8_t>(), affine,
                     out.data<T>());
  });
}

inline void normalize_images(Context& ctx, const Tensor& pixels, Tensor& out) {
  normalize_images(ctx, pixels, imagenet_mean, imagenet_std, out);
}

}  // namespace cumtl::ops
