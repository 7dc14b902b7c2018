// cuDNN graph-API plans without a GPU: descriptors, heuristics, the numerics
// and workspace filters, the plan cache and the error paths, all the way to a
// finalized execution plan. Heuristics are pointed at a recorded device profile
// (tests/fixtures/cudnn_h100_device.json), so this suite runs on any machine
// with the cuDNN libraries, with or without a GPU.
//
// The fixture is an H100 SXM profile written from the field list that cuDNN
// 9.19's JSON parser asks for (docs: /work/shared/CUDNN_GRAPH.md §6.3), not one
// read from a card. The first GPU run should replace it with a real card's
// DeviceProperties::from_handle(cumtl::cuda::cudnn_handle(ctx)).json(): the GPU suite prints it,
// and writes it to $CUMTL_CUDNN_DEVICE_JSON when that is set.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <cumtl/cuda/cudnn_graph.hpp>

#include "../support/testing.hpp"

using cumtl::CudnnError;
using cumtl::resnet_convolutions;
using cumtl::square_conv;
using cumtl::cuda::BackendDescriptor;
using cumtl::cuda::build_conv_plan;
using cumtl::cuda::ConvCandidates;
using cumtl::cuda::ConvDirection;
using cumtl::cuda::ConvNumerics;
using cumtl::cuda::ConvPlan;
using cumtl::cuda::ConvPlanCache;
using cumtl::cuda::ConvPlanKey;
using cumtl::cuda::ConvShape;
using cumtl::cuda::DeviceProperties;
using cumtl::cuda::make_conv_plan_key;

namespace {

const std::string& fixture_json() {
  static const std::string json = [] {
    const std::string path = std::string(CUMTL_TEST_FIXTURES_DIR) + "/cudnn_h100_device.json";
    std::ifstream file(path);
    REQUIRE_MESSAGE(file.good(), "cannot read the device profile fixture ", path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }();
  return json;
}

const DeviceProperties& h100() {
  static const DeviceProperties device = DeviceProperties::from_json(fixture_json());
  return device;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "'", from, "' is not in the text");
  return text.replace(at, from.size(), to);
}

constexpr std::array<ConvDirection, 3> all_directions{ConvDirection::forward, ConvDirection::backward_data,
                                                      ConvDirection::backward_filter};

// The status and text of the CudnnError that `action` throws; status -1 when none is thrown.
template <class Action>
std::pair<int, std::string> cudnn_error(Action&& action) {
  try {
    action();
  } catch (const CudnnError& error) {
    return {error.status(), error.what()};
  } catch (const cumtl::Error& error) {
    return {-1, std::string("(not a CudnnError) ") + error.what()};
  }
  return {-1, "(nothing was thrown)"};
}

// ConvShape::str() shows every field, so equal texts mean equal shapes.
bool contains(const std::vector<ConvShape>& shapes, const ConvShape& shape) {
  return std::any_of(shapes.begin(), shapes.end(), [&shape](const ConvShape& s) { return s.str() == shape.str(); });
}

const cumtl::ResNetConvLayout resnet18{8, 224, 64, 7, 2, 3, true, false, {64, 128, 256, 512}, {2, 2, 2, 2}};
const cumtl::ResNetConvLayout resnet50{8, 224, 64, 7, 2, 3, true, true, {64, 128, 256, 512}, {3, 4, 6, 3}};
const cumtl::ResNetConvLayout small_resnet{8, 64, 16, 3, 1, 1, false, false, {16, 32, 64, 128}, {1, 1, 1, 1}};

void check_plans_finalize(const std::vector<ConvShape>& shapes) {
  const ConvNumerics strict{.allow_tf32 = false, .deterministic = true};
  for (const ConvShape& shape : shapes) {
    for (ConvDirection direction : all_directions) {
      CAPTURE(shape.str());
      CAPTURE(cumtl::cuda::to_string(direction));
      const ConvPlan plan = build_conv_plan(h100(), direction, shape, ConvNumerics{});
      CHECK(plan.workspace_bytes() >= 0);
      CHECK(plan.engine_id() >= 0);
      const ConvPlan strict_plan = build_conv_plan(h100(), direction, shape, strict);
      CHECK(strict_plan.workspace_bytes() >= 0);
      CHECK(strict_plan.engine_id() >= 0);
      CHECK_FALSE(strict_plan.uses_tensor_cores());
      CHECK(strict_plan.deterministic());
    }
  }
}

const ConvShape conv3x3_64 = square_conv(8, 56, 64, 64, 3, 1);

ConvCandidates candidates(ConvDirection direction, const ConvShape& shape, ConvNumerics numerics,
                          std::int64_t workspace_limit = -1, std::array<std::int64_t, 3> alignments = {16, 16, 16}) {
  return cumtl::cuda::conv_plan_candidates(
      h100(),
      make_conv_plan_key(h100(), direction, shape, numerics, workspace_limit, 1, 0, CUDNN_DATA_FLOAT, alignments));
}

bool any_has(const std::vector<cumtl::cuda::ConvEngineCandidate>& list, cudnnBackendNumericalNote_t note) {
  return std::any_of(list.begin(), list.end(), [note](const auto& candidate) { return candidate.has(note); });
}

std::int64_t removed(const ConvCandidates& c) {
  return c.removed_tf32 + c.removed_reduced_precision + c.removed_nondeterministic + c.removed_workspace;
}

}  // namespace

