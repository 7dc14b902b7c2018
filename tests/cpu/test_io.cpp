// safetensors files, PyTorch weight interop and checkpoints: round trips, a
// hand-written file, every kind of corruption, the filter layout conversion,
// mismatched checkpoints and atomic writing.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <cumtl/io/checkpoint.hpp>
#include <cumtl/io/safetensors.hpp>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl_test::contains_all;
using cumtl_test::error_message;
namespace fs = std::filesystem;
namespace io = cumtl::io;

namespace {

using cumtl_test::TemporaryFolder;

void write_bytes(const fs::path& file, const std::string& bytes) {
  std::ofstream stream(file, std::ios::binary);
  stream.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_bytes(const fs::path& file) {
  std::ifstream stream(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

// A safetensors file: the 8-byte little-endian header length, the header, the data.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = char((std::uint64_t(header.size()) >> (8 * i)) & 0xFF);
  return bytes + header + data;
}

template <class T>
std::string raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// Two float32 values then one int64: 16 bytes of data.
std::string two_tensor_header(const std::string& a_offsets, const std::string& b_offsets,
                              const std::string& a_shape = "[2]", const std::string& b_dtype = "I64") {
  return R"({"a":{"dtype":"F32","shape":)" + a_shape + R"(,"data_offsets":)" + a_offsets + R"(},"b":{"dtype":")" +
         b_dtype + R"(","shape":[1],"data_offsets":)" + b_offsets + "}}";
}

cumtl::ResNetSpec tiny_resnet(std::vector<int> widths = {4, 8, 8, 8}) {
  cumtl::ResNetSpec spec = cumtl::ResNetSpec::small();
  spec.widths = std::move(widths);
  spec.stem_width = 4;
  return spec;
}

std::vector<cumtl::HeadSpec> tiny_heads() {
  return {{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 3},
          {.name = "au", .kind = cumtl::HeadKind::sigmoid, .outputs = 2}};
}

