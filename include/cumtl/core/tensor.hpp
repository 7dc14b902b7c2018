#pragma once
// Tensor: a dense, row-major block of one scalar type on one device, shared by
// handle. Copying a Tensor copies the handle, not the data; view() and slice()
// give more handles on the same storage. Activations are NHWC.
//
// Allocation and copies take the Context whose stream they are ordered on.
// empty() and zeros() without one allocate on Context::default_for(device).
//
// Streams. GPU memory belongs to the stream it was allocated on: the pool takes
// it back in that stream's order, and that stream's work is what a reader
// must wait for. Hence the rules:
//  - The overloads of to() and to_vector() without a context copy host memory
//    only. Given GPU memory (a tensor on a GPU, or a GPU target) they throw a
//    cumtl::Error naming the tensor and the overload that takes a context: no
//    stream they could pick is ordered after the work that wrote the tensor.
//  - to(ctx, ...) and to_vector(ctx) of a tensor that another context's stream
//    owns order themselves: the copy waits for the work enqueued on the owning
//    stream so far, and the owning stream's later work, its stream-ordered free
//    included, waits for the copy. A tensor one stream allocated and another
//    wrote is read on the writer's context.
//  - Operations (ops/) on another context's tensor are the caller's to order:
//    record a detail::CudaEvent on one stream and make the other wait for it
//    (detail::order_streams), as the loader does between its copy stream and
//    the training stream. Borrowed GPU memory (wrap) has no owning stream; its
//    owner orders every use.

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/core/dtype.hpp"
#include "cumtl/core/shape.hpp"

namespace cumtl {

namespace detail {

// Copies bytes between any two devices, ordered on ctx's stream when a GPU is
// involved (ctx must then be on that GPU). Copies to pageable host memory return
// once the data has arrived; the others may still be in flight.
inline void copy_bytes(Context& ctx, void* dst, Device dst_device, const void* src, Device src_device,
                       std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  CUMTL_REQUIRE(ctx.device() == (dst_device.is_cuda() ? dst_device : src_device) ||
                    ctx.device() == (src_device.is_cuda() ? src_device : dst_device),
                "a copy from ", src_device, " to ", dst_device, " must run on a context of one of them, got ",
                ctx.device());
  // Unified addressing tells the runtime the direction from the pointers.
  cuda_backend().copy(dst, src, bytes, ctx.stream());
}

}  // namespace detail

class Tensor {
 public:
  // An undefined tensor (no storage); defined() is false.
  Tensor() = default;

  static Tensor empty(Context& ctx, const Shape& shape, ScalarType dtype) {
    const std::size_t bytes = std::size_t(shape.numel()) * size_of(dtype);
    if (ctx.device().is_cuda()) return Tensor(Storage::device(bytes, ctx.stream_holder()), 0, shape, dtype);
    detail::require_usable(ctx.device());
    return Tensor(Storage::host(bytes), 0, shape, dtype);
  }
  static Tensor empty(const Shape& shape, ScalarType dtype, Device device = Device::cpu()) {
    return empty(Context::default_for(device), shape, dtype);
  }

  static Tensor zeros(Context& ctx, const Shape& shape, ScalarType dtype) {
    Tensor tensor = empty(ctx, shape, dtype);
    tensor.set_zero(ctx);
    return tensor;
  }
  static Tensor zeros(const Shape& shape, ScalarType dtype, Device device = Device::cpu()) {
    return zeros(Context::default_for(device), shape, dtype);
  }

  // Page-locked host memory, so copies to and from a GPU run asynchronously.
  static Tensor pinned(const Shape& shape, ScalarType dtype) {
    return Tensor(Storage::pinned_host(std::size_t(shape.numel()) * size_of(dtype)), 0, shape, dtype);
  }

  // A CPU tensor holding a copy of `values`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
    CUMTL_REQUIRE(std::int64_t(values.size()) == shape.numel(), "Tensor::from_vector: ", values.size(),
                  " values do not fill shape ", shape, " (", shape.numel(), " elements)");
    Tensor tensor = empty(shape, scalar_type_v<T>);
    if (!values.empty()) std::memcpy(tensor.raw_data(), values.data(), tensor.bytes());
    return tensor;
  }

  // A tensor over memory the caller owns and keeps alive; cumtl never frees it.
  static Tensor wrap(void* data, const Shape& shape, ScalarType dtype, Device device) {
    CUMTL_REQUIRE(data != nullptr || shape.numel() == 0, "Tensor::wrap: null pointer for shape ", shape);
    return Tensor(Storage::borrow(data, std::size_t(shape.numel()) * size_of(dtype), device), 0, shape, dtype);
  }

  bool defined() const noexcept {
    return storage_ != nullptr;
  }
  const Shape& shape() const noexcept {
    return shape_;
  }
  ScalarType dtype() const noexcept {
    return dtype_;
  }
  Device device() const noexcept {
    return storage_ ? storage_->device() : Device::cpu();
  }
  std::int64_t numel() const noexcept {
    return shape_.numel();
  }
  std::size_t bytes() const noexcept {
    return std::size_t(numel()) * size_of(dtype_);
  }
  bool is_pinned() const noexcept {
    return storage_ && storage_->kind() == MemoryKind::pinned_host;
  }

  // "float32[8, 32, 32, 16] on cuda:0"
  std::string description() const {
    if (!defined()) return "undefined tensor";
    return detail::concat(name_of(dtype_), shape_, " on ", device());
  }

  void* raw_data() const {
    CUMTL_REQUIRE(defined(), "data of an undefined tensor");
    return static_cast<std::byte*>(storage_->data()) + offset_;
  }

