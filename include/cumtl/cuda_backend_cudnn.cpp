// The CUDA backend's cuDNN unit: every convolution plan and every cuDNN graph
// call of cumtl, through NVIDIA's cudnn-frontend (cumtl/cuda/cudnn_conv.hpp is
// its interface). A host C++ file, compiled once per program beside
// cuda_backend.cu; it is the only file that includes the frontend, whose
// headers bring their own nlohmann/json and specialize its serializers.
//
// Without a CMake build:
//   g++ -std=c++20 -I<cumtl>/include -isystem <cudnn-frontend>/include -isystem <cuda>/include -c
//       cuda_backend_cudnn.cpp         (and link with -lcudnn -lcudart -lnvrtc)

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <cudnn_frontend.h>

#include "cumtl/core/context.hpp"
#include "cumtl/cuda/cudnn_conv.hpp"

namespace fe = cudnn_frontend;

namespace cumtl::cuda {

// ---------------------------------------------------------------------------
// Names and errors

std::string to_string(ConvDirection direction) {
  switch (direction) {
    case ConvDirection::forward: return "forward (fprop)";
    case ConvDirection::backward_data: return "backward data (dgrad)";
    case ConvDirection::backward_filter: return "backward filter (wgrad)";
  }
  return "unknown direction";
}

std::string to_string(ConvDataType type) {
  switch (type) {
    case ConvDataType::float32: return "float32";
    case ConvDataType::float64: return "float64";
    case ConvDataType::bfloat16: return "bfloat16";
    case ConvDataType::float16: return "float16";
    case ConvDataType::int8: return "int8";
  }
  return "unknown data type";
}

std::int64_t element_bytes(ConvDataType type) {
  switch (type) {
    case ConvDataType::float32: return 4;
    case ConvDataType::float64: return 8;
    case ConvDataType::bfloat16:
    case ConvDataType::float16: return 2;
    case ConvDataType::int8: return 1;
  }
  return 0;
}

namespace {

std::string error_code_name(fe::error_code_t code) {
  switch (code) {
    case fe::error_code_t::OK: return "OK";
    case fe::error_code_t::ATTRIBUTE_NOT_SET: return "ATTRIBUTE_NOT_SET";
    case fe::error_code_t::SHAPE_DEDUCTION_FAILED: return "SHAPE_DEDUCTION_FAILED";
    case fe::error_code_t::INVALID_TENSOR_NAME: return "INVALID_TENSOR_NAME";
    case fe::error_code_t::INVALID_VARIANT_PACK: return "INVALID_VARIANT_PACK";
    case fe::error_code_t::GRAPH_NOT_SUPPORTED: return "GRAPH_NOT_SUPPORTED";
    case fe::error_code_t::GRAPH_EXECUTION_PLAN_CREATION_FAILED: return "GRAPH_EXECUTION_PLAN_CREATION_FAILED";
    case fe::error_code_t::GRAPH_EXECUTION_FAILED: return "GRAPH_EXECUTION_FAILED";
    case fe::error_code_t::HEURISTIC_QUERY_FAILED: return "HEURISTIC_QUERY_FAILED";
    case fe::error_code_t::UNSUPPORTED_GRAPH_FORMAT: return "UNSUPPORTED_GRAPH_FORMAT";
    case fe::error_code_t::CUDA_API_FAILED: return "CUDA_API_FAILED";
    case fe::error_code_t::CUDNN_BACKEND_API_FAILED: return "CUDNN_BACKEND_API_FAILED";
    case fe::error_code_t::INVALID_CUDA_DEVICE: return "INVALID_CUDA_DEVICE";
    case fe::error_code_t::HANDLE_ERROR: return "HANDLE_ERROR";
    default: return "error " + std::to_string(int(code));
  }
}

// "CODE: the frontend's text"; the error's getters are not const.
std::string describe(fe::error_t error) {
  return error_code_name(error.get_code()) + ": " + error.get_message();
}

constexpr const char* logging_hint =
    "CUDNN_FRONTEND_LOG_INFO=1 CUDNN_FRONTEND_LOG_FILE=stderr show the frontend's stages; CUDNN_LOGLEVEL_DBG=2 "
    "CUDNN_LOGDEST_DBG=stderr show cuDNN's reason for each engine";

[[noreturn]] void throw_frontend(fe::error_t error, const std::string& what, const char* file, int line) {
  const int code = int(error.get_code());
  throw CudnnFrontendError(code, what + ": " + describe(error), file, line, logging_hint);
}

#define CUMTL_CHECK_FRONTEND(call, what)                                     \
  do {                                                                       \
    if (fe::error_t cumtl_status_ = (call); cumtl_status_.is_bad())          \
      throw_frontend(cumtl_status_, (what), __FILE__, __LINE__);             \
  } while (false)

// Stable across runs and builds, unlike std::hash.
std::uint64_t fnv1a(std::string_view text) noexcept {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (char byte : text) hash = (hash ^ std::uint8_t(byte)) * 0x100000001b3ull;
  return hash;
}

fe::DataType_t frontend_type(ConvDataType type) {
  switch (type) {
    case ConvDataType::float32: return fe::DataType_t::FLOAT;
    case ConvDataType::float64: return fe::DataType_t::DOUBLE;
    case ConvDataType::bfloat16: return fe::DataType_t::BFLOAT16;
    case ConvDataType::float16: return fe::DataType_t::HALF;
    case ConvDataType::int8: return fe::DataType_t::INT8;
  }
  return fe::DataType_t::NOT_SET;
}

// Accumulation is in fp32 for every data type but fp64 (and int32 for int8,
// for which cuDNN 9 has no NHWC engine: the one way to see "nothing left").
fe::DataType_t compute_type(ConvDataType type) {
  if (type == ConvDataType::float64) return fe::DataType_t::DOUBLE;
  if (type == ConvDataType::int8) return fe::DataType_t::INT32;
  return fe::DataType_t::FLOAT;
}

}  // namespace

// ---------------------------------------------------------------------------
// Device profiles

struct DeviceProfile::State {
  std::shared_ptr<const fe::DeviceProperties> properties;
  std::string json, origin;
  std::uint64_t fingerprint = 0;
  int sm_version = 0;
  cudnnHandle_t handle = nullptr;
};

namespace {

DeviceProfile::State profile_state(std::shared_ptr<fe::DeviceProperties> properties, std::string origin,
                                   cudnnHandle_t handle) {
  std::vector<std::uint8_t> bytes;
  CUMTL_CHECK_FRONTEND(properties->serialize(bytes), "DeviceProfile: reading back the profile of " + origin);
  std::string json(bytes.begin(), bytes.end());
  while (!json.empty() && json.back() == '\0') json.pop_back();
  int sm_version = 0;
  try {
    // cuDNN writes smVersion as major·100 + minor·10; the frontend counts major·10 + minor.
    sm_version = nlohmann::json::parse(json).at("smVersion").get<int>() / 10;
  } catch (const nlohmann::json::exception& error) {
    CUMTL_FAIL("DeviceProfile: the profile of ", origin, " has no readable smVersion (", error.what(), "): ", json);
  }
  CUMTL_REQUIRE(sm_version > 0, "DeviceProfile: the profile of ", origin, " gives smVersion ", sm_version * 10);
  DeviceProfile::State state;
  state.properties = std::move(properties);
  state.fingerprint = fnv1a(json);
  state.json = std::move(json);
  state.origin = std::move(origin);
  state.sm_version = sm_version;
  state.handle = handle;
  return state;
}

}  // namespace

DeviceProfile DeviceProfile::from_json(const std::string& json, std::string origin) {
  std::string text = json;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == '\0')) text.pop_back();
  auto properties = std::make_shared<fe::DeviceProperties>();
  CUMTL_CHECK_FRONTEND(properties->deserialize(std::vector<std::uint8_t>(text.begin(), text.end())),
                       "DeviceProfile::from_json(" + origin + ")");
  return DeviceProfile(std::make_shared<const State>(profile_state(std::move(properties), std::move(origin), nullptr)));
}

