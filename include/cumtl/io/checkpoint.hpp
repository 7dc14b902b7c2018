#pragma once
// Model weights for PyTorch, and checkpoints for resuming a run.
//
// export_model_weights / import_model_weights: a safetensors file that
// torch.nn.Module.load_state_dict(safetensors.torch.load_file(path)) of the
// equivalent PyTorch model accepts (strict). Names are already PyTorch's. The
// one layout difference is the convolution filter: cumtl keeps it K×R×S×C
// (channels-last, like the activations), PyTorch K×C×R×S; every 4-D parameter
// is a convolution filter and is permuted on the way out and back. Everything
// else (linear weights out×in, biases, BN affine parameters and running
// statistics) has the same layout and is copied as is, in the store's dtype,
// or rounded to bfloat16 or float16 on request: such a file loads into the
// PyTorch model converted with .to(torch.bfloat16) (or torch.float16), and
// import widens it back into a float32 store.
// PyTorch's BatchNorm2d also has a "num_batches_tracked" buffer that strict
// loading requires; cumtl does not count batches (its momentum is fixed), so
// export writes it as int64 0 beside every "<bn>.running_mean", and import
// accepts and ignores it.
//
// Checkpoints: one safetensors file holding the parameter values and buffers
// ("model.<name>", in cumtl's own layout, no permutation), the optimizer state
// ("optimizer.<name>"), and in __metadata__ the progress counters and the
// run's configuration JSON. Written atomically, so a crash leaves the previous
// checkpoint whole.

#include <charconv>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cumtl/io/safetensors.hpp"
#include "cumtl/layers/parameters.hpp"

