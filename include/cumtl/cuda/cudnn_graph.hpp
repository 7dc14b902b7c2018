#pragma once
// 2-D convolution through cuDNN's graph (backend) API (nvcc only): forward,
// backward data and backward filter, activations NHWC and filters KRSC.
//
// A plan is built in stages, each one a cudnnBackend* descriptor that is set,
// finalized and then only read: three tensors (X, W, Y with fixed unique ids;
// the layout is carried by the strides alone), the convolution descriptor
// (cross-correlation, every attribute set explicitly because several defaults
// are silently wrong for us: flipped filters, zero post-padding), one operation
// for the direction, an operation graph holding it, then engine heuristics,
// which return the engine configurations that pass cuDNN's support checks, best
// first. Each configuration's engine carries numerical notes; we drop those our
// numerics forbid, then finalize an execution plan for each remaining one in
// order and keep the first that finalizes. Mode A heuristics come first; the
// FALLBACK list (a few portable engines) is tried only when nothing of mode A
// survives. A ConvPlan owns the whole chain of descriptors, since cuDNN does
// not promise that a plan outlives the objects it was built from.
//
// Heuristics need to know the target GPU. They get it from a device-properties
// descriptor rather than from a cuDNN handle: on a GPU it is read from the
// handle, and without one it can be finalized from the JSON a GPU once
// produced. The same code path thus runs to a finalized plan on machines with
// no GPU at all, which is how the engine lists, the filters and the error paths
// are tested in CPU-only CI; only execution needs the device.
//
// The filters encode cumtl's numerics policy. With fp32 data a TENSOR_CORE
// engine computes in TF32, so those are dropped unless TF32 is allowed;
// DOWN_CONVERT_INPUTS and REDUCED_PRECISION_REDUCTION engines are always
// dropped, so accumulation stays in fp32 for every data type; NONDETERMINISTIC
// engines (atomics in dgrad and wgrad) are dropped in deterministic mode; a
// workspace limit drops the engines that want more.
//
// Building a plan takes milliseconds, so plans are cached. The key holds
// everything a plan depends on: the direction, the geometry, the data type, the
// byte alignment promised for each pointer (a smaller one loses engines), the
// numerics, alpha and beta (baked into the operation), the workspace limit and
// a fingerprint of the device profile. Execution keeps one cache per device and
// host thread: a plan is not tied to a stream (the handle passed at execution
// is), and cuDNN does not promise that plans are safe to share across threads.

#include <cudnn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <source_location>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cumtl/core/context.hpp"
#include "cumtl/core/conv_shape.hpp"
#include "cumtl/cuda/launch.hpp"

namespace cumtl::cuda {

// ---------------------------------------------------------------------------
// Names for messages

namespace cudnn_detail {

#define CUMTL_CUDNN_NAME_CASE(prefix, name) \
  case prefix##name: return #name

inline std::string descriptor_type_name(cudnnBackendDescriptorType_t type) {
  switch (type) {
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, CONVOLUTION_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, ENGINE_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, ENGINECFG_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, ENGINEHEUR_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, EXECUTION_PLAN_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, KNOB_CHOICE_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, OPERATION_POINTWISE_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, OPERATIONGRAPH_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, VARIANT_PACK_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, TENSOR_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BACKEND_, DEVICEPROP_DESCRIPTOR);
    default: return detail::concat("descriptor type ", int(type));
  }
}

inline std::string attribute_name(cudnnBackendAttributeName_t name) {
  switch (name) {
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, CONVOLUTION_COMP_TYPE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, CONVOLUTION_CONV_MODE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, CONVOLUTION_DILATIONS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, CONVOLUTION_FILTER_STRIDES);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, CONVOLUTION_POST_PADDINGS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, CONVOLUTION_PRE_PADDINGS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, CONVOLUTION_SPATIAL_DIMS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINEHEUR_MODE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINEHEUR_OPERATION_GRAPH);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINEHEUR_RESULTS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINEHEUR_DEVICEPROP);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINECFG_ENGINE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINECFG_WORKSPACE_SIZE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, EXECUTION_PLAN_ENGINE_CONFIG);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, EXECUTION_PLAN_WORKSPACE_SIZE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, EXECUTION_PLAN_JSON_REPRESENTATION);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_FORWARD_ALPHA);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_FORWARD_BETA);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_FORWARD_CONV_DESC);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_FORWARD_W);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_FORWARD_X);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_FORWARD_Y);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_DATA_ALPHA);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_DATA_BETA);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_DATA_W);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_DATA_DX);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_DATA_DY);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_FILTER_ALPHA);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_FILTER_BETA);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_FILTER_DW);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_FILTER_X);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATION_CONVOLUTION_BWD_FILTER_DY);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATIONGRAPH_OPS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, OPERATIONGRAPH_ENGINE_GLOBAL_COUNT);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, TENSOR_BYTE_ALIGNMENT);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, TENSOR_DATA_TYPE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, TENSOR_DIMENSIONS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, TENSOR_STRIDES);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, TENSOR_UNIQUE_ID);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, TENSOR_IS_VIRTUAL);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, VARIANT_PACK_UNIQUE_IDS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, VARIANT_PACK_DATA_POINTERS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, VARIANT_PACK_WORKSPACE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINE_OPERATION_GRAPH);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINE_GLOBAL_INDEX);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINE_NUMERICAL_NOTE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINE_BEHAVIOR_NOTE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, ENGINE_DEVICEPROP);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, DEVICEPROP_DEVICE_ID);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, DEVICEPROP_HANDLE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_ATTR_, DEVICEPROP_JSON_REPRESENTATION);
    default: return detail::concat("attribute ", int(name));
  }
}

inline std::string attribute_type_name(cudnnBackendAttributeType_t type) {
  switch (type) {
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, HANDLE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, DATA_TYPE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, BOOLEAN);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, INT64);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, FLOAT);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, DOUBLE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, VOID_PTR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, CONVOLUTION_MODE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, HEUR_MODE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, KNOB_TYPE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, NUMERICAL_NOTE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, BACKEND_DESCRIPTOR);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, BEHAVIOR_NOTE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, INT32);
    CUMTL_CUDNN_NAME_CASE(CUDNN_TYPE_, CHAR);
    default: return detail::concat("type ", int(type));
  }
}

inline std::string numerical_note_name(cudnnBackendNumericalNote_t note) {
  switch (note) {
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, TENSOR_CORE);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, DOWN_CONVERT_INPUTS);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, REDUCED_PRECISION_REDUCTION);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, FFT);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, NONDETERMINISTIC);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, WINOGRAD);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, WINOGRAD_TILE_4x4);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, WINOGRAD_TILE_6x6);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, WINOGRAD_TILE_13x13);
    CUMTL_CUDNN_NAME_CASE(CUDNN_NUMERICAL_NOTE_, STRICT_NAN_PROP);
    default: return detail::concat("NUMERICAL_NOTE_", int(note));
  }
}

inline std::string behavior_note_name(cudnnBackendBehaviorNote_t note) {
  switch (note) {
    CUMTL_CUDNN_NAME_CASE(CUDNN_BEHAVIOR_NOTE_, RUNTIME_COMPILATION);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BEHAVIOR_NOTE_, REQUIRES_FILTER_INT8x32_REORDER);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BEHAVIOR_NOTE_, REQUIRES_BIAS_INT8x32_REORDER);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BEHAVIOR_NOTE_, SUPPORTS_CUDA_GRAPH_NATIVE_API);
    CUMTL_CUDNN_NAME_CASE(CUDNN_BEHAVIOR_NOTE_, CUBLASLT_DEPENDENCY);
    default: return detail::concat("BEHAVIOR_NOTE_", int(note));
  }
}

#undef CUMTL_CUDNN_NAME_CASE

