#pragma once
// Helpers shared by the test suites.

#include <doctest/doctest.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <cumtl/cumtl.hpp>

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
template <class T>
double max_relative_error(const std::vector<T>& a, const std::vector<T>& b, double floor = 1e-6) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double difference = std::abs(double(a[i]) - double(b[i]));
    if (std::isnan(difference)) return INFINITY;
    worst = std::max(worst, difference / std::max(std::abs(double(b[i])), floor));
  }
  return worst;
}

}  // namespace cumtl_test

// Checks that `expression` throws a cumtl::Error whose text contains every part.
#define CHECK_ERROR_WITH(expression, ...)                                                        \
  do {                                                                                           \
    const std::string cumtl_message_ = ::cumtl_test::error_message([&] { (void)(expression); }); \
    INFO("error text: ", cumtl_message_);                                                        \
    CHECK(::cumtl_test::contains_all(cumtl_message_, {__VA_ARGS__}));                            \
  } while (false)