void randomize(Context& ctx, cumtl::ParameterStore& store, std::uint64_t seed) {
  cumtl::Generator generator(seed);
  cumtl::ops::uniform(ctx, store.values(), generator, -1, 1);
  cumtl::ops::uniform(ctx, store.buffer_values(), generator, 0.5, 2);
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("io: safetensors round trip of several dtypes and shapes") {
    TemporaryFolder folder;
    Context ctx;
    const fs::path file = folder.path / "tensors.safetensors";
    const std::vector<io::NamedTensor> tensors{
        {"f32", cumtl_test::random_tensor<float>(Shape{2, 3, 4}, 1)},
        {"f64", cumtl_test::random_tensor<double>(Shape{5}, 2)},
        {"i32", Tensor::from_vector<std::int32_t>({-7, 0, 2147483647}, Shape{3, 1})},
        {"empty", Tensor::empty(Shape{0, 4}, ScalarType::f32)},
        {"i64", Tensor::from_vector<std::int64_t>({-1, std::int64_t(1) << 40}, Shape{2})},
        {"i8", Tensor::from_vector<std::int8_t>({-128, 127, 0}, Shape{3})},
        {"u8", Tensor::from_vector<std::uint8_t>({255, 0, 1, 2}, Shape{2, 2})},
        {"scalar", Tensor::from_vector<double>({3.5}, Shape{})}};
    io::write_safetensors(ctx, file, tensors, {{"note", "hello"}});
    const io::SafetensorsFile read = io::read_safetensors(file);
    CHECK(read.metadata == io::Metadata{{"note", "hello"}});
    REQUIRE(read.tensors.size() == tensors.size());
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      CAPTURE(tensors[i].name);
      CHECK(read.tensors[i].name == tensors[i].name);  // file order is write order
      const Tensor& got = read.tensors[i].tensor;
      CHECK(got.device().is_cpu());
      CHECK(got.dtype() == tensors[i].tensor.dtype());
      CHECK(got.shape() == tensors[i].tensor.shape());
      REQUIRE(got.bytes() == tensors[i].tensor.bytes());
      if (got.bytes() > 0) CHECK(std::memcmp(got.raw_data(), tensors[i].tensor.raw_data(), got.bytes()) == 0);
    }
    // The header is padded so the data starts 8-byte aligned.
    const std::string bytes = read_bytes(file);
    std::uint64_t header_length = 0;
    std::memcpy(&header_length, bytes.data(), 8);
    CHECK(header_length % 8 == 0);
  }

  TEST_CASE("io: a hand-written safetensors file is read") {
    TemporaryFolder folder;
    const fs::path file = folder.path / "hand.safetensors";
    // Keys out of data order, a zero-element tensor and metadata, as any writer may produce.
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"w":{"dtype":"I32","shape":[2],"data_offsets":[4,12]},)"
        R"("e":{"dtype":"U8","shape":[0,3],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})";
    write_bytes(file, safetensors_bytes(header, raw<float>({1.5f}) + raw<std::int32_t>({-3, 9})));
    const io::SafetensorsFile read = io::read_safetensors(file);
    CHECK(read.metadata.at("format") == "pt");
    REQUIRE(read.tensors.size() == 3);
    CHECK(read.tensors[0].name == "b");
    CHECK(read.tensors[0].tensor.shape() == Shape{});
    CHECK(read.tensors[0].tensor.to_vector<float>() == std::vector<float>{1.5f});
    CHECK(read.tensors[1].name == "e");
    CHECK(read.tensors[1].tensor.shape() == Shape{0, 3});
    CHECK(read.tensors[1].tensor.dtype() == ScalarType::u8);
    CHECK(read.tensors[2].name == "w");
    CHECK(read.tensors[2].tensor.to_vector<std::int32_t>() == std::vector<std::int32_t>{-3, 9});
  }

  TEST_CASE("io: corrupt safetensors files are rejected naming the file and the tensor or offset") {
    TemporaryFolder folder;
    const fs::path file = folder.path / "bad.safetensors";
    const std::string data = raw<float>({1, 2}) + raw<std::int64_t>({3});
    const std::string good = safetensors_bytes(two_tensor_header("[0,8]", "[8,16]"), data);
    write_bytes(file, good);
    CHECK(io::read_safetensors(file).tensors.size() == 2);
    const std::string name = file.string();
    const auto rejected = [&](const std::string& bytes) {
      write_bytes(file, bytes);
      return error_message([&] { io::read_safetensors(file); });
    };

    SUBCASE("shorter than the header length") {
      CHECK(contains_all(rejected("\x05\0\0"), {name, "too few"}));
    }
    SUBCASE("truncated data") {
      CHECK(contains_all(rejected(good.substr(0, good.size() - 3)), {name, "'b'", "[8, 16]", "truncated"}));
    }
    SUBCASE("header length beyond the file") {
      std::string bytes = good;
      bytes[5] = 1;
      CHECK(contains_all(rejected(bytes), {name, "header length", "offset 0", "beyond"}));
    }
    SUBCASE("bad JSON") {
      CHECK(contains_all(rejected(safetensors_bytes(R"({"a":{"dtype":"F32",)", "")), {name, "not valid JSON"}));
    }
    SUBCASE("not an object of entries") {
      CHECK(contains_all(rejected(safetensors_bytes(R"({"a":[1,2]})", "")), {name, "'a'", "not a JSON object"}));
    }
    SUBCASE("unknown dtype") {
      CHECK(contains_all(rejected(safetensors_bytes(two_tensor_header("[0,8]", "[8,16]", "[2]", "F8_E4M3"), data)),
                         {name, "'b'", "unknown dtype", "F8_E4M3"}));
    }
    SUBCASE("offsets outside the data") {
      CHECK(contains_all(rejected(safetensors_bytes(two_tensor_header("[0,8]", "[16,24]"), data)),
                         {name, "'b'", "[16, 24]", "beyond the data region"}));
    }
    SUBCASE("overlapping offsets") {
      CHECK(contains_all(rejected(safetensors_bytes(two_tensor_header("[0,8]", "[4,12]"), data)),
                         {name, "'b'", "[4, 12]", "overlap", "'a'"}));
    }
    SUBCASE("a gap between tensors") {
      CHECK(contains_all(rejected(safetensors_bytes(two_tensor_header("[0,4]", "[8,16]", "[1]"), data)),
                         {name, "[4, 8]", "'b'", "belong to no tensor"}));
    }
    SUBCASE("bytes after the last tensor") {
      CHECK(contains_all(rejected(safetensors_bytes(two_tensor_header("[0,8]", "[8,16]"), data + "xyz")),
                         {name, "[16, 19]", "belong to no tensor"}));
    }
    SUBCASE("a shape that does not match its byte range") {
      CHECK(contains_all(rejected(safetensors_bytes(two_tensor_header("[0,8]", "[8,16]", "[3]"), data)),
                         {name, "'a'", "[3]", "12 bytes", "[0, 8]"}));
    }
    SUBCASE("negative offsets") {
      CHECK(contains_all(rejected(safetensors_bytes(two_tensor_header("[-8,8]", "[8,16]"), data)),
                         {name, "'a'", "data_offsets", "-8"}));
    }
    SUBCASE("a shape too large to count") {
      const std::string huge = "[4294967296,4294967296,4294967296]";
      CHECK(contains_all(rejected(safetensors_bytes(two_tensor_header("[0,8]", "[8,16]", huge), data)),
                         {name, "'a'", "too many elements"}));
    }
  }

  TEST_CASE("io: KRSC and KCRS filters convert element by element") {
    const std::int64_t K = 2, R = 3, S = 2, C = 4;
    std::vector<float> krsc_values(std::size_t(K * R * S * C));
    for (std::size_t i = 0; i < krsc_values.size(); ++i) krsc_values[i] = float(i);
    const Tensor krsc = Tensor::from_vector(krsc_values, Shape{K, R, S, C});
    const Tensor kcrs = io::krsc_to_kcrs(krsc);
    REQUIRE(kcrs.shape() == Shape{K, C, R, S});
    const std::vector<float> kcrs_values = kcrs.to_vector<float>();
    for (std::int64_t k = 0; k < K; ++k)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t r = 0; r < R; ++r)
          for (std::int64_t s = 0; s < S; ++s)
            // KCRS: ((k·C + c)·R + r)·S + s; KRSC: ((k·R + r)·S + s)·C + c.
            CHECK(kcrs_values[std::size_t(((k * C + c) * R + r) * S + s)] ==
                  krsc_values[std::size_t(((k * R + r) * S + s) * C + c)]);
    CHECK(io::kcrs_to_krsc(kcrs).to_vector<float>() == krsc_values);
  }

  TEST_CASE("io: exported model weights are in PyTorch's layout and import restores every value") {
    TemporaryFolder folder;
    Context ctx;
    const fs::path file = folder.path / "model.safetensors";
    cumtl::MultiHeadModel<float> model(tiny_resnet(), tiny_heads());
    model.allocate(ctx);
    randomize(ctx, model.parameters(), 7);
    io::export_model_weights(ctx, model.parameters(), file);

    const io::SafetensorsFile exported = io::read_safetensors(file);
    const cumtl::Parameter& stem = model.parameters().parameter("conv1.weight");
    REQUIRE(stem.shape.rank() == 4);
    const Tensor* stem_file = exported.find("conv1.weight");
    REQUIRE(stem_file != nullptr);
    CHECK(stem_file->shape() == Shape{stem.shape[0], stem.shape[3], stem.shape[1], stem.shape[2]});
    CHECK(stem_file->to_vector<float>() == io::krsc_to_kcrs(stem.value).to_vector<float>());
    const Tensor* tracked = exported.find("bn1.num_batches_tracked");
    REQUIRE(tracked != nullptr);
    CHECK(tracked->dtype() == ScalarType::i64);
    CHECK(tracked->shape() == Shape{});
    CHECK(exported.find("bn1.running_var") != nullptr);
    CHECK(exported.find("heads.emotion.weight")->shape() == Shape{3, 8});

    cumtl::MultiHeadModel<float> restored(tiny_resnet(), tiny_heads());
    restored.allocate(ctx);
    randomize(ctx, restored.parameters(), 8);
    io::import_model_weights(ctx, restored.parameters(), file);
    CHECK(restored.parameters().values().to_vector<float>() == model.parameters().values().to_vector<float>());
    CHECK(restored.parameters().buffer_values().to_vector<float>() ==
          model.parameters().buffer_values().to_vector<float>());

    // Another architecture, or another dtype, names the first parameter that differs.
    cumtl::MultiHeadModel<float> wider(tiny_resnet({8, 8, 8, 8}), tiny_heads());
    wider.allocate(ctx);
    CHECK(contains_all(error_message([&] { io::import_model_weights(ctx, wider.parameters(), file); }),
                       {file.string(), "'layer1.0.conv1.weight'", "[8, 4, 3, 3]"}));
    cumtl::MultiHeadModel<double> doubled(tiny_resnet(), tiny_heads());
    doubled.allocate(ctx);
    CHECK(contains_all(error_message([&] { io::import_model_weights(ctx, doubled.parameters(), file); }),
                       {file.string(), "'conv1.weight'", "float32", "float64"}));
  }

  TEST_CASE("io: checkpoint round trip with optimizer state and progress") {
    TemporaryFolder folder;
    Context ctx;
    const fs::path file = folder.path / "run.ckpt";
    cumtl::MultiHeadModel<float> model(tiny_resnet(), tiny_heads());
    model.allocate(ctx);
    randomize(ctx, model.parameters(), 11);
    const Tensor momentum = cumtl_test::random_tensor<float>(Shape{model.parameters().parameter_count()}, 12);
    const Tensor step_counts = Tensor::from_vector<std::int64_t>({4, 5}, Shape{2});
    io::CheckpointContents saved{.model = &model.parameters(),
                                 .optimizer_state = {{"momentum", momentum}, {"steps", step_counts}},
                                 .progress = {.epoch = 3,
                                              .step = 1234,
                                              .rng_seed = 0xFFFFFFFFFFFFFFFFull,
                                              .rng_offset = 987654321,
                                              .sampler_position = 42},
                                 .configuration = R"({"lr": 0.1, "heads": ["emotion", "au"]})"};
    io::save_checkpoint(ctx, file, saved);

    cumtl::MultiHeadModel<float> resumed(tiny_resnet(), tiny_heads());
    resumed.allocate(ctx);
    randomize(ctx, resumed.parameters(), 13);
    Tensor momentum_in = Tensor::zeros(momentum.shape(), ScalarType::f32);
    Tensor steps_in = Tensor::zeros(Shape{2}, ScalarType::i64);
    io::CheckpointContents loaded{.model = &resumed.parameters(),
                                  .optimizer_state = {{"momentum", momentum_in}, {"steps", steps_in}}};
    io::load_checkpoint(ctx, file, loaded);
    CHECK(resumed.parameters().values().to_vector<float>() == model.parameters().values().to_vector<float>());
    CHECK(resumed.parameters().buffer_values().to_vector<float>() ==
          model.parameters().buffer_values().to_vector<float>());
    CHECK(momentum_in.to_vector<float>() == momentum.to_vector<float>());
    CHECK(steps_in.to_vector<std::int64_t>() == std::vector<std::int64_t>{4, 5});
    CHECK(loaded.progress == saved.progress);
    CHECK(loaded.configuration == saved.configuration);

    // Optimizer state the caller expects but the file lacks is named.
    Tensor variance = Tensor::zeros(momentum.shape(), ScalarType::f32);
    io::CheckpointContents adam{.model = &resumed.parameters(),
                                .optimizer_state = {{"momentum", momentum_in}, {"variance", variance}}};
    CHECK(contains_all(error_message([&] { io::load_checkpoint(ctx, file, adam); }),
                       {file.string(), "optimizer state", "'optimizer.variance'", "missing"}));
  }

  TEST_CASE("io: a checkpoint of another architecture is rejected naming the parameter") {
    TemporaryFolder folder;
    Context ctx;
    const fs::path file = folder.path / "run.ckpt";
    cumtl::MultiHeadModel<float> model(tiny_resnet(), tiny_heads());
    model.allocate(ctx);
    randomize(ctx, model.parameters(), 21);
    io::save_checkpoint(ctx, file, {.model = &model.parameters()});

    cumtl::MultiHeadModel<float> other(tiny_resnet({4, 16, 8, 8}), tiny_heads());
    other.allocate(ctx);
    randomize(ctx, other.parameters(), 22);
    const std::vector<float> before = other.parameters().values().to_vector<float>();
    io::CheckpointContents into{.model = &other.parameters()};
    CHECK(contains_all(error_message([&] { io::load_checkpoint(ctx, file, into); }),
                       {file.string(), "'model.layer2.0.conv1.weight'", "[8, 3, 3, 4]", "[16, 3, 3, 4]"}));
    CHECK(other.parameters().values().to_vector<float>() == before);  // nothing was half-loaded

    // A model with fewer heads finds a tensor it does not have.
    cumtl::MultiHeadModel<float> fewer(tiny_resnet(), {{.name = "emotion", .outputs = 3}});
    fewer.allocate(ctx);
    io::CheckpointContents fewer_into{.model = &fewer.parameters()};
    CHECK(contains_all(error_message([&] { io::load_checkpoint(ctx, file, fewer_into); }),
                       {file.string(), "'model.heads.au.weight'", "not part of this model"}));

    // A weights file is not a checkpoint.
    const fs::path weights = folder.path / "weights.safetensors";
    io::export_model_weights(ctx, model.parameters(), weights);
    io::CheckpointContents same{.model = &model.parameters()};
    CHECK(contains_all(error_message([&] { io::load_checkpoint(ctx, weights, same); }),
                       {weights.string(), "not a cumtl checkpoint"}));
  }

  TEST_CASE("io: writing into a missing folder leaves no file and no temporary file") {
    TemporaryFolder folder;
    Context ctx;
    const fs::path file = folder.path / "missing" / "model.safetensors";
    const std::vector<io::NamedTensor> tensors{{"x", Tensor::from_vector<float>({1, 2}, Shape{2})}};
    CHECK(contains_all(error_message([&] { io::write_safetensors(ctx, file, tensors); }),
                       {file.string(), "does not exist"}));
    CHECK(fs::is_empty(folder.path));

    // An existing file is replaced whole, and the temporary file is gone.
    const fs::path target = folder.path / "model.safetensors";
    io::write_safetensors(ctx, target, tensors);
    io::write_safetensors(ctx, target, {{"y", Tensor::from_vector<double>({3}, Shape{1})}});
    CHECK(io::read_safetensors(target).find("y") != nullptr);
    CHECK(std::distance(fs::directory_iterator(folder.path), fs::directory_iterator()) == 1);
  }
}
