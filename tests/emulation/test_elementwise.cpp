// The grid-stride kernels (elementwise arithmetic, conversions, activations,
// dropout, pooling, optimizer updates, image normalization, random fills), run
// through their CUDA launchers by the emulated execution model, against the
// CPU twins. Both sides apply the same per-element functions (kernels/*.cuh)
// with the host's arithmetic, so each result must be the CPU twin's to the
// bit; what is checked is that the launchers' grids and the kernels' loops
// reach every element once, with the right arguments in the right places.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cumtl/cpu/activation.hpp"
#include "cumtl/cpu/elementwise.hpp"
#include "cumtl/cpu/linear.hpp"
#include "cumtl/cpu/optimizer.hpp"
#include "cumtl/cpu/pooling.hpp"
#include "cumtl/cpu/preprocess.hpp"
#include "cumtl/cpu/random.hpp"
#include "cumtl/cuda/activation.cuh"
#include "cumtl/cuda/bias.cuh"
#include "cumtl/cuda/elementwise.cuh"
#include "cumtl/cuda/optimizer.cuh"
#include "cumtl/cuda/pooling.cuh"
#include "cumtl/cuda/preprocess.cuh"
#include "cumtl/cuda/random.cuh"

#include "support.hpp"

using cumtl::bfloat16_t;
using cumtl::compute_t;
using cumtl::Context;
using cumtl::float16_t;
using cumtl::ScalarType;
using cumtl_emulation_test::bit_identical;
using cumtl_emulation_test::cases;
using cumtl_emulation_test::DeviceWithMultiprocessors;
using cumtl_emulation_test::multiprocessor_counts;
using cumtl_emulation_test::random_integers;
using cumtl_emulation_test::random_values;

namespace {

// Element counts: more than one grid of an H100 holds (132·8 blocks of 256), so the loops stride; one; and a ragged
// few.
constexpr std::int64_t element_counts[] = {300001, 1, 1000};

// Runs `twin(emulated)` for the CPU twin (false) and the launcher (true) on
// every device model and count, and checks the two results are the same bits.
template <class Twin>
void check_twins(Twin&& twin) {
  for (const int multiprocessors : cases(multiprocessor_counts))
    for (const std::int64_t count : cases(element_counts)) {
      CAPTURE(multiprocessors);
      CAPTURE(count);
      const DeviceWithMultiprocessors device(multiprocessors);
      const auto expected = twin(false, count), actual = twin(true, count);
      CHECK(bit_identical(actual, expected));
    }
}

}  // namespace

TEST_CASE_TEMPLATE("elementwise: fill, scale, axpy, conversions and random fills give the CPU twins' bits", T, float,
                   double) {
  Context ctx;
  check_twins([&](bool emulated, std::int64_t count) {
    std::vector<T> out(static_cast<std::size_t>(count));
    emulated ? cumtl::cuda::fill(ctx, out.data(), count, T(2.5)) : cumtl::cpu::fill(ctx, out.data(), count, T(2.5));
    return out;
  });
  check_twins([&](bool emulated, std::int64_t count) {
    std::vector<T> x = random_values<T>(count, 1);
    emulated ? cumtl::cuda::scale(ctx, x.data(), count, T(0.3)) : cumtl::cpu::scale(ctx, x.data(), count, T(0.3));
    return x;
  });
  check_twins([&](bool emulated, std::int64_t count) {
    const std::vector<T> x = random_values<T>(count, 2);
    std::vector<T> y = random_values<T>(count, 3);
    emulated ? cumtl::cuda::axpy(ctx, count, T(-1.7), x.data(), y.data())
             : cumtl::cpu::axpy(ctx, count, T(-1.7), x.data(), y.data());
    return y;
  });
  for (const ScalarType half : {ScalarType::bf16, ScalarType::f16}) {
    CAPTURE(half);
    check_twins([&](bool emulated, std::int64_t count) {
      const std::vector<T> x = random_values<T>(count, 4, -70000, 70000);  // f16 overflows past 65504
      std::vector<std::uint16_t> y(static_cast<std::size_t>(count));
      emulated ? cumtl::cuda::to_half(ctx, count, x.data(), half, y.data())
               : cumtl::cpu::to_half(ctx, count, x.data(), half, y.data());
      return y;
    });
    check_twins([&](bool emulated, std::int64_t count) {
      const std::vector<std::uint16_t> bits = random_integers<std::uint16_t>(count, 5, 0, 65536);
      std::vector<T> y(static_cast<std::size_t>(count));
      emulated ? cumtl::cuda::from_half(ctx, count, half, bits.data(), y.data())
               : cumtl::cpu::from_half(ctx, count, half, bits.data(), y.data());
      std::vector<std::uint8_t> nan_or_bits(y.size() * sizeof(T));  // NaN payloads compared as bits
      std::memcpy(nan_or_bits.data(), y.data(), nan_or_bits.size());
      return nan_or_bits;
    });
  }
  check_twins([&](bool emulated, std::int64_t count) {
    std::vector<T> out(static_cast<std::size_t>(count));
    emulated ? cumtl::cuda::uniform(ctx, out.data(), count, 42, 1000, T(-3), T(5))
             : cumtl::cpu::uniform(ctx, out.data(), count, 42, 1000, T(-3), T(5));
    return out;
  });
  check_twins([&](bool emulated, std::int64_t count) {
    std::vector<T> out(static_cast<std::size_t>(count));
    emulated ? cumtl::cuda::normal(ctx, out.data(), count, 43, 7, T(1), T(0.5))
             : cumtl::cpu::normal(ctx, out.data(), count, 43, 7, T(1), T(0.5));
    return out;
  });
}

