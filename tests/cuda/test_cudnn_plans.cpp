// cuDNN convolution plans through cudnn-frontend without a GPU: device
// profiles, heuristics, the numerics and workspace filters, the plan cache and
// the error paths, all the way to a finalized execution plan. Planning is
// pointed at a recorded device profile (tests/fixtures/cudnn_h100_device.json),
// so this suite runs on any machine with the cuDNN libraries, with or without
// a GPU. A host C++ file: it sees cumtl's plain types, never the frontend's.
//
// The fixture is an H100 SXM profile written from the field list that cuDNN
// 9.19's JSON parser asks for, not one read from a card. The GPU suite writes
// a real card's profile to $CUMTL_CUDNN_DEVICE_JSON when that is set (the
// device check does), which should then replace it.
//
// Without libcuda, cuDNN drops every runtime-compiled engine from heuristics,
// so the lists here are a subset of a GPU machine's: the tests assert
// properties of the lists, never exact engines.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <cumtl/cuda/cudnn_conv.hpp>

#include "../support/testing.hpp"

using cumtl::ConvShape;
using cumtl::CudnnFrontendError;
using cumtl::resnet_convolutions;
using cumtl::square_conv;
using cumtl::cuda::build_conv_plan;
using cumtl::cuda::ConvCandidates;
using cumtl::cuda::ConvDataType;
using cumtl::cuda::ConvDirection;
using cumtl::cuda::ConvEngineConfig;
using cumtl::cuda::ConvNumerics;
using cumtl::cuda::ConvPlan;
using cumtl::cuda::ConvPlanCache;
using cumtl::cuda::ConvPlanKey;
using cumtl::cuda::DeviceProfile;
using cumtl::cuda::make_conv_plan_key;

namespace {

const std::string fixture_path = std::string(CUMTL_TEST_FIXTURES_DIR) + "/cudnn_h100_device.json";

const std::string& fixture_json() {
  static const std::string json = [] {
    std::ifstream file(fixture_path);
    REQUIRE_MESSAGE(file.good(), "cannot read the device profile fixture ", fixture_path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }();
  return json;
}

const DeviceProfile& h100() {
  static const DeviceProfile device = DeviceProfile::from_json(fixture_json(), fixture_path);
  return device;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "'", from, "' is not in the text");
  return text.replace(at, from.size(), to);
}

constexpr std::array<ConvDirection, 3> all_directions{ConvDirection::forward, ConvDirection::backward_data,
                                                      ConvDirection::backward_filter};

// The code and text of the CudnnFrontendError that `action` throws; code -1 when none is thrown.
template <class Action>
std::pair<int, std::string> frontend_error(Action&& action) {
  try {
    action();
  } catch (const CudnnFrontendError& error) {
    return {error.code(), error.what()};
  } catch (const cumtl::Error& error) {
    return {-1, std::string("(not a CudnnFrontendError) ") + error.what()};
  }
  return {-1, "(nothing was thrown)"};
}

// The frontend's error_code_t values that the tests expect.
constexpr int graph_not_supported = 5, plan_creation_failed = 6, backend_api_failed = 11;

bool contains(const std::vector<ConvShape>& shapes, const ConvShape& shape) {
  return std::find(shapes.begin(), shapes.end(), shape) != shapes.end();
}

bool any_has(const std::vector<ConvEngineConfig>& list, std::string_view note) {
  return std::any_of(list.begin(), list.end(), [note](const ConvEngineConfig& config) { return config.has(note); });
}

std::int64_t removed(const ConvCandidates& c) {
  return c.removed_tf32 + c.removed_reduced_precision + c.removed_nondeterministic + c.removed_excluded;
}

const cumtl::ResNetConvLayout resnet18{8, 224, 64, 7, 2, 3, true, false, {64, 128, 256, 512}, {2, 2, 2, 2}};
const cumtl::ResNetConvLayout resnet34{8, 224, 64, 7, 2, 3, true, false, {64, 128, 256, 512}, {3, 4, 6, 3}};
const cumtl::ResNetConvLayout resnet50{8, 224, 64, 7, 2, 3, true, true, {64, 128, 256, 512}, {3, 4, 6, 3}};
// The CPU models: ResNetSpec::small() (3x3/1 stem) and compact() (3x3/2 stem), on 64-pixel faces.
const cumtl::ResNetConvLayout small_resnet{8, 64, 16, 3, 1, 1, false, false, {16, 32, 64, 128}, {1, 1, 1, 1}};
const cumtl::ResNetConvLayout compact_resnet{8, 64, 16, 3, 2, 1, false, false, {16, 32, 64, 128}, {1, 1, 1, 1}};

ConvPlanKey key_for(ConvDirection direction, const ConvShape& shape, ConvNumerics numerics,
                    std::int64_t workspace_limit = -1, ConvDataType type = ConvDataType::float32,
                    std::array<std::int64_t, 3> alignments = {16, 16, 16}) {
  return make_conv_plan_key(h100(), direction, shape, numerics, workspace_limit, type, alignments);
}

ConvCandidates candidates(const ConvPlanKey& key) {
  return cumtl::cuda::conv_plan_candidates(h100(), key);
}

// Every convolution in every direction builds a plan: fp32 with TF32 allowed,
// strict fp32 (no tensor cores, deterministic), bf16 and fp16.
void check_plans_finalize(const std::vector<ConvShape>& shapes) {
  const ConvNumerics strict{.allow_tf32 = false, .deterministic = true};
  for (const ConvShape& shape : shapes) {
    for (ConvDirection direction : all_directions) {
      CAPTURE(shape.str());
      CAPTURE(cumtl::cuda::to_string(direction));
      const ConvPlan plan = build_conv_plan(h100(), key_for(direction, shape, ConvNumerics{}));
      CHECK(plan.workspace_bytes() >= 0);
      CHECK(plan.engine().engine_id >= 0);
      CHECK(plan.engine().removed_by.empty());
      const ConvPlan strict_plan = build_conv_plan(h100(), key_for(direction, shape, strict));
      CHECK_FALSE(strict_plan.uses_tensor_cores());
      CHECK(strict_plan.deterministic());
      for (ConvDataType type : {ConvDataType::bfloat16, ConvDataType::float16}) {
        CAPTURE(cumtl::cuda::to_string(type));
        const ConvPlan half = build_conv_plan(h100(), key_for(direction, shape, ConvNumerics{}, -1, type));
        CHECK(half.workspace_bytes() >= 0);
        CHECK_FALSE(half.engine().has("DOWN_CONVERT_INPUTS"));
        CHECK_FALSE(half.engine().has("REDUCED_PRECISION_REDUCTION"));
      }
    }
  }
}

const ConvShape conv3x3_64 = square_conv(8, 56, 64, 64, 3, 1);

}  // namespace

