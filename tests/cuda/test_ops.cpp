// Every CUDA operation against its CPU twin, through the facades and the
// backend table from a host-compiled file. Needs a GPU. The CUDA side of the
// core seen from CUDA code (streams, handles, launch checks) is test_backend.cu.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::Device;
using cumtl::Generator;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;

namespace {

const std::vector<std::int64_t> awkward_sizes{0, 1, 7, 255, 257, 1000, (1 << 20) + 3};

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE_TEMPLATE("tensors round trip through the GPU", T, float, double) {
    Context ctx(Device::cuda(0));
    for (std::int64_t count : awkward_sizes) {
      CAPTURE(count);
      const Tensor host = cumtl_test::random_tensor<T>(Shape{count}, 1);
      const Tensor device = host.to(ctx, ctx.device());
      CHECK(device.device() == Device::cuda(0));
      CHECK(device.to_vector<T>(ctx) == host.to_vector<T>());

      Tensor pinned = Tensor::pinned(Shape{count}, cumtl::scalar_type_v<T>);
      CHECK(pinned.is_pinned());
      cumtl::ops::copy(ctx, pinned, device);
      ctx.synchronize();
      CHECK(pinned.to_vector<T>() == host.to_vector<T>());
    }
    const Tensor host = cumtl_test::random_tensor<T>(Shape{40}, 2);
    const Tensor device = host.view(Shape{10, 4}).to(ctx, ctx.device());
    CHECK(device.slice(3, 7).to_vector<T>(ctx) == host.view(Shape{10, 4}).slice(3, 7).to_vector<T>());
    const Tensor zeros = Tensor::zeros(ctx, Shape{5, 3}, cumtl::scalar_type_v<T>);
    CHECK(zeros.to_vector<T>(ctx) == std::vector<T>(15, T(0)));
  }

  TEST_CASE_TEMPLATE("elementwise ops match their CPU twins", T, float, double) {
    Context cpu;
    Context gpu(Device::cuda(0));
    for (std::int64_t count : awkward_sizes) {
      CAPTURE(count);
      const Tensor x = cumtl_test::random_tensor<T>(Shape{count}, 10),
                   y = cumtl_test::random_tensor<T>(Shape{count}, 11);
      const Tensor x_gpu = x.to(gpu, gpu.device());
      Tensor y_gpu = y.to(gpu, gpu.device());
      Tensor y_cpu = y.to(Device::cpu());
      Tensor out_cpu = Tensor::empty(x.shape(), x.dtype());
      Tensor out_gpu = Tensor::empty(gpu, x.shape(), x.dtype());

      cumtl::ops::fill(cpu, out_cpu, -1.25);
      cumtl::ops::fill(gpu, out_gpu, -1.25);
      CHECK(out_gpu.to_vector<T>(gpu) == out_cpu.to_vector<T>());

      cumtl::ops::add(cpu, x, y_cpu, out_cpu);
      cumtl::ops::add(gpu, x_gpu, y_gpu, out_gpu);
      CHECK(out_gpu.to_vector<T>(gpu) == out_cpu.to_vector<T>());

      cumtl::ops::scale(cpu, out_cpu, 0.3);
      cumtl::ops::scale(gpu, out_gpu, 0.3);
      CHECK(out_gpu.to_vector<T>(gpu) == out_cpu.to_vector<T>());

      // The GPU fuses a*x+y into one rounding, the CPU twin may round twice; errors are relative
      // to max(|expected|, 1) since cancellation near zero leaves an absolute error of an operand's ulp.
      cumtl::ops::axpy(cpu, 0.7, x, y_cpu);
      cumtl::ops::axpy(gpu, 0.7, x_gpu, y_gpu);
      CHECK(cumtl_test::max_relative_error(y_gpu.to_vector<T>(gpu), y_cpu.to_vector<T>(), 1.0) <
            (sizeof(T) == 4 ? 1e-6 : 1e-14));
    }
  }

