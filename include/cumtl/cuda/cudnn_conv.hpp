#pragma once
// 2-D convolutions on cuDNN's graph API, through NVIDIA's cudnn-frontend:
// forward, backward data and backward filter, activations NHWC and filters
// KRSC, planned for a device profile and cached per key.
//
// Only the backend's implementation unit (cumtl/cuda_backend_cudnn.cpp)
// includes the frontend: its headers are C++17, bring their own nlohmann/json
// and specialize its serializers globally, so they stay out of every other
// translation unit. This header is the plain-type face of that unit; nothing
// in it needs a CUDA or cuDNN header, so tests and programs compiled by any
// C++20 compiler use it.
//
// A plan is built in the frontend's stages: a graph of three tensors (x, w, y
// with fixed names and unique ids, the layout carried by the strides, the byte
// alignment each pointer promises) and one convolution node; validation; the
// backend operation graph; heuristics, mode A first and then FALLBACK; cumtl's
// numerics filters; the support check; then the configurations are finalized
// in heuristics order and the first that finalizes is the plan. The same code
// runs to a finalized plan without a GPU, from a recorded device profile, which
// is how the engine lists, the filters and the error paths are tested on
// machines without one; only execution needs the device.
//
// The filters encode cumtl's numerics policy. With fp32 data a TENSOR_CORE
// engine computes in TF32, so those go unless TF32 is allowed;
// DOWN_CONVERT_INPUTS and REDUCED_PRECISION_REDUCTION engines always go, so
// accumulation stays in fp32 for every data type; NONDETERMINISTIC engines
// (atomics in dgrad and wgrad) go in deterministic mode; a workspace limit
// drops the configurations that want more.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cumtl/core/conv_shape.hpp"
#include "cumtl/core/error.hpp"

struct cudnnContext;  // a cudnnHandle_t points to one

namespace cumtl {
class Context;
}

namespace cumtl::cuda {

enum class ConvDirection : std::uint8_t { forward, backward_data, backward_filter };
std::string to_string(ConvDirection direction);

enum class ConvDataType : std::uint8_t { float32, float64, bfloat16, float16, int8 };
std::string to_string(ConvDataType type);
std::int64_t element_bytes(ConvDataType type);

struct ConvNumerics {
  bool allow_tf32 = true;      // fp32 data may use TF32 tensor cores
  bool deterministic = false;  // bit-identical results run to run (no atomics)

  std::string str() const {
    return detail::concat("allow_tf32 ", allow_tf32 ? "true" : "false", ", deterministic ",
                          deterministic ? "true" : "false");
  }
  friend bool operator==(const ConvNumerics&, const ConvNumerics&) = default;
};

// The GPU that plans are made for: cuDNN's device properties, read from a live
// handle or restored from the JSON a GPU once produced. Copies share one
// descriptor. A profile read from a handle belongs to whoever owns the handle
// (a context), and is never kept past it.
class DeviceProfile {
 public:
  // A recorded profile; needs no GPU. `origin` names where the JSON came from
  // (a file) in messages.
  static DeviceProfile from_json(const std::string& json, std::string origin = "a JSON profile");
  // The GPU of `handle`, which is device `device`.
  static DeviceProfile from_handle(cudnnContext* handle, int device);

  // The profile as cuDNN prints it.
  const std::string& json() const noexcept;
  // A stable hash of json(): equal fingerprints give equal plans, so it stands
  // for the device in plan keys.
  std::uint64_t fingerprint() const noexcept;
  // major·10 + minor, e.g. 90 for sm_90, read from the profile.
  int sm_version() const noexcept;
  const std::string& origin() const noexcept;
  // The handle the profile was read from; null for a recorded one.
  cudnnContext* handle() const noexcept;

  struct State;
  const State& state() const noexcept { return *state_; }