inline std::string heuristics_mode_name(cudnnBackendHeurMode_t mode) {
  switch (mode) {
    case CUDNN_HEUR_MODE_INSTANT: return "INSTANT";
    case CUDNN_HEUR_MODE_B: return "B";
    case CUDNN_HEUR_MODE_FALLBACK: return "FALLBACK";
    case CUDNN_HEUR_MODE_A: return "A";
    default: return detail::concat("mode ", int(mode));
  }
}

inline std::string data_type_name(cudnnDataType_t type) {
  switch (type) {
    case CUDNN_DATA_FLOAT: return "float32";
    case CUDNN_DATA_DOUBLE: return "float64";
    case CUDNN_DATA_HALF: return "float16";
    case CUDNN_DATA_BFLOAT16: return "bfloat16";
    case CUDNN_DATA_INT8: return "int8";
    default: return detail::concat("cudnnDataType_t ", int(type));
  }
}

// Bytes per element of the data types a plan may be asked for; 0 for others.
// int8 is accepted so that cuDNN decides: 9.19 has no NHWC int8 engine with
// fp32 accumulation, which makes it the one real way to see build_conv_plan's
// "nothing left" report.
inline std::int64_t data_type_size(cudnnDataType_t type) {
  switch (type) {
    case CUDNN_DATA_FLOAT: return 4;
    case CUDNN_DATA_DOUBLE: return 8;
    case CUDNN_DATA_HALF:
    case CUDNN_DATA_BFLOAT16: return 2;
    case CUDNN_DATA_INT8: return 1;
    default: return 0;
  }
}

// cuDNN's own text for the innermost failed check of the last failing call on
// this thread. Reading clears it, so each failure is read exactly once, right
// after the call; a success does not clear it, so it is never read after one.
inline std::string take_cudnn_error_text() {
  std::vector<char> buffer(std::size_t(1) << 16, '\0');
  cudnnGetLastErrorString(buffer.data(), buffer.size());
  return std::string(buffer.data());
}

inline std::string cudnn_status_hint(cudnnStatus_t status) {
  if (CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_NOT_SUPPORTED)
    return "no cuDNN engine supports this configuration; set CUDNN_LOGLEVEL_DBG=2 and CUDNN_LOGDEST_DBG=stderr to "
           "see why each engine refused";
  return {};
}

[[noreturn]] inline void throw_cudnn(cudnnStatus_t status, const std::string& call, const std::string& text,
                                     const std::source_location& where) {
  std::string message = detail::concat(call, " failed: ", cudnnGetErrorString(status));
  if (!text.empty()) message += detail::concat(" (", text, ")");
  throw CudnnError(int(status), std::move(message), where.file_name(), int(where.line()), cudnn_status_hint(status));
}

// The attribute type tag that goes with each C++ element type, so that a tag can
// never disagree with the object the pointer points to. Descriptors and device
// pointers are both void* to the compiler and have their own setters instead.
template <class T>
struct AttributeTag {};
template <cudnnBackendAttributeType_t Tag>
struct AttributeTagIs {
  static constexpr cudnnBackendAttributeType_t value = Tag;
};
template <>
struct AttributeTag<std::int64_t> : AttributeTagIs<CUDNN_TYPE_INT64> {};
template <>
struct AttributeTag<std::int32_t> : AttributeTagIs<CUDNN_TYPE_INT32> {};
template <>
struct AttributeTag<float> : AttributeTagIs<CUDNN_TYPE_FLOAT> {};
template <>
struct AttributeTag<double> : AttributeTagIs<CUDNN_TYPE_DOUBLE> {};
template <>
struct AttributeTag<bool> : AttributeTagIs<CUDNN_TYPE_BOOLEAN> {};
template <>
struct AttributeTag<char> : AttributeTagIs<CUDNN_TYPE_CHAR> {};
template <>
struct AttributeTag<cudnnDataType_t> : AttributeTagIs<CUDNN_TYPE_DATA_TYPE> {};
template <>
struct AttributeTag<cudnnConvolutionMode_t> : AttributeTagIs<CUDNN_TYPE_CONVOLUTION_MODE> {};
template <>
struct AttributeTag<cudnnBackendHeurMode_t> : AttributeTagIs<CUDNN_TYPE_HEUR_MODE> {};
template <>
struct AttributeTag<cudnnBackendNumericalNote_t> : AttributeTagIs<CUDNN_TYPE_NUMERICAL_NOTE> {};
template <>
struct AttributeTag<cudnnBackendBehaviorNote_t> : AttributeTagIs<CUDNN_TYPE_BEHAVIOR_NOTE> {};
template <>
struct AttributeTag<cudnnBackendKnobType_t> : AttributeTagIs<CUDNN_TYPE_KNOB_TYPE> {};
template <>
struct AttributeTag<cudnnHandle_t> : AttributeTagIs<CUDNN_TYPE_HANDLE> {};

inline std::atomic<std::int64_t>& live_descriptor_count() {
  static std::atomic<std::int64_t> count{0};
  return count;
}

}  // namespace cudnn_detail

// A C++ type that maps to exactly one cuDNN attribute type tag.
template <class T>
concept BackendAttributeValue = requires {
  cudnn_detail::AttributeTag<T>::value;
};

// ---------------------------------------------------------------------------
// BackendDescriptor

// Owns one cudnnBackendDescriptor_t. Move-only; destroying or move-assigning
// over a live descriptor destroys it exactly once. The setters and getters
// derive the attribute type tag from the C++ element type and always pass the
// address of the elements, which rules out the two classic misuses (a tag that
// disagrees with the pointee, a value passed where its address belongs). Every
// failure throws a CudnnError naming the descriptor kind, its label, the
// attribute and cuDNN's own check text.
class BackendDescriptor {
 public:
  BackendDescriptor() noexcept = default;
  explicit BackendDescriptor(cudnnBackendDescriptorType_t type, const char* label = "",
                             std::source_location where = std::source_location::current())
      : type_(type), label_(label) {
    const cudnnStatus_t status = cudnnBackendCreateDescriptor(type, &raw_);
    if (status != CUDNN_STATUS_SUCCESS) {
      raw_ = nullptr;
      cudnn_detail::throw_cudnn(status, detail::concat("cudnnBackendCreateDescriptor(", describe(), ")"),
                                cudnn_detail::take_cudnn_error_text(), where);
    }
    ++cudnn_detail::live_descriptor_count();
  }
  ~BackendDescriptor() { reset(); }