DeviceProfile DeviceProfile::from_handle(cudnnContext* handle, int device) {
  CUMTL_REQUIRE(handle != nullptr, "DeviceProfile::from_handle: null cuDNN handle");
  auto properties = std::make_shared<fe::DeviceProperties>();
  // The device id is given with the handle: the frontend would otherwise set 0.
  properties->set_handle(handle).set_device_id(device);
  const std::string origin = detail::concat("cuda:", device);
  CUMTL_CHECK_FRONTEND(properties->build(), "DeviceProfile::from_handle(" + origin + ")");
  return DeviceProfile(std::make_shared<const State>(profile_state(std::move(properties), origin, handle)));
}

const std::string& DeviceProfile::json() const noexcept { return state_->json; }
std::uint64_t DeviceProfile::fingerprint() const noexcept { return state_->fingerprint; }
int DeviceProfile::sm_version() const noexcept { return state_->sm_version; }
const std::string& DeviceProfile::origin() const noexcept { return state_->origin; }
cudnnContext* DeviceProfile::handle() const noexcept { return state_->handle; }

// ---------------------------------------------------------------------------
// Keys and candidates

namespace {

// ConvShape::str(), except that a stride that is not positive (which the
// output size would divide by) leaves the output out.
std::string describe(const ConvShape& s) {
  if (s.stride_h > 0 && s.stride_w > 0) return s.str();
  return detail::concat("x[", s.n, ", ", s.h, ", ", s.w, ", ", s.c, "] * w[", s.k, ", ", s.r, ", ", s.s, ", ", s.c,
                        "] stride ", s.stride_h, "x", s.stride_w, " pad ", s.pad_h, "x", s.pad_w, " dilation ",
                        s.dilation_h, "x", s.dilation_w);
}

// Throws unless every extent is positive and the dilated filter fits the padded input.
void validate(const ConvShape& s, std::string_view what) {
  CUMTL_REQUIRE(s.n > 0 && s.h > 0 && s.w > 0 && s.c > 0 && s.k > 0 && s.r > 0 && s.s > 0, what,
                ": every extent of a convolution must be positive, got ", describe(s));
  CUMTL_REQUIRE(
      s.pad_h >= 0 && s.pad_w >= 0 && s.stride_h > 0 && s.stride_w > 0 && s.dilation_h > 0 && s.dilation_w > 0, what,
      ": padding must be non-negative and strides and dilations positive, got ", describe(s));
  CUMTL_REQUIRE(s.h + 2 * s.pad_h >= s.dilation_h * (s.r - 1) + 1 && s.w + 2 * s.pad_w >= s.dilation_w * (s.s - 1) + 1,
                what, ": the dilated filter is larger than the padded input, got ", describe(s));
}

void check_key(const DeviceProfile& device, const ConvPlanKey& key, std::string_view what) {
  validate(key.shape, what);
  const std::int64_t element = element_bytes(key.data_type);
  for (std::int64_t alignment : key.alignments)
    CUMTL_REQUIRE(alignment >= element && alignment % element == 0 && (alignment & (alignment - 1)) == 0, what,
                  ": byte alignments must be powers of two and multiples of the element size (", element, "), got x ",
                  key.alignments[0], " w ", key.alignments[1], " y ", key.alignments[2], " for ", describe(key.shape));
  CUMTL_REQUIRE(key.device == device.fingerprint(), what, ": the key was made for another device profile (", key.device,
                " != ", device.fingerprint(), ", ", device.origin(), ")");
}

template <class Note>
std::vector<std::string> note_names(const std::vector<Note>& notes) {
  std::vector<std::string> names;
  for (Note note : notes) names.push_back(nlohmann::json(note).get<std::string>());
  return names;
}

}  // namespace