  template <class T>
  T* data() {
    return static_cast<T*>(typed_data(scalar_type_v<T>));
  }
  template <class T>
  const T* data() const {
    return static_cast<const T*>(typed_data(scalar_type_v<T>));
  }

  // The same elements seen with another shape of the same size.
  Tensor view(const Shape& shape) const {
    CUMTL_REQUIRE(shape.numel() == numel(), "cannot view ", description(), " as ", shape, ": ", shape.numel(),
                  " elements instead of ", numel());
    return Tensor(storage_, offset_, shape, dtype_);
  }

  // Rows [begin, end) of the first dimension (a part of a batch), sharing storage.
  Tensor slice(std::int64_t begin, std::int64_t end) const {
    CUMTL_REQUIRE(shape_.rank() > 0, "cannot slice a scalar tensor");
    CUMTL_REQUIRE(0 <= begin && begin <= end && end <= shape_[0], "slice [", begin, ", ", end, ") is outside ",
                  description());
    const std::size_t row_bytes = shape_[0] == 0 ? 0 : bytes() / std::size_t(shape_[0]);
    return Tensor(storage_, offset_ + std::size_t(begin) * row_bytes, shape_.with_leading(end - begin), dtype_);
  }

  // The stream that owns this tensor's GPU memory (allocates and frees it);
  // null for host and borrowed memory.
  CUstream_st* owning_stream() const noexcept {
    return storage_ ? storage_->stream() : nullptr;
  }

  // A copy on `target`, ordered on ctx's stream (and with the owning stream,
  // if another); a GPU target must be ctx's device.
  Tensor to(Context& ctx, Device target) const {
    CUMTL_REQUIRE(target.is_cpu() || target == ctx.device(), "copying ", description(), " to ", target,
                  " needs a context on ", target, ", got one on ", ctx.device());
    Tensor copy = target.is_cpu() ? Tensor(Storage::host(bytes()), 0, shape_, dtype_) : empty(ctx, shape_, dtype_);
    CUstream_st* owner = wait_for_foreign_owner(ctx);
    detail::copy_bytes(ctx, copy.raw_data(), target, raw_data(), device(), bytes());
    if (owner != nullptr) detail::order_streams(ctx.stream(), ctx.device().index(), owner);
    return copy;
  }
  // The same between host memory only (see Streams above).
  Tensor to(Device target) const {
    require_host_only(target, detail::concat("to(ctx, ", target, ")"));
    return to(Context::default_for(Device::cpu()), target);
  }

  // The elements, copied to the host once ctx's earlier work on them is done
  // (and the owning stream's, if another).
  template <class T>
  std::vector<T> to_vector(Context& ctx) const {
    const T* source = data<T>();
    std::vector<T> values(static_cast<std::size_t>(numel()));
    // The host waits for the copy below, so the owner's later work cannot overtake it.
    (void)wait_for_foreign_owner(ctx);
    detail::copy_bytes(ctx, values.data(), Device::cpu(), source, device(), bytes());
    ctx.synchronize();
    return values;
  }
  // The same for host memory only (see Streams above).
  template <class T>
  std::vector<T> to_vector() const {
    require_host_only(Device::cpu(), "to_vector<T>(ctx)");
    return to_vector<T>(Context::default_for(Device::cpu()));
  }

  // Zeroes every element, ordered on ctx's stream.
  void set_zero(Context& ctx) {
    if (bytes() == 0) return;
    CUMTL_REQUIRE(ctx.device() == device(), "set_zero of ", description(), " on a context on ", ctx.device());
    if (device().is_cuda()) {
      detail::cuda_backend().fill_bytes(raw_data(), 0, bytes(), ctx.stream());
      return;
    }
    std::memset(raw_data(), 0, bytes());
  }

 private:
  Tensor(std::shared_ptr<Storage> storage, std::size_t offset, const Shape& shape, ScalarType dtype)
      : storage_(std::move(storage)), offset_(offset), shape_(shape), dtype_(dtype) {}

  // Refuses a copy without a context that involves GPU memory, naming the
  // overload to call instead.
  void require_host_only(Device target, const std::string& overload) const {
    CUMTL_REQUIRE(device().is_cpu() && target.is_cpu(), "copying ", description(), " to ", target,
                  " needs a context: a copy of GPU memory runs in a stream's order, and no stream picked for it ",
                  "would be ordered with the work that uses the memory; call ", overload, " with the Context whose ",
                  device().is_cuda() ? "stream wrote the tensor" : "stream will use the copy");
  }

  // Makes ctx's stream wait for the stream that owns this tensor's GPU memory
  // when that is another one, and returns it then (null otherwise).
  CUstream_st* wait_for_foreign_owner(Context& ctx) const {
    CUstream_st* owner = owning_stream();
    if (owner == nullptr || !ctx.device().is_cuda() || owner == ctx.stream()) return nullptr;
    detail::order_streams(owner, device().index(), ctx.stream());
    return owner;
  }

  void* typed_data(ScalarType requested) const {
    CUMTL_REQUIRE(requested == dtype_, "tensor ", description(), " accessed as ", name_of(requested));
    return raw_data();
  }

  std::shared_ptr<Storage> storage_;
  std::size_t offset_ = 0;
  Shape shape_;
  ScalarType dtype_ = ScalarType::f32;
};

// A tensor under a name: a safetensors entry, an optimizer's state tensor.
// The handle shares the tensor's memory, so copying into it restores state in place.
struct NamedTensor {
  std::string name;
  Tensor tensor;
};

}  // namespace cumtl