  TEST_CASE_TEMPLATE("random fills match the CPU for the same seed", T, float, double) {
    Context cpu;
    Context gpu(Device::cuda(0));
    for (std::int64_t count : awkward_sizes) {
      CAPTURE(count);
      Tensor on_cpu = Tensor::empty(Shape{count}, cumtl::scalar_type_v<T>);
      Tensor on_gpu = Tensor::empty(gpu, Shape{count}, cumtl::scalar_type_v<T>);
      Generator cpu_generator(99, 5), gpu_generator(99, 5);
      cumtl::ops::uniform(cpu, on_cpu, cpu_generator, -3, 4);
      cumtl::ops::uniform(gpu, on_gpu, gpu_generator, -3, 4);
      CHECK(on_gpu.to_vector<T>(gpu) == on_cpu.to_vector<T>());  // bit for bit

      // Normal draws go through log and cos, which may differ in a double's last bit.
      cumtl::ops::normal(cpu, on_cpu, cpu_generator, 1, 2);
      cumtl::ops::normal(gpu, on_gpu, gpu_generator, 1, 2);
      CHECK(cumtl_test::max_relative_error(on_gpu.to_vector<T>(gpu), on_cpu.to_vector<T>(), 1.0) <
            (sizeof(T) == 4 ? 2.5e-7 : 1e-14));
      CHECK(gpu_generator == cpu_generator);
    }
  }

  TEST_CASE_TEMPLATE("all_finite on the GPU finds an infinity or a NaN anywhere, as the CPU twin does", T, float,
                     double) {
    Context cpu;
    Context gpu(Device::cuda(0));
    for (const std::int64_t count : {1, 33, 1000003}) {
      CAPTURE(count);
      const Tensor values = cumtl_test::random_tensor<T>(Shape{count}, 4);
      CHECK(cumtl::ops::all_finite(gpu, values.to(gpu, gpu.device())));
      for (const T bad : {T(INFINITY), T(-INFINITY), T(NAN)})
        for (const std::int64_t at : {std::int64_t(0), count / 2, count - 1}) {
          Tensor spoiled = values.to(Device::cpu());
          spoiled.data<T>()[at] = bad;
          CHECK_FALSE(cumtl::ops::all_finite(cpu, spoiled));
          CHECK_FALSE(cumtl::ops::all_finite(gpu, spoiled.to(gpu, gpu.device())));
        }
    }
    CHECK(cumtl::ops::all_finite(gpu, Tensor::empty(gpu, Shape{0}, cumtl::scalar_type_v<T>)));
  }

  TEST_CASE("tensors on another device than the context are refused") {
    Context gpu(Device::cuda(0));
    Context cpu;
    const Tensor host = Tensor::zeros(Shape{4}, ScalarType::f32);
    Tensor device = Tensor::zeros(gpu, Shape{4}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::add(gpu, host, device, device), "ops::add", "'a' is float32[4] on cpu",
                     "context is on cuda:0");
    CHECK_ERROR_WITH(cumtl::ops::fill(cpu, device, 1), "ops::fill", "on cuda:0", "context is on cpu");
    CHECK_ERROR_WITH(host.to(cpu, Device::cuda(0)), "needs a context on cuda:0");
    CHECK_ERROR_WITH(device.to(Device::cpu()), "float32[4] on cuda:0", "call to(ctx, cpu)");
    CHECK_ERROR_WITH(device.to_vector<float>(), "call to_vector<T>(ctx)");
  }

  TEST_CASE("ops::convert to and from bf16 and f16 gives the CPU twin's bits") {
    Context gpu(Device::cuda(0));
    Context cpu;
    // The same bytes in a GPU tensor and a CPU one.
    const auto same_bytes = [&](const Tensor& on_gpu, const Tensor& on_cpu) {
      const Tensor copy = on_gpu.to(gpu, Device::cpu());
      gpu.synchronize();
      return copy.bytes() == on_cpu.bytes() && std::memcmp(copy.raw_data(), on_cpu.raw_data(), copy.bytes()) == 0;
    };
    // Floats across the whole range, and the specials.
    std::vector<float> values;
    for (std::uint32_t i = 0; i < (1u << 20); ++i) values.push_back(std::bit_cast<float>(i * 4099u + (i >> 9)));
    for (float special : {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65520.0f, 0x1p-24f, 0x1p-25f})
      values.push_back(special);
    const Tensor floats = Tensor::from_vector<float>(values, Shape{std::int64_t(values.size())});
    for (ScalarType half : {ScalarType::bf16, ScalarType::f16}) {
      CAPTURE(cumtl::name_of(half));
      // Every 2-byte pattern, widened.
      Tensor halves = Tensor::empty(Shape{65536}, half);
      auto* bits = static_cast<std::uint16_t*>(halves.raw_data());
      for (std::uint32_t i = 0; i < 65536; ++i) bits[i] = std::uint16_t(i);
      Tensor widened_cpu = Tensor::empty(halves.shape(), ScalarType::f32),
             widened_gpu = Tensor::empty(gpu, halves.shape(), ScalarType::f32);
      cumtl::ops::convert(cpu, halves, widened_cpu);
      cumtl::ops::convert(gpu, halves.to(gpu, gpu.device()), widened_gpu);
      CHECK(same_bytes(widened_gpu, widened_cpu));

      Tensor narrowed_cpu = Tensor::empty(floats.shape(), half),
             narrowed_gpu = Tensor::empty(gpu, floats.shape(), half);
      cumtl::ops::convert(cpu, floats, narrowed_cpu);
      cumtl::ops::convert(gpu, floats.to(gpu, gpu.device()), narrowed_gpu);
      CHECK(same_bytes(narrowed_gpu, narrowed_cpu));
    }
  }

