#pragma once
// How a facade in ops/ validates its tensors and picks a backend.
//
// A facade checks its contract (devices, scalar types, shapes) once, turns the
// run-time scalar type into a template argument, and calls the twin with the
// same name and arguments: cpu::NAME<T> on the CPU, the CUDA backend's
// operation of that name (core/cuda_backend.hpp) on a GPU.

#include <initializer_list>
#include <string_view>

#include "cumtl/core/cuda_backend.hpp"
#include "cumtl/core/tensor.hpp"

// CUMTL_DISPATCH(ctx, T, twin, args...) calls the CUDA backend's twin or cpu::twin<T>.
#define CUMTL_DISPATCH(ctx, T, twin, ...)                      \
  do {                                                         \
    if ((ctx).device().is_cuda())                              \
      ::cumtl::detail::cuda_operations<T>().twin(__VA_ARGS__); \
    else                                                       \
      ::cumtl::cpu::twin<T>(__VA_ARGS__);                      \
  } while (false)

namespace cumtl::detail {

// `tensor` (called `name` in `operation`'s contract) is defined and on ctx's device.
inline void require_on_context(const Context& ctx, std::string_view operation, std::string_view name,
                               const Tensor& tensor) {
  CUMTL_REQUIRE(tensor.defined(), operation, ": tensor '", name, "' is undefined");
  CUMTL_REQUIRE(tensor.device() == ctx.device(), operation, ": tensor '", name, "' is ", tensor.description(),
                " but the context is on ", ctx.device());
}

// A tensor and the name an operation's contract gives it.
struct NamedOperand {
  std::string_view name;
  const Tensor& tensor;
};

// Every operand is defined and on ctx's device.
inline void require_on_context(const Context& ctx, std::string_view operation,
                               std::initializer_list<NamedOperand> operands) {
  for (const NamedOperand& operand : operands) require_on_context(ctx, operation, operand.name, operand.tensor);
}

// `a` and `b` have the same scalar type and shape.
inline void require_alike(std::string_view operation, std::string_view name_a, const Tensor& a, std::string_view name_b,
                          const Tensor& b) {
  CUMTL_REQUIRE(a.dtype() == b.dtype() && a.shape() == b.shape(), operation, ": tensor '", name_a, "' is ",
                a.description(), " but '", name_b, "' is ", b.description());
}

// `tensor` (called `name`) has exactly `shape` and `dtype`.
inline void require_shape(std::string_view operation, std::string_view name, const Tensor& tensor, const Shape& shape,
                          ScalarType dtype) {
  CUMTL_REQUIRE(tensor.shape() == shape && tensor.dtype() == dtype, operation, ": '", name, "' is ",
                tensor.description(), ", expected ", name_of(dtype), shape);
}

}  // namespace cumtl::detail