std::string ConvPlanKey::str() const {
  std::string text = detail::concat(to_string(direction), " ", describe(shape), " ", to_string(data_type),
                                    " alignments x ", alignments[0], " w ", alignments[1], " y ", alignments[2],
                                    " numerics {", numerics.str(), "}");
  if (workspace_limit >= 0) text += detail::concat(" workspace limit ", workspace_limit, " bytes");
  for (std::int64_t engine : excluded_engines) text += detail::concat(" without engine ", engine);
  return text;
}

ConvPlanKey make_conv_plan_key(const DeviceProfile& device, ConvDirection direction, const ConvShape& shape,
                               ConvNumerics numerics, std::int64_t workspace_limit, ConvDataType data_type,
                               std::array<std::int64_t, 3> alignments) {
  return ConvPlanKey{direction, shape, data_type, alignments, numerics, workspace_limit, {}, device.fingerprint()};
}

bool ConvEngineConfig::has(std::string_view note) const {
  return std::find(numerical_notes.begin(), numerical_notes.end(), note) != numerical_notes.end() ||
         std::find(behavior_notes.begin(), behavior_notes.end(), note) != behavior_notes.end();
}

std::string ConvEngineConfig::str() const {
  std::string notes;
  for (const std::string& note : numerical_notes) notes += (notes.empty() ? "" : " ") + note;
  for (const std::string& note : behavior_notes) notes += (notes.empty() ? "" : " ") + note;
  return detail::concat("config ", index, " (mode ", heuristics_mode, ") ", name, " [", notes, "]");
}

