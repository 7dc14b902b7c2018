// Includes the umbrella header a second time in the same program: a non-inline
// function or variable in any header would now fail to link.
#include <cumtl/cumtl.hpp>

double sum_in_second_translation_unit(const cumtl::Tensor& tensor) {
  double sum = 0;
  for (double value : tensor.to_vector<double>()) sum += value;
  return sum;
}
