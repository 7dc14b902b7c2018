#pragma once
// Convolution test cases for the ops facade (an input shape, a filter shape
// and a geometry), every product of a convolution, and the convolution
// computed directly, in double.

#include <cstdint>
#include <vector>

#include <cumtl/cumtl.hpp>

namespace cumtl_test {

struct ConvOpCase {
  cumtl::Shape x;  // [N, H, W, C]
  cumtl::Shape w;  // [K, R, S, C]
  cumtl::ops::ConvGeometry geometry;
};

// Calls term(x index, w index, y index) for every product of the forward
// convolution (cross-correlation, NHWC and KRSC, zero padding); each output's
// products come in (r, s, c) order.
template <class Term>
void for_each_conv_term(const cumtl::ConvShape& s, Term&& term) {
  const std::int64_t out_h = s.out_h(), out_w = s.out_w();
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t p = 0; p < out_h; ++p)
      for (std::int64_t q = 0; q < out_w; ++q)
        for (std::int64_t r = 0; r < s.r; ++r)
          for (std::int64_t t = 0; t < s.s; ++t) {
            const std::int64_t ih = p * s.stride_h - s.pad_h + r * s.dilation_h;
            const std::int64_t iw = q * s.stride_w - s.pad_w + t * s.dilation_w;
            if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
            for (std::int64_t k = 0; k < s.k; ++k)
              for (std::int64_t c = 0; c < s.c; ++c)
                term(((n * s.h + ih) * s.w + iw) * s.c + c, ((k * s.r + r) * s.s + t) * s.c + c,
                     ((n * out_h + p) * out_w + q) * s.k + k);
          }
}

// y[n, p, q, k] = Σ_{r, s, c} x[n, p·stride − pad + r·dil, q·stride − pad + s·dil, c] · w[k, r, s, c], summed in
// double from CPU float64 tensors x and w.
inline std::vector<double> direct_convolution(const cumtl::Tensor& x, const cumtl::Tensor& w,
                                              const cumtl::ConvShape& shape) {
  std::vector<double> y(static_cast<std::size_t>(shape.y_count()), 0.0);
  const double* xd = x.data<double>();
  const double* wd = w.data<double>();
  for_each_conv_term(shape, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) {
    y[static_cast<std::size_t>(yi)] += xd[xi] * wd[wi];
  });
  return y;
}

}  // namespace cumtl_test