TEST_SUITE("cudnn") {
  TEST_CASE("cudnn: device profile from JSON round trip") {
    const std::string& json = h100().json();
    INFO("read back: ", json);
    CHECK(cumtl_test::contains_all(json, {"\"smVersion\":900", "\"multiProcessorCount\":132", "\"deviceVer\":900",
                                          "\"maxGridSize\":[2147483647,65535,65535]", "\"deviceName\""}));
    CHECK(h100().sm_version() == 90);
    CHECK(h100().handle() == nullptr);
    CHECK(h100().origin() == fixture_path);
    CHECK(DeviceProfile::from_json(json).fingerprint() == h100().fingerprint());
    const DeviceProfile other = DeviceProfile::from_json(
        replaced(fixture_json(), "\"multiProcessorCount\":132", "\"multiProcessorCount\":114"));
    CHECK(other.fingerprint() != h100().fingerprint());
    const DeviceProfile ampere = DeviceProfile::from_json(replaced(
        replaced(fixture_json(), "\"smVersion\":900", "\"smVersion\":800"), "\"deviceVer\":900", "\"deviceVer\":800"));
    CHECK(ampere.sm_version() == 80);
    CHECK_ERROR_WITH(DeviceProfile::from_handle(nullptr, 0), "null cuDNN handle");
  }

  TEST_CASE("cudnn: a wrong profile fails with cuDNN's own text, through the frontend") {
    // Empty, a field misspelt, an architecture cuDNN has no engines for.
    const auto [empty_code, empty_text] = frontend_error([] { (void)DeviceProfile::from_json("", "an empty file"); });
    INFO(empty_text);
    CHECK(empty_code == backend_api_failed);
    CHECK(cumtl_test::contains_all(empty_text, {"DeviceProfile::from_json(an empty file)", "CUDNN_BACKEND_API_FAILED",
                                                "CUDNN_STATUS_BAD_PARAM", "CUDNN_FRONTEND_LOG_INFO"}));
    const auto [missing_code, missing_text] = frontend_error(
        [] { (void)DeviceProfile::from_json(replaced(fixture_json(), "\"maxGridSize\"", "\"maxGridSizes\"")); });
    INFO(missing_text);
    CHECK(missing_code == backend_api_failed);
    CHECK(cumtl_test::contains_all(missing_text, {"maxGridSize"}));
    const auto [arch_code, arch_text] = frontend_error(
        [] { (void)DeviceProfile::from_json(replaced(fixture_json(), "\"deviceVer\":900", "\"deviceVer\":0")); });
    INFO(arch_text);
    CHECK(arch_code == backend_api_failed);
    CHECK(cumtl_test::contains_all(arch_text, {"CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH"}));
  }

  TEST_CASE("cudnn: invalid geometry and keys are refused before cuDNN") {
    // A 7x7 filter over a 2x2 input fits only with padding.
    CHECK_ERROR_WITH(build_conv_plan(h100(), key_for(ConvDirection::forward, square_conv(1, 2, 4, 4, 7, 1, 0), {})),
                     "build_conv_plan", "larger than the padded input", "x[1, 2, 2, 4] * w[4, 7, 7, 4]");
    CHECK(square_conv(1, 2, 4, 4, 7, 1).out_h() == 2);
    CHECK_ERROR_WITH(build_conv_plan(h100(), key_for(ConvDirection::forward, square_conv(0, 8, 4, 4, 3, 1), {})),
                     "every extent of a convolution must be positive", "x[0, 8, 8, 4]");
    ConvShape bad_stride = square_conv(1, 8, 4, 4, 3, 1);
    bad_stride.stride_w = 0;
    CHECK_ERROR_WITH(build_conv_plan(h100(), key_for(ConvDirection::forward, bad_stride, {})),
                     "strides and dilations positive", "stride 1x0");
    CHECK_ERROR_WITH(build_conv_plan(h100(), key_for(ConvDirection::forward, conv3x3_64, {}, -1, ConvDataType::float32,
                                                     {16, 2, 16})),
                     "multiples of the element size (4)", "w 2");
    CHECK_ERROR_WITH(build_conv_plan(h100(), key_for(ConvDirection::forward, conv3x3_64, {}, -1, ConvDataType::float32,
                                                     {16, 12, 16})),
                     "powers of two");
    ConvPlanKey foreign = key_for(ConvDirection::forward, conv3x3_64, {});
    foreign.device ^= 1;
    CHECK_ERROR_WITH(build_conv_plan(h100(), foreign), "made for another device profile", fixture_path);
  }

  TEST_CASE("cudnn: ConvShape as the error messages print it") {
    const ConvShape shape = square_conv(8, 56, 64, 64, 3, 1);
    CHECK(shape.str() == "x[8, 56, 56, 64] * w[64, 3, 3, 64] stride 1 pad 1 dilation 1 -> y[8, 56, 56, 64]");
    const ConvShape stem = square_conv(8, 224, 3, 64, 7, 2, 3);
    CHECK(stem.out_h() == 112);
    ConvShape odd = square_conv(3, 13, 3, 7, 3, 2, 1);
    odd.w = 11;
    odd.s = 5;
    odd.pad_w = 0;
    odd.stride_w = 1;
    odd.dilation_h = 2;
    CHECK(odd.out_h() == 6);  // (13 + 2 - 2*2 - 1) / 2 + 1
    CHECK(odd.out_w() == 7);  // (11 - 4 - 1) / 1 + 1
    CHECK(odd.str() == "x[3, 13, 11, 3] * w[7, 3, 5, 3] stride 2x1 pad 1x0 dilation 2x1 -> y[3, 6, 7, 7]");
  }

  TEST_CASE("cudnn: plans finalize for every ResNet-18 and ResNet-34 convolution") {
    const std::vector<ConvShape> shapes = resnet_convolutions(resnet18);
    REQUIRE(shapes.size() == 11);
    CHECK(shapes.front().str() == "x[8, 224, 224, 3] * w[64, 7, 7, 3] stride 2 pad 3 dilation 1 -> y[8, 112, 112, 64]");
    CHECK(contains(shapes, square_conv(8, 56, 64, 128, 3, 2)));
    CHECK(contains(shapes, square_conv(8, 7, 512, 512, 3, 1)));
    CHECK(shapes.back().str() == "x[8, 14, 14, 256] * w[512, 1, 1, 256] stride 2 pad 0 dilation 1 -> y[8, 7, 7, 512]");
    // ResNet-34 repeats blocks, not shapes.
    CHECK(resnet_convolutions(resnet34) == shapes);
    check_plans_finalize(shapes);
  }

  TEST_CASE("cudnn: plans finalize for every ResNet-50 convolution") {
    const std::vector<ConvShape> shapes = resnet_convolutions(resnet50);
    REQUIRE(shapes.size() == 23);
    CHECK(contains(shapes, square_conv(8, 56, 256, 512, 1, 2)));
    CHECK(contains(shapes, square_conv(8, 56, 64, 256, 1, 1)));  // layer 1's projection, stride 1
    CHECK(contains(shapes, square_conv(8, 28, 256, 256, 3, 2)));
    CHECK(contains(shapes, square_conv(8, 7, 2048, 512, 1, 1)));
    check_plans_finalize(shapes);
  }

  TEST_CASE("cudnn: plans finalize for every convolution of the CPU models") {
    const std::vector<ConvShape> small = resnet_convolutions(small_resnet);
    REQUIRE(small.size() == 11);
    CHECK(small.front().str() == "x[8, 64, 64, 3] * w[16, 3, 3, 3] stride 1 pad 1 dilation 1 -> y[8, 64, 64, 16]");
    CHECK(small.back().str() == "x[8, 16, 16, 64] * w[128, 1, 1, 64] stride 2 pad 0 dilation 1 -> y[8, 8, 8, 128]");
    check_plans_finalize(small);
    const std::vector<ConvShape> compact = resnet_convolutions(compact_resnet);
    CHECK(compact.front().str() == "x[8, 64, 64, 3] * w[16, 3, 3, 3] stride 2 pad 1 dilation 1 -> y[8, 32, 32, 16]");
    check_plans_finalize(compact);
  }

  TEST_CASE("cudnn: the TF32 filter removes tensor core engines") {
    for (ConvDirection direction : all_directions) {
      CAPTURE(cumtl::cuda::to_string(direction));
      const ConvCandidates tf32 = candidates(key_for(direction, conv3x3_64, {.allow_tf32 = true}));
      const ConvCandidates strict = candidates(key_for(direction, conv3x3_64, {.allow_tf32 = false}));
      MESSAGE(cumtl::cuda::to_string(direction), " TF32 allowed: ", tf32.summary());
      MESSAGE(cumtl::cuda::to_string(direction), " TF32 disallowed: ", strict.summary());
      CHECK(tf32.offered.size() == strict.offered.size());
      CHECK(any_has(tf32.kept(), "TENSOR_CORE"));
      CHECK_FALSE(any_has(strict.kept(), "TENSOR_CORE"));
      CHECK(strict.kept().size() < tf32.kept().size());
      CHECK(strict.kept().size() >= 1);
      CHECK(strict.removed_tf32 > 0);
      CHECK(tf32.removed_tf32 == 0);
      CHECK(std::int64_t(strict.offered.size()) == std::int64_t(strict.kept().size()) + removed(strict));
      for (const ConvEngineConfig& config : strict.offered)
        CHECK((config.removed_by == "TF32") == (config.has("TENSOR_CORE") && config.removed_by != "reduced precision"));

      const ConvPlan plan = build_conv_plan(h100(), key_for(direction, conv3x3_64, {.allow_tf32 = false}));
      CHECK_FALSE(plan.uses_tensor_cores());
      CHECK(plan.engine().index == strict.kept().front().index);
    }
    // bf16 data keeps its tensor cores: the filter is about TF32 only.
    const ConvCandidates bf16 =
        candidates(key_for(ConvDirection::forward, conv3x3_64, {.allow_tf32 = false}, -1, ConvDataType::bfloat16));
    CHECK(bf16.removed_tf32 == 0);
    CHECK(any_has(bf16.kept(), "TENSOR_CORE"));
  }

  TEST_CASE("cudnn: deterministic mode removes nondeterministic engines") {
    for (ConvDirection direction : {ConvDirection::backward_data, ConvDirection::backward_filter}) {
      CAPTURE(cumtl::cuda::to_string(direction));
      for (bool tf32 : {true, false}) {
        CAPTURE(tf32);
        const ConvCandidates free = candidates(key_for(direction, conv3x3_64, {.allow_tf32 = tf32}));
        const ConvCandidates deterministic =
            candidates(key_for(direction, conv3x3_64, {.allow_tf32 = tf32, .deterministic = true}));
        MESSAGE(cumtl::cuda::to_string(direction), " deterministic: ", deterministic.summary());
        CHECK(any_has(free.kept(), "NONDETERMINISTIC"));
        CHECK_FALSE(any_has(deterministic.kept(), "NONDETERMINISTIC"));
        CHECK(deterministic.removed_nondeterministic >= 1);
        CHECK(deterministic.kept().size() >= 1);
        const ConvPlan plan =
            build_conv_plan(h100(), key_for(direction, conv3x3_64, {.allow_tf32 = tf32, .deterministic = true}));
        CHECK(plan.deterministic());
      }
    }
    // So does the stem (C = 3, 7x7 stride 2), where the atomics engines rank higher.
    const ConvShape stem = square_conv(8, 224, 3, 64, 7, 2);
    for (ConvDirection direction : {ConvDirection::backward_data, ConvDirection::backward_filter}) {
      const ConvPlan plan =
          build_conv_plan(h100(), key_for(direction, stem, {.allow_tf32 = false, .deterministic = true}));
      CHECK(plan.deterministic());
      CHECK_FALSE(plan.uses_tensor_cores());
    }
  }

  TEST_CASE("cudnn: the workspace limit and alignment shape the plans") {
    for (ConvDirection direction : all_directions) {
      CAPTURE(cumtl::cuda::to_string(direction));
      const ConvPlan plan = build_conv_plan(h100(), key_for(direction, conv3x3_64, {.allow_tf32 = false}, 0));
      CHECK(plan.workspace_bytes() == 0);
    }
    // The unlimited fp32 forward plan wants workspace, so the limit changed the choice.
    const ConvPlan unlimited =
        build_conv_plan(h100(), key_for(ConvDirection::forward, conv3x3_64, {.allow_tf32 = false}));
    const ConvPlan none =
        build_conv_plan(h100(), key_for(ConvDirection::forward, conv3x3_64, {.allow_tf32 = false}, 0));
    MESSAGE("unlimited: ", unlimited.engine().str(), " workspace ", unlimited.workspace_bytes());
    MESSAGE("limit 0: ", none.engine().str());
    CHECK(unlimited.workspace_bytes() > 0);
    CHECK(none.engine().index > unlimited.engine().index);
    // A 4-byte alignment promise loses configurations.
    const ConvCandidates aligned16 = candidates(key_for(ConvDirection::forward, conv3x3_64, {}));
    const ConvCandidates aligned4 =
        candidates(key_for(ConvDirection::forward, conv3x3_64, {}, -1, ConvDataType::float32, {4, 4, 4}));
    MESSAGE("alignment 16: ", aligned16.summary());
    MESSAGE("alignment 4: ", aligned4.summary());
    CHECK(aligned4.offered.size() >= 1);
    CHECK(aligned4.offered.size() < aligned16.offered.size());
  }

  // Whether the RGB stem must pad its 3 channels for tensor cores in bf16:
  // with 16-byte-aligned pointers (cumtl's allocations, and the stem's weight
  // at the start of the working copy) cuDNN offers tensor-core engines in
  // every direction at C = 3, so cumtl does not pad. Which engine wins is for
  // the heuristics and the benchmark to say (for the compact network's
  // 16-filter stem the first choice is not a tensor-core one). The 7×7/2 stem
  // at 224 px and that 3×3/2 stem at 64 px; with only 2-byte alignment the
  // filter gradient has no tensor-core engine: alignment is what matters.
  TEST_CASE("cudnn: the RGB stem in bf16 gets tensor-core engines in every direction without padding") {
    for (const ConvShape& stem : {square_conv(64, 224, 3, 64, 7, 2), square_conv(256, 64, 3, 16, 3, 2)}) {
      for (ConvDirection direction : all_directions) {
        CAPTURE(stem.str());
        CAPTURE(cumtl::cuda::to_string(direction));
        const ConvPlanKey key = key_for(direction, stem, {}, -1, ConvDataType::bfloat16);
        CHECK(any_has(candidates(key).kept(), "TENSOR_CORE"));
      }
      const ConvCandidates unaligned =
          candidates(key_for(ConvDirection::backward_filter, stem, {}, -1, ConvDataType::bfloat16, {2, 2, 16}));
      CHECK_FALSE(any_has(unaligned.kept(), "TENSOR_CORE"));
    }
  }

  TEST_CASE("cudnn: FALLBACK heuristics stand in when mode A offers nothing") {
    // bf16 wgrad with 3 channels and 2-byte alignment: no mode A engine in 9.19.
    const ConvPlanKey key = key_for(ConvDirection::backward_filter, square_conv(8, 56, 3, 64, 3, 1), {}, -1,
                                    ConvDataType::bfloat16, {2, 2, 2});
    const ConvCandidates offered = candidates(key);
    MESSAGE(offered.summary(), "; ", offered.heuristics_failures);
    REQUIRE_FALSE(offered.kept().empty());
    CHECK(std::all_of(offered.offered.begin(), offered.offered.end(),
                      [](const ConvEngineConfig& config) { return config.heuristics_mode == "FALLBACK"; }));
    CHECK(cumtl_test::contains_all(offered.heuristics_failures, {"mode A", "HEURISTIC_QUERY_FAILED"}));
    const ConvPlan plan = build_conv_plan(h100(), key);
    CHECK(plan.engine().heuristics_mode == "FALLBACK");
    // Where mode A does offer configurations, they come first.
    const ConvCandidates both = candidates(key_for(ConvDirection::forward, conv3x3_64, {}));
    REQUIRE_FALSE(both.offered.empty());
    CHECK(both.offered.front().heuristics_mode == "A");
    for (std::size_t i = 1; i < both.offered.size(); ++i)
      CHECK_FALSE((both.offered[i - 1].heuristics_mode == "FALLBACK" && both.offered[i].heuristics_mode == "A"));
  }

  TEST_CASE("cudnn: no engine left gives a report of every stage") {
    const auto [code, text] = frontend_error([] {
      (void)build_conv_plan(h100(), key_for(ConvDirection::backward_data, conv3x3_64,
                                            {.allow_tf32 = false, .deterministic = true}, -1, ConvDataType::int8));
    });
    INFO(text);
    CHECK(code == graph_not_supported);
    CHECK(cumtl_test::contains_all(
        text, {"build_conv_plan: no cuDNN engine can run the convolution backward data (dgrad)",
               "x[8, 56, 56, 64] * w[64, 3, 3, 64] stride 1 pad 1 dilation 1 -> y[8, 56, 56, 64]", "int8",
               "allow_tf32 false, deterministic true", "heuristics offered 0 config(s)", "mode A", "mode FALLBACK",
               "HEURISTIC_QUERY_FAILED", "CUDNN_LOGLEVEL_DBG=2"}));
  }

  TEST_CASE("cudnn: the frontend's reasons come through when nothing meets the workspace limit") {
    // Exclude the engines that run without workspace one by one, until only
    // configurations that need some are left: then the frontend's support
    // check refuses them all, with its reason.
    ConvPlanKey key = key_for(ConvDirection::forward, conv3x3_64, {.allow_tf32 = false}, 0);
    const std::size_t kept = candidates(key).kept().size();
    std::string text;
    int code = -1;
    for (std::size_t round = 0; round <= kept && code == -1; ++round) {
      std::tie(code, text) = frontend_error([&] {
        const ConvPlan plan = build_conv_plan(h100(), key);
        CHECK(plan.workspace_bytes() == 0);
        key.excluded_engines.push_back(plan.engine().engine_id);
      });
    }
    INFO(text);
    CHECK(code == plan_creation_failed);
    CHECK(cumtl_test::contains_all(
        text, {"build_conv_plan: no cuDNN engine can run the convolution forward (fprop)", "workspace limit 0 bytes",
               "without engine", "no configuration finalized", "workspace violation"}));
  }

  TEST_CASE("cudnn: excluding every kept engine leaves a report") {
    ConvPlanKey key = key_for(ConvDirection::forward, conv3x3_64, {});
    for (const ConvEngineConfig& config : candidates(key).kept()) key.excluded_engines.push_back(config.engine_id);
    const auto [code, text] = frontend_error([&] { (void)build_conv_plan(h100(), key); });
    INFO(text);
    CHECK(code == graph_not_supported);
    CHECK(cumtl_test::contains_all(text, {"the excluded engines", "; 0 left"}));
  }

  TEST_CASE("cudnn: excluded engines move the plan to the next one") {
    const ConvPlanKey key = key_for(ConvDirection::forward, conv3x3_64, {});
    const ConvPlan first = build_conv_plan(h100(), key);
    ConvPlanKey without = key;
    without.excluded_engines = {first.engine().engine_id};
    const ConvCandidates offered = candidates(without);
    CHECK(offered.removed_excluded >= 1);
    for (const ConvEngineConfig& config : offered.offered) {
      if (config.engine_id == first.engine().engine_id) CHECK_FALSE(config.removed_by.empty());
      if (config.removed_by == "excluded engine") CHECK(config.engine_id == first.engine().engine_id);
    }
    const ConvPlan second = build_conv_plan(h100(), without);
    MESSAGE("first ", first.engine().str(), ", without it ", second.engine().str());
    CHECK(second.engine().engine_id != first.engine().engine_id);
    CHECK(second.engine().index > first.engine().index);
    CHECK(without.str().find("without engine " + std::to_string(first.engine().engine_id)) != std::string::npos);
  }

  TEST_CASE("cudnn: use_config finalizes another kept configuration, and refuses removed ones") {
    ConvPlan plan = build_conv_plan(h100(), key_for(ConvDirection::backward_data, conv3x3_64, {.deterministic = true}));
    const std::vector<ConvEngineConfig> kept = plan.candidates().kept();
    REQUIRE(kept.size() >= 2);
    CHECK(plan.engine().index == kept.front().index);
    plan.use_config(kept[1].index);
    CHECK(plan.engine().index == kept[1].index);
    CHECK(plan.workspace_bytes() >= 0);
    const auto removed_config =
        std::find_if(plan.candidates().offered.begin(), plan.candidates().offered.end(),
                     [](const ConvEngineConfig& config) { return config.removed_by == "determinism"; });
    REQUIRE(removed_config != plan.candidates().offered.end());
    CHECK_ERROR_WITH(plan.use_config(removed_config->index), "was removed by the determinism filter");
    CHECK_ERROR_WITH(plan.use_config(10000), "is not one of the");
    CHECK(plan.engine().index == kept[1].index);
    CHECK(plan.fallbacks() == 0);
  }

  TEST_CASE("cudnn: execution falls back in order and reports every failed attempt") {
    const auto name = [](std::int64_t index) { return "config " + std::to_string(index); };
    std::vector<std::int64_t> tried;
    std::string failures;
    const auto fail_below_5 = [&tried](std::int64_t index) {
      tried.push_back(index);
      return index < 5 ? "GRAPH_EXECUTION_FAILED: no " + std::to_string(index) : std::string();
    };
    CHECK(cumtl::cuda::cudnn_detail::first_that_runs({3, 0, 7, 9}, fail_below_5, name, failures) == 7);
    CHECK(tried == std::vector<std::int64_t>{3, 0, 7});
    CHECK(failures == "config 3: GRAPH_EXECUTION_FAILED: no 3; config 0: GRAPH_EXECUTION_FAILED: no 0");
    failures.clear();
    tried.clear();
    CHECK(cumtl::cuda::cudnn_detail::first_that_runs({8}, fail_below_5, name, failures) == 8);
    CHECK(failures.empty());
    failures.clear();
    CHECK(cumtl::cuda::cudnn_detail::first_that_runs({1, 2}, fail_below_5, name, failures) == -1);
    CHECK(failures == "config 1: GRAPH_EXECUTION_FAILED: no 1; config 2: GRAPH_EXECUTION_FAILED: no 2");
  }

  TEST_CASE("cudnn: the graph JSON records what was asked for") {
    const ConvShape shape = square_conv(2, 9, 64, 8, 3, 2);
    const ConvPlan plan =
        build_conv_plan(h100(), key_for(ConvDirection::forward, shape, {}, -1, ConvDataType::float32, {16, 16, 4}));
    const std::string json = plan.graph_json();
    INFO(json);
    CHECK(cumtl_test::contains_all(
        json, {"\"name\":\"x\"", "\"name\":\"w\"", "\"name\":\"y\"", "[2,64,9,9]", "[5184,1,576,64]", "[8,64,3,3]",
               "[576,1,192,64]", "[2,8,5,5]", "[200,1,40,8]", "\"pre_padding\":[1,1]", "\"post_padding\":[1,1]",
               "\"stride\":[2,2]", "\"dilation\":[1,1]", "\"alignment\":4", "CROSS_CORRELATION"}));
    const ConvPlan wgrad = build_conv_plan(h100(), key_for(ConvDirection::backward_filter, shape, {}));
    CHECK(cumtl_test::contains_all(wgrad.graph_json(), {"\"name\":\"dw\"", "\"name\":\"dy\""}));
  }

  TEST_CASE("cudnn: the plan cache hits on repeats and misses on every key change") {
    ConvPlanCache cache;
    const ConvShape shape = square_conv(4, 28, 32, 32, 3, 1);
    const ConvPlanKey base = key_for(ConvDirection::forward, shape, {});
    ConvPlan& first = cache.get_or_build(h100(), base);
    ConvPlan& again = cache.get_or_build(h100(), base);
    CHECK(&first == &again);
    CHECK(cache.hits() == 1);
    CHECK(cache.misses() == 1);

    ConvShape strided = shape;
    strided.stride_h = strided.stride_w = 2;
    const DeviceProfile other_gpu = DeviceProfile::from_json(
        replaced(fixture_json(), "\"multiProcessorCount\":132", "\"multiProcessorCount\":114"));
    ConvPlanKey excluded = base;
    excluded.excluded_engines = {first.engine().engine_id};
    struct Variant {
      const char* what;
      ConvPlanKey key;
    };
    const std::vector<Variant> variants{
        {"stride", key_for(ConvDirection::forward, strided, {})},
        {"direction", key_for(ConvDirection::backward_data, shape, {})},
        {"alignment", key_for(ConvDirection::forward, shape, {}, -1, ConvDataType::float32, {16, 16, 4})},
        {"TF32", key_for(ConvDirection::forward, shape, {.allow_tf32 = false})},
        {"determinism", key_for(ConvDirection::forward, shape, {.deterministic = true})},
        {"workspace limit", key_for(ConvDirection::forward, shape, {}, 0)},
        {"data type", key_for(ConvDirection::forward, shape, {}, -1, ConvDataType::bfloat16)},
        {"excluded engines", excluded},
        {"device", make_conv_plan_key(other_gpu, ConvDirection::forward, shape, {})},
    };
    for (const Variant& variant : variants) {
      CAPTURE(variant.what);
      CHECK_FALSE(variant.key == base);
      CHECK(cumtl::cuda::ConvPlanKeyHash{}(variant.key) != cumtl::cuda::ConvPlanKeyHash{}(base));
      const DeviceProfile& device = variant.key.device == h100().fingerprint() ? h100() : other_gpu;
      const std::int64_t hits = cache.hits(), misses = cache.misses();
      const ConvPlan& plan = cache.get_or_build(device, variant.key);
      CHECK(cache.misses() == misses + 1);
      CHECK(cache.hits() == hits);
      CHECK(plan.key() == variant.key);
      CHECK(&cache.get_or_build(device, variant.key) == &plan);
      CHECK(cache.hits() == hits + 1);
    }
    CHECK(cache.size() == 1 + std::int64_t(variants.size()));
    CHECK(&cache.get_or_build(h100(), base) == &first);
    cache.clear();
    CHECK(cache.size() == 0);
    CHECK(cache.hits() == 0);
    CHECK(base.str() ==
          "forward (fprop) x[4, 28, 28, 32] * w[32, 3, 3, 32] stride 1 pad 1 dilation 1 -> "
          "y[4, 28, 28, 32] float32 alignments x 16 w 16 y 16 numerics {allow_tf32 true, "
          "deterministic false}");
  }

  TEST_CASE("cudnn: the loaded cuDNN is the one the backend was compiled with") {
    CHECK_NOTHROW(cumtl::cuda::check_cudnn_version());
    CHECK(cumtl::cuda::cudnn_version_mismatch(91900, 91900, "/h", "/lib").empty());
    CHECK(cumtl::cuda::cudnn_version_mismatch(91900, 91902, "/h", "/lib").empty());  // patch levels may differ
    const std::string minor =
        cumtl::cuda::cudnn_version_mismatch(91900, 91000, "/usr/local/cuda/include", "/opt/lib/libcudnn.so.9");
    CHECK(cumtl_test::contains_all(minor, {"compiled against cuDNN 9.19.0", "/usr/local/cuda/include",
                                           "loaded cuDNN 9.10.0", "/opt/lib/libcudnn.so.9", "LD_LIBRARY_PATH"}));
    CHECK_FALSE(cumtl::cuda::cudnn_version_mismatch(91900, 81900, "/h", "/lib").empty());
  }
}