  TEST_CASE_TEMPLATE("add on bf16 and f16 gives the CPU twin's bits for every pattern", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context gpu(Device::cuda(0));
    Context cpu;
    // a runs through every 2-byte pattern (NaNs, infinities, subnormals), b through them in another order.
    std::vector<Half> a(65536), b(65536);
    for (std::uint32_t i = 0; i < 65536; ++i) {
      a[i] = Half::from_bits(std::uint16_t(i));
      b[i] = Half::from_bits(std::uint16_t(i * 40503u + 12345u));
    }
    const Shape shape{65536};
    const Tensor a_cpu = Tensor::from_vector(a, shape), b_cpu = Tensor::from_vector(b, shape);
    Tensor out_cpu = Tensor::empty(shape, cumtl::scalar_type_v<Half>);
    cumtl::ops::add(cpu, a_cpu, b_cpu, out_cpu);
    Tensor a_gpu = a_cpu.to(gpu, gpu.device());
    const Tensor b_gpu = b_cpu.to(gpu, gpu.device());
    cumtl::ops::add(gpu, a_gpu, b_gpu, a_gpu);  // in place
    CHECK(a_gpu.to_vector<Half>(gpu) == out_cpu.to_vector<Half>());
  }

  TEST_CASE("a tensor another context's stream owns is copied after that stream's work, and freed after the copy") {
    Context owner(Device::cuda(0)), reader(Device::cuda(0));
    const std::int64_t count = std::int64_t(1) << 24;  // 64 MB: the fill still runs when the copy is enqueued
    for (int round = 1; round <= 8; ++round) {
      CAPTURE(round);
      Tensor written = Tensor::empty(owner, Shape{count}, ScalarType::f32);
      cumtl::ops::fill(owner, written, double(round));
      CHECK(written.owning_stream() == owner.stream());
      const Tensor copy = written.to(reader, reader.device());
      // The owner's free, and a new block it may be handed, come after the copy.
      written = Tensor();
      Tensor reused = Tensor::empty(owner, Shape{count}, ScalarType::f32);
      cumtl::ops::fill(owner, reused, -1.0);
      const std::vector<float> values = copy.to_vector<float>(reader);
      CHECK(std::count(values.begin(), values.end(), float(round)) == count);
      const std::vector<float> read_across = reused.to_vector<float>(reader);
      CHECK(std::count(read_across.begin(), read_across.end(), -1.0f) == count);
    }
  }

}  // TEST_SUITE

