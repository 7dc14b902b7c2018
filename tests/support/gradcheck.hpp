#pragma once
// Finite-difference gradient checks on the CPU in double precision.
//
// The scalar checked is L = Σ_i r_i · y_i for a fixed random r, so the
// incoming gradient dL/dy = r is non-zero and non-uniform (a backward that
// ignores dy, or transposes it, fails). The traps that catch the usual bugs are
// the test's part: fill a gradient with +inf before an overwrite-mode backward
// (an element left unwritten stays infinite), or with known values before an
// accumulate-mode backward (a backward that overwrites loses them).

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "testing.hpp"

namespace cumtl_test {

// Random weights r for L = Σ r ⊙ y, in [-1, 1).
inline cumtl::Tensor loss_weights(const cumtl::Shape& shape, std::uint64_t seed) {
  cumtl::Context cpu;
  cumtl::Tensor weights = cumtl::Tensor::empty(shape, cumtl::ScalarType::f64);
  cumtl::Generator generator(seed);
  cumtl::ops::uniform(cpu, weights, generator, -1, 1);
  return weights;
}

inline double weighted_sum(const cumtl::Tensor& values, const cumtl::Tensor& weights) {
  REQUIRE(values.shape() == weights.shape());
  const double* v = values.data<double>();
  const double* w = weights.data<double>();
  double sum = 0;
  for (std::int64_t i = 0; i < values.numel(); ++i) sum += v[i] * w[i];
  return sum;
}

inline void fill(cumtl::Tensor& tensor, double value) {
  double* data = tensor.data<double>();
  for (std::int64_t i = 0; i < tensor.numel(); ++i) data[i] = value;
}

// Central differences of `loss()` with respect to every element of `variable`
// (a CPU double tensor that `loss` reads), restoring each element after.
template <class Loss>
std::vector<double> numeric_gradient(cumtl::Tensor& variable, Loss&& loss, double step = 1e-6) {
  std::vector<double> gradient(static_cast<std::size_t>(variable.numel()));
  double* data = variable.data<double>();
  for (std::int64_t i = 0; i < variable.numel(); ++i) {
    const double saved = data[i];
    data[i] = saved + step;
    const double above = loss();
    data[i] = saved - step;
    const double below = loss();
    data[i] = saved;
    gradient[static_cast<std::size_t>(i)] = (above - below) / (2 * step);
  }
  return gradient;
}

struct Tolerance {
  double relative = 1e-6;
  double absolute = 1e-8;
};

// Every analytic element within absolute + relative·|numeric| of the numeric one.
inline void check_gradient(const char* name, const std::vector<double>& analytic, const std::vector<double>& numeric,
                           Tolerance tolerance = {}) {
  REQUIRE(analytic.size() == numeric.size());
  double worst = 0;
  std::size_t worst_index = 0;
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    const double error = std::abs(analytic[i] - numeric[i]);
    const double allowed = tolerance.absolute + tolerance.relative * std::abs(numeric[i]);
    if (!(error <= allowed) && (worst == 0 || error > worst)) {
      worst = error;
      worst_index = i;
    }
  }
  INFO("gradient of ", name, ": element ", worst_index, " analytic ", analytic[worst_index], " numeric ",
       numeric[worst_index]);
  CHECK(worst == 0);
}

inline void check_gradient(const char* name, const cumtl::Tensor& analytic, const std::vector<double>& numeric,
                           Tolerance tolerance = {}) {
  check_gradient(name, analytic.to_vector<double>(), numeric, tolerance);
}

}  // namespace cumtl_test
