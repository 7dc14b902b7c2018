#pragma once
// The geometry of one 2-D convolution in cumtl's layout: input NHWC, filters
// KRSC (K output channels, R×S window, C input channels), output NPQK. The
// backward passes use the forward's geometry.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cumtl/core/error.hpp"

namespace cumtl {

struct ConvShape {
  std::int64_t n = 0, h = 0, w = 0, c = 0;  // input
  std::int64_t k = 0, r = 0, s = 0;         // filters
  std::int64_t pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;

  // 0 for a geometry without output (a non-positive stride, or a window larger than the padded input).
  std::int64_t out_h() const { return out_extent(h, pad_h, dilation_h, r, stride_h); }
  std::int64_t out_w() const { return out_extent(w, pad_w, dilation_w, s, stride_w); }
  // The elements of x, w and y.
  std::int64_t x_count() const { return n * h * w * c; }
  std::int64_t w_count() const { return k * r * s * c; }
  std::int64_t y_count() const { return n * out_h() * out_w() * k; }

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

// A square convolution; the padding keeps the size at stride 1 unless given.
inline ConvShape square_conv(std::int64_t batch, std::int64_t size, std::int64_t c, std::int64_t k, std::int64_t r,
                             std::int64_t stride, std::int64_t pad = -1) {
  ConvShape shape;
  shape.n = batch;
  shape.h = shape.w = size;
  shape.c = c;
  shape.k = k;
  shape.r = shape.s = r;
  shape.pad_h = shape.pad_w = pad < 0 ? (r - 1) / 2 : pad;
  shape.stride_h = shape.stride_w = stride;
  return shape;
}

// The convolutions of a ResNet as plain numbers, so the cuDNN plan tests and
// the benchmarks can list a network's convolutions without building it.
struct ResNetConvLayout {
  std::int64_t batch, input;
  std::int64_t stem_k, stem_r, stem_stride, stem_pad;
  bool max_pool;  // 3x3 stride 2 pad 1 after the stem
  bool bottleneck;
  std::vector<std::int64_t> widths;
  std::vector<int> blocks;
};

// Every distinct convolution of the network, in order of appearance. Stages
// after the first start with stride 2 (on the 3x3 of a bottleneck, as in
// torchvision); a block whose shape changes gets a 1x1 projection shortcut.
inline std::vector<ConvShape> resnet_convolutions(const ResNetConvLayout& layout) {
  std::vector<ConvShape> shapes;
  const auto add = [&shapes](const ConvShape& shape) {
    if (std::find(shapes.begin(), shapes.end(), shape) == shapes.end()) shapes.push_back(shape);
  };
  const ConvShape stem =
      square_conv(layout.batch, layout.input, 3, layout.stem_k, layout.stem_r, layout.stem_stride, layout.stem_pad);
  add(stem);
  std::int64_t size = stem.out_h(), channels = layout.stem_k;
  if (layout.max_pool) size = (size + 2 - 3) / 2 + 1;
  for (std::size_t stage = 0; stage < layout.widths.size(); ++stage) {
    const std::int64_t width = layout.widths[stage], out = layout.bottleneck ? 4 * width : width;
    for (int block = 0; block < layout.blocks[stage]; ++block) {
      const std::int64_t stride = block == 0 && stage > 0 ? 2 : 1;
      std::int64_t next = 0;
      if (layout.bottleneck) {
        add(square_conv(layout.batch, size, channels, width, 1, 1));
        const ConvShape middle = square_conv(layout.batch, size, width, width, 3, stride);
        add(middle);
        next = middle.out_h();
        add(square_conv(layout.batch, next, width, out, 1, 1));
      } else {
        const ConvShape first = square_conv(layout.batch, size, channels, width, 3, stride);
        add(first);
        next = first.out_h();
        add(square_conv(layout.batch, next, width, width, 3, 1));
      }
      if (stride != 1 || channels != out) add(square_conv(layout.batch, size, channels, out, 1, stride));
      size = next;
      channels = out;
    }
  }
  return shapes;
}

}  // namespace cumtl