  BackendDescriptor(BackendDescriptor&& other) noexcept
      : raw_(std::exchange(other.raw_, nullptr)),
        type_(other.type_),
        label_(other.label_),
        finalized_(std::exchange(other.finalized_, false)) {}
  BackendDescriptor& operator=(BackendDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      raw_ = std::exchange(other.raw_, nullptr);
      type_ = other.type_;
      label_ = other.label_;
      finalized_ = std::exchange(other.finalized_, false);
    }
    return *this;
  }
  BackendDescriptor(const BackendDescriptor&) = delete;
  BackendDescriptor& operator=(const BackendDescriptor&) = delete;

  // Destroys the descriptor now (cuDNN rejects destroying null, so null is skipped).
  void reset() noexcept {
    if (raw_ == nullptr) return;
    (void)cudnnBackendDestroyDescriptor(raw_);  // nothing to do about a failure in teardown
    raw_ = nullptr;
    finalized_ = false;
    --cudnn_detail::live_descriptor_count();
  }

  // How many descriptors this process holds through this class (for leak checks).
  static std::int64_t live() noexcept { return cudnn_detail::live_descriptor_count().load(); }

  cudnnBackendDescriptor_t get() const noexcept { return raw_; }
  explicit operator bool() const noexcept { return raw_ != nullptr; }
  cudnnBackendDescriptorType_t type() const noexcept { return type_; }
  const char* label() const noexcept { return label_; }
  bool finalized() const noexcept { return finalized_; }

  // "TENSOR_DESCRIPTOR 'x'", for messages.
  std::string describe() const {
    std::string text = cudnn_detail::descriptor_type_name(type_);
    if (label_ != nullptr && label_[0] != '\0') text += detail::concat(" '", label_, "'");
    return text;
  }

  template <BackendAttributeValue T>
  BackendDescriptor& set(cudnnBackendAttributeName_t name, std::span<const T> values,
                         std::source_location where = std::source_location::current()) {
    set_raw(name, cudnn_detail::AttributeTag<T>::value, std::int64_t(values.size()), values.data(), where);
    return *this;
  }
  template <BackendAttributeValue T>
  BackendDescriptor& set(cudnnBackendAttributeName_t name, const T& value,
                         std::source_location where = std::source_location::current()) {
    return set(name, std::span<const T>(&value, 1), where);
  }
  template <BackendAttributeValue T, std::size_t N>
  BackendDescriptor& set(cudnnBackendAttributeName_t name, const std::array<T, N>& values,
                         std::source_location where = std::source_location::current()) {
    return set(name, std::span<const T>(values), where);
  }
  template <BackendAttributeValue T>
  BackendDescriptor& set(cudnnBackendAttributeName_t name, const std::vector<T>& values,
                         std::source_location where = std::source_location::current()) {
    return set(name, std::span<const T>(values), where);
  }
  // One descriptor-valued attribute.
  BackendDescriptor& set(cudnnBackendAttributeName_t name, const BackendDescriptor& value,
                         std::source_location where = std::source_location::current()) {
    cudnnBackendDescriptor_t raw = value.get();
    set_raw(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw, where);
    return *this;
  }
  BackendDescriptor& set_descriptors(cudnnBackendAttributeName_t name, std::span<const cudnnBackendDescriptor_t> values,
                                     std::source_location where = std::source_location::current()) {
    set_raw(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, std::int64_t(values.size()), values.data(), where);
    return *this;
  }
  // Device pointers (variant packs): an array of void*, one per element.
  BackendDescriptor& set_pointers(cudnnBackendAttributeName_t name, std::span<void* const> values,
                                  std::source_location where = std::source_location::current()) {
    set_raw(name, CUDNN_TYPE_VOID_PTR, std::int64_t(values.size()), values.data(), where);
    return *this;
  }
  // A CHAR attribute (JSON representations), without a terminating NUL.
  BackendDescriptor& set_text(cudnnBackendAttributeName_t name, std::string_view text,
                              std::source_location where = std::source_location::current()) {
    set_raw(name, CUDNN_TYPE_CHAR, std::int64_t(text.size()), text.data(), where);
    return *this;
  }

  // Reads an attribute that holds one element.
  template <BackendAttributeValue T>
  T get(cudnnBackendAttributeName_t name, std::source_location where = std::source_location::current()) const {
    T value{};
    const std::int64_t count = get_raw(name, cudnn_detail::AttributeTag<T>::value, 1, &value, where);
    CUMTL_REQUIRE(count >= 1, "cudnnBackendGetAttribute(", describe(), ", ", cudnn_detail::attribute_name(name), ", ",
                  cudnn_detail::attribute_type_name(cudnn_detail::AttributeTag<T>::value), ") returned no element");
    return value;
  }
  // Reads up to `max_count` elements; the vector holds as many as cuDNN filled.
  template <BackendAttributeValue T>
  std::vector<T> get_array(cudnnBackendAttributeName_t name, std::int64_t max_count,
                           std::source_location where = std::source_location::current()) const {
    std::vector<T> values(std::size_t(std::max<std::int64_t>(max_count, 0)));
    const std::int64_t count = get_raw(name, cudnn_detail::AttributeTag<T>::value, max_count, values.data(), where);
    values.resize(std::size_t(std::clamp<std::int64_t>(count, 0, max_count)));
    return values;
  }
  // How many elements of type `type` the attribute holds (a Get with no array).
  std::int64_t element_count(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                             std::source_location where = std::source_location::current()) const {
    return get_raw(name, type, 0, nullptr, where);
  }
  // A CHAR attribute, sized by a query first.
  std::string get_text(cudnnBackendAttributeName_t name,
                       std::source_location where = std::source_location::current()) const {
    const std::int64_t size = element_count(name, CUDNN_TYPE_CHAR, where);
    std::string text(std::size_t(std::max<std::int64_t>(size, 0)), '\0');
    const std::int64_t got = get_raw(name, CUDNN_TYPE_CHAR, size, text.data(), where);
    text.resize(std::size_t(std::clamp<std::int64_t>(got, 0, size)));
    while (!text.empty() && text.back() == '\0') text.pop_back();
    return text;
  }
  // Fills descriptors the caller created (cuDNN fills them in place and never
  // creates them); returns how many it filled.
  std::int64_t get_descriptors(cudnnBackendAttributeName_t name, std::span<cudnnBackendDescriptor_t> out,
                               std::source_location where = std::source_location::current()) const {
    return get_raw(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, std::int64_t(out.size()), out.data(), where);
  }
  void get_descriptor(cudnnBackendAttributeName_t name, BackendDescriptor& out,
                      std::source_location where = std::source_location::current()) const {
    cudnnBackendDescriptor_t raw = out.get();
    CUMTL_REQUIRE(raw != nullptr, "reading ", cudnn_detail::attribute_name(name), " of ", describe(),
                  " needs a created descriptor to fill");
    get_raw(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw, where);
  }

  BackendDescriptor& finalize(std::source_location where = std::source_location::current()) {
    const cudnnStatus_t status = cudnnBackendFinalize(require_live("finalize"));
    if (status != CUDNN_STATUS_SUCCESS)
      cudnn_detail::throw_cudnn(status, detail::concat("cudnnBackendFinalize(", describe(), ")"),
                                cudnn_detail::take_cudnn_error_text(), where);
    finalized_ = true;
    return *this;
  }

  // Finalizes when it can. On failure returns the status and stores cuDNN's
  // text in *error_text, for callers that try one candidate after another.
  cudnnStatus_t try_finalize(std::string* error_text = nullptr) {
    const cudnnStatus_t status = cudnnBackendFinalize(require_live("finalize"));
    if (status == CUDNN_STATUS_SUCCESS) {
      finalized_ = true;
    } else {
      std::string text = cudnn_detail::take_cudnn_error_text();
      if (error_text != nullptr) *error_text = std::move(text);
    }
    return status;
  }

 private:
  cudnnBackendDescriptor_t require_live(const char* what) const {
    CUMTL_REQUIRE(raw_ != nullptr, "BackendDescriptor::", what, " on an empty (moved-from or default) descriptor");
    return raw_;
  }

  void set_raw(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t count,
               const void* values, const std::source_location& where) {
    const cudnnStatus_t status = cudnnBackendSetAttribute(require_live("set"), name, type, count, values);
    if (status != CUDNN_STATUS_SUCCESS)
      cudnn_detail::throw_cudnn(
          status,
          detail::concat("cudnnBackendSetAttribute(", describe(), ", ", cudnn_detail::attribute_name(name), ", ",
                         cudnn_detail::attribute_type_name(type), " x", count, ")"),
          cudnn_detail::take_cudnn_error_text(), where);
  }

  std::int64_t get_raw(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t requested,
                       void* values, const std::source_location& where) const {
    std::int64_t count = 0;
    const cudnnStatus_t status = cudnnBackendGetAttribute(require_live("get"), name, type, requested, &count, values);
    if (status != CUDNN_STATUS_SUCCESS)
      cudnn_detail::throw_cudnn(
          status,
          detail::concat("cudnnBackendGetAttribute(", describe(), ", ", cudnn_detail::attribute_name(name), ", ",
                         cudnn_detail::attribute_type_name(type), " x", requested, ")"),
          cudnn_detail::take_cudnn_error_text(), where);
    return count;
  }

  cudnnBackendDescriptor_t raw_ = nullptr;
  cudnnBackendDescriptorType_t type_ = CUDNN_BACKEND_TENSOR_DESCRIPTOR;
  const char* label_ = "";  // a string literal: labels name a role, never data
  bool finalized_ = false;
};