 private:
  explicit DeviceProfile(std::shared_ptr<const State> state) : state_(std::move(state)) {}
  std::shared_ptr<const State> state_;
};

// Everything a plan depends on. Alignments are in bytes, for the tensors in the
// roles x (dx for dgrad), w (dw for wgrad), y (dy for dgrad and wgrad).
struct ConvPlanKey {
  ConvDirection direction = ConvDirection::forward;
  ConvShape shape{};
  ConvDataType data_type = ConvDataType::float32;
  std::array<std::int64_t, 3> alignments{16, 16, 16};
  ConvNumerics numerics{};
  std::int64_t workspace_limit = -1;              // bytes; negative means none
  std::vector<std::int64_t> excluded_engines{};   // engine ids (global indices) never to use
  std::uint64_t device = 0;                       // DeviceProfile::fingerprint()

  std::string str() const;
  friend bool operator==(const ConvPlanKey&, const ConvPlanKey&) = default;
};

struct ConvPlanKeyHash {
  std::size_t operator()(const ConvPlanKey& key) const noexcept {
    std::uint64_t hash = 0x9e3779b97f4a7c15ull;
    const auto mix = [&hash](std::uint64_t value) { hash ^= value + 0x9e3779b97f4a7c15ull + (hash << 6) + (hash >> 2); };
    const ConvShape& s = key.shape;
    for (std::int64_t value : {s.n, s.h, s.w, s.c, s.k, s.r, s.s, s.pad_h, s.pad_w, s.stride_h, s.stride_w,
                               s.dilation_h, s.dilation_w, key.alignments[0], key.alignments[1], key.alignments[2],
                               key.workspace_limit})
      mix(std::uint64_t(value));
    for (std::int64_t engine : key.excluded_engines) mix(std::uint64_t(engine));
    mix(std::uint64_t(key.direction) | std::uint64_t(key.data_type) << 8 |
        std::uint64_t(key.numerics.allow_tf32) << 16 | std::uint64_t(key.numerics.deterministic) << 17);
    mix(key.device);
    return std::size_t(hash);
  }
};

ConvPlanKey make_conv_plan_key(const DeviceProfile& device, ConvDirection direction, const ConvShape& shape,
                               ConvNumerics numerics, std::int64_t workspace_limit = -1,
                               ConvDataType data_type = ConvDataType::float32,
                               std::array<std::int64_t, 3> alignments = {16, 16, 16});

// One engine configuration that heuristics offered, and what cumtl did with it.
struct ConvEngineConfig {
  std::int64_t index = 0;  // position in the heuristics order (mode A's, then FALLBACK's)
  std::string heuristics_mode;  // "A" or "FALLBACK"
  std::string name;             // the engine and its knobs, e.g. "eng0_k2=1_k3=0"
  std::int64_t engine_id = -1;  // the engine's global index
  std::vector<std::string> numerical_notes, behavior_notes;
  std::string removed_by;  // the filter that removed it; empty when kept

  bool has(std::string_view note) const;
  std::string str() const;
};

// What heuristics offered for a key, and what cumtl's filters left. Each
// configuration is counted by the first filter that removes it, in the order
// TF32, reduced precision, determinism, excluded engine.
struct ConvCandidates {
  std::vector<ConvEngineConfig> offered;
  std::string heuristics_failures;  // the text of a mode that offered nothing
  std::int64_t removed_tf32 = 0, removed_reduced_precision = 0, removed_nondeterministic = 0, removed_excluded = 0;

