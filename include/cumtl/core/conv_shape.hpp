#pragma once
// The geometry of one 2-D convolution in cumtl's layout: input NHWC, filters
// KRSC (K output channels, R×S window, C input channels), output NPQK. The
// backward passes use the forward's geometry.

#include <cstdint>
#include <string>

#include "cumtl/core/error.hpp"

namespace cumtl::inline CUMTL_ABI {

struct ConvShape {
  std::int64_t n = 0, h = 0, w = 0, c = 0;  // input
  std::int64_t k = 0, r = 0, s = 0;         // filters
  std::int64_t pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;

  // 0 for a geometry without output (a non-positive stride, or a window larger than the padded input).
  std::int64_t out_h() const { return out_extent(h, pad_h, dilation_h, r, stride_h); }
  std::int64_t out_w() const { return out_extent(w, pad_w, dilation_w, s, stride_w); }

  friend bool operator==(const ConvShape&, const ConvShape&) = default;

  // "x[8, 56, 56, 64] * w[64, 3, 3, 64] stride 1 pad 1 dilation 1 -> y[8, 56, 56, 64]"
  std::string str() const {
    return detail::concat("x[", n, ", ", h, ", ", w, ", ", c, "] * w[", k, ", ", r, ", ", s, ", ", c, "] stride ",
                          stride_h, (stride_w != stride_h ? "x" + std::to_string(stride_w) : ""), " pad ", pad_h,
                          (pad_w != pad_h ? "x" + std::to_string(pad_w) : ""), " dilation ", dilation_h,
                          (dilation_w != dilation_h ? "x" + std::to_string(dilation_w) : ""), " -> y[", n, ", ",
                          out_h(), ", ", out_w(), ", ", k, "]");
  }

 private:
  static std::int64_t out_extent(std::int64_t in, std::int64_t pad, std::int64_t dilation, std::int64_t window,
                                 std::int64_t stride) {
    const std::int64_t span = in + 2 * pad - dilation * (window - 1) - 1;
    return stride > 0 && span >= 0 ? span / stride + 1 : 0;
  }
};

}  // namespace cumtl::inline CUMTL_ABI