namespace cumtl::io {

namespace detail {

// Permutes a 4-D CPU tensor's elements; element (a, b, c, d) of the source goes
// to the destination index `to(a, b, c, d)`. Bytes are moved, so any dtype works.
template <class Index>
Tensor permute_4d(const Tensor& source, const Shape& result_shape, Index to) {
  CUMTL_REQUIRE(source.device().is_cpu() && source.shape().rank() == 4, "a 4-D CPU tensor is needed, got ",
                source.description());
  Tensor result = Tensor::empty(result_shape, source.dtype());
  if (result.bytes() == 0) return result;
  const std::size_t element = size_of(source.dtype());
  const auto* from = static_cast<const std::byte*>(source.raw_data());
  auto* into = static_cast<std::byte*>(result.raw_data());
  const Shape& s = source.shape();
  std::size_t index = 0;
  for (std::int64_t a = 0; a < s[0]; ++a)
    for (std::int64_t b = 0; b < s[1]; ++b)
      for (std::int64_t c = 0; c < s[2]; ++c)
        for (std::int64_t d = 0; d < s[3]; ++d, ++index)
          std::memcpy(into + std::size_t(to(a, b, c, d)) * element, from + index * element, element);
  return result;
}

}  // namespace detail

// [K, R, S, C] → [K, C, R, S]: kcrs[((k·C + c)·R + r)·S + s] = krsc[((k·R + r)·S + s)·C + c].
inline Tensor krsc_to_kcrs(const Tensor& krsc) {
  const Shape& s = krsc.shape();
  CUMTL_REQUIRE(s.rank() == 4, "krsc_to_kcrs: a 4-D tensor is needed, got ", krsc.description());
  const std::int64_t C = s[3], R = s[1], S = s[2];
  return detail::permute_4d(
      krsc, Shape{s[0], C, R, S},
      [&](std::int64_t k, std::int64_t r, std::int64_t x, std::int64_t c) { return ((k * C + c) * R + r) * S + x; });
}

// [K, C, R, S] → [K, R, S, C], the inverse of krsc_to_kcrs.
inline Tensor kcrs_to_krsc(const Tensor& kcrs) {
  const Shape& s = kcrs.shape();
  CUMTL_REQUIRE(s.rank() == 4, "kcrs_to_krsc: a 4-D tensor is needed, got ", kcrs.description());
  const std::int64_t C = s[1], R = s[2], S = s[3];
  return detail::permute_4d(
      kcrs, Shape{s[0], R, S, C},
      [&](std::int64_t k, std::int64_t c, std::int64_t r, std::int64_t x) { return ((k * R + r) * S + x) * C + c; });
}

namespace detail {

inline Shape kcrs_shape(const Shape& krsc) {
  return krsc.rank() == 4 ? Shape{krsc[0], krsc[3], krsc[1], krsc[2]} : krsc;
}

inline bool is_num_batches_tracked(std::string_view name) {
  constexpr std::string_view suffix = ".num_batches_tracked";
  return name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
}

// The tensor `name` of `file`, checked to have `shape` and `dtype`; `what` says what it is, for the message.
inline const Tensor& require_tensor(const SafetensorsFile& contents, const std::filesystem::path& file,
                                    const std::string& name, const Shape& shape, ScalarType dtype,
                                    std::string_view what) {
  const Tensor* tensor = contents.find(name);
  CUMTL_REQUIRE(tensor != nullptr, quoted(file), ": ", what, " '", name, "' is missing");
  CUMTL_REQUIRE(tensor->shape() == shape, quoted(file), ": ", what, " '", name, "' has shape ", tensor->shape(),
                ", expected ", shape, " (a file of another architecture?)");
  CUMTL_REQUIRE(tensor->dtype() == dtype, quoted(file), ": ", what, " '", name, "' is ", name_of(tensor->dtype()),
                ", expected ", name_of(dtype));
  return *tensor;
}

// As require_tensor, for a weights file: a bfloat16 or float16 tensor for a float32 store is widened (exactly).
inline Tensor require_weight(const SafetensorsFile& contents, const std::filesystem::path& file,
                             const std::string& name, const Shape& shape, ScalarType dtype, std::string_view what) {
  const Tensor* found = contents.find(name);
  const bool narrow = found != nullptr && dtype == ScalarType::f32 &&
                      (found->dtype() == ScalarType::bf16 || found->dtype() == ScalarType::f16);
  const Tensor& tensor = require_tensor(contents, file, name, shape, narrow ? found->dtype() : dtype, what);
  if (!narrow) return tensor;
  Context cpu;
  Tensor wide = Tensor::empty(shape, ScalarType::f32);
  ops::convert(cpu, tensor, wide);
  return wide;
}

// Names in `contents` that none of `expected` accounts for; the first is an error.
template <class Expected>
void require_no_extra(const SafetensorsFile& contents, const std::filesystem::path& file, Expected&& expected) {
  for (const NamedTensor& entry : contents.tensors)
    CUMTL_REQUIRE(expected(entry.name), quoted(file), ": tensor '", entry.name,
                  "' is not part of this model (a file of another architecture?)");
}

// Copies a CPU tensor into `target` on ctx's device; the caller synchronizes before `source` dies.
inline void copy_into(Context& ctx, const Tensor& target, const Tensor& source) {
  cumtl::detail::copy_bytes(ctx, target.raw_data(), target.device(), source.raw_data(), source.device(),
                            source.bytes());
}

inline bool has_name(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace detail

// Writes every parameter and buffer of `store` under PyTorch's names and layout (see the top of this file), in the
// store's dtype or, given `rounded_to` (bfloat16 or float16, from a float32 store), rounded to it.
inline void export_model_weights(Context& ctx, const ParameterStore& store, const std::filesystem::path& file,
                                 std::optional<ScalarType> rounded_to = std::nullopt) {
  CUMTL_REQUIRE(store.allocated(), "export_model_weights ", detail::quoted(file), ": the store is not allocated");
  CUMTL_REQUIRE(!rounded_to || (store.values().dtype() == ScalarType::f32 &&
                                (*rounded_to == ScalarType::bf16 || *rounded_to == ScalarType::f16)),
                "export_model_weights ", detail::quoted(file), ": weights are rounded from float32 to bfloat16 or ",
                "float16, not from ", name_of(store.values().dtype()), " to ", name_of(*rounded_to));
  Context cpu;
  const auto on_host = [&](const Tensor& value) {
    Tensor host = value.to(ctx, Device::cpu());
    ctx.synchronize();
    if (!rounded_to) return host;
    Tensor narrow = Tensor::empty(host.shape(), *rounded_to);
    ops::convert(cpu, host, narrow);
    return narrow;
  };
  std::vector<NamedTensor> tensors;
  for (const auto& parameter : store.parameters()) {
    Tensor host = on_host(parameter->value);
    tensors.push_back({parameter->name, parameter->shape.rank() == 4 ? krsc_to_kcrs(host) : host});
  }
  for (const auto& buffer : store.buffers()) {
    tensors.push_back({buffer->name, on_host(buffer->value)});
    constexpr std::string_view suffix = ".running_mean";
    const std::string_view name = buffer->name;
    if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix)
      tensors.push_back({std::string(name.substr(0, name.size() - suffix.size())) + ".num_batches_tracked",
                         Tensor::from_vector<std::int64_t>({0}, Shape{})});
  }
  write_safetensors(ctx, file, tensors, {{"format", "pt"}});
}

// Reads a file written by export_model_weights or by PyTorch (safetensors.torch.save_file(model.state_dict()))
// into `store`. Every parameter and buffer must be present with PyTorch's shape and the store's dtype (or, for a
// float32 store, bfloat16 or float16, widened), and nothing else but num_batches_tracked may be there; the first
// mismatch is an error, and then nothing is changed.
inline void import_model_weights(Context& ctx, ParameterStore& store, const std::filesystem::path& file) {
  CUMTL_REQUIRE(store.allocated(), "import_model_weights ", detail::quoted(file), ": the store is not allocated");
  const SafetensorsFile contents = read_safetensors(file);
  const ScalarType dtype = store.values().dtype();
  std::vector<Tensor> sources;
  for (const auto& parameter : store.parameters()) {
    const Tensor tensor = detail::require_weight(contents, file, parameter->name, detail::kcrs_shape(parameter->shape),
                                                 dtype, "parameter");
    sources.push_back(parameter->shape.rank() == 4 ? kcrs_to_krsc(tensor) : tensor);
  }
  for (const auto& buffer : store.buffers())
    sources.push_back(detail::require_weight(contents, file, buffer->name, buffer->shape, dtype, "buffer"));
  detail::require_no_extra(contents, file, [&](const std::string& name) {
    if (detail::is_num_batches_tracked(name)) return true;
    for (const auto& parameter : store.parameters())
      if (parameter->name == name) return true;
    for (const auto& buffer : store.buffers())
      if (buffer->name == name) return true;
    return false;
  });
  std::size_t index = 0;
  for (const auto& parameter : store.parameters()) detail::copy_into(ctx, parameter->value, sources[index++]);
  for (const auto& buffer : store.buffers()) detail::copy_into(ctx, buffer->value, sources[index++]);
  store.values_written();
  ctx.synchronize();
}

// Where a run stands, so that resuming continues it.
struct CheckpointProgress {
  std::int64_t epoch = 0;
  std::int64_t step = 0;
  std::uint64_t rng_seed = 0;
  std::uint64_t rng_offset = 0;
  std::int64_t sampler_position = 0;

