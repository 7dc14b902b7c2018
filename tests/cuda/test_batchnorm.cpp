// Batch normalization on the GPU against its CPU twin at awkward shapes (C not
// a multiple of a warp, one or two rows, a batch of one), with and without the
// residual and the ReLU; its determinism, sound statistics for a large mean,
// double precision, bf16 and f16 activations, in-place use, and synchronized
// over the ranks of data-parallel training. Needs a GPU.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "cumtl/distributed/communicator.hpp"
#include "cumtl/ops/batchnorm.hpp"

#include "../support/testing.hpp"
#include "../support/two_ranks.hpp"

using cumtl::Activation;
using cumtl::Context;
using cumtl::Device;
using cumtl::GradientMode;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

template <class T>
Tensor filled(Context& ctx, const Shape& shape, double value) {
  if constexpr (cumtl::is_two_byte_float<T>) {
    Context cpu;
    return cumtl_test::narrowed<T>(filled<float>(cpu, shape, value)).to(ctx, ctx.device());
  } else {
    Tensor tensor = Tensor::empty(ctx, shape, cumtl::scalar_type_v<T>);
    cumtl::ops::fill(ctx, tensor, value);
    return tensor;
  }
}

Tensor defined_or_none(const Tensor& tensor, Context& ctx, Device device) {
  return tensor.defined() ? tensor.to(ctx, device) : Tensor();
}

template <class T>
bool bit_identical(const Tensor& a, const Tensor& b, Context& ctx) {
  const std::vector<T> x = a.to_vector<T>(ctx), y = b.to_vector<T>(ctx);
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0;
}

// Everything forward train reads and writes, on one device.
struct Batch {
  Tensor x, gamma, beta, residual, running_mean, running_var, saved_mean, saved_invstd, y;

  Batch to(Context& ctx, Device device) const {
    return {x.to(ctx, device),
            gamma.to(ctx, device),
            beta.to(ctx, device),
            defined_or_none(residual, ctx, device),
            running_mean.to(ctx, device),
            running_var.to(ctx, device),
            saved_mean.to(ctx, device),
            saved_invstd.to(ctx, device),
            y.to(ctx, device)};
  }
};

// Activations of T, parameters and statistics of its compute type.
template <class T>
Batch random_batch(const Shape& shape, bool with_residual, std::uint64_t seed) {
  using P = cumtl::compute_t<T>;
  Context cpu;
  const Shape channels{shape[shape.rank() - 1]};
  Batch batch;
  batch.x = cumtl_test::random_tensor<T>(shape, seed, -2, 3);
  batch.gamma = cumtl_test::random_tensor<P>(channels, seed + 1, 0.5, 1.5);
  batch.beta = cumtl_test::random_tensor<P>(channels, seed + 2, -0.5, 0.5);
  if (with_residual) batch.residual = cumtl_test::random_tensor<T>(shape, seed + 3, -1, 1);
  batch.running_mean = cumtl_test::random_tensor<P>(channels, seed + 4, -0.5, 0.5);
  batch.running_var = cumtl_test::random_tensor<P>(channels, seed + 5, 0.5, 2);
  batch.saved_mean = filled<P>(cpu, channels, std::numeric_limits<double>::infinity());
  batch.saved_invstd = filled<P>(cpu, channels, std::numeric_limits<double>::infinity());
  batch.y = filled<T>(cpu, shape, std::numeric_limits<double>::infinity());
  return batch;
}

void train(Context& ctx, Batch& batch, Activation activation, cumtl::distributed::Communicator* ranks = nullptr) {
  cumtl::ops::batchnorm_forward_train(ctx, batch.x, batch.gamma, batch.beta, batch.residual, activation, 0.1, 1e-5,
                                      batch.running_mean, batch.running_var, batch.saved_mean, batch.saved_invstd,
                                      batch.y, ranks);
}

// The gradients backward writes, on one device; dresidual is undefined without a residual.
struct Gradients {
  Tensor dx, dresidual, dgamma, dbeta;
};

template <class T>
Gradients make_gradients(Context& ctx, const Shape& shape, bool with_residual, GradientMode mode) {
  using P = cumtl::compute_t<T>;
  const Shape channels{shape[shape.rank() - 1]};
  const double inf = std::numeric_limits<double>::infinity();
  Gradients gradients{filled<T>(ctx, shape, inf), with_residual ? filled<T>(ctx, shape, inf) : Tensor(),
                      filled<P>(ctx, channels, inf), filled<P>(ctx, channels, inf)};
  if (mode == GradientMode::accumulate) {
    gradients.dgamma = cumtl_test::random_tensor<P>(channels, 91, -1, 1).to(ctx, ctx.device());
    gradients.dbeta = cumtl_test::random_tensor<P>(channels, 92, -1, 1).to(ctx, ctx.device());
  }
  return gradients;
}