TEST_CASE_TEMPLATE("elementwise: a non-finite element is found wherever it is", T, float, double) {
  Context ctx;
  for (const int multiprocessors : cases(multiprocessor_counts)) {
    const DeviceWithMultiprocessors device(multiprocessors);
    const std::int64_t count = 300001;
    std::vector<T> x = random_values<T>(count, 6);
    std::int32_t flag = 0;
    cumtl::cuda::find_nonfinite(ctx, count, x.data(), &flag);
    CHECK(flag == 0);
    for (const std::int64_t at : {std::int64_t(0), std::int64_t(123457), count - 1}) {
      CAPTURE(at);
      for (const T bad : {std::numeric_limits<T>::quiet_NaN(), -std::numeric_limits<T>::infinity()}) {
        std::vector<T> y = x;
        y[std::size_t(at)] = bad;
        flag = 0;
        cumtl::cuda::find_nonfinite(ctx, count, y.data(), &flag);
        CHECK(flag == 1);
      }
    }
  }
}

TEST_CASE_TEMPLATE("elementwise: add, ReLU, dropout and the bias add give the CPU twins' bits", T, float, double,
                   bfloat16_t, float16_t) {
  using C = compute_t<T>;
  Context ctx;
  check_twins([&](bool emulated, std::int64_t count) {
    const std::vector<T> a = random_values<T>(count, 7);
    std::vector<T> b = random_values<T>(count, 8);
    // In place, as a residual add is.
    emulated ? cumtl::cuda::add(ctx, count, a.data(), b.data(), b.data())
             : cumtl::cpu::add(ctx, count, a.data(), b.data(), b.data());
    return b;
  });
  check_twins([&](bool emulated, std::int64_t count) {
    const std::vector<T> x = random_values<T>(count, 9);
    std::vector<T> y(static_cast<std::size_t>(count));
    emulated ? cumtl::cuda::relu_forward(ctx, count, x.data(), y.data())
             : cumtl::cpu::relu_forward(ctx, count, x.data(), y.data());
    return y;
  });
  check_twins([&](bool emulated, std::int64_t count) {
    const std::vector<T> dy = random_values<T>(count, 10), y = random_values<T>(count, 11);
    std::vector<T> dx(static_cast<std::size_t>(count));
    emulated ? cumtl::cuda::relu_backward(ctx, count, dy.data(), y.data(), dx.data())
             : cumtl::cpu::relu_backward(ctx, count, dy.data(), y.data(), dx.data());
    return dx;
  });
  check_twins([&](bool emulated, std::int64_t count) {
    const std::vector<T> x = random_values<T>(count, 12);
    std::vector<T> y(static_cast<std::size_t>(count));
    emulated ? cumtl::cuda::dropout(ctx, count, 99, 12345, 0.3, C(1 / 0.7), x.data(), y.data())
             : cumtl::cpu::dropout(ctx, count, 99, 12345, 0.3, C(1 / 0.7), x.data(), y.data());
    return y;
  });
  check_twins([&](bool emulated, std::int64_t count) {
    const std::int64_t columns = 7, rows = (count + columns - 1) / columns;
    const std::vector<T> bias = random_values<T>(columns, 13);
    std::vector<T> y = random_values<T>(rows * columns, 14);
    emulated ? cumtl::cuda::add_bias(ctx, rows, columns, bias.data(), y.data())
             : cumtl::cpu::add_bias(ctx, rows, columns, bias.data(), y.data());
    return y;
  });
}