std::vector<ConvEngineConfig> ConvCandidates::kept() const {
  std::vector<ConvEngineConfig> kept;
  for (const ConvEngineConfig& config : offered)
    if (config.removed_by.empty()) kept.push_back(config);
  return kept;
}

std::string ConvCandidates::summary() const {
  std::int64_t from_a = 0;
  for (const ConvEngineConfig& config : offered) from_a += config.heuristics_mode == "A";
  return detail::concat("heuristics offered ", offered.size(), " config(s) (", from_a, " of mode A, ",
                        std::int64_t(offered.size()) - from_a, " of FALLBACK); the TF32 filter removed ", removed_tf32,
                        ", the reduced-precision filter ", removed_reduced_precision, ", the determinism filter ",
                        removed_nondeterministic, ", the excluded engines ", removed_excluded, "; ", kept().size(),
                        " left");
}

// ---------------------------------------------------------------------------
// Graphs and plans

namespace {

// The frontend keeps each configuration's numerical notes where only a
// derived class can read them; cumtl's filters and reports need them.
class ConvGraph final : public fe::graph::Graph {
 public:
  const std::vector<std::vector<fe::NumericalNote_t>>& numerical_notes() const { return plans.numeric_notes; }
};

constexpr std::int64_t uid_x = 1, uid_w = 2, uid_y = 3;

// A tensor of logical extents N×H×W×C laid out channels-last (a KRSC filter is
// the same with K, R, S for N, H, W): the frontend's dimensions are always in
// N, C, H, W order and the layout is carried by the strides alone.
fe::graph::Tensor_attributes nhwc_tensor(const char* name, std::int64_t uid, std::int64_t n, std::int64_t h,
                                         std::int64_t w, std::int64_t c, ConvDataType type, std::int64_t alignment) {
  return fe::graph::Tensor_attributes()
      .set_name(name)
      .set_uid(uid)
      .set_dim({n, c, h, w})
      .set_stride({h * w * c, 1, w * c, c})
      .set_data_type(frontend_type(type))
      .set_alignment(alignment);
}

struct BuiltGraph {
  std::shared_ptr<ConvGraph> graph;
  ConvCandidates candidates;
};

// The graph for `key`, validated and lowered, with heuristics queried and
// cumtl's filters applied.
BuiltGraph make_graph(const DeviceProfile& device, const ConvPlanKey& key, std::string_view what) {
  check_key(device, key, what);
  const ConvShape& s = key.shape;
  const std::string label = detail::concat(what, " for the ", to_string(key.direction), " convolution ", key.str());
  auto graph = std::make_shared<ConvGraph>();
  graph->set_io_data_type(frontend_type(key.data_type))
      .set_intermediate_data_type(compute_type(key.data_type))
      .set_compute_data_type(compute_type(key.data_type));
  graph->set_device_properties(device.state().properties);
  // From the profile, never from the current device: the frontend would ask
  // the CUDA runtime otherwise, which fails without a GPU and, with several,
  // may describe another one.
  graph->set_sm_version(device.sm_version());

  const bool dgrad = key.direction == ConvDirection::backward_data;
  const bool wgrad = key.direction == ConvDirection::backward_filter;
  auto x = nhwc_tensor(dgrad ? "dx" : "x", uid_x, s.n, s.h, s.w, s.c, key.data_type, key.alignments[0]);
  auto w = nhwc_tensor(wgrad ? "dw" : "w", uid_w, s.k, s.r, s.s, s.c, key.data_type, key.alignments[1]);
  auto y = nhwc_tensor(key.direction == ConvDirection::forward ? "y" : "dy", uid_y, s.n, s.out_h(), s.out_w(), s.k,
                       key.data_type, key.alignments[2]);
  const std::vector<std::int64_t> padding{s.pad_h, s.pad_w}, stride{s.stride_h, s.stride_w},
      dilation{s.dilation_h, s.dilation_w};
  const auto apply = [](fe::graph::Tensor_attributes& target, const fe::graph::Tensor_attributes& from) {
    target.set_name(from.get_name())
        .set_uid(from.get_uid())
        .set_dim(from.get_dim())
        .set_stride(from.get_stride())
        .set_data_type(from.get_data_type())
        .set_alignment(from.get_alignment())
        .set_output(true);
  };
  switch (key.direction) {
    case ConvDirection::forward: {
      auto out = graph->conv_fprop(graph->tensor(x), graph->tensor(w),
                                   fe::graph::Conv_fprop_attributes()
                                       .set_name("fprop")
                                       .set_padding(padding)
                                       .set_stride(stride)
                                       .set_dilation(dilation)
                                       .set_compute_data_type(compute_type(key.data_type)));
      apply(*out, y);
      break;
    }
    case ConvDirection::backward_data: {
      auto out = graph->conv_dgrad(graph->tensor(y), graph->tensor(w),
                                   fe::graph::Conv_dgrad_attributes()
                                       .set_name("dgrad")
                                       .set_padding(padding)
                                       .set_stride(stride)
                                       .set_dilation(dilation)
                                       .set_compute_data_type(compute_type(key.data_type)));
      apply(*out, x);
      break;
    }
    case ConvDirection::backward_filter: {
      // The frontend takes dy first.
      auto out = graph->conv_wgrad(graph->tensor(y), graph->tensor(x),
                                   fe::graph::Conv_wgrad_attributes()
                                       .set_name("wgrad")
                                       .set_padding(padding)
                                       .set_stride(stride)
                                       .set_dilation(dilation)
                                       .set_compute_data_type(compute_type(key.data_type)));
      apply(*out, w);
      break;
    }
  }

  CUMTL_CHECK_FRONTEND(graph->validate(), label + ": validate");
  if (device.handle() != nullptr)
    CUMTL_CHECK_FRONTEND(graph->build_operation_graph(device.handle()), label + ": build_operation_graph");
  else
    CUMTL_CHECK_FRONTEND(graph->build_operation_graph(), label + ": build_operation_graph");

  // Mode A first, then FALLBACK's few portable engines; either may offer
  // nothing, and only both together is a failure.
  BuiltGraph built{graph, {}};
  ConvCandidates& candidates = built.candidates;
  std::int64_t from_a = 0;
  for (const fe::HeurMode_t mode : {fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}) {
    const char* name = mode == fe::HeurMode_t::A ? "A" : "FALLBACK";
    if (fe::error_t status = graph->create_execution_plans({mode}); status.is_bad())
      candidates.heuristics_failures += detail::concat(candidates.heuristics_failures.empty() ? "" : "; ", "mode ",
                                                       name, ": ", describe(status));
    if (mode == fe::HeurMode_t::A) from_a = graph->get_execution_plan_count();
  }
  const std::int64_t count = graph->get_execution_plan_count();
  const auto& notes = graph->numerical_notes();
  CUMTL_REQUIRE(std::int64_t(notes.size()) == count, label, ": the frontend has notes for ", notes.size(), " of ",
                count, " configurations");
  for (std::int64_t i = 0; i < count; ++i) {
    ConvEngineConfig config;
    config.index = i;
    config.heuristics_mode = i < from_a ? "A" : "FALLBACK";
    CUMTL_CHECK_FRONTEND(graph->get_plan_name_at_index(i, config.name), label + ": engine name");
    std::unordered_map<fe::KnobType_t, std::int64_t> knobs;
    CUMTL_CHECK_FRONTEND(graph->get_engine_and_knobs_at_index(i, config.engine_id, knobs), label + ": engine id");
    config.numerical_notes = note_names(notes[std::size_t(i)]);
    std::vector<fe::BehaviorNote_t> behavior;
    CUMTL_CHECK_FRONTEND(graph->get_behavior_notes_for_plan_at_index(i, behavior), label + ": behavior notes");
    config.behavior_notes = note_names(behavior);

    if (key.data_type == ConvDataType::float32 && !key.numerics.allow_tf32 && config.has("TENSOR_CORE")) {
      config.removed_by = "TF32";
      ++candidates.removed_tf32;
    } else if (config.has("DOWN_CONVERT_INPUTS") || config.has("REDUCED_PRECISION_REDUCTION")) {
      config.removed_by = "reduced precision";
      ++candidates.removed_reduced_precision;
    } else if (key.numerics.deterministic && config.has("NONDETERMINISTIC")) {
      config.removed_by = "determinism";
      ++candidates.removed_nondeterministic;
    } else if (std::find(key.excluded_engines.begin(), key.excluded_engines.end(), config.engine_id) !=
               key.excluded_engines.end()) {
      config.removed_by = "excluded engine";
      ++candidates.removed_excluded;
    }
    candidates.offered.push_back(std::move(config));
  }

  // The frontend's own filters bar the same configurations, so its support
  // check and builds agree with the list above.
  std::vector<fe::NumericalNote_t> barred{fe::NumericalNote_t::DOWN_CONVERT_INPUTS,
                                          fe::NumericalNote_t::REDUCED_PRECISION_REDUCTION};
  if (key.data_type == ConvDataType::float32 && !key.numerics.allow_tf32)
    barred.push_back(fe::NumericalNote_t::TENSOR_CORE);
  if (key.numerics.deterministic) barred.push_back(fe::NumericalNote_t::NONDETERMINISTIC);
  graph->deselect_numeric_notes(barred);
  if (key.workspace_limit >= 0) graph->deselect_workspace_greater_than(key.workspace_limit);
  return built;
}

std::string no_engine_message(const ConvPlanKey& key, const ConvCandidates& candidates, const std::string& failures) {
  return detail::concat("build_conv_plan: no cuDNN engine can run the convolution ", key.str(), ": ",
                        candidates.summary(),
                        candidates.heuristics_failures.empty() ? "" : "; heuristics: " + candidates.heuristics_failures,
                        failures.empty() ? "" : "; " + failures);
}

}  // namespace