// ---------------------------------------------------------------------------
// Device properties

// The GPU that heuristics choose engines for (CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR).
// Copies share one finalized descriptor, so a plan can keep it alive cheaply.
class DeviceProperties {
 public:
  // The GPU of `handle` (the device that was current when it was created).
  // Keep the handle alive while plans built from this are used: whether cuDNN
  // reads it after finalize is not documented (from_json(json()) avoids that).
  static DeviceProperties from_handle(cudnnHandle_t handle) {
    CUMTL_REQUIRE(handle != nullptr, "DeviceProperties::from_handle: null cuDNN handle");
    BackendDescriptor descriptor(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, "device properties");
    descriptor.set(CUDNN_ATTR_DEVICEPROP_HANDLE, handle).finalize();
    std::string json;
    try {
      json = descriptor.get_text(CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION);
    } catch (const CudnnError&) {
      // Not every cuDNN can print a handle's profile; the device identity below still keys the caches.
    }
    std::string identity = json;
    if (identity.empty()) {
      int device = 0, major = 0, minor = 0;
      CUMTL_CHECK_CUDA(cudaGetDevice(&device));
      CUMTL_CHECK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
      CUMTL_CHECK_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
      char pci_bus[32] = {};
      CUMTL_CHECK_CUDA(cudaDeviceGetPCIBusId(pci_bus, int(sizeof pci_bus), device));
      identity = detail::concat("cuda:", device, " sm_", major, minor, " pci ", pci_bus);
    }
    return DeviceProperties(std::move(descriptor), std::move(json), identity, handle);
  }

  // A profile recorded from a real GPU (see json()); needs no GPU, so CPU-only
  // machines can run heuristics and finalize plans for that GPU.
  static DeviceProperties from_json(const std::string& json) {
    BackendDescriptor descriptor(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, "device properties from JSON");
    descriptor.set_text(CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION, json).finalize();
    std::string read_back = descriptor.get_text(CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION);
    const std::string identity = read_back.empty() ? json : read_back;
    return DeviceProperties(std::move(descriptor), std::move(read_back), identity, nullptr);
  }

  // The profile as cuDNN prints it; empty when this cuDNN could not print it.
  const std::string& json() const noexcept { return state_->json; }
  // A hash of the profile (or, without one, of the device identity): equal
  // fingerprints give equal plans, so it stands for the device in cache keys.
  std::uint64_t fingerprint() const noexcept { return state_->fingerprint; }
  const BackendDescriptor& descriptor() const noexcept { return state_->descriptor; }
  cudnnBackendDescriptor_t get() const noexcept { return state_->descriptor.get(); }
  // The handle this was read from; null for a profile built from JSON.
  cudnnHandle_t handle() const noexcept { return state_->handle; }

  // Also set the (deprecated) operation-graph handle when building plans: the
  // other way of naming the device, kept switchable until a GPU run has
  // confirmed which one cuDNN 9.19 honours. Plans built this way key apart.
  DeviceProperties with_graph_handle() const {
    CUMTL_REQUIRE(state_->handle != nullptr, "DeviceProperties::with_graph_handle needs properties read from a handle");
    DeviceProperties copy = *this;
    copy.graph_handle_ = true;
    return copy;
  }
  bool sets_graph_handle() const noexcept { return graph_handle_; }

  // The device identity that goes into plan keys.
  std::uint64_t key() const noexcept { return graph_handle_ ? ~state_->fingerprint : state_->fingerprint; }

 private:
  struct State {
    BackendDescriptor descriptor;
    std::string json;
    std::uint64_t fingerprint = 0;
    cudnnHandle_t handle = nullptr;
  };

  DeviceProperties(BackendDescriptor descriptor, std::string json, const std::string& identity, cudnnHandle_t handle)
      : state_(std::make_shared<State>(State{std::move(descriptor), std::move(json), fnv1a(identity), handle})) {}

  // Stable across runs and builds, unlike std::hash.
  static std::uint64_t fnv1a(std::string_view text) noexcept {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (char byte : text) hash = (hash ^ std::uint8_t(byte)) * 0x100000001b3ull;
    return hash;
  }

  std::shared_ptr<const State> state_;
  bool graph_handle_ = false;
};

// ---------------------------------------------------------------------------
// Geometry, numerics, keys

enum class ConvDirection : std::uint8_t { forward, backward_data, backward_filter };

inline std::string to_string(ConvDirection direction) {
  switch (direction) {
    case ConvDirection::forward: return "forward (fprop)";
    case ConvDirection::backward_data: return "backward data (dgrad)";
    case ConvDirection::backward_filter: return "backward filter (wgrad)";
  }
  return "unknown direction";
}

// The forward convolution's geometry (cumtl/core/conv_shape.hpp, shared with
// the CPU twin); the backward directions use the same one.
using cumtl::ConvShape;

namespace cudnn_detail {

// The geometry's numbers, for key equality and hashing.
inline std::array<std::int64_t, 13> geometry(const ConvShape& s) {
  return {s.n, s.h, s.w, s.c, s.k, s.r, s.s, s.pad_h, s.pad_w, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w};
}

// ConvShape::str(), except that a stride that is not positive (which the
// output size would divide by) leaves the output out.
inline std::string describe(const ConvShape& s) {
  if (s.stride_h > 0 && s.stride_w > 0) return s.str();
  return detail::concat("x[", s.n, ", ", s.h, ", ", s.w, ", ", s.c, "] * w[", s.k, ", ", s.r, ", ", s.s, ", ", s.c,
                        "] stride ", s.stride_h, "x", s.stride_w, " pad ", s.pad_h, "x", s.pad_w, " dilation ",
                        s.dilation_h, "x", s.dilation_w);
}

// Throws unless every extent is positive and the dilated filter fits the padded input.
inline void validate(const ConvShape& s, std::string_view what) {
  CUMTL_REQUIRE(s.n > 0 && s.h > 0 && s.w > 0 && s.c > 0 && s.k > 0 && s.r > 0 && s.s > 0, what,
                ": every extent of a convolution must be positive, got ", describe(s));
  CUMTL_REQUIRE(
      s.pad_h >= 0 && s.pad_w >= 0 && s.stride_h > 0 && s.stride_w > 0 && s.dilation_h > 0 && s.dilation_w > 0, what,
      ": padding must be non-negative and strides and dilations positive, got ", describe(s));
  CUMTL_REQUIRE(s.h + 2 * s.pad_h >= s.dilation_h * (s.r - 1) + 1 && s.w + 2 * s.pad_w >= s.dilation_w * (s.s - 1) + 1,
                what, ": the dilated filter is larger than the padded input, got ", describe(s));
}

}  // namespace cudnn_detail

struct ConvNumerics {
  bool allow_tf32 = true;      // fp32 data may use TF32 tensor cores
  bool deterministic = false;  // bit-identical results run to run (no atomics)

  std::string str() const {
    return detail::concat("allow_tf32 ", allow_tf32 ? "true" : "false", ", deterministic ",
                          deterministic ? "true" : "false");
  }
  friend bool operator==(const ConvNumerics&, const ConvNumerics&) = default;
};

