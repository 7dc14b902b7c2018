#pragma once
// CPU twins of the elementwise operations: the test oracle for the CUDA
// kernels in kernels/elementwise.cuh, with the same signatures as cuda::.

#include <algorithm>
#include <cstdint>

#include "cumtl/core/context.hpp"

namespace cumtl::inline CUMTL_ABI::cpu {

template <class T>
void fill(Context&, T* out, std::int64_t count, T value) {
  std::fill_n(out, count, value);
}

template <class T>
void scale(Context&, T* x, std::int64_t count, T alpha) {
  for (std::int64_t i = 0; i < count; ++i) x[i] *= alpha;
}

template <class T>
void axpy(Context&, std::int64_t count, T alpha, const T* x, T* y) {
  for (std::int64_t i = 0; i < count; ++i) y[i] = alpha * x[i] + y[i];
}

template <class T>
void add(Context&, std::int64_t count, const T* a, const T* b, T* out) {
  for (std::int64_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
}

}  // namespace cumtl::inline CUMTL_ABI::cpu
