#pragma once
// The test suites' checks of numbers and errors; light enough for suites that
// do not include all of cumtl (testing.hpp adds the rest).

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "cumtl/core/error.hpp"
#include "cumtl/core/half.hpp"

// Test names say bfloat16_t and float16_t rather than the template they alias.
TYPE_TO_STRING(cumtl::bfloat16_t);
TYPE_TO_STRING(cumtl::float16_t);

namespace cumtl_test {

// The message of the cumtl::Error that `action` throws, or a text saying none was.
template <class Action>
std::string error_message(Action&& action) {
  try {
    action();
  } catch (const cumtl::Error& error) {
    return error.what();
  }
  return "(no cumtl::Error was thrown)";
}

inline bool contains_all(const std::string& text, std::initializer_list<std::string_view> parts) {
  for (std::string_view part : parts)
    if (text.find(part) == std::string::npos) return false;
  return true;
}

// Largest |a-b| / max(|b|, floor) over two equally long arrays; infinite on a NaN.
// 2-byte values are widened through float, as they compute.
template <class T>
double max_relative_error(const std::vector<T>& a, const std::vector<T>& b, double floor = 1e-6) {
  REQUIRE(a.size() == b.size());
  const auto wide = [](const T& value) { return double(cumtl::compute_t<T>(value)); };
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double difference = std::abs(wide(a[i]) - wide(b[i]));
    if (std::isnan(difference)) return INFINITY;
    worst = std::max(worst, difference / std::max(std::abs(wide(b[i])), floor));
  }
  return worst;
}

// Largest |actual − expected| over the largest |expected|; infinite on a NaN.
// Outputs and gradients cross zero, where an elementwise relative error means
// nothing, so errors are measured against the result's scale. 2-byte values
// are widened through float.
template <class A, class B>
double error_over_scale(const std::vector<A>& actual, const std::vector<B>& expected) {
  REQUIRE(actual.size() == expected.size());
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double wanted = double(cumtl::compute_t<B>(expected[i]));
    const double difference = std::abs(double(cumtl::compute_t<A>(actual[i])) - wanted);
    if (std::isnan(difference)) return INFINITY;
    worst = std::max(worst, difference);
    scale = std::max(scale, std::abs(wanted));
  }
  return scale == 0 ? worst : worst / scale;
}

}  // namespace cumtl_test

// Checks that `expression` throws a cumtl::Error whose text contains every part.
#define CHECK_ERROR_WITH(expression, ...)                                                        \
  do {                                                                                           \
    const std::string cumtl_message_ = ::cumtl_test::error_message([&] { (void)(expression); }); \
    INFO("error text: ", cumtl_message_);                                                        \
    CHECK(::cumtl_test::contains_all(cumtl_message_, {__VA_ARGS__}));                            \
  } while (false)