  friend bool operator==(const CheckpointProgress&, const CheckpointProgress&) = default;
};

// What a checkpoint holds. On save, everything is read; on load, the store's
// values and buffers and the optimizer_state tensors (matched by name, shape
// and dtype) are overwritten in place, and progress and configuration are set.
struct CheckpointContents {
  ParameterStore* model = nullptr;
  std::vector<NamedTensor> optimizer_state;  // e.g. {"momentum", flat tensor}, on any device
  CheckpointProgress progress;
  std::string configuration;  // JSON text, or empty
};

namespace detail {

inline constexpr std::string_view checkpoint_format = "cumtl-checkpoint-1";

template <class Integer>
Integer metadata_integer(const Metadata& metadata, const std::filesystem::path& file, const std::string& key) {
  const auto found = metadata.find(key);
  CUMTL_REQUIRE(found != metadata.end(), "checkpoint ", quoted(file), ": __metadata__ has no '", key, "'");
  Integer value{};
  const std::string& text = found->second;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  CUMTL_REQUIRE(error == std::errc{} && end == text.data() + text.size(), "checkpoint ", quoted(file),
                ": __metadata__ '", key, "' is '", text, "', not an integer");
  return value;
}

}  // namespace detail

inline void save_checkpoint(Context& ctx, const std::filesystem::path& file, const CheckpointContents& contents) {
  CUMTL_REQUIRE(contents.model != nullptr && contents.model->allocated(), "save_checkpoint ", detail::quoted(file),
                ": no allocated ParameterStore given");
  CUMTL_REQUIRE(contents.configuration.empty() || nlohmann::json::accept(contents.configuration), "save_checkpoint ",
                detail::quoted(file), ": the configuration is not valid JSON");
  std::vector<NamedTensor> tensors;
  for (const auto& parameter : contents.model->parameters())
    tensors.push_back({"model." + parameter->name, parameter->value});
  for (const auto& buffer : contents.model->buffers()) tensors.push_back({"model." + buffer->name, buffer->value});
  for (const NamedTensor& state : contents.optimizer_state)
    tensors.push_back({"optimizer." + state.name, state.tensor});
  const CheckpointProgress& p = contents.progress;
  const Metadata metadata{{"format", std::string(detail::checkpoint_format)},
                          {"epoch", std::to_string(p.epoch)},
                          {"step", std::to_string(p.step)},
                          {"rng_seed", std::to_string(p.rng_seed)},
                          {"rng_offset", std::to_string(p.rng_offset)},
                          {"sampler_position", std::to_string(p.sampler_position)},
                          {"configuration", contents.configuration}};
  write_safetensors(ctx, file, tensors, metadata);
}

// Restores a checkpoint into `into` (see CheckpointContents). Everything is
// validated before anything is written: a missing or mismatched tensor is an
// error naming it, and leaves the model and optimizer state unchanged.
inline void load_checkpoint(Context& ctx, const std::filesystem::path& file, CheckpointContents& into) {
  using detail::quoted;
  CUMTL_REQUIRE(into.model != nullptr && into.model->allocated(), "load_checkpoint ", quoted(file),
                ": no allocated ParameterStore given");
  const SafetensorsFile contents = read_safetensors(file);
  const auto format = contents.metadata.find("format");
  CUMTL_REQUIRE(format != contents.metadata.end() && format->second == detail::checkpoint_format, "checkpoint ",
                quoted(file), ": not a cumtl checkpoint (__metadata__ 'format' is not '", detail::checkpoint_format,
                "')");
  CheckpointProgress progress;
  progress.epoch = detail::metadata_integer<std::int64_t>(contents.metadata, file, "epoch");
  progress.step = detail::metadata_integer<std::int64_t>(contents.metadata, file, "step");
  progress.rng_seed = detail::metadata_integer<std::uint64_t>(contents.metadata, file, "rng_seed");
  progress.rng_offset = detail::metadata_integer<std::uint64_t>(contents.metadata, file, "rng_offset");
  progress.sampler_position = detail::metadata_integer<std::int64_t>(contents.metadata, file, "sampler_position");
  const auto configuration = contents.metadata.find("configuration");
  CUMTL_REQUIRE(configuration != contents.metadata.end(), "checkpoint ", quoted(file),
                ": __metadata__ has no 'configuration'");

  ParameterStore& store = *into.model;
  const ScalarType dtype = store.values().dtype();
  std::vector<std::pair<Tensor, const Tensor*>> copies;  // target, source
  std::vector<std::string> expected;
  for (const auto& parameter : store.parameters()) {
    expected.push_back("model." + parameter->name);
    copies.emplace_back(parameter->value,
                        &detail::require_tensor(contents, file, expected.back(), parameter->shape, dtype, "parameter"));
  }
  for (const auto& buffer : store.buffers()) {
    expected.push_back("model." + buffer->name);
    copies.emplace_back(buffer->value,
                        &detail::require_tensor(contents, file, expected.back(), buffer->shape, dtype, "buffer"));
  }
  for (const NamedTensor& state : into.optimizer_state) {
    expected.push_back("optimizer." + state.name);
    copies.emplace_back(state.tensor, &detail::require_tensor(contents, file, expected.back(), state.tensor.shape(),
                                                              state.tensor.dtype(), "optimizer state"));
  }
  detail::require_no_extra(contents, file, [&](const std::string& name) { return detail::has_name(expected, name); });

  for (const auto& [target, source] : copies) detail::copy_into(ctx, target, *source);
  store.values_written();
  ctx.synchronize();
  into.progress = progress;
  into.configuration = configuration->second;
}

}  // namespace cumtl::io