struct ConvPlan::Impl {
  ConvPlanKey key;
  DeviceProfile device;
  std::shared_ptr<ConvGraph> graph;
  ConvCandidates candidates;
  std::vector<bool> finalized;                // by configuration index
  std::vector<std::int64_t> workspace_bytes;  // by configuration index, once finalized
  std::int64_t current = -1;    // the configuration executions use first
  std::int64_t fallbacks = 0;
  std::string last_failure;

  // Finalizes configuration `index` unless it is; the frontend's text on failure.
  std::string finalize(std::int64_t index) {
    if (finalized[std::size_t(index)]) return {};
    if (fe::error_t status = graph->build_plan_at_index(index); status.is_bad()) return describe(status);
    CUMTL_CHECK_FRONTEND(graph->get_workspace_size_plan_at_index(index, workspace_bytes[std::size_t(index)]),
                         detail::concat("the workspace of ", candidates.offered[std::size_t(index)].str()));
    finalized[std::size_t(index)] = true;
    return {};
  }
};

const ConvPlanKey& ConvPlan::key() const noexcept { return impl_->key; }
const ConvCandidates& ConvPlan::candidates() const noexcept { return impl_->candidates; }
const ConvEngineConfig& ConvPlan::engine() const { return impl_->candidates.offered.at(std::size_t(impl_->current)); }
std::int64_t ConvPlan::workspace_bytes() const { return impl_->workspace_bytes[std::size_t(impl_->current)]; }
std::int64_t ConvPlan::fallbacks() const noexcept { return impl_->fallbacks; }
const std::string& ConvPlan::last_failure() const noexcept { return impl_->last_failure; }