void backward(Context& ctx, const Tensor& dy, const Batch& batch, Activation activation, Gradients& gradients,
              GradientMode mode, cumtl::distributed::Communicator* ranks = nullptr) {
  cumtl::ops::batchnorm_backward(ctx, dy, batch.x, batch.y, batch.gamma, batch.saved_mean, batch.saved_invstd,
                                 activation, gradients.dx, gradients.dresidual, gradients.dgamma, gradients.dbeta, mode,
                                 ranks);
}

const std::vector<std::int64_t> awkward_channels{3, 5, 64, 130};
const std::vector<Shape> awkward_spatial{Shape{1, 1, 2}, Shape{2, 7, 7}, Shape{8, 56, 56}, Shape{1, 9, 9}};

Shape nhwc(const Shape& spatial, std::int64_t channels) {
  return Shape::nhwc(spatial[0], spatial[1], spatial[2], channels);
}

// check(shape, activation, with_residual) for every spatial shape with every awkward channel count, with and
// without the ReLU and the residual.
template <class Check>
void for_each_awkward_case(const std::vector<Shape>& spatials, Check&& check) {
  for (const Shape& spatial : spatials)
    for (std::int64_t channels : awkward_channels)
      for (Activation activation : {Activation::none, Activation::relu})
        for (bool with_residual : {false, true}) {
          const Shape shape = nhwc(spatial, channels);
          CAPTURE(shape);
          CAPTURE(int(activation));
          CAPTURE(with_residual);
          check(shape, activation, with_residual);
        }
}

// Forward train on both devices from the same batch; checks that they agree
// and returns the CPU's result. `output_tolerance` bounds y (by default
// `tolerance`, which bounds the statistics).
template <class T>
Batch forward_checked_against_cpu(Context& gpu, const Batch& batch, Activation activation, double tolerance,
                                  double output_tolerance = 0) {
  using P = cumtl::compute_t<T>;
  if (output_tolerance == 0) output_tolerance = tolerance;
  Context cpu;
  Batch expected = batch.to(cpu, Device::cpu());
  Batch actual = batch.to(gpu, gpu.device());
  train(cpu, expected, activation);
  train(gpu, actual, activation);
  CHECK(cumtl_test::error_over_scale(actual.y.to_vector<T>(gpu), expected.y.to_vector<T>()) < output_tolerance);
  CHECK(cumtl_test::error_over_scale(actual.saved_mean.to_vector<P>(gpu), expected.saved_mean.to_vector<P>()) <
        tolerance);
  CHECK(cumtl_test::max_relative_error(actual.saved_invstd.to_vector<P>(gpu), expected.saved_invstd.to_vector<P>()) <
        tolerance);
  CHECK(cumtl_test::error_over_scale(actual.running_mean.to_vector<P>(gpu), expected.running_mean.to_vector<P>()) <
        tolerance);
  CHECK(cumtl_test::max_relative_error(actual.running_var.to_vector<P>(gpu), expected.running_var.to_vector<P>()) <
        tolerance);
  return expected;
}

// Forward eval on both devices from the same batch: y agrees within `tolerance`, and the running statistics are
// left as they were.
template <class T>
void eval_checked_against_cpu(Context& gpu, const Batch& batch, Activation activation, double tolerance) {
  using P = cumtl::compute_t<T>;
  Context cpu;
  Batch expected = batch.to(cpu, Device::cpu());
  Batch actual = batch.to(gpu, gpu.device());
  cumtl::ops::batchnorm_forward_eval(cpu, expected.x, expected.gamma, expected.beta, expected.residual, activation,
                                     1e-5, expected.running_mean, expected.running_var, expected.y);
  cumtl::ops::batchnorm_forward_eval(gpu, actual.x, actual.gamma, actual.beta, actual.residual, activation, 1e-5,
                                     actual.running_mean, actual.running_var, actual.y);
  CHECK(cumtl_test::error_over_scale(actual.y.to_vector<T>(gpu), expected.y.to_vector<T>()) < tolerance);
  CHECK(actual.running_mean.to_vector<P>(gpu) == expected.running_mean.to_vector<P>());
  CHECK(actual.running_var.to_vector<P>(gpu) == expected.running_var.to_vector<P>());
}

