#pragma once
// The input checks every layer makes, with errors that name the layer (its
// kind and its parameter prefix, e.g. "Conv2d 'layer1.0.conv1'") and the shapes.

#include <string>
#include <string_view>

#include "cumtl/core/tensor.hpp"

namespace cumtl::detail {

// x is a non-empty [N, H, W, channels] activation of scalar type `dtype` (channels < 0: any).
inline void require_activation(std::string_view layer, const Tensor& x, std::int64_t channels, ScalarType dtype) {
  CUMTL_REQUIRE(x.defined(), layer, ": the input is undefined");
  CUMTL_REQUIRE(x.shape().rank() == 4 && (channels < 0 || x.shape()[3] == channels) && x.dtype() == dtype, layer,
                ": the input is ", x.description(), ", expected ", name_of(dtype), "[N, H, W, ",
                channels < 0 ? std::string("C") : std::to_string(channels), "] (NHWC)");
  CUMTL_REQUIRE(x.numel() > 0, layer, ": the input ", x.description(), " is empty (an empty batch?)");
}

// x is a non-empty [N, features] matrix of scalar type `dtype`.
inline void require_matrix(std::string_view layer, const Tensor& x, std::int64_t features, ScalarType dtype) {
  CUMTL_REQUIRE(x.defined(), layer, ": the input is undefined");
  CUMTL_REQUIRE(x.shape().rank() == 2 && x.shape()[1] == features && x.dtype() == dtype, layer, ": the input is ",
                x.description(), ", expected ", name_of(dtype), "[N, ", features, "]");
  CUMTL_REQUIRE(x.shape()[0] > 0, layer, ": the input ", x.description(), " is an empty batch");
}

// backward() needs the tensors its forward() kept.
inline void require_forward_ran(std::string_view layer, const Tensor& kept_input) {
  CUMTL_REQUIRE(kept_input.defined(), layer, ": backward() called before forward() in the train phase");
}

}  // namespace cumtl::detail