// Everything a plan depends on. Alignments are in bytes, for the tensors in the
// roles x (dx for dgrad), w (dw for wgrad), y (dy for dgrad and wgrad).
struct ConvPlanKey {
  ConvDirection direction = ConvDirection::forward;
  ConvShape shape{};
  cudnnDataType_t data_type = CUDNN_DATA_FLOAT;
  std::array<std::int64_t, 3> alignments{16, 16, 16};
  ConvNumerics numerics{};
  float alpha = 1, beta = 0;
  std::int64_t workspace_limit = -1;  // bytes; negative means none
  std::uint64_t device = 0;           // DeviceProperties::key()

  std::string str() const {
    std::string text =
        detail::concat(to_string(direction), " ", cudnn_detail::describe(shape), " ",
                       cudnn_detail::data_type_name(data_type), " alignments x ", alignments[0], " w ", alignments[1],
                       " y ", alignments[2], " numerics {", numerics.str(), "} alpha ", alpha, " beta ", beta);
    if (workspace_limit >= 0) text += detail::concat(" workspace limit ", workspace_limit, " bytes");
    return text;
  }
  friend bool operator==(const ConvPlanKey& a, const ConvPlanKey& b) {
    return a.direction == b.direction && cudnn_detail::geometry(a.shape) == cudnn_detail::geometry(b.shape) &&
           a.data_type == b.data_type && a.alignments == b.alignments && a.numerics == b.numerics &&
           a.alpha == b.alpha && a.beta == b.beta && a.workspace_limit == b.workspace_limit && a.device == b.device;
  }
};

struct ConvPlanKeyHash {
  std::size_t operator()(const ConvPlanKey& key) const noexcept {
    std::uint64_t hash = 0x9e3779b97f4a7c15ull;
    const auto mix = [&hash](std::uint64_t value) {
      hash ^= value + 0x9e3779b97f4a7c15ull + (hash << 6) + (hash >> 2);
    };
    for (std::int64_t value : cudnn_detail::geometry(key.shape)) mix(std::uint64_t(value));
    for (std::int64_t value : {key.alignments[0], key.alignments[1], key.alignments[2], key.workspace_limit})
      mix(std::uint64_t(value));
    mix(std::uint64_t(key.direction) | std::uint64_t(key.data_type) << 8 |
        std::uint64_t(key.numerics.allow_tf32) << 16 | std::uint64_t(key.numerics.deterministic) << 17);
    // +0.0 and -0.0 compare equal, so they must hash alike.
    for (float value : {key.alpha, key.beta}) {
      const float normalized = value == 0 ? 0.0f : value;
      std::uint32_t bits = 0;
      std::memcpy(&bits, &normalized, sizeof bits);
      mix(bits);
    }
    mix(key.device);
    return std::size_t(hash);
  }
};

inline ConvPlanKey make_conv_plan_key(const DeviceProperties& device, ConvDirection direction, const ConvShape& shape,
                                      ConvNumerics numerics, std::int64_t workspace_limit = -1, float alpha = 1,
                                      float beta = 0, cudnnDataType_t data_type = CUDNN_DATA_FLOAT,
                                      std::array<std::int64_t, 3> alignments = {16, 16, 16}) {
  return ConvPlanKey{direction, shape, data_type, alignments, numerics, alpha, beta, workspace_limit, device.key()};
}

// ---------------------------------------------------------------------------
// Descriptor builders (the low-level layer; build_conv_plan uses them)

// Fixed unique ids per role: cuDNN does not check uniqueness anywhere before
// execution, so fixing them by role is what keeps them unique.
inline constexpr std::int64_t conv_uid_x = 1;  // x or dx
inline constexpr std::int64_t conv_uid_w = 2;  // w or dw
inline constexpr std::int64_t conv_uid_y = 3;  // y or dy

// A finalized 4-D tensor of logical extents N×H×W×C laid out channels-last (a
// KRSC filter is the same with K, R, S for N, H, W). cuDNN's dimensions are
// always in N, C, H, W order; the layout is carried by the strides alone, which
// are computed by formula even for extents of 1 so the layout is never misread.
inline BackendDescriptor make_nhwc_tensor(std::int64_t uid, std::int64_t n, std::int64_t h, std::int64_t w,
                                          std::int64_t c, cudnnDataType_t data_type, std::int64_t alignment,
                                          const char* label) {
  const std::array<std::int64_t, 4> dims{n, c, h, w};
  const std::array<std::int64_t, 4> strides{c * h * w, 1, w * c, c};
  BackendDescriptor tensor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, label);
  // The data type is always set: a tensor without one finalizes as FLOAT.
  tensor.set(CUDNN_ATTR_TENSOR_DATA_TYPE, data_type)
      .set(CUDNN_ATTR_TENSOR_DIMENSIONS, dims)
      .set(CUDNN_ATTR_TENSOR_STRIDES, strides)
      .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
      .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, alignment)
      .finalize();
  return tensor;
}

// Accumulation is in fp32 for fp32, bf16 and fp16 data, in fp64 for fp64 data.
inline cudnnDataType_t conv_compute_type(cudnnDataType_t data_type) {
  return data_type == CUDNN_DATA_DOUBLE ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
}

// A finalized convolution descriptor for the forward geometry of `shape`.
inline BackendDescriptor make_conv_descriptor(const ConvShape& shape, cudnnDataType_t compute_type) {
  const std::int64_t spatial_dims = 2;
  const std::array<std::int64_t, 2> pads{shape.pad_h, shape.pad_w};
  const std::array<std::int64_t, 2> strides{shape.stride_h, shape.stride_w};
  const std::array<std::int64_t, 2> dilations{shape.dilation_h, shape.dilation_w};
  BackendDescriptor conv(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, "convolution");
  // The mode and the post paddings are set although optional: their defaults
  // (a flipped filter, no padding after) are silently wrong for us.
  conv.set(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, spatial_dims)
      .set(CUDNN_ATTR_CONVOLUTION_COMP_TYPE, compute_type)
      .set(CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_CROSS_CORRELATION)
      .set(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, pads)
      .set(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, pads)
      .set(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, strides)
      .set(CUDNN_ATTR_CONVOLUTION_DILATIONS, dilations)
      .finalize();
  return conv;
}

// A finalized convolution operation of `direction` over tensors in the roles
// x/dx, w/dw and y/dy. Alpha and beta are typed like the compute type (a
// float for everything but fp64), as cuDNN reads them through that type.
inline BackendDescriptor make_conv_operation(ConvDirection direction, const BackendDescriptor& x,
                                             const BackendDescriptor& w, const BackendDescriptor& y,
                                             const BackendDescriptor& conv, cudnnDataType_t compute_type, float alpha,
                                             float beta) {
  struct Names {
    cudnnBackendDescriptorType_t type;
    cudnnBackendAttributeName_t x, w, y, conv, alpha, beta;
    const char* label;
  };
  const Names names = [direction]() -> Names {
    switch (direction) {
      case ConvDirection::backward_data:
        return {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA,
                "dgrad"};
      case ConvDirection::backward_filter:
        return {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
                CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA,
                "wgrad"};
      default:
        return {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
                CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
                CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
                CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
                CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
                CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
                CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA,
                "fprop"};
    }
  }();
  BackendDescriptor op(names.type, names.label);
  op.set(names.x, x).set(names.w, w).set(names.y, y).set(names.conv, conv);
  if (compute_type == CUDNN_DATA_DOUBLE)
    op.set(names.alpha, double(alpha)).set(names.beta, double(beta));
  else
    op.set(names.alpha, alpha).set(names.beta, beta);
  op.finalize();
  return op;
}

// ---------------------------------------------------------------------------
// Candidates and plans