std::string ConvPlan::graph_json() const {
  nlohmann::json json;
  impl_->graph->serialize(json);
  return json.dump();
}

void ConvPlan::use_config(std::int64_t index) {
  CUMTL_REQUIRE(index >= 0 && index < std::int64_t(impl_->candidates.offered.size()), "ConvPlan::use_config: index ",
                index, " is not one of the ", impl_->candidates.offered.size(), " configurations of ", impl_->key.str());
  const ConvEngineConfig& config = impl_->candidates.offered[std::size_t(index)];
  CUMTL_REQUIRE(config.removed_by.empty(), "ConvPlan::use_config: ", config.str(), " was removed by the ",
                config.removed_by, " filter for ", impl_->key.str());
  const std::string failure = impl_->finalize(index);
  if (!failure.empty())
    throw CudnnFrontendError(int(fe::error_code_t::GRAPH_EXECUTION_PLAN_CREATION_FAILED),
                             detail::concat("ConvPlan::use_config: ", config.str(), " does not finalize for ",
                                            impl_->key.str(), ": ", failure),
                             __FILE__, __LINE__, logging_hint);
  impl_->current = index;
}

void ConvPlan::execute(Context& ctx, cudnnContext* handle, ConvPointers pointers) {
  Impl& plan = *impl_;
  std::unordered_map<std::int64_t, void*> pack{{uid_x, const_cast<void*>(pointers.x)},
                                               {uid_w, const_cast<void*>(pointers.w)},
                                               {uid_y, const_cast<void*>(pointers.y)}};
  const auto attempt = [&](std::int64_t index) {
    if (std::string failure = plan.finalize(index); !failure.empty()) return failure;
    // A workspace stays valid for the stream: a later, larger reserve frees
    // this block in stream order, after this execution has read it.
    const std::int64_t bytes = plan.workspace_bytes[std::size_t(index)];
    void* workspace = bytes > 0 ? ctx.workspace().reserve(std::size_t(bytes)) : nullptr;
    fe::error_t status = plan.graph->execute_plan_at_index(handle, pack, workspace, index);
    return status.is_good() ? std::string() : describe(status);
  };
  const auto name = [&plan](std::int64_t index) { return plan.candidates.offered[std::size_t(index)].str(); };
  std::string failures = attempt(plan.current);
  if (failures.empty()) return;
  failures = name(plan.current) + ": " + failures;
  // Only after a failure: the other kept configurations, in heuristics order.
  std::vector<std::int64_t> order;
  for (const ConvEngineConfig& config : plan.candidates.offered)
    if (config.removed_by.empty() && config.index != plan.current) order.push_back(config.index);
  const std::int64_t ran = cudnn_detail::first_that_runs(order, attempt, name, failures);
  if (ran >= 0) {
    if (ran != plan.current) {
      ++plan.fallbacks;
      plan.last_failure = failures;
      plan.current = ran;
    }
    return;
  }
  plan.last_failure = failures;
  throw CudnnFrontendError(int(fe::error_code_t::GRAPH_EXECUTION_FAILED),
                           detail::concat("cuDNN could not execute the ", to_string(plan.key.direction),
                                          " convolution ", plan.key.str(), " with any of ", order.size() + 1,
                                          " configuration(s): ", failures),
                           __FILE__, __LINE__, logging_hint);
}