TEST_SUITE("cudnn") {
  TEST_CASE("cudnn: device properties from JSON round trip") {
    const std::string json = h100().json();
    INFO("read back: ", json);
    CHECK(cumtl_test::contains_all(json, {"\"smVersion\":900", "\"multiProcessorCount\":132", "\"deviceVer\":900",
                                          "\"maxGridSize\":[2147483647,65535,65535]", "\"deviceName\""}));
    CHECK(h100().handle() == nullptr);
    CHECK(h100().get() != nullptr);
    CHECK(DeviceProperties::from_json(json).fingerprint() == h100().fingerprint());
    const DeviceProperties other = DeviceProperties::from_json(
        replaced(fixture_json(), "\"multiProcessorCount\":132", "\"multiProcessorCount\":114"));
    CHECK(other.fingerprint() != h100().fingerprint());

    // cuDNN's own parse checks come through.
    const auto [empty_status, empty_text] = cudnn_error([] { (void)DeviceProperties::from_json(""); });
    INFO(empty_text);
    CHECK(empty_status == CUDNN_STATUS_BAD_PARAM);
    CHECK(cumtl_test::contains_all(empty_text, {"DEVICEPROP_DESCRIPTOR", "!json_object.IsObject()"}));
    const auto [missing_status, missing_text] = cudnn_error(
        [] { (void)DeviceProperties::from_json(replaced(fixture_json(), "\"maxGridSize\"", "\"maxGridSizes\"")); });
    INFO(missing_text);
    CHECK(missing_status == CUDNN_STATUS_BAD_PARAM);
    CHECK(cumtl_test::contains_all(missing_text, {"HasMember(\"maxGridSize\")"}));
    // A profile cuDNN has no engines for is refused when it is finalized.
    const auto [arch_status, arch_text] = cudnn_error(
        [] { (void)DeviceProperties::from_json(replaced(fixture_json(), "\"deviceVer\":900", "\"deviceVer\":0")); });
    INFO(arch_text);
    CHECK(arch_status == CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH);
    CHECK_ERROR_WITH(DeviceProperties::from_handle(nullptr), "null cuDNN handle");
    CHECK_ERROR_WITH(h100().with_graph_handle(), "needs properties read from a handle");
  }

  TEST_CASE("cudnn: backend descriptor typed set and get round trip") {
    const std::array<std::int64_t, 4> dims{2, 8, 5, 5}, strides{200, 1, 40, 8};
    BackendDescriptor tensor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "t");
    tensor.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_DATA_FLOAT)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, dims)
        .set(CUDNN_ATTR_TENSOR_STRIDES, strides)
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, std::int64_t{7})
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, std::int64_t{16})
        .finalize();
    CHECK(tensor.finalized());
    CHECK(tensor.element_count(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64) == 4);
    CHECK(tensor.get_array<std::int64_t>(CUDNN_ATTR_TENSOR_DIMENSIONS, 8) ==
          std::vector<std::int64_t>(dims.begin(), dims.end()));
    CHECK(tensor.get_array<std::int64_t>(CUDNN_ATTR_TENSOR_STRIDES, 4) ==
          std::vector<std::int64_t>(strides.begin(), strides.end()));
    CHECK(tensor.get<std::int64_t>(CUDNN_ATTR_TENSOR_UNIQUE_ID) == 7);
    CHECK(tensor.get<cudnnDataType_t>(CUDNN_ATTR_TENSOR_DATA_TYPE) == CUDNN_DATA_FLOAT);

    // The helpers lay out NHWC and KRSC by strides and always set the data type.
    const BackendDescriptor x = cumtl::cuda::make_nhwc_tensor(1, 2, 5, 5, 8, CUDNN_DATA_BFLOAT16, 16, "x");
    CHECK(x.get_array<std::int64_t>(CUDNN_ATTR_TENSOR_DIMENSIONS, 4) == std::vector<std::int64_t>{2, 8, 5, 5});
    CHECK(x.get_array<std::int64_t>(CUDNN_ATTR_TENSOR_STRIDES, 4) == std::vector<std::int64_t>{200, 1, 40, 8});
    CHECK(x.get<cudnnDataType_t>(CUDNN_ATTR_TENSOR_DATA_TYPE) == CUDNN_DATA_BFLOAT16);
    const BackendDescriptor w = cumtl::cuda::make_nhwc_tensor(2, 64, 3, 3, 64, CUDNN_DATA_FLOAT, 16, "w");
    CHECK(w.get_array<std::int64_t>(CUDNN_ATTR_TENSOR_STRIDES, 4) == std::vector<std::int64_t>{576, 1, 192, 64});
    const BackendDescriptor ones = cumtl::cuda::make_nhwc_tensor(3, 1, 1, 1, 4, CUDNN_DATA_FLOAT, 16, "y");
    CHECK(ones.get_array<std::int64_t>(CUDNN_ATTR_TENSOR_STRIDES, 4) == std::vector<std::int64_t>{4, 1, 4, 4});

    // Alpha and beta are read back through the type they were set with, and only that one.
    const ConvShape shape = square_conv(2, 5, 8, 8, 3, 1);
    const BackendDescriptor y = cumtl::cuda::make_nhwc_tensor(3, 2, 5, 5, 8, CUDNN_DATA_FLOAT, 16, "y");
    const BackendDescriptor x32 = cumtl::cuda::make_nhwc_tensor(1, 2, 5, 5, 8, CUDNN_DATA_FLOAT, 16, "x");
    const BackendDescriptor w32 = cumtl::cuda::make_nhwc_tensor(2, 8, 3, 3, 8, CUDNN_DATA_FLOAT, 16, "w");
    const BackendDescriptor conv = cumtl::cuda::make_conv_descriptor(shape, CUDNN_DATA_FLOAT);
    const BackendDescriptor op =
        cumtl::cuda::make_conv_operation(ConvDirection::forward, x32, w32, y, conv, CUDNN_DATA_FLOAT, 0.25f, 1.5f);
    CHECK(op.get<float>(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA) == 0.25f);
    CHECK(op.get<float>(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA) == 1.5f);
    const auto [double_status, double_text] =
        cudnn_error([&] { (void)op.get<double>(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA); });
    INFO(double_text);
    CHECK(CUDNN_STATUS_CATEGORY(double_status) == CUDNN_STATUS_BAD_PARAM);
    CHECK(cumtl_test::contains_all(double_text, {"OPERATION_CONVOLUTION_FORWARD_ALPHA", "DOUBLE"}));
    CHECK(conv.get_array<std::int64_t>(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, 2) == std::vector<std::int64_t>{1, 1});
    // (The mode is checked in the plan's JSON: 9.19 refuses to read CONV_MODE back with the tag it was set with.)
  }

  TEST_CASE("cudnn: backend descriptor moves destroy each descriptor once") {
    (void)h100();  // the shared profile lives for the whole run; count around it
    const std::int64_t before = BackendDescriptor::live();
    {
      BackendDescriptor a(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "a");
      BackendDescriptor b(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, "b");
      CHECK(BackendDescriptor::live() == before + 2);
      const cudnnBackendDescriptor_t raw_b = b.get();
      a = std::move(b);  // destroys a's descriptor and takes b's
      CHECK(BackendDescriptor::live() == before + 1);
      CHECK(a.get() == raw_b);
      CHECK(a.type() == CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
      CHECK_FALSE(b);
      BackendDescriptor c(std::move(a));
      CHECK_FALSE(a);
      CHECK(c.get() == raw_b);
      CHECK(BackendDescriptor::live() == before + 1);
      std::vector<BackendDescriptor> many;
      for (int i = 0; i < 20; ++i) many.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "config");
      CHECK(BackendDescriptor::live() == before + 21);
      many.erase(many.begin() + 3, many.begin() + 9);  // moves the tail over live descriptors
      CHECK(BackendDescriptor::live() == before + 15);
      c.reset();
      c.reset();
      CHECK(BackendDescriptor::live() == before + 14);
      CHECK_ERROR_WITH(c.finalize(), "empty (moved-from or default) descriptor");
      CHECK_ERROR_WITH(b.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, std::int64_t{1}), "empty (moved-from or default)");
    }
    CHECK(BackendDescriptor::live() == before);
    {
      // A whole plan (and a failed build) leaves nothing behind.
      const ConvPlan plan = build_conv_plan(h100(), ConvDirection::backward_filter, conv3x3_64, ConvNumerics{});
      CHECK(BackendDescriptor::live() > before);
      CHECK_THROWS_AS(
          build_conv_plan(h100(), ConvDirection::forward, conv3x3_64, ConvNumerics{}, -1, 1, 0, CUDNN_DATA_INT8),
          CudnnError);
      ConvPlan moved = build_conv_plan(h100(), ConvDirection::forward, conv3x3_64, ConvNumerics{});
      moved = build_conv_plan(h100(), ConvDirection::backward_data, conv3x3_64, ConvNumerics{});
      CHECK(moved.key().direction == ConvDirection::backward_data);
    }
    CHECK(BackendDescriptor::live() == before);
  }

  TEST_CASE("cudnn: wrong attributes fail with cuDNN's own check text") {
    // A declared alignment of 0 (or one smaller than an element).
    for (std::int64_t alignment : {0, 2}) {
      const auto [status, text] =
          cudnn_error([&] { (void)cumtl::cuda::make_nhwc_tensor(1, 1, 8, 8, 4, CUDNN_DATA_FLOAT, alignment, "x"); });
      INFO(text);
      CHECK(status == CUDNN_STATUS_BAD_PARAM);
      CHECK(cumtl_test::contains_all(text, {"cudnnBackendFinalize(TENSOR_DESCRIPTOR 'x')", "_ptrAlignment <= 0",
                                            "_ptrAlignment % sizeofCudnnType(_dataType) != 0"}));
    }
    // An output whose size does not follow from the geometry.
    {
      const ConvShape shape = square_conv(1, 8, 4, 4, 3, 1);
      const BackendDescriptor x = cumtl::cuda::make_nhwc_tensor(1, 1, 8, 8, 4, CUDNN_DATA_FLOAT, 16, "x");
      const BackendDescriptor w = cumtl::cuda::make_nhwc_tensor(2, 4, 3, 3, 4, CUDNN_DATA_FLOAT, 16, "w");
      const BackendDescriptor y = cumtl::cuda::make_nhwc_tensor(3, 1, 7, 8, 4, CUDNN_DATA_FLOAT, 16, "y");
      const BackendDescriptor conv = cumtl::cuda::make_conv_descriptor(shape, CUDNN_DATA_FLOAT);
      for (ConvDirection direction : all_directions) {
        const auto [status, text] = cudnn_error(
            [&] { (void)cumtl::cuda::make_conv_operation(direction, x, w, y, conv, CUDNN_DATA_FLOAT, 1, 0); });
        INFO(text);
        CHECK(status == CUDNN_STATUS_BAD_PARAM);
        CHECK(cumtl_test::contains_all(text, {"cudnnBackendFinalize(OPERATION_CONVOLUTION_", "is_valid_spatial_dim("}));
      }
    }
    // A tag that disagrees with the attribute (a 32-bit unique id).
    {
      BackendDescriptor tensor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "t");
      const auto [status, text] = cudnn_error([&] { tensor.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, std::int32_t{1}); });
      INFO(text);
      CHECK(status == CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE);
      CHECK(cumtl_test::contains_all(text, {"TENSOR_UNIQUE_ID, INT32 x1", "CUDNN_TYPE_INT64 != attrType"}));
    }
    // Attributes are write-once before finalize.
    {
      BackendDescriptor x = cumtl::cuda::make_nhwc_tensor(1, 1, 8, 8, 4, CUDNN_DATA_FLOAT, 16, "x");
      const auto [status, text] = cudnn_error([&] { x.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, std::int64_t{5}); });
      INFO(text);
      CHECK(status == CUDNN_STATUS_BAD_PARAM);
      CHECK(cumtl_test::contains_all(text, {"cudnnBackendSetAttribute(TENSOR_DESCRIPTOR 'x', TENSOR_UNIQUE_ID"}));
    }
    // A convolution without dilations.
    {
      BackendDescriptor conv(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, "conv");
      const std::array<std::int64_t, 2> zeros{0, 0}, ones{1, 1};
      conv.set(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, std::int64_t{2})
          .set(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, zeros)
          .set(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, zeros)
          .set(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, ones);
      const auto [status, text] = cudnn_error([&] { conv.finalize(); });
      INFO(text);
      CHECK(status == CUDNN_STATUS_BAD_PARAM);
      CHECK(cumtl_test::contains_all(text, {"CONVOLUTION_DESCRIPTOR 'conv'", "finalize_internal()"}));
    }
  }

  TEST_CASE("cudnn: invalid geometry is refused before cuDNN") {
    // A 7x7 filter over a 2x2 input fits only with padding.
    CHECK_ERROR_WITH(build_conv_plan(h100(), ConvDirection::forward, square_conv(1, 2, 4, 4, 7, 1, 0), ConvNumerics{}),
                     "build_conv_plan", "larger than the padded input", "x[1, 2, 2, 4] * w[4, 7, 7, 4]");
    CHECK(square_conv(1, 2, 4, 4, 7, 1).out_h() == 2);
    CHECK_ERROR_WITH(build_conv_plan(h100(), ConvDirection::forward, square_conv(0, 8, 4, 4, 3, 1), ConvNumerics{}),
                     "every extent of a convolution must be positive", "x[0, 8, 8, 4]");
    ConvShape bad_stride = square_conv(1, 8, 4, 4, 3, 1);
    bad_stride.stride_w = 0;
    CHECK_ERROR_WITH(build_conv_plan(h100(), ConvDirection::forward, bad_stride, ConvNumerics{}),
                     "strides and dilations positive", "stride 1x0");
    CHECK_ERROR_WITH(build_conv_plan(h100(), ConvDirection::forward, conv3x3_64, ConvNumerics{}, -1, 1, 0,
                                     CUDNN_DATA_FLOAT, {16, 2, 16}),
                     "multiples of the element size (4)", "w 2");
    CHECK_ERROR_WITH(build_conv_plan(h100(), ConvDirection::forward, conv3x3_64, ConvNumerics{}, -1, 1, 0,
                                     CUDNN_DATA_FLOAT, {16, 12, 16}),
                     "powers of two");
    CHECK_ERROR_WITH(
        build_conv_plan(h100(), ConvDirection::forward, conv3x3_64, ConvNumerics{}, -1, 1, 0, CUDNN_DATA_INT32),
        "unsupported data type");
    ConvPlanKey foreign = make_conv_plan_key(h100(), ConvDirection::forward, conv3x3_64, ConvNumerics{});
    foreign.device ^= 1;
    CHECK_ERROR_WITH(build_conv_plan(h100(), foreign), "made for another device profile");
  }

  TEST_CASE("cudnn: ConvShape as the error messages print it") {
    const ConvShape shape = square_conv(8, 56, 64, 64, 3, 1);
    CHECK(shape.str() == "x[8, 56, 56, 64] * w[64, 3, 3, 64] stride 1 pad 1 dilation 1 -> y[8, 56, 56, 64]");
    const ConvShape stem = square_conv(8, 224, 3, 64, 7, 2, 3);
    CHECK(stem.out_h() == 112);
    CHECK(stem.out_w() == 112);
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

  TEST_CASE("cudnn: plans finalize for every ResNet-18 convolution") {
    const std::vector<ConvShape> shapes = resnet_convolutions(resnet18);
    REQUIRE(shapes.size() == 11);
    CHECK(shapes.front().str() == "x[8, 224, 224, 3] * w[64, 7, 7, 3] stride 2 pad 3 dilation 1 -> y[8, 112, 112, 64]");
    CHECK(shapes[1].str() == "x[8, 56, 56, 64] * w[64, 3, 3, 64] stride 1 pad 1 dilation 1 -> y[8, 56, 56, 64]");
    CHECK(contains(shapes, square_conv(8, 56, 64, 128, 3, 2)));
    CHECK(contains(shapes, square_conv(8, 7, 512, 512, 3, 1)));
    CHECK(shapes.back().str() == "x[8, 14, 14, 256] * w[512, 1, 1, 256] stride 2 pad 0 dilation 1 -> y[8, 7, 7, 512]");
    check_plans_finalize(shapes);
  }

  TEST_CASE("cudnn: plans finalize for every ResNet-50 convolution") {
    const std::vector<ConvShape> shapes = resnet_convolutions(resnet50);
    REQUIRE(shapes.size() == 23);
    const ConvShape projection = square_conv(8, 56, 256, 512, 1, 2);
    CHECK(contains(shapes, projection));
    CHECK(projection.out_h() == 28);
    CHECK(contains(shapes, square_conv(8, 56, 64, 256, 1, 1)));  // layer 1's projection, stride 1
    CHECK(contains(shapes, square_conv(8, 28, 256, 256, 3, 2)));
    CHECK(contains(shapes, square_conv(8, 7, 2048, 512, 1, 1)));
    CHECK(shapes.back().str() == "x[8, 7, 7, 512] * w[512, 3, 3, 512] stride 1 pad 1 dilation 1 -> y[8, 7, 7, 512]");
    check_plans_finalize(shapes);
  }

  TEST_CASE("cudnn: plans finalize for every convolution of the small CPU ResNet") {
    const std::vector<ConvShape> shapes = resnet_convolutions(small_resnet);
    REQUIRE(shapes.size() == 11);
    CHECK(shapes.front().str() == "x[8, 64, 64, 3] * w[16, 3, 3, 3] stride 1 pad 1 dilation 1 -> y[8, 64, 64, 16]");
    CHECK(shapes.back().str() == "x[8, 16, 16, 64] * w[128, 1, 1, 64] stride 2 pad 0 dilation 1 -> y[8, 8, 8, 128]");
    check_plans_finalize(shapes);
  }

  TEST_CASE("cudnn: the TF32 filter removes tensor core engines") {
    for (ConvDirection direction : all_directions) {
      CAPTURE(cumtl::cuda::to_string(direction));
      const ConvCandidates tf32 = candidates(direction, conv3x3_64, ConvNumerics{.allow_tf32 = true});
      const ConvCandidates strict = candidates(direction, conv3x3_64, ConvNumerics{.allow_tf32 = false});
      MESSAGE(cumtl::cuda::to_string(direction), " TF32 allowed: ", tf32.summary());
      MESSAGE(cumtl::cuda::to_string(direction), " TF32 disallowed: ", strict.summary());
      CHECK(tf32.offered.size() == strict.offered.size());
      CHECK(any_has(tf32.kept, CUDNN_NUMERICAL_NOTE_TENSOR_CORE));
      CHECK_FALSE(any_has(strict.kept, CUDNN_NUMERICAL_NOTE_TENSOR_CORE));
      CHECK(strict.kept.size() < tf32.kept.size());
      CHECK(strict.kept.size() >= 1);
      CHECK(strict.removed_tf32 > 0);
      CHECK(tf32.removed_tf32 == 0);
      CHECK(std::int64_t(strict.offered.size()) == std::int64_t(strict.kept.size()) + removed(strict));

      const ConvPlan plan = build_conv_plan(h100(), direction, conv3x3_64, ConvNumerics{.allow_tf32 = false});
      CHECK_FALSE(plan.uses_tensor_cores());
      CHECK(plan.engine_id() == strict.kept.front().engine_id);
    }
    // bf16 data keeps its tensor cores: the filter is about TF32 only.
    const ConvCandidates bf16 = cumtl::cuda::conv_plan_candidates(
        h100(), make_conv_plan_key(h100(), ConvDirection::forward, conv3x3_64, ConvNumerics{.allow_tf32 = false}, -1, 1,
                                   0, CUDNN_DATA_BFLOAT16));
    CHECK(bf16.removed_tf32 == 0);
    CHECK(any_has(bf16.kept, CUDNN_NUMERICAL_NOTE_TENSOR_CORE));
  }

  TEST_CASE("cudnn: deterministic mode removes nondeterministic engines") {
    for (ConvDirection direction : {ConvDirection::backward_data, ConvDirection::backward_filter}) {
      CAPTURE(cumtl::cuda::to_string(direction));
      for (bool tf32 : {true, false}) {
        CAPTURE(tf32);
        const ConvCandidates free = candidates(direction, conv3x3_64, ConvNumerics{.allow_tf32 = tf32});
        const ConvCandidates deterministic =
            candidates(direction, conv3x3_64, ConvNumerics{.allow_tf32 = tf32, .deterministic = true});
        MESSAGE(cumtl::cuda::to_string(direction), " deterministic: ", deterministic.summary());
        CHECK(any_has(free.offered, CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC));
        CHECK(any_has(free.kept, CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC));
        CHECK_FALSE(any_has(deterministic.kept, CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC));
        CHECK(deterministic.removed_nondeterministic >= 1);
        CHECK(deterministic.kept.size() >= 1);
        const ConvPlan plan =
            build_conv_plan(h100(), direction, conv3x3_64, ConvNumerics{.allow_tf32 = tf32, .deterministic = true});
        CHECK(plan.deterministic());
      }
    }
    // So does the stem (C = 3, 7x7 stride 2), where the atomics engines rank higher.
    const ConvShape stem = square_conv(8, 224, 3, 64, 7, 2);
    for (ConvDirection direction : {ConvDirection::backward_data, ConvDirection::backward_filter}) {
      const ConvPlan plan =
          build_conv_plan(h100(), direction, stem, ConvNumerics{.allow_tf32 = false, .deterministic = true});
      CHECK(plan.deterministic());
      CHECK_FALSE(plan.uses_tensor_cores());
    }
  }

  TEST_CASE("cudnn: the workspace limit and alignment shape the candidate list") {
    const ConvCandidates unlimited = candidates(ConvDirection::forward, conv3x3_64, ConvNumerics{});
    const ConvCandidates none = candidates(ConvDirection::forward, conv3x3_64, ConvNumerics{}, 0);
    CHECK(none.removed_workspace > 0);
    CHECK(none.kept.size() < unlimited.kept.size());
    for (const auto& candidate : none.kept) CHECK(candidate.workspace_bytes == 0);
    for (ConvDirection direction : all_directions) {
      const ConvPlan plan = build_conv_plan(h100(), direction, conv3x3_64, ConvNumerics{.allow_tf32 = false}, 0);
      CHECK(plan.workspace_bytes() == 0);
    }
    // A 4-byte alignment promise loses engines (the main TF32 one among them).
    const ConvCandidates aligned4 = candidates(ConvDirection::forward, conv3x3_64, ConvNumerics{}, -1, {4, 4, 4});
    MESSAGE("alignment 16: ", unlimited.summary());
    MESSAGE("alignment 4: ", aligned4.summary());
    CHECK(aligned4.offered.size() >= 1);
    CHECK(aligned4.offered.size() < unlimited.offered.size());
  }

  TEST_CASE("cudnn: FALLBACK heuristics stand in when mode A offers nothing") {
    // bf16 wgrad with 3 channels and 2-byte alignment: no mode A engine in 9.19.
    const ConvShape shape = square_conv(8, 56, 3, 64, 3, 1);
    const ConvPlanKey key = make_conv_plan_key(h100(), ConvDirection::backward_filter, shape, ConvNumerics{}, -1, 1, 0,
                                               CUDNN_DATA_BFLOAT16, {2, 2, 2});
    const ConvCandidates mode_a = cumtl::cuda::conv_plan_candidates(h100(), key);
    const ConvCandidates fallback = cumtl::cuda::conv_plan_candidates(h100(), key, CUDNN_HEUR_MODE_FALLBACK);
    MESSAGE(mode_a.summary());
    MESSAGE(fallback.summary());
    CHECK(mode_a.offered.empty());
    CHECK_FALSE(fallback.kept.empty());
    const ConvPlan plan = build_conv_plan(h100(), key);
    CHECK(plan.heuristics_mode() == CUDNN_HEUR_MODE_FALLBACK);
    CHECK(plan.engine_id() == fallback.kept.front().engine_id);
  }

  TEST_CASE("cudnn: no engine left gives a report of every stage") {
    const auto [status, text] = cudnn_error([] {
      (void)build_conv_plan(h100(), ConvDirection::backward_data, conv3x3_64,
                            ConvNumerics{.allow_tf32 = false, .deterministic = true}, -1, 1, 0, CUDNN_DATA_INT8);
    });
    INFO(text);
    CHECK(status == CUDNN_STATUS_NOT_SUPPORTED);
    CHECK(cumtl_test::contains_all(
        text, {"build_conv_plan: no cuDNN engine can run the backward data (dgrad) convolution",
               "x[8, 56, 56, 64] * w[64, 3, 3, 64] stride 1 pad 1 dilation 1 -> y[8, 56, 56, 64]", "int8",
               "allow_tf32 false, deterministic true", "heuristics mode A offered 0 viable config(s) of 85 engines",
               "the TF32 filter removed 0", "heuristics mode FALLBACK offered 0", "last cuDNN error: none",
               "CUDNN_LOGLEVEL_DBG=2"}));
  }

  TEST_CASE("cudnn: the plan JSON records what was asked for") {
    const ConvShape shape = square_conv(2, 9, 64, 8, 3, 2);
    const ConvPlan plan = build_conv_plan(h100(), ConvDirection::forward, shape, ConvNumerics{}, -1, 0.5f, 1.0f,
                                          CUDNN_DATA_FLOAT, {16, 16, 4});
    const std::string json = plan.json();
    INFO(json);
    CHECK(cumtl_test::contains_all(
        json, {"\"cudnnVersion\":91900", "CUDNN_CROSS_CORRELATION", "\"pad\":[1,1]", "\"stride\":[2,2]",
               "\"dilation\":[1,1]", "\"alpha\":0.5", "\"beta\":1.0", "\"dim\":[2,64,9,9]",
               "\"stride\":[5184,1,576,64]", "\"dim\":[8,64,3,3]", "\"stride\":[576,1,192,64]", "\"dim\":[2,8,5,5]",
               "\"stride\":[200,1,40,8]", "\"ptrAlignment\":4", "\"smVersion\":900"}));
    CHECK(json.find("\"engineId\":" + std::to_string(plan.engine_id())) != std::string::npos);
  }

  TEST_CASE("cudnn: the plan cache hits on repeats and misses on every key change") {
    ConvPlanCache cache;
    const ConvShape shape = square_conv(4, 28, 32, 32, 3, 1);
    const ConvNumerics numerics{};
    const ConvPlan& first = cache.get_or_build(h100(), ConvDirection::forward, shape, numerics);
    const ConvPlan& again = cache.get_or_build(h100(), ConvDirection::forward, shape, numerics);
    CHECK(&first == &again);
    CHECK(cache.hits() == 1);
    CHECK(cache.misses() == 1);
    CHECK(cache.size() == 1);

    ConvShape strided = shape;
    strided.stride_h = strided.stride_w = 2;
    const DeviceProperties other_gpu = DeviceProperties::from_json(
        replaced(fixture_json(), "\"multiProcessorCount\":132", "\"multiProcessorCount\":114"));
    struct Variant {
      const char* what;
      ConvPlanKey key;
    };
    const std::vector<Variant> variants{
        {"stride", make_conv_plan_key(h100(), ConvDirection::forward, strided, numerics)},
        {"direction", make_conv_plan_key(h100(), ConvDirection::backward_data, shape, numerics)},
        {"alignment",
         make_conv_plan_key(h100(), ConvDirection::forward, shape, numerics, -1, 1, 0, CUDNN_DATA_FLOAT, {16, 16, 4})},
        {"TF32", make_conv_plan_key(h100(), ConvDirection::forward, shape, ConvNumerics{.allow_tf32 = false})},
        {"determinism", make_conv_plan_key(h100(), ConvDirection::forward, shape, ConvNumerics{.deterministic = true})},
        {"alpha", make_conv_plan_key(h100(), ConvDirection::forward, shape, numerics, -1, 2, 0)},
        {"beta", make_conv_plan_key(h100(), ConvDirection::forward, shape, numerics, -1, 1, 1)},
        {"workspace limit", make_conv_plan_key(h100(), ConvDirection::forward, shape, numerics, 0)},
        {"data type",
         make_conv_plan_key(h100(), ConvDirection::forward, shape, numerics, -1, 1, 0, CUDNN_DATA_BFLOAT16)},
        {"device", make_conv_plan_key(other_gpu, ConvDirection::forward, shape, numerics)},
    };
    for (const Variant& variant : variants) {
      CAPTURE(variant.what);
      const DeviceProperties& device = variant.key.device == h100().key() ? h100() : other_gpu;
      const std::int64_t hits = cache.hits(), misses = cache.misses();
      const ConvPlan& plan = cache.get_or_build(device, variant.key);
      CHECK(cache.misses() == misses + 1);
      CHECK(cache.hits() == hits);
      CHECK(plan.key() == variant.key);
      CHECK(&cache.get_or_build(device, variant.key) == &plan);
      CHECK(cache.hits() == hits + 1);
    }
    CHECK(cache.size() == 1 + std::int64_t(variants.size()));
    CHECK(&cache.get_or_build(h100(), ConvDirection::forward, shape, numerics) == &first);
    cache.clear();
    CHECK(cache.size() == 0);
    CHECK(cache.hits() == 0);

    // +0 and -0 are the same beta, so they must be the same key.
    const ConvPlanKey positive = make_conv_plan_key(h100(), ConvDirection::forward, shape, numerics, -1, 1, 0.0f);
    const ConvPlanKey negative = make_conv_plan_key(h100(), ConvDirection::forward, shape, numerics, -1, 1, -0.0f);
    CHECK(positive == negative);
    CHECK(cumtl::cuda::ConvPlanKeyHash{}(positive) == cumtl::cuda::ConvPlanKeyHash{}(negative));
    CHECK(positive.str().find("numerics {allow_tf32 true, deterministic false}") != std::string::npos);
  }
}