// One engine configuration that heuristics offered, with what it promises.
struct ConvEngineCandidate {
  std::int64_t engine_id = -1;
  std::int64_t workspace_bytes = 0;
  std::vector<cudnnBackendNumericalNote_t> numerical_notes;
  std::vector<cudnnBackendBehaviorNote_t> behavior_notes;

  bool has(cudnnBackendNumericalNote_t note) const {
    return std::find(numerical_notes.begin(), numerical_notes.end(), note) != numerical_notes.end();
  }
  bool has(cudnnBackendBehaviorNote_t note) const {
    return std::find(behavior_notes.begin(), behavior_notes.end(), note) != behavior_notes.end();
  }
  // "engine 67 [TENSOR_CORE] workspace 0"
  std::string str() const {
    std::string notes;
    for (cudnnBackendNumericalNote_t note : numerical_notes)
      notes += (notes.empty() ? "" : " ") + cudnn_detail::numerical_note_name(note);
    for (cudnnBackendBehaviorNote_t note : behavior_notes)
      notes += (notes.empty() ? "" : " ") + cudnn_detail::behavior_note_name(note);
    return detail::concat("engine ", engine_id, " [", notes, "] workspace ", workspace_bytes);
  }
};

// What one heuristics mode offered for a key, and what cumtl's filters left.
// The filters apply in this order, and each counts only what it removed itself.
struct ConvCandidates {
  cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  std::int64_t global_engine_count = 0;        // engines cuDNN has for this graph
  std::vector<ConvEngineCandidate> offered;    // viable configurations, best first
  std::vector<ConvEngineCandidate> kept;       // offered minus the filtered, same order
  std::int64_t removed_tf32 = 0;               // TENSOR_CORE with fp32 data, TF32 not allowed
  std::int64_t removed_reduced_precision = 0;  // DOWN_CONVERT_INPUTS or REDUCED_PRECISION_REDUCTION
  std::int64_t removed_nondeterministic = 0;   // NONDETERMINISTIC in deterministic mode
  std::int64_t removed_workspace = 0;          // workspace above the limit

  std::string summary() const {
    return detail::concat("heuristics mode ", cudnn_detail::heuristics_mode_name(mode), " offered ", offered.size(),
                          " viable config(s) of ", global_engine_count, " engines; the TF32 filter removed ",
                          removed_tf32, ", the reduced-precision filter ", removed_reduced_precision,
                          ", the determinism filter ", removed_nondeterministic, ", the workspace limit ",
                          removed_workspace, "; ", kept.size(), " left");
  }
};

namespace cudnn_detail {

// The descriptors up to the operation graph, for one key.
struct ConvGraph {
  BackendDescriptor x, w, y, conv, op, graph;
};

inline ConvGraph make_conv_graph(const DeviceProperties& device, const ConvPlanKey& key) {
  const ConvShape& s = key.shape;
  const cudnnDataType_t compute = conv_compute_type(key.data_type);
  ConvGraph g;
  g.x = make_nhwc_tensor(conv_uid_x, s.n, s.h, s.w, s.c, key.data_type, key.alignments[0],
                         key.direction == ConvDirection::backward_data ? "dx" : "x");
  g.w = make_nhwc_tensor(conv_uid_w, s.k, s.r, s.s, s.c, key.data_type, key.alignments[1],
                         key.direction == ConvDirection::backward_filter ? "dw" : "w");
  g.y = make_nhwc_tensor(conv_uid_y, s.n, s.out_h(), s.out_w(), s.k, key.data_type, key.alignments[2],
                         key.direction == ConvDirection::forward ? "y" : "dy");
  g.conv = make_conv_descriptor(s, compute);
  g.op = make_conv_operation(key.direction, g.x, g.w, g.y, g.conv, compute, key.alpha, key.beta);
  g.graph = BackendDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
  g.graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, g.op);
  if (device.sets_graph_handle()) g.graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, device.handle());
  g.graph.finalize();
  return g;
}

// The result of one heuristics query: the configurations cuDNN filled (all
// finalized and viable), each with its engine's id, notes and workspace.
struct ConvHeuristics {
  BackendDescriptor heuristics;
  std::vector<BackendDescriptor> configs;
  ConvCandidates candidates;      // offered filled; the filters not yet applied
  std::vector<std::size_t> kept;  // indices into configs, after filtering
};

inline ConvEngineCandidate describe_config(const BackendDescriptor& config) {
  BackendDescriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "engine of a heuristics config");
  config.get_descriptor(CUDNN_ATTR_ENGINECFG_ENGINE, engine);
  ConvEngineCandidate candidate;
  candidate.engine_id = engine.get<std::int64_t>(CUDNN_ATTR_ENGINE_GLOBAL_INDEX);
  candidate.numerical_notes =
      engine.get_array<cudnnBackendNumericalNote_t>(CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT);
  candidate.behavior_notes =
      engine.get_array<cudnnBackendBehaviorNote_t>(CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT);
  candidate.workspace_bytes = config.get<std::int64_t>(CUDNN_ATTR_ENGINECFG_WORKSPACE_SIZE);
  return candidate;
}

inline ConvHeuristics run_heuristics(const DeviceProperties& device, const ConvGraph& graph, const ConvPlanKey& key,
                                     cudnnBackendHeurMode_t mode) {
  ConvHeuristics result;
  result.candidates.mode = mode;
  result.candidates.global_engine_count = graph.graph.get<std::int64_t>(CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT);
  result.heuristics = BackendDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "engine heuristics");
  result.heuristics.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph.graph)
      .set(CUDNN_ATTR_ENGINEHEUR_MODE, mode)
      .set(CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, device.descriptor())
      .finalize();

  const std::int64_t requested =
      result.heuristics.element_count(CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR);
  std::vector<BackendDescriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (std::int64_t i = 0; i < requested; ++i) {
    configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
    raw.push_back(configs.back().get());
  }
  // cuDNN runs its support checks inside this Get and fills only the viable
  // configurations, so the filled count, not the size query, is what counts.
  const std::int64_t filled =
      requested == 0 ? 0 : result.heuristics.get_descriptors(CUDNN_ATTR_ENGINEHEUR_RESULTS, raw);
  configs.resize(std::size_t(std::clamp<std::int64_t>(filled, 0, requested)));

  ConvCandidates& candidates = result.candidates;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    ConvEngineCandidate candidate = describe_config(configs[i]);
    const bool tensor_core = candidate.has(CUDNN_NUMERICAL_NOTE_TENSOR_CORE);
    if (key.data_type == CUDNN_DATA_FLOAT && tensor_core && !key.numerics.allow_tf32)
      ++candidates.removed_tf32;
    else if (candidate.has(CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS) ||
             candidate.has(CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION))
      ++candidates.removed_reduced_precision;
    else if (key.numerics.deterministic && candidate.has(CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC))
      ++candidates.removed_nondeterministic;
    else if (key.workspace_limit >= 0 && candidate.workspace_bytes > key.workspace_limit)
      ++candidates.removed_workspace;
    else {
      candidates.kept.push_back(candidate);
      result.kept.push_back(i);
    }
    candidates.offered.push_back(std::move(candidate));
  }
  for (std::size_t i = 0; i < configs.size(); ++i) result.configs.push_back(std::move(configs[i]));
  return result;
}

inline void check_plan_key(const DeviceProperties& device, const ConvPlanKey& key, std::string_view what) {
  validate(key.shape, what);
  const std::int64_t element = data_type_size(key.data_type);
  CUMTL_REQUIRE(element > 0, what, ": unsupported data type ", data_type_name(key.data_type), " for ",
                describe(key.shape));
  for (std::int64_t alignment : key.alignments)
    CUMTL_REQUIRE(alignment >= element && alignment % element == 0 && (alignment & (alignment - 1)) == 0, what,
                  ": byte alignments must be powers of two and multiples of the element size (", element, "), got x ",
                  key.alignments[0], " w ", key.alignments[1], " y ", key.alignments[2], " for ", describe(key.shape));
  CUMTL_REQUIRE(key.device == device.key(), what, ": the key was made for another device profile (", key.device,
                " != ", device.key(), ")");
}

}  // namespace cudnn_detail