TEST_CASE_TEMPLATE("elementwise: image normalization gives the CPU twin's bits", T, float, double, bfloat16_t,
                   float16_t) {
  Context ctx;
  const auto affine =
      cumtl::kernels::normalize_affine<compute_t<T>>({0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  for (const int channels : {3, 1}) {
    CAPTURE(channels);
    check_twins([&](bool emulated, std::int64_t count) {
      const std::int64_t values = count * channels;
      const std::vector<std::uint8_t> pixels = random_integers<std::uint8_t>(values, 15, 0, 256);
      std::vector<T> out(static_cast<std::size_t>(values));
      emulated ? cumtl::cuda::normalize_images(ctx, values, channels, pixels.data(), affine, out.data())
               : cumtl::cpu::normalize_images(ctx, values, channels, pixels.data(), affine, out.data());
      return out;
    });
  }
}

TEST_CASE_TEMPLATE("pooling: max, average and global average pooling give the CPU twins' bits", T, float, double,
                   bfloat16_t, float16_t) {
  Context ctx;
  // The ResNet stem's 3×3/2 max pool with padding (overlapping windows), a 2×2/2 average pool, ragged sizes.
  const cumtl::kernels::PoolShape shapes[] = {{.batch = 3,
                                               .channels = 10,
                                               .in_h = 17,
                                               .in_w = 13,
                                               .out_h = 9,
                                               .out_w = 7,
                                               .kernel_h = 3,
                                               .kernel_w = 3,
                                               .stride_h = 2,
                                               .stride_w = 2,
                                               .pad_h = 1,
                                               .pad_w = 1},
                                              {.batch = 2,
                                               .channels = 64,
                                               .in_h = 8,
                                               .in_w = 8,
                                               .out_h = 4,
                                               .out_w = 4,
                                               .kernel_h = 2,
                                               .kernel_w = 2,
                                               .stride_h = 2,
                                               .stride_w = 2}};
  for (const int multiprocessors : cases(multiprocessor_counts))
    for (const cumtl::kernels::PoolShape& shape : shapes) {
      CAPTURE(multiprocessors);
      CAPTURE(shape.channels);
      const DeviceWithMultiprocessors device(multiprocessors);
      const std::int64_t inputs = cumtl::kernels::pool_input_count(shape),
                         outputs = cumtl::kernels::pool_output_count(shape);
      const std::vector<T> x = random_values<T>(inputs, 16), dy = random_values<T>(outputs, 17);

      std::vector<T> y(static_cast<std::size_t>(outputs)), y_twin(static_cast<std::size_t>(outputs));
      std::vector<std::int32_t> argmax(static_cast<std::size_t>(outputs)),
          argmax_twin(static_cast<std::size_t>(outputs));
      cumtl::cuda::max_pool2d_forward(ctx, shape, x.data(), y.data(), argmax.data());
      cumtl::cpu::max_pool2d_forward(ctx, shape, x.data(), y_twin.data(), argmax_twin.data());
      CHECK(bit_identical(y, y_twin));
      CHECK(argmax == argmax_twin);

      std::vector<T> dx(static_cast<std::size_t>(inputs)), dx_twin(static_cast<std::size_t>(inputs));
      cumtl::cuda::max_pool2d_backward(ctx, shape, dy.data(), argmax_twin.data(), dx.data());
      cumtl::cpu::max_pool2d_backward(ctx, shape, dy.data(), argmax_twin.data(), dx_twin.data());
      CHECK(bit_identical(dx, dx_twin));

      cumtl::cuda::avg_pool2d_forward(ctx, shape, x.data(), y.data());
      cumtl::cpu::avg_pool2d_forward(ctx, shape, x.data(), y_twin.data());
      CHECK(bit_identical(y, y_twin));
      cumtl::cuda::avg_pool2d_backward(ctx, shape, dy.data(), dx.data());
      cumtl::cpu::avg_pool2d_backward(ctx, shape, dy.data(), dx_twin.data());
      CHECK(bit_identical(dx, dx_twin));

      // Global average pooling over the input's plane.
      const std::int64_t plane = std::int64_t(shape.in_h) * shape.in_w;
      std::vector<T> pooled(static_cast<std::size_t>(shape.batch * shape.channels)), pooled_twin = pooled;
      cumtl::cuda::global_avg_pool_forward(ctx, shape.batch, plane, shape.channels, x.data(), pooled.data());
      cumtl::cpu::global_avg_pool_forward(ctx, shape.batch, plane, shape.channels, x.data(), pooled_twin.data());
      CHECK(bit_identical(pooled, pooled_twin));
      cumtl::cuda::global_avg_pool_backward(ctx, shape.batch, plane, shape.channels, pooled_twin.data(), dx.data());
      cumtl::cpu::global_avg_pool_backward(ctx, shape.batch, plane, shape.channels, pooled_twin.data(), dx_twin.data());
      CHECK(bit_identical(dx, dx_twin));
    }
}

TEST_CASE_TEMPLATE("optim: SGD and AdamW updates, with and without the working copy, give the CPU twins' bits", T,
                   float, double) {
  Context ctx;
  const cumtl::SgdStep sgd{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .nesterov = true, .first_step = false};
  const cumtl::AdamWStep adamw{.lr = 1e-3, .weight_decay = 0.05, .step = 7};
  for (const ScalarType working_type : {ScalarType::bf16, ScalarType::f16, ScalarType::f32}) {
    CAPTURE(working_type);
    const bool has_copy = working_type != ScalarType::f32;
    // Values, optimizer state and working copy after one update, as one array of bytes.
    const auto state_bytes = [](std::initializer_list<const std::vector<T>*> arrays,
                                const std::vector<std::uint16_t>& copy) {
      std::vector<std::uint8_t> bytes;
      for (const std::vector<T>* array : arrays)
        bytes.insert(bytes.end(), reinterpret_cast<const std::uint8_t*>(array->data()),
                     reinterpret_cast<const std::uint8_t*>(array->data() + array->size()));
      bytes.insert(bytes.end(), reinterpret_cast<const std::uint8_t*>(copy.data()),
                   reinterpret_cast<const std::uint8_t*>(copy.data() + copy.size()));
      return bytes;
    };
    check_twins([&](bool emulated, std::int64_t count) {
      std::vector<T> values = random_values<T>(count, 18), buffer = random_values<T>(count, 19);
      const std::vector<T> gradients = random_values<T>(count, 20), mask = random_values<T>(count, 21, 0, 1);
      std::vector<std::uint16_t> copy(has_copy ? std::size_t(count) : 0);
      std::uint16_t* working = has_copy ? copy.data() : nullptr;
      emulated ? cumtl::cuda::sgd_update(ctx, count, values.data(), gradients.data(), buffer.data(), mask.data(), sgd,
                                         working_type, working)
               : cumtl::cpu::sgd_update(ctx, count, values.data(), gradients.data(), buffer.data(), mask.data(), sgd,
                                        working_type, working);
      return state_bytes({&values, &buffer}, copy);
    });
    check_twins([&](bool emulated, std::int64_t count) {
      std::vector<T> values = random_values<T>(count, 22), m = random_values<T>(count, 23);
      std::vector<T> v = random_values<T>(count, 24, 0, 1);
      const std::vector<T> gradients = random_values<T>(count, 25), mask = random_values<T>(count, 26, 0, 1);
      std::vector<std::uint16_t> copy(has_copy ? std::size_t(count) : 0);
      std::uint16_t* working = has_copy ? copy.data() : nullptr;
      emulated ? cumtl::cuda::adamw_update(ctx, count, values.data(), gradients.data(), m.data(), v.data(), mask.data(),
                                           adamw, working_type, working)
               : cumtl::cpu::adamw_update(ctx, count, values.data(), gradients.data(), m.data(), v.data(), mask.data(),
                                          adamw, working_type, working);
      return state_bytes({&values, &m, &v}, copy);
    });
  }
}

TEST_CASE("launch: a configuration a GPU refuses is an error naming the kernel") {
  Context ctx;
  float value = 0;
  CHECK_ERROR_WITH(cumtl::cuda::launch(ctx, "fill_kernel", cumtl::kernels::fill_kernel<float>, dim3(1), dim3(2048),
                                       &value, std::int64_t(1), 1.0f),
                   "launch of fill_kernel", "invalid configuration argument", "block 2048");
  CHECK_ERROR_WITH(cumtl::cuda::launch(ctx, "fill_kernel", cumtl::kernels::fill_kernel<float>, dim3(1, 70000), dim3(32),
                                       &value, std::int64_t(1), 1.0f),
                   "grid 1×70000");
  CHECK(value == 0);
}