// Backward on both devices from the same forward results (so the ReLU masks are the same) and the same dy.
template <class T>
void backward_checked_against_cpu(Context& gpu, const Batch& trained, Activation activation, bool with_residual,
                                  GradientMode mode, double tolerance, double input_gradient_tolerance = 0) {
  using P = cumtl::compute_t<T>;
  if (input_gradient_tolerance == 0) input_gradient_tolerance = tolerance;
  Context cpu;
  const Shape shape = trained.x.shape();
  const Tensor dy = cumtl_test::random_tensor<T>(shape, 17, -1, 1);
  Gradients expected = make_gradients<T>(cpu, shape, with_residual, mode);
  Gradients actual = make_gradients<T>(gpu, shape, with_residual, mode);
  backward(cpu, dy, trained, activation, expected, mode);
  const Batch on_gpu = trained.to(gpu, gpu.device());
  backward(gpu, dy.to(gpu, gpu.device()), on_gpu, activation, actual, mode);
  CHECK(cumtl_test::error_over_scale(actual.dx.to_vector<T>(gpu), expected.dx.to_vector<T>()) <
        input_gradient_tolerance);
  CHECK(cumtl_test::error_over_scale(actual.dgamma.to_vector<P>(gpu), expected.dgamma.to_vector<P>()) < tolerance);
  CHECK(cumtl_test::error_over_scale(actual.dbeta.to_vector<P>(gpu), expected.dbeta.to_vector<P>()) < tolerance);
  if (with_residual) CHECK(actual.dresidual.to_vector<T>(gpu) == expected.dresidual.to_vector<T>());
}

// One of two ranks in threads of this process, on ctx's memory: a GPU rank's sums go through host copies on ctx's
// stream. It has the double all-reduce alone, all that synchronized batch norm asks of a communicator.
class RankOfTwo final : public cumtl::distributed::Communicator {
 public:
  RankOfTwo(cumtl_test::SumsOfTwoRanks& sums, int rank, Context& ctx) : sums_(sums), rank_(rank), ctx_(ctx) {}

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return 2; }
  std::string engine() const override { return "two threads"; }
  Device memory() const override { return ctx_.device(); }

  void all_reduce_sum(std::span<double> values) override {
    if (ctx_.device().is_cpu()) return sums_.sum(rank_, values);
    std::vector<double> host(values.size());
    cumtl::detail::copy_bytes(ctx_, host.data(), Device::cpu(), values.data(), ctx_.device(), values.size_bytes());
    sums_.sum(rank_, host);
    cumtl::detail::copy_bytes(ctx_, values.data(), ctx_.device(), host.data(), Device::cpu(), values.size_bytes());
    ctx_.synchronize();  // `host` has been read before it goes
  }
  void all_reduce_sum(std::span<float>) override { unused(); }
  void all_reduce_sum(std::span<std::int64_t>) override { unused(); }
  void broadcast(std::span<std::byte>, int) override { unused(); }
  void barrier() override { unused(); }

 private:
  [[noreturn]] static void unused() { throw std::logic_error("RankOfTwo has the double all-reduce alone"); }

  cumtl_test::SumsOfTwoRanks& sums_;
  int rank_;
  Context& ctx_;
};

// What one rank of a synchronized training step leaves, on the CPU.
struct RankResult {
  Batch trained;
  Gradients gradients;
};

// A training forward and backward of relu(bn(x) + residual) synchronized over two ranks: rank 1 on the CPU, on a
// thread of its own, and rank 0 on `rank0_device`.
template <class T>
std::array<RankResult, 2> synchronized_step(Device rank0_device, const std::array<Batch, 2>& batches,
                                            const std::array<Tensor, 2>& dys) {
  cumtl_test::SumsOfTwoRanks sums;
  std::array<RankResult, 2> results;
  cumtl_test::run_two_ranks([&](int rank) {
    const std::size_t r = std::size_t(rank);
    const Device device = rank == 0 ? rank0_device : Device::cpu();
    Context ctx(device);
    RankOfTwo communicator(sums, rank, ctx);
    Batch batch = batches[r].to(ctx, device);
    train(ctx, batch, Activation::relu, &communicator);
    Gradients gradients = make_gradients<T>(ctx, batch.x.shape(), true, GradientMode::overwrite);
    backward(ctx, dys[r].to(ctx, device), batch, Activation::relu, gradients, GradientMode::overwrite, &communicator);
    results[r] = {batch.to(ctx, Device::cpu()),
                  {gradients.dx.to(ctx, Device::cpu()), gradients.dresidual.to(ctx, Device::cpu()),
                   gradients.dgamma.to(ctx, Device::cpu()), gradients.dbeta.to(ctx, Device::cpu())}};
  });
  CHECK(sums.sums_of_rank(0) == 3);  // forward: [Σx | count], then the m2s; backward: its sums
  return results;
}

}  // namespace