ConvCandidates conv_plan_candidates(const DeviceProfile& device, const ConvPlanKey& key) {
  return make_graph(device, key, "conv_plan_candidates").candidates;
}

ConvPlan build_conv_plan(const DeviceProfile& device, const ConvPlanKey& key) {
  BuiltGraph built = make_graph(device, key, "build_conv_plan");
  auto impl = std::make_shared<ConvPlan::Impl>(
      ConvPlan::Impl{key, device, built.graph, std::move(built.candidates), {}, {}, -1, 0, {}});
  impl->finalized.assign(impl->candidates.offered.size(), false);
  impl->workspace_bytes.assign(impl->candidates.offered.size(), 0);
  if (impl->candidates.kept().empty())
    throw CudnnFrontendError(int(fe::error_code_t::GRAPH_NOT_SUPPORTED),
                             no_engine_message(key, impl->candidates, ""), __FILE__, __LINE__, logging_hint);
  // The frontend's support check: the first configuration that passes every
  // filter, the workspace limit included. Its text names each one's reason.
  if (fe::error_t status = impl->graph->check_support(); status.is_bad())
    throw CudnnFrontendError(int(status.get_code()),
                             no_engine_message(key, impl->candidates, "the support check: " + describe(status)),
                             __FILE__, __LINE__, logging_hint);
  // A configuration that passed the support check can still fail to
  // finalize, so each is tried in turn.
  std::string failures;
  for (const ConvEngineConfig& config : impl->candidates.offered) {
    if (!config.removed_by.empty()) continue;
    const std::string failure = impl->finalize(config.index);
    if (failure.empty()) {
      impl->current = config.index;
      return ConvPlan(std::move(impl));
    }
    failures += detail::concat(failures.empty() ? "" : "; ", config.str(), ": ", failure);
  }
  throw CudnnFrontendError(int(fe::error_code_t::GRAPH_EXECUTION_PLAN_CREATION_FAILED),
                           no_engine_message(key, impl->candidates, "no configuration finalized: " + failures),
                           __FILE__, __LINE__, logging_hint);
}

// ---------------------------------------------------------------------------
// Execution on a context