class ConvPlan;
inline ConvPlan build_conv_plan(const DeviceProperties& device, const ConvPlanKey& key);

// A finalized execution plan together with every descriptor it was built from
// (cuDNN does not promise that a plan outlives them). Members are declared in
// build order, so they are destroyed plan first.
class ConvPlan {
 public:
  ConvPlan(ConvPlan&&) noexcept = default;
  ConvPlan& operator=(ConvPlan&&) noexcept = default;

  const ConvPlanKey& key() const noexcept { return key_; }
  std::int64_t workspace_bytes() const noexcept { return workspace_bytes_; }
  std::int64_t engine_id() const noexcept { return engine_.engine_id; }
  const ConvEngineCandidate& engine() const noexcept { return engine_; }
  cudnnBackendHeurMode_t heuristics_mode() const noexcept { return mode_; }
  bool uses_tensor_cores() const { return engine_.has(CUDNN_NUMERICAL_NOTE_TENSOR_CORE); }
  bool deterministic() const { return !engine_.has(CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC); }
  // The plan as cuDNN prints it: tensors, geometry, engine, knobs and GPU profile.
  std::string json() const { return plan_.get_text(CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION); }
  cudnnBackendDescriptor_t plan() const noexcept { return plan_.get(); }

 private:
  friend ConvPlan build_conv_plan(const DeviceProperties& device, const ConvPlanKey& key);

  ConvPlan(const ConvPlanKey& key, DeviceProperties device, cudnn_detail::ConvGraph graph, BackendDescriptor heuristics,
           BackendDescriptor config, BackendDescriptor plan, ConvEngineCandidate engine, cudnnBackendHeurMode_t mode,
           std::int64_t workspace_bytes)
      : key_(key),
        device_(std::move(device)),
        graph_(std::move(graph)),
        heuristics_(std::move(heuristics)),
        config_(std::move(config)),
        plan_(std::move(plan)),
        engine_(std::move(engine)),
        mode_(mode),
        workspace_bytes_(workspace_bytes) {}

  ConvPlanKey key_;
  DeviceProperties device_;
  cudnn_detail::ConvGraph graph_;
  BackendDescriptor heuristics_, config_, plan_;
  ConvEngineCandidate engine_;
  cudnnBackendHeurMode_t mode_;
  std::int64_t workspace_bytes_;
};

// The configurations one heuristics mode offers for `key`, before and after
// cumtl's filters (build_conv_plan tries the kept ones in this order).
inline ConvCandidates conv_plan_candidates(const DeviceProperties& device, const ConvPlanKey& key,
                                           cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A) {
  cudnn_detail::check_plan_key(device, key, "conv_plan_candidates");
  const cudnn_detail::ConvGraph graph = cudnn_detail::make_conv_graph(device, key);
  return cudnn_detail::run_heuristics(device, graph, key, mode).candidates;
}

// Builds the plan for `key` (whose device must be device.key()): heuristics
// mode A, the filters, then the first configuration whose plan finalizes; the
// same with FALLBACK when mode A leaves none. Throws a CudnnError that says what
// each stage offered and removed when no configuration is left.
inline ConvPlan build_conv_plan(const DeviceProperties& device, const ConvPlanKey& key) {
  cudnn_detail::check_plan_key(device, key, "build_conv_plan");
  cudnn_detail::ConvGraph graph = cudnn_detail::make_conv_graph(device, key);
  std::string report;
  cudnnStatus_t last_status = CUDNN_STATUS_NOT_SUPPORTED;
  std::string last_error;
  std::int64_t failed = 0;
  for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    cudnn_detail::ConvHeuristics heuristics = cudnn_detail::run_heuristics(device, graph, key, mode);
    for (std::size_t i = 0; i < heuristics.kept.size(); ++i) {
      const ConvEngineCandidate& candidate = heuristics.candidates.kept[i];
      BackendDescriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "execution plan");
      plan.set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, heuristics.configs[heuristics.kept[i]]);
      // A configuration that passed heuristics can still be refused here, so
      // each is tried in turn.
      std::string text;
      const cudnnStatus_t status = plan.try_finalize(&text);
      if (status != CUDNN_STATUS_SUCCESS) {
        ++failed;
        last_status = status;
        last_error = detail::concat("engine ", candidate.engine_id, ": ", cudnnGetErrorString(status),
                                    text.empty() ? "" : " (" + text + ")");
        continue;
      }
      const std::int64_t workspace = plan.get<std::int64_t>(CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE);
      if (workspace < 0 || (key.workspace_limit >= 0 && workspace > key.workspace_limit)) {
        ++failed;
        last_error = detail::concat("engine ", candidate.engine_id, ": the finalized plan wants ", workspace,
                                    " bytes of workspace");
        continue;
      }
      return ConvPlan(key, device, std::move(graph), std::move(heuristics.heuristics),
                      std::move(heuristics.configs[heuristics.kept[i]]), std::move(plan), candidate, mode, workspace);
    }
    report += heuristics.candidates.summary() + "; ";
  }
  throw CudnnError(
      int(last_status),
      detail::concat(
          "build_conv_plan: no cuDNN engine can run the ", to_string(key.direction), " convolution ",
          cudnn_detail::describe(key.shape), " (", cudnn_detail::data_type_name(key.data_type), ", alignments x ",
          key.alignments[0], " w ", key.alignments[1], " y ", key.alignments[2], ", numerics {", key.numerics.str(),
          "}, alpha ", key.alpha, ", beta ", key.beta, ", workspace limit ",
          key.workspace_limit < 0 ? std::string("none") : std::to_string(key.workspace_limit), "): ", report, failed,
          " plan(s) failed to finalize; last cuDNN error: ", last_error.empty() ? std::string("none") : last_error),
      __FILE__, __LINE__, cudnn_detail::cudnn_status_hint(CUDNN_STATUS_NOT_SUPPORTED));
}

inline ConvPlan build_conv_plan(const DeviceProperties& device, ConvDirection direction, const ConvShape& shape,
                                ConvNumerics numerics, std::int64_t workspace_limit = -1, float alpha = 1,
                                float beta = 0, cudnnDataType_t data_type = CUDNN_DATA_FLOAT,
                                std::array<std::int64_t, 3> alignments = {16, 16, 16}) {
  return build_conv_plan(device, make_conv_plan_key(device, direction, shape, numerics, workspace_limit, alpha, beta,
                                                    data_type, alignments));
}

// Plans by key. Not thread-safe: execution keeps one per device and host thread.
class ConvPlanCache {
 public:
  const ConvPlan& get_or_build(const DeviceProperties& device, const ConvPlanKey& key) {
    if (const auto found = plans_.find(key); found != plans_.end()) {
      ++hits_;
      return found->second;
    }
    ++misses_;
    return plans_.emplace(key, build_conv_plan(device, key)).first->second;
  }
  const ConvPlan& get_or_build(const DeviceProperties& device, ConvDirection direction, const ConvShape& shape,
                               ConvNumerics numerics, std::int64_t workspace_limit = -1, float alpha = 1,
                               float beta = 0, cudnnDataType_t data_type = CUDNN_DATA_FLOAT,
                               std::array<std::int64_t, 3> alignments = {16, 16, 16}) {
    return get_or_build(device, make_conv_plan_key(device, direction, shape, numerics, workspace_limit, alpha, beta,
                                                   data_type, alignments));
  }

