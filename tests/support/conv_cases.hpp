#pragma once
// Convolution test cases for the ops facade (an input shape, a filter shape
// and a geometry), and the convolution computed directly, in double.

#include <cstdint>
#include <vector>

#include <cumtl/cumtl.hpp>

namespace cumtl_test {

struct ConvOpCase {
  cumtl::Shape x;  // [N, H, W, C]
  cumtl::Shape w;  // [K, R, S, C]
  cumtl::ops::ConvGeometry geometry;
};

// y[n, p, q, k] = Σ_{r, s, c} x[n, p·stride − pad + r·dil, q·stride − pad + s·dil, c] · w[k, r, s, c], summed in
// double from CPU float64 tensors x and w.
inline std::vector<double> direct_convolution(const cumtl::Tensor& x, const cumtl::Tensor& w,
                                              const cumtl::ConvShape& shape) {
  std::vector<double> y;
  const double* xd = x.data<double>();
  const double* wd = w.data<double>();
  for (std::int64_t n = 0; n < shape.n; ++n)
    for (std::int64_t p = 0; p < shape.out_h(); ++p)
      for (std::int64_t q = 0; q < shape.out_w(); ++q)
        for (std::int64_t k = 0; k < shape.k; ++k) {
          double sum = 0;
          for (std::int64_t r = 0; r < shape.r; ++r)
            for (std::int64_t s = 0; s < shape.s; ++s) {
              const std::int64_t h = p * shape.stride_h - shape.pad_h + r * shape.dilation_h;
              const std::int64_t ww = q * shape.stride_w - shape.pad_w + s * shape.dilation_w;
              if (h < 0 || h >= shape.h || ww < 0 || ww >= shape.w) continue;
              for (std::int64_t c = 0; c < shape.c; ++c)
                sum += xd[((n * shape.h + h) * shape.w + ww) * shape.c + c] *
                       wd[((k * shape.r + r) * shape.s + s) * shape.c + c];
            }
          y.push_back(sum);
        }
  return y;
}

}  // namespace cumtl_test