  std::vector<ConvEngineConfig> kept() const;
  std::string summary() const;
};

namespace cudnn_detail {

// The fallback order of an execution: attempt(index) runs the configuration
// at `index` and returns the empty string, or the reason it failed; describe(index)
// names it. Returns the first index that ran, or -1 when none did; `failures`
// gets one "name: reason" entry per failed attempt.
template <class Attempt, class Describe>
std::int64_t first_that_runs(const std::vector<std::int64_t>& order, Attempt&& attempt, Describe&& describe,
                             std::string& failures) {
  for (std::int64_t index : order) {
    const std::string failure = attempt(index);
    if (failure.empty()) return index;
    failures += cumtl::detail::concat(failures.empty() ? "" : "; ", describe(index), ": ", failure);
  }
  return -1;
}

}  // namespace cudnn_detail

// Device pointers in the roles of a plan's tensors, whichever the direction writes.
struct ConvPointers {
  const void* x;  // x or dx
  const void* w;  // w or dw
  const void* y;  // y or dy
};

// A plan for one key: the frontend's graph, the configurations cumtl's filters
// kept, which of them are finalized, and the one executions use first. Copies
// share one plan.
class ConvPlan {
 public:
  const ConvPlanKey& key() const noexcept;
  const ConvCandidates& candidates() const noexcept;
  // The configuration executions use: the first that finalized, or the one a
  // fallback moved to.
  const ConvEngineConfig& engine() const;
  std::int64_t workspace_bytes() const;
  bool uses_tensor_cores() const { return engine().has("TENSOR_CORE"); }
  bool deterministic() const { return !engine().has("NONDETERMINISTIC"); }
  // The graph as the frontend serializes it: tensors, attributes, types.
  std::string graph_json() const;
  // Finalizes the kept configuration at `index` (ConvEngineConfig::index) and
  // makes it the one executions use first; throws with the frontend's text
  // when it cannot. For autotuning, and for testing the fallback.
  void use_config(std::int64_t index);
  // Runs the plan on ctx's stream through `handle` (ctx's cuDNN handle), with
  // workspace from ctx. When a configuration fails to execute, the next kept
  // one (finalized on the way) is tried and, if it runs, becomes the one used
  // from then on; the error lists every attempt when none runs.
  void execute(Context& ctx, cudnnContext* handle, ConvPointers pointers);
  // Executions that needed a fallback, and the last failure's text.
  std::int64_t fallbacks() const noexcept;
  const std::string& last_failure() const noexcept;

  struct Impl;

 private:
  friend ConvPlan build_conv_plan(const DeviceProfile& device, const ConvPlanKey& key);
  explicit ConvPlan(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// The configurations heuristics offer for `key` before and after the filters,
// without finalizing any.
ConvCandidates conv_plan_candidates(const DeviceProfile& device, const ConvPlanKey& key);

// Builds the plan for `key` (whose device must be device.fingerprint()).
// Throws a CudnnFrontendError that says what each stage offered and removed
// when no configuration finalizes.
ConvPlan build_conv_plan(const DeviceProfile& device, const ConvPlanKey& key);

// Plans by key. Not thread-safe: each context keeps its own.
class ConvPlanCache {
 public:
  ConvPlan& get_or_build(const DeviceProfile& device, const ConvPlanKey& key) {
    if (const auto found = plans_.find(key); found != plans_.end()) {
      ++hits_;
      return found->second;
    }
    ++misses_;
    return plans_.emplace(key, build_conv_plan(device, key)).first->second;
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

// Execution on a context (needs a GPU). The context keeps its device profile,
// read from its own cuDNN handle, and its plan cache; both go with it.
void execute_conv(Context& ctx, cudnnContext* handle, ConvDirection direction, const ConvShape& shape,
                  ConvNumerics numerics, ConvDataType data_type, ConvPointers pointers);
// The plan cache of ctx (for inspection); null before its first convolution.
const ConvPlanCache* context_conv_plans(Context& ctx);

// The cuDNN library this process loaded against the one the backend was
// compiled with: refuses a different major or minor version with a message
// naming both and where each came from.
void check_cudnn_version();
// The message check_cudnn_version() throws for versions `compiled` (headers in
// `headers`) and `loaded` (from `library`), in cudnnGetVersion()'s encoding;
// empty when they agree on major and minor.
std::string cudnn_version_mismatch(std::size_t compiled, std::size_t loaded, const std::string& headers,
                                   const std::string& library);

}  // namespace cumtl::cuda