// The bias gradient's column sums on the GPU against the CPU twin and against
// the exact sums. kernels/bias.cuh gives the order of the GPU's additions and
// the bounds the tolerances below come from.
namespace {

// Row counts span one row block and two passes, column counts one partial
// tile and many tiles.
const std::vector<std::array<std::int64_t, 2>> bias_shapes{
    {8 * 56 * 56, 64},  // a convolution with bias: [N·P·Q, K]
    {64, 7},            // a linear head: [N, classes]
    {1000, 45},         // columns not a multiple of 32, over several row blocks
    {3000, 1000},       // more columns than a block has threads
    {100000, 3},        // long and narrow
    {2, 100003},        // short and wide
    {1, 64},            // one row
    {1, 1},             // one element
    {0, 5},             // no rows: the sum is zero
};

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE_TEMPLATE("bias gradient: the GPU's column sums match the CPU twin and the exact sums", T, float, double) {
    Context cpu;
    Context gpu(Device::cuda(0));
    constexpr double epsilon = std::numeric_limits<T>::epsilon();
    constexpr double double_epsilon = std::numeric_limits<double>::epsilon();
    for (const auto& [rows, columns] : bias_shapes)
      for (const cumtl::GradientMode mode : {cumtl::GradientMode::overwrite, cumtl::GradientMode::accumulate}) {
        const bool accumulate = mode == cumtl::GradientMode::accumulate;
        CAPTURE(rows);
        CAPTURE(columns);
        CAPTURE(accumulate);
        const Tensor dy = cumtl_test::random_tensor<T>(Shape{rows, columns}, 21);
        // Overwriting must not read the old gradient: NaN there would show.
        const Tensor old = cumtl_test::random_tensor<T>(Shape{columns}, 22);
        const std::vector<T> initial =
            accumulate ? old.to_vector<T>() : std::vector<T>(std::size_t(columns), std::numeric_limits<T>::quiet_NaN());
        Tensor on_cpu = Tensor::from_vector<T>(initial, Shape{columns});
        Tensor on_gpu = on_cpu.to(gpu, gpu.device());
        cumtl::ops::bias_gradient(cpu, dy, on_cpu, mode);
        cumtl::ops::bias_gradient(gpu, dy.to(gpu, gpu.device()), on_gpu, mode);
        const std::vector<T> from_gpu = on_gpu.to_vector<T>(gpu), from_cpu = on_cpu.to_vector<T>(),
                             values = dy.to_vector<T>();

        std::int64_t off_exact = 0, off_twin = 0, first_off = -1;
        for (std::int64_t column = 0; column < columns; ++column) {
          double exact = accumulate ? double(initial[std::size_t(column)]) : 0.0;
          double magnitude = std::abs(exact);
          for (std::int64_t row = 0; row < rows; ++row) {
            const double value = double(values[std::size_t(row * columns + column)]);
            exact += value;
            magnitude += std::abs(value);
          }
          const double gpu_value = double(from_gpu[std::size_t(column)]);
          // The GPU: the sum in double (and a double reference here), then one rounding to T.
          const bool near_exact =
              std::abs(gpu_value - exact) <= epsilon * std::abs(exact) + double(rows + 1) * double_epsilon * magnitude;
          // The CPU twin adds in T, one row after another: recursive summation's bound.
          const bool near_twin =
              std::abs(gpu_value - double(from_cpu[std::size_t(column)])) <= epsilon * double(rows + 2) * magnitude;
          off_exact += near_exact ? 0 : 1;
          off_twin += near_twin ? 0 : 1;
          if ((!near_exact || !near_twin) && first_off < 0) first_off = column;
        }
        INFO("first column off: ", first_off);
        CHECK(off_exact == 0);
        CHECK(off_twin == 0);
      }
  }

  TEST_CASE_TEMPLATE("bias gradient: runs on the GPU are bit-identical, on any stream", T, float, double) {
    Context gpu(Device::cuda(0));
    Context other(Device::cuda(0));
    for (const std::array<std::int64_t, 2> shape : {bias_shapes[0], bias_shapes[4]}) {
      const auto [rows, columns] = shape;
      CAPTURE(rows);
      CAPTURE(columns);
      const Tensor dy_host = cumtl_test::random_tensor<T>(Shape{rows, columns}, 23);
      const Tensor dy = dy_host.to(gpu, gpu.device()), dy_other = dy_host.to(other, other.device());
      Tensor first = Tensor::empty(gpu, Shape{columns}, cumtl::scalar_type_v<T>);
      Tensor second = Tensor::empty(gpu, Shape{columns}, cumtl::scalar_type_v<T>);
      Tensor third = Tensor::empty(other, Shape{columns}, cumtl::scalar_type_v<T>);
      cumtl::ops::bias_gradient(gpu, dy, first, cumtl::GradientMode::overwrite);
      cumtl::ops::bias_gradient(gpu, dy, second, cumtl::GradientMode::overwrite);
      cumtl::ops::bias_gradient(other, dy_other, third, cumtl::GradientMode::overwrite);
      const std::vector<T> expected = first.to_vector<T>(gpu);
      CHECK(second.to_vector<T>(gpu) == expected);
      CHECK(third.to_vector<T>(other) == expected);
    }
  }
}  // TEST_SUITE