namespace {

// What a context keeps for its convolutions. The profile is read from the
// context's own handle, and this state goes before the handle does.
struct ContextConvState {
  DeviceProfile device;
  ConvPlanCache plans;
};

ContextConvState& context_state(Context& ctx, cudnnHandle_t handle) {
  std::shared_ptr<void>& slot = ctx.library_handles().cudnn_plans;
  if (!slot)
    slot = std::make_shared<ContextConvState>(
        ContextConvState{DeviceProfile::from_handle(handle, ctx.device().index()), {}});
  return *static_cast<ContextConvState*>(slot.get());
}

// The largest power of two dividing the address, capped at the 16 bytes that
// every engine is satisfied with.
std::int64_t pointer_alignment(const void* pointer) {
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  if (address == 0) return 16;
  return std::int64_t(std::min<std::uintptr_t>(address & (~address + 1), 16));
}

}  // namespace

void execute_conv(Context& ctx, cudnnContext* handle, ConvDirection direction, const ConvShape& shape,
                  ConvNumerics numerics, ConvDataType data_type, ConvPointers pointers) {
  const char* name = direction == ConvDirection::forward         ? "cumtl::conv_forward"
                     : direction == ConvDirection::backward_data ? "cumtl::conv_backward_data"
                                                                 : "cumtl::conv_backward_filter";
  CUMTL_REQUIRE(ctx.device().is_cuda(), name, " needs a CUDA context, got one on ", ctx.device(), " for ",
                describe(shape));
  validate(shape, name);
  const bool dgrad = direction == ConvDirection::backward_data, wgrad = direction == ConvDirection::backward_filter;
  const char* x_name = dgrad ? "dx" : "x";
  const char* w_name = wgrad ? "dw" : "w";
  const char* y_name = direction == ConvDirection::forward ? "y" : "dy";
  CUMTL_REQUIRE(pointers.x != nullptr && pointers.w != nullptr && pointers.y != nullptr, name, ": null pointer (",
                x_name, " ", pointers.x, ", ", w_name, " ", pointers.w, ", ", y_name, " ", pointers.y, ") for ",
                describe(shape));
  const std::array<std::int64_t, 3> alignments{pointer_alignment(pointers.x), pointer_alignment(pointers.w),
                                               pointer_alignment(pointers.y)};
  const std::int64_t element = element_bytes(data_type);
  CUMTL_REQUIRE(alignments[0] >= element && alignments[1] >= element && alignments[2] >= element, name,
                ": pointers must be aligned to the element size (", element, " bytes), got ", x_name, " ", pointers.x,
                ", ", w_name, " ", pointers.w, ", ", y_name, " ", pointers.y);

  ContextConvState& state = context_state(ctx, handle);
  const ConvPlanKey key = make_conv_plan_key(state.device, direction, shape, numerics, -1, data_type, alignments);
  state.plans.get_or_build(state.device, key).execute(ctx, handle, pointers);
}

const ConvPlanCache* context_conv_plans(Context& ctx) {
  const std::shared_ptr<void>& slot = ctx.library_handles().cudnn_plans;
  return slot ? &static_cast<const ContextConvState*>(slot.get())->plans : nullptr;
}

// ---------------------------------------------------------------------------
// Versions

std::string cudnn_version_mismatch(std::size_t compiled, std::size_t loaded, const std::string& headers,
                                   const std::string& library) {
  if (loaded / 100 == compiled / 100) return {};
  const auto text = [](std::size_t version) {
    return detail::concat(version / 10000, ".", version % 10000 / 100, ".", version % 100);
  };
  return detail::concat("cuDNN version mismatch: cumtl's CUDA backend was compiled against cuDNN ", text(compiled),
                        " (headers in ", headers, ") but the process loaded cuDNN ", text(loaded), " (", library,
                        "); their major and minor versions must agree. Point LD_LIBRARY_PATH at the matching "
                        "libcudnn, or rebuild with CUDNN_ROOT set to the loaded one.");
}

void check_cudnn_version() {
  Dl_info info{};
  const std::string library = dladdr(reinterpret_cast<void*>(&cudnnGetVersion), &info) != 0 && info.dli_fname != nullptr
                                  ? std::string(info.dli_fname)
                                  : std::string("an unknown path");
#if defined(CUMTL_CUDNN_INCLUDE_DIR)
  const std::string headers = CUMTL_CUDNN_INCLUDE_DIR;
#else
  const std::string headers = "the cudnn_version.h the compiler found";
#endif
  if (std::string mismatch = cudnn_version_mismatch(CUDNN_VERSION, cudnnGetVersion(), headers, library);
      !mismatch.empty())
    throw Error(std::move(mismatch), __FILE__, __LINE__);
}

}  // namespace cumtl::cuda