TEST_SUITE("batchnorm") {
  // The CUDA twin sums the CPU twin's values, in its layout, between its
  // kernels: a GPU rank and a CPU rank make one world, and each rank gets
  // what the CPU twin would give it on both ranks, within the tolerances of
  // the unsynchronized comparisons.
  TEST_CASE_TEMPLATE("batchnorm: synchronized over a GPU rank and a CPU rank, both get the CPU twins' results", T,
                     float, cumtl::bfloat16_t) {
    using P = cumtl::compute_t<T>;
    const double ulp = std::is_same_v<T, cumtl::bfloat16_t> ? 0x1p-7 : 0;
    std::uint64_t seed = 5000;
    for (const auto& [shape0, shape1] :
         {std::pair(Shape{4, 7, 7, 130}, Shape{2, 7, 7, 130}), std::pair(Shape{1, 1, 2, 5}, Shape{1, 1, 3, 5}),
          std::pair(Shape{8, 28, 28, 64}, Shape{8, 28, 28, 64})}) {
      CAPTURE(shape0);
      CAPTURE(shape1);
      std::array<Batch, 2> batches{random_batch<T>(shape0, true, seed += 10),
                                   random_batch<T>(shape1, true, seed += 10)};
      // The ranks share the parameters and running statistics; their shards differ in mean.
      batches[1].gamma = batches[0].gamma;
      batches[1].beta = batches[0].beta;
      batches[1].running_mean = batches[0].running_mean;
      batches[1].running_var = batches[0].running_var;
      batches[1].x = cumtl_test::random_tensor<T>(shape1, seed + 1, 0, 6);
      const std::array<Tensor, 2> dys{cumtl_test::random_tensor<T>(shape0, seed + 2, -1, 1),
                                      cumtl_test::random_tensor<T>(shape1, seed + 3, -1, 1)};

      const std::array<RankResult, 2> expected = synchronized_step<T>(Device::cpu(), batches, dys);
      const std::array<RankResult, 2> actual = synchronized_step<T>(Device::cuda(0), batches, dys);
      for (std::size_t rank = 0; rank < 2; ++rank) {
        CAPTURE(rank);
        const Batch &got = actual[rank].trained, &wanted = expected[rank].trained;
        CHECK(cumtl_test::error_over_scale(got.y.to_vector<T>(), wanted.y.to_vector<T>()) < ulp + 1e-5);
        CHECK(cumtl_test::error_over_scale(got.saved_mean.to_vector<P>(), wanted.saved_mean.to_vector<P>()) < 1e-5);
        CHECK(cumtl_test::max_relative_error(got.saved_invstd.to_vector<P>(), wanted.saved_invstd.to_vector<P>()) <
              1e-5);
        CHECK(cumtl_test::error_over_scale(got.running_mean.to_vector<P>(), wanted.running_mean.to_vector<P>()) < 1e-5);
        CHECK(cumtl_test::max_relative_error(got.running_var.to_vector<P>(), wanted.running_var.to_vector<P>()) < 1e-5);
        const Gradients &got_gradients = actual[rank].gradients, &wanted_gradients = expected[rank].gradients;
        CHECK(cumtl_test::error_over_scale(got_gradients.dx.to_vector<T>(), wanted_gradients.dx.to_vector<T>()) <
              ulp + 1e-4);
        CHECK(cumtl_test::error_over_scale(got_gradients.dgamma.to_vector<P>(),
                                           wanted_gradients.dgamma.to_vector<P>()) < 1e-4);
        CHECK(cumtl_test::error_over_scale(got_gradients.dbeta.to_vector<P>(), wanted_gradients.dbeta.to_vector<P>()) <
              1e-4);
        CHECK(got_gradients.dresidual.to_vector<T>() == wanted_gradients.dresidual.to_vector<T>());
      }
    }
  }

  TEST_CASE("batchnorm: synchronized over ranks whose communicator works on other memory is refused by name") {
    Context gpu(Device::cuda(0));
    Context cpu;
    cumtl_test::SumsOfTwoRanks sums;
    RankOfTwo host_rank(sums, 0, cpu);
    Batch batch = random_batch<float>(Shape{2, 3, 3, 8}, false, 77).to(gpu, gpu.device());
    CHECK_ERROR_WITH(train(gpu, batch, Activation::none, &host_rank), "ops::batchnorm_forward_train",
                     "synchronized batch norm over two threads", "cpu memory", "cuda:0");
    CHECK(sums.sums_of_rank(0) == 0);
  }

  TEST_CASE("batchnorm: forward train and backward on the GPU match the CPU twin") {
    Context gpu(Device::cuda(0));
    std::uint64_t seed = 1;
    for_each_awkward_case(awkward_spatial, [&](const Shape& shape, Activation activation, bool with_residual) {
      const Batch trained = forward_checked_against_cpu<float>(
          gpu, random_batch<float>(shape, with_residual, seed += 10), activation, 1e-5);
      for (GradientMode mode : {GradientMode::overwrite, GradientMode::accumulate}) {
        CAPTURE(int(mode));
        backward_checked_against_cpu<float>(gpu, trained, activation, with_residual, mode, 1e-4);
      }
    });
  }

  // bf16 and f16 activations with float statistics: the statistics are the
  // float path's (sums in double of the same values), y and dx one rounding
  // of float results whose last bits may differ between the devices, so one
  // unit in the last place of the result's scale (2^-7 for bf16, 2^-10 for
  // f16) on top of the float tolerances.
  TEST_CASE_TEMPLATE("batchnorm: bf16 and f16 forward train, eval and backward on the GPU match the CPU twin", Half,
                     cumtl::bfloat16_t, cumtl::float16_t) {
    Context gpu(Device::cuda(0));
    const double ulp = std::is_same_v<Half, cumtl::bfloat16_t> ? 0x1p-7 : 0x1p-10;
    std::uint64_t seed = 3000;
    for_each_awkward_case(awkward_spatial, [&](const Shape& shape, Activation activation, bool with_residual) {
      const Batch batch = random_batch<Half>(shape, with_residual, seed += 10);
      const Batch trained = forward_checked_against_cpu<Half>(gpu, batch, activation, 1e-5, ulp + 1e-5);
      backward_checked_against_cpu<Half>(gpu, trained, activation, with_residual, GradientMode::accumulate, 1e-4,
                                         ulp + 1e-4);
      eval_checked_against_cpu<Half>(gpu, batch, activation, ulp + 1e-5);
    });
  }

  TEST_CASE("batchnorm: forward eval on the GPU matches the CPU twin") {
    Context gpu(Device::cuda(0));
    std::vector<Shape> spatials = awkward_spatial;
    spatials.push_back(Shape{0, 7, 7});
    std::uint64_t seed = 1000;
    for_each_awkward_case(spatials, [&](const Shape& shape, Activation activation, bool with_residual) {
      eval_checked_against_cpu<float>(gpu, random_batch<float>(shape, with_residual, seed += 10), activation, 1e-5);
    });
  }

  TEST_CASE("batchnorm: forward train and backward are deterministic on the GPU") {
    Context gpu(Device::cuda(0));
    for (const Shape& shape : {Shape{8, 56, 56, 64}, Shape{2, 7, 7, 130}, Shape{32, 28, 28, 3}}) {
      CAPTURE(shape);
      const Batch batch = random_batch<float>(shape, true, 4242);
      Batch first = batch.to(gpu, gpu.device()), second = batch.to(gpu, gpu.device());
      train(gpu, first, Activation::relu);
      train(gpu, second, Activation::relu);
      CHECK(bit_identical<float>(first.y, second.y, gpu));
      CHECK(bit_identical<float>(first.saved_mean, second.saved_mean, gpu));
      CHECK(bit_identical<float>(first.saved_invstd, second.saved_invstd, gpu));
      CHECK(bit_identical<float>(first.running_mean, second.running_mean, gpu));
      CHECK(bit_identical<float>(first.running_var, second.running_var, gpu));

      const Tensor dy = cumtl_test::random_tensor<float>(shape, 4343, -1, 1).to(gpu, gpu.device());
      Gradients a = make_gradients<float>(gpu, shape, true, GradientMode::accumulate);
      Gradients b = make_gradients<float>(gpu, shape, true, GradientMode::accumulate);
      backward(gpu, dy, first, Activation::relu, a, GradientMode::accumulate);
      backward(gpu, dy, first, Activation::relu, b, GradientMode::accumulate);
      CHECK(bit_identical<float>(a.dx, b.dx, gpu));
      CHECK(bit_identical<float>(a.dresidual, b.dresidual, gpu));
      CHECK(bit_identical<float>(a.dgamma, b.dgamma, gpu));
      CHECK(bit_identical<float>(a.dbeta, b.dbeta, gpu));
    }
  }

  TEST_CASE("batchnorm: statistics stay sound for a large mean on the GPU") {
    // Mean 1e4, standard deviation 1e-2 in float: E[x²] − E[x]² in float would lose the whole variance.
    Context gpu(Device::cuda(0));
    Context cpu;
    const Shape shape{16, 32, 32, 5};
    Batch batch = random_batch<float>(shape, false, 5);
    cumtl::Generator generator(6);
    cumtl::ops::normal(cpu, batch.x, generator, 1e4, 1e-2);
    cumtl::ops::fill(cpu, batch.gamma, 1);
    cumtl::ops::fill(cpu, batch.beta, 0);
    Batch actual = batch.to(gpu, gpu.device());
    cumtl::ops::batchnorm_forward_train(gpu, actual.x, actual.gamma, actual.beta, actual.residual, Activation::none,
                                        0.1, 1e-12, actual.running_mean, actual.running_var, actual.saved_mean,
                                        actual.saved_invstd, actual.y);
    const std::vector<float> y = actual.y.to_vector<float>(gpu);
    const std::int64_t channels = 5, rows = actual.x.numel() / channels;
    for (std::int64_t c = 0; c < channels; ++c) {
      double sum = 0, squares = 0;
      for (std::int64_t row = 0; row < rows; ++row) sum += y[std::size_t(row * channels + c)];
      for (std::int64_t row = 0; row < rows; ++row) {
        const double deviation = y[std::size_t(row * channels + c)] - sum / double(rows);
        squares += deviation * deviation;
      }
      CAPTURE(c);
      CHECK(std::abs(squares / double(rows) - 1) < 1e-3);
    }
    forward_checked_against_cpu<float>(gpu, batch, Activation::none, 1e-5);
  }

  TEST_CASE("batchnorm: double precision on the GPU matches the CPU twin") {
    Context gpu(Device::cuda(0));
    std::uint64_t seed = 77;
    for (const Shape& shape : {Shape{2, 7, 7, 5}, Shape{8, 14, 14, 130}})
      for (bool with_residual : {false, true}) {
        CAPTURE(shape);
        CAPTURE(with_residual);
        const Batch trained = forward_checked_against_cpu<double>(
            gpu, random_batch<double>(shape, with_residual, seed += 10), Activation::relu, 1e-12);
        backward_checked_against_cpu<double>(gpu, trained, Activation::relu, with_residual, GradientMode::accumulate,
                                             1e-12);
      }
  }

  TEST_CASE("batchnorm: y may be the residual and dresidual may be dy on the GPU") {
    Context gpu(Device::cuda(0));
    const Shape shape{4, 9, 9, 130};
    const Batch batch = random_batch<float>(shape, true, 303);
    Batch separate = batch.to(gpu, gpu.device()), in_place = batch.to(gpu, gpu.device());
    in_place.y = in_place.residual;
    train(gpu, separate, Activation::relu);
    train(gpu, in_place, Activation::relu);
    CHECK(bit_identical<float>(in_place.residual, separate.y, gpu));

    const Tensor dy = cumtl_test::random_tensor<float>(shape, 304, -1, 1).to(gpu, gpu.device());
    Gradients expected = make_gradients<float>(gpu, shape, true, GradientMode::overwrite);
    backward(gpu, dy, separate, Activation::relu, expected, GradientMode::overwrite);
    Gradients actual = make_gradients<float>(gpu, shape, false, GradientMode::overwrite);
    actual.dresidual = dy.to(gpu, gpu.device());
    backward(gpu, actual.dresidual, separate, Activation::relu, actual, GradientMode::overwrite);
    CHECK(bit_identical<float>(actual.dx, expected.dx, gpu));
    CHECK(bit_identical<float>(actual.dresidual, expected.dresidual, gpu));
    CHECK(bit_identical<float>(actual.dgamma, expected.dgamma, gpu));
  }
}  // TEST_SUITE
