#pragma once
// A pooling test case: an NHWC input shape and a window, with its output shape.

#include <cumtl/ops/pooling.hpp>

namespace cumtl_test {

struct PoolCase {
  cumtl::Shape x;
  cumtl::ops::Pool2d pool;
};

inline cumtl::Shape pooled(const PoolCase& c) {
  return cumtl::Shape{c.x[0], c.pool.out_h(c.x[1]), c.pool.out_w(c.x[2]), c.x[3]};
}

}  // namespace cumtl_test