  std::int64_t hits() const noexcept { return hits_; }
  std::int64_t misses() const noexcept { return misses_; }
  std::int64_t size() const noexcept { return std::int64_t(plans_.size()); }
  void clear() noexcept {
    plans_.clear();
    hits_ = misses_ = 0;
  }

 private:
  std::unordered_map<ConvPlanKey, ConvPlan, ConvPlanKeyHash> plans_;
  std::int64_t hits_ = 0, misses_ = 0;
};

// ---------------------------------------------------------------------------
// Execution (needs a GPU)

// This host thread's plan cache for ctx's device.
inline ConvPlanCache& thread_conv_plan_cache(const Context& ctx) {
  thread_local std::vector<std::unique_ptr<ConvPlanCache>> caches;
  const std::size_t index = std::size_t(ctx.device().index());
  if (caches.size() <= index) caches.resize(index + 1);
  if (!caches[index]) caches[index] = std::make_unique<ConvPlanCache>();
  return *caches[index];
}

namespace cudnn_detail {

// The largest power of two dividing the address, capped at the 16 bytes that
// every engine is satisfied with.
inline std::int64_t pointer_alignment(const void* pointer) {
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  if (address == 0) return 16;
  return std::int64_t(std::min<std::uintptr_t>(address & (~address + 1), 16));
}

// Read once per device from the first context that needs it, and never freed:
// plans in every thread's cache share it. That context, and its handle, may be
// gone long before those plans, and whether a descriptor read from a handle
// refers to it later is not documented; one rebuilt from the profile's JSON
// refers to no handle, so that is the one kept.
inline const DeviceProperties& device_properties(Context& ctx) {
  static std::mutex mutex;
  static std::vector<DeviceProperties*> devices;
  const std::lock_guard lock(mutex);
  const std::size_t index = std::size_t(ctx.device().index());
  if (devices.size() <= index) devices.resize(index + 1, nullptr);
  if (devices[index] == nullptr) {
    DeviceProperties read = DeviceProperties::from_handle(cudnn_handle(ctx));
    if (!read.json().empty()) {
      try {
        read = DeviceProperties::from_json(read.json());
      } catch (const CudnnError&) {
        // Keep the handle's own descriptor; the context's handle then has to outlive the plans.
      }
    }
    devices[index] = new DeviceProperties(std::move(read));
  }
  return *devices[index];
}

inline std::string plan_json_for_hint(const ConvPlan& plan) {
  try {
    return "the plan: " + plan.json();
  } catch (const Error& error) {
    return detail::concat("the plan's JSON could not be read: ", error.message());
  }
}

// x, w and y are in their roles (x or dx, w or dw, y or dy), whichever is written.
inline void execute_conv(Context& ctx, const char* name, ConvDirection direction, const ConvShape& shape,
                         ConvNumerics numerics, const void* x, const void* w, const void* y, cudnnDataType_t data_type,
                         float alpha, float beta) {
  CUMTL_REQUIRE(ctx.device().is_cuda(), name, " needs a CUDA context, got one on ", ctx.device(), " for ",
                cudnn_detail::describe(shape));
  validate(shape, name);
  const bool dgrad = direction == ConvDirection::backward_data, wgrad = direction == ConvDirection::backward_filter;
  const char* x_name = dgrad ? "dx" : "x";
  const char* w_name = wgrad ? "dw" : "w";
  const char* y_name = direction == ConvDirection::forward ? "y" : "dy";
  CUMTL_REQUIRE(x != nullptr && w != nullptr && y != nullptr, name, ": null pointer (", x_name, " ", x, ", ", w_name,
                " ", w, ", ", y_name, " ", y, ") for ", describe(shape));
  const std::array<std::int64_t, 3> alignments{pointer_alignment(x), pointer_alignment(w), pointer_alignment(y)};
  const std::int64_t element = data_type_size(data_type);
  CUMTL_REQUIRE(alignments[0] >= element && alignments[1] >= element && alignments[2] >= element, name,
                ": pointers must be aligned to the element size (", element, " bytes), got ", x_name, " ", x, ", ",
                w_name, " ", w, ", ", y_name, " ", y);

  const ProfileRange range(name);
  const detail::DeviceGuard guard(ctx.device().index());
  cudnnHandle_t handle = cudnn_handle(ctx);
  const DeviceProperties& device = device_properties(ctx);
  const ConvPlanKey key =
      make_conv_plan_key(device, direction, shape, numerics, -1, alpha, beta, data_type, alignments);
  const ConvPlan& plan = thread_conv_plan_cache(ctx).get_or_build(device, key);

  // The workspace stays valid for the stream: a later, larger reserve frees
  // this block in stream order, after this execution has read it.
  void* workspace = plan.workspace_bytes() > 0 ? ctx.workspace().reserve(std::size_t(plan.workspace_bytes())) : nullptr;
  const std::array<std::int64_t, 3> uids{conv_uid_x, conv_uid_w, conv_uid_y};
  const std::array<void*, 3> pointers{const_cast<void*>(x), const_cast<void*>(w), const_cast<void*>(y)};
  BackendDescriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, uids)
      .set_pointers(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, pointers)
      .set_pointers(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, std::span<void* const>(&workspace, 1))
      .finalize();

  const cudnnStatus_t status = cudnnBackendExecute(handle, plan.plan(), pack.get());
  if (status != CUDNN_STATUS_SUCCESS) {
    const std::string text = take_cudnn_error_text();
    std::string hint = cudnn_status_hint(status);
    hint += (hint.empty() ? "" : "\n  ") + plan_json_for_hint(plan);
    throw CudnnError(
        int(status),
        detail::concat(name, ": cudnnBackendExecute failed: ", cudnnGetErrorString(status),
                       text.empty() ? "" : " (" + text + ")", " for ", key.str(), " with ", plan.engine().str()),
        __FILE__, __LINE__, std::move(hint));
  }
  if (sync_after_launch()) {
    if (const cudaError_t sync = cudaStreamSynchronize(ctx.stream()); sync != cudaSuccess)
      detail::check_cuda(sync, detail::concat(name, " (reported by CUMTL_SYNC=1)").c_str(), __FILE__, __LINE__);
  }
}

}  // namespace cudnn_detail

// y = alpha * (x ⋆ w) + beta * y, with x N×H×W×C, w K×R×S×C, y N×P×Q×K.
inline void conv_forward(Context& ctx, const ConvShape& shape, ConvNumerics numerics, const float* x, const float* w,
                         float* y, float alpha = 1, float beta = 0) {
  cudnn_detail::execute_conv(ctx, "cumtl::conv_forward", ConvDirection::forward, shape, numerics, x, w, y,
                             CUDNN_DATA_FLOAT, alpha, beta);
}

// dx = alpha * (the gradient of the forward convolution with respect to x) + beta * dx.
inline void conv_backward_data(Context& ctx, const ConvShape& shape, ConvNumerics numerics, const float* dy,
                               const float* w, float* dx, float alpha = 1, float beta = 0) {
  cudnn_detail::execute_conv(ctx, "cumtl::conv_backward_data", ConvDirection::backward_data, shape, numerics, dx, w, dy,
                             CUDNN_DATA_FLOAT, alpha, beta);
}

// dw = alpha * (the gradient of the forward convolution with respect to w) + beta * dw.
inline void conv_backward_filter(Context& ctx, const ConvShape& shape, ConvNumerics numerics, const float* x,
                                 const float* dy, float* dw, float alpha = 1, float beta = 0) {
  cudnn_detail::execute_conv(ctx, "cumtl::conv_backward_filter", ConvDirection::backward_filter, shape, numerics, x, dw,
                             dy, CUDNN_DATA_FLOAT, alpha, beta);
}

}  // namespace cumtl::cuda
