// The optimizers on the CPU: SGD and AdamW against updates computed by hand,
// the decay mask, state restore, the learning-rate schedules and the contracts.
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <cumtl/optim/loss_scale.hpp>
#include <cumtl/optim/optimizer.hpp>
#include <cumtl/optim/schedule.hpp>

#include "../support/testing.hpp"

using cumtl::Context;
using cumtl::ParameterStore;
using cumtl::ScalarType;
using cumtl::Shape;
using cumtl::Tensor;
using cumtl::optim::Schedule;

namespace {

// A weight of two elements that decays and a bias of one that, by default, does not.
void make_store(Context& ctx, ParameterStore& store, std::vector<double> values) {
  store.add_parameter("fc.weight", Shape{2}, /*decay=*/true);
  store.add_parameter("fc.bias", Shape{1}, /*decay=*/false);
  store.allocate(ctx, ScalarType::f64);
  cumtl::ops::copy(ctx, store.values(), Tensor::from_vector(values, Shape{3}));
}

void set_gradients(Context& ctx, ParameterStore& store, std::vector<double> gradients) {
  cumtl::ops::copy(ctx, store.gradients(), Tensor::from_vector(gradients, Shape{std::int64_t(gradients.size())}));
}

void check_values(const Tensor& actual, const std::vector<double>& expected, double tolerance = 1e-12) {
  const std::vector<double> values = actual.to_vector<double>();
  REQUIRE(values.size() == expected.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    CAPTURE(i);
    CHECK(values[i] == doctest::Approx(expected[i]).epsilon(tolerance));
  }
}

}  // namespace

TEST_SUITE("optim") {
  TEST_CASE("optim: plain sgd matches the hand computed update") {
    Context ctx;
    ParameterStore store;
    make_store(ctx, store, {1, -2, 0.5});
    cumtl::optim::Sgd sgd(ctx, store, {.lr = 0.1});
    set_gradients(ctx, store, {0.5, 1, -2});
    sgd.step(ctx);
    // w − 0.1·g = [1 − 0.05, −2 − 0.1, 0.5 + 0.2]
    check_values(store.values(), {0.95, -2.1, 0.7});
    sgd.step(ctx, 0.2);
    // the lr argument wins over options.lr: [0.95 − 0.1, −2.1 − 0.2, 0.7 + 0.4]
    check_values(store.values(), {0.85, -2.3, 1.1});
    CHECK(sgd.steps() == 2);
  }

  TEST_CASE("optim: sgd with momentum matches the hand computed update") {
    Context ctx;
    ParameterStore store;
    make_store(ctx, store, {1, -2, 0.5});
    cumtl::optim::Sgd sgd(ctx, store, {.lr = 0.1, .momentum = 0.9});
    set_gradients(ctx, store, {0.5, 1, -2});
    sgd.step(ctx);
    // first step: buf = g = [0.5, 1, −2]; w − 0.1·buf = [0.95, −2.1, 0.7]
    check_values(sgd.state()[0].tensor, {0.5, 1, -2});
    check_values(store.values(), {0.95, -2.1, 0.7});
    set_gradients(ctx, store, {1, 0, 1});
    sgd.step(ctx);
    // buf = 0.9·[0.5, 1, −2] + [1, 0, 1] = [1.45, 0.9, −0.8]
    // w = [0.95 − 0.145, −2.1 − 0.09, 0.7 + 0.08]
    check_values(sgd.state()[0].tensor, {1.45, 0.9, -0.8});
    check_values(store.values(), {0.805, -2.19, 0.78});
  }

  TEST_CASE("optim: sgd with nesterov momentum matches the hand computed update") {
    Context ctx;
    ParameterStore store;
    make_store(ctx, store, {1, -2, 0.5});
    cumtl::optim::Sgd sgd(ctx, store, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
    set_gradients(ctx, store, {0.5, 1, -2});
    sgd.step(ctx);
    // buf = g; direction = g + 0.9·buf = 1.9·g = [0.95, 1.9, −3.8]
    // w = [1 − 0.095, −2 − 0.19, 0.5 + 0.38]
    check_values(store.values(), {0.905, -2.19, 0.88});
    set_gradients(ctx, store, {1, 0, 1});
    sgd.step(ctx);
    // buf = [1.45, 0.9, −0.8]; direction = [1 + 1.305, 0 + 0.81, 1 − 0.72] = [2.305, 0.81, 0.28]
    // w = [0.905 − 0.2305, −2.19 − 0.081, 0.88 − 0.028]
    check_values(store.values(), {0.6745, -2.271, 0.852});
  }

  TEST_CASE("optim: sgd weight decay exempts biases unless told otherwise") {
    Context ctx;
    for (const bool exempt : {true, false}) {
      CAPTURE(exempt);
      ParameterStore store;
      make_store(ctx, store, {1, -2, 0.5});
      cumtl::optim::Sgd sgd(ctx, store, {.lr = 0.1, .weight_decay = 0.1, .exempt_bn_and_bias = exempt});
      check_values(sgd.decay_mask(), {1, 1, exempt ? 0.0 : 1.0});
      set_gradients(ctx, store, {0.5, 1, -2});
      sgd.step(ctx);
      // weight: g + 0.1·w = [0.5 + 0.1, 1 − 0.2] = [0.6, 0.8]; w − 0.1·g = [0.94, −2.08]
      // bias exempt: 0.5 + 0.1·2 = 0.7; bias decayed: g = −2 + 0.05 = −1.95, 0.5 + 0.195 = 0.695
      check_values(store.values(), {0.94, -2.08, exempt ? 0.7 : 0.695});
    }
  }

  TEST_CASE("optim: adamw matches the hand computed update") {
    Context ctx;
    ParameterStore store;
    make_store(ctx, store, {1, -2, 0.5});
    cumtl::optim::AdamW adamw(ctx, store, {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1});
    set_gradients(ctx, store, {0.5, 1, -2});
    adamw.step(ctx);
    // decay (bias exempt): w·(1 − 0.1·0.1) = [0.99, −1.98, 0.5]
    // m = 0.1·g = [0.05, 0.1, −0.2]; v = 0.001·g² = [0.00025, 0.001, 0.004]
    // m̂ = m/(1 − 0.9) = g; sqrt(v̂) = sqrt(v/(1 − 0.999)) = |g|; w −= 0.1·g/(|g| + 1e-8)
    const double w0 = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8);
    const double w1 = -1.98 - 0.1 * 1 / (1 + 1e-8);
    const double w2 = 0.5 + 0.1 * 2 / (2 + 1e-8);
    check_values(store.values(), {w0, w1, w2});
    check_values(adamw.state()[0].tensor, {0.05, 0.1, -0.2});
    check_values(adamw.state()[1].tensor, {0.00025, 0.001, 0.004});

    set_gradients(ctx, store, {1, 0, 1});
    adamw.step(ctx);
    // m = 0.9·m + 0.1·g = [0.045 + 0.1, 0.09, −0.18 + 0.1] = [0.145, 0.09, −0.08]
    // v = 0.999·v + 0.001·g² = [0.00024975 + 0.001, 0.000999, 0.003996 + 0.001]
    // bias corrections: 1 − 0.9² = 0.19, 1 − 0.999² = 0.001999
    check_values(adamw.state()[0].tensor, {0.145, 0.09, -0.08});
    check_values(adamw.state()[1].tensor, {0.00124975, 0.000999, 0.004996});
    const auto adam = [](double m, double v) { return 0.1 * (m / 0.19) / (std::sqrt(v / 0.001999) + 1e-8); };
    check_values(store.values(),
                 {w0 * 0.99 - adam(0.145, 0.00124975), w1 * 0.99 - adam(0.09, 0.000999), w2 - adam(-0.08, 0.004996)});
    CHECK(adamw.steps() == 2);
  }

  TEST_CASE("optim: one update touches every element exactly once") {
    Context ctx;
    ParameterStore store;
    store.add_parameter("conv.weight", Shape{7, 3, 3, 5}, true);
    store.add_parameter("bn.weight", Shape{7}, false);
    store.add_parameter("bn.bias", Shape{7}, false);
    store.add_parameter("fc.weight", Shape{3, 301}, true);
    store.allocate(ctx, ScalarType::f32);
    const std::int64_t count = store.parameter_count();
    cumtl::ops::fill(ctx, store.values(), 0);
    cumtl::ops::fill(ctx, store.gradients(), 1);
    cumtl::optim::Sgd sgd(ctx, store, {.lr = 1, .momentum = 0.5});
    sgd.step(ctx);
    // w = 0 − 1·1 everywhere: an element updated twice would read −2 (or 0 if skipped)
    CHECK(store.values().to_vector<float>() == std::vector<float>(std::size_t(count), -1.0f));
    CHECK(sgd.state()[0].tensor.to_vector<float>() == std::vector<float>(std::size_t(count), 1.0f));

    cumtl::ops::fill(ctx, store.values(), 0);
    cumtl::optim::AdamW adamw(ctx, store, {.weight_decay = 0});
    adamw.step(ctx);
    // m = (1 − β1)·1 = 0.1 once; twice would be 0.19
    CHECK(adamw.state()[0].tensor.to_vector<float>() == std::vector<float>(std::size_t(count), 0.1f));
  }

  TEST_CASE("optim: restored state resumes exactly") {
    Context ctx;
    const std::vector<double> g1{0.5, 1, -2}, g2{1, 0, 1};
    const cumtl::optim::AdamWOptions options{.lr = 0.05, .weight_decay = 0.2, .exempt_bn_and_bias = false};

    ParameterStore straight;
    make_store(ctx, straight, {1, -2, 0.5});
    cumtl::optim::AdamW uninterrupted(ctx, straight, options);
    set_gradients(ctx, straight, g1);
    uninterrupted.step(ctx);
    set_gradients(ctx, straight, g2);
    uninterrupted.step(ctx);

    ParameterStore resumed;
    make_store(ctx, resumed, {1, -2, 0.5});
    cumtl::optim::AdamW before(ctx, resumed, options);
    set_gradients(ctx, resumed, g1);
    before.step(ctx);
    // A checkpoint: the values stay in the store, the state and step count move to a new optimizer.
    cumtl::optim::AdamW after(ctx, resumed, options);
    const auto saved = before.state();
    auto restored = after.state();
    REQUIRE(restored.size() == 2);
    CHECK(restored[0].name == "exp_avg");
    CHECK(restored[1].name == "exp_avg_sq");
    for (std::size_t i = 0; i < saved.size(); ++i) cumtl::ops::copy(ctx, restored[i].tensor, saved[i].tensor);
    after.set_steps(before.steps());
    set_gradients(ctx, resumed, g2);
    after.step(ctx);
    CHECK(resumed.values().to_vector<double>() == straight.values().to_vector<double>());

    ParameterStore plain;
    make_store(ctx, plain, {1, -2, 0.5});
    cumtl::optim::Sgd sgd(ctx, plain, {.momentum = 0.9});
    REQUIRE(sgd.state().size() == 1);
    CHECK(sgd.state()[0].name == "momentum_buffer");
  }

  TEST_CASE("optim: constant schedule with warm-up") {
    const Schedule schedule = Schedule::constant(0.4, /*warmup_steps=*/4);
    // 0.4·(s + 1)/4 while warming up
    CHECK(schedule.lr(0) == doctest::Approx(0.1));
    CHECK(schedule.lr(1) == doctest::Approx(0.2));
    CHECK(schedule.lr(3) == doctest::Approx(0.4));
    CHECK(schedule.lr(4) == doctest::Approx(0.4));
    CHECK(schedule.lr(1000) == doctest::Approx(0.4));
    CHECK(Schedule::constant(0.3).lr(0) == doctest::Approx(0.3));
  }

  TEST_CASE("optim: step decay schedule") {
    const Schedule schedule = Schedule::step_decay(1.0, /*step_size=*/10, /*gamma=*/0.5);
    CHECK(schedule.lr(0) == doctest::Approx(1.0));
    CHECK(schedule.lr(9) == doctest::Approx(1.0));
    CHECK(schedule.lr(10) == doctest::Approx(0.5));
    CHECK(schedule.lr(25) == doctest::Approx(0.25));  // 0.5^floor(25/10)
    // With 5 warm-up steps the decay counts from step 5: 1·(s+1)/5, then halves at 15, 25, …
    const Schedule warm = Schedule::step_decay(1.0, 10, 0.5, /*warmup_steps=*/5);
    CHECK(warm.lr(0) == doctest::Approx(0.2));
    CHECK(warm.lr(4) == doctest::Approx(1.0));
    CHECK(warm.lr(14) == doctest::Approx(1.0));
    CHECK(warm.lr(15) == doctest::Approx(0.5));
    CHECK(warm.lr(35) == doctest::Approx(0.125));
  }

  TEST_CASE("optim: cosine schedule endpoints and midpoint") {
    const Schedule schedule = Schedule::cosine(1.0, /*total_steps=*/100, /*min_lr=*/0.1);
    CHECK(schedule.lr(0) == doctest::Approx(1.0));
    CHECK(schedule.lr(50) == doctest::Approx(0.55));                               // 0.1 + 0.9·(1 + cos(π/2))/2
    CHECK(schedule.lr(25) == doctest::Approx(0.1 + 0.45 * (1 + std::sqrt(0.5))));  // cos(π/4) = √½
    CHECK(schedule.lr(100) == doctest::Approx(0.1));
    CHECK(schedule.lr(150) == doctest::Approx(0.1));  // the floor holds past the end
    // 10 warm-up steps: 0.1, 0.2, …, 1.0 at step 9, then cosine over the remaining 100
    const Schedule warm = Schedule::cosine(1.0, 110, 0.1, /*warmup_steps=*/10);
    CHECK(warm.lr(0) == doctest::Approx(0.1));
    CHECK(warm.lr(9) == doctest::Approx(1.0));
    CHECK(warm.lr(10) == doctest::Approx(1.0));
    CHECK(warm.lr(60) == doctest::Approx(0.55));
    CHECK(warm.lr(110) == doctest::Approx(0.1));
    // A pure function of the step: asking again, or out of order, changes nothing.
    CHECK(warm.lr(37) == warm.lr(37));
  }

  // Mixed precision: given a working copy, an update writes the same values and
  // state as without one, and the copy is those values rounded once.
  TEST_CASE_TEMPLATE("optim: an update writes the working copy of its values in the same pass", Half, cumtl::bfloat16_t,
                     cumtl::float16_t) {
    Context ctx;
    const Shape shape{1000};
    Tensor mask = cumtl_test::random_tensor<float>(shape, 1, 0, 2);
    std::vector<float> bits = mask.to_vector<float>();
    for (float& m : bits) m = m >= 1 ? 1.0f : 0.0f;
    mask = Tensor::from_vector(bits, shape);
    const Tensor start = cumtl_test::random_tensor<float>(shape, 2);
    Tensor sgd_values = cumtl_test::random_tensor<float>(shape, 2),
           sgd_fused = cumtl_test::random_tensor<float>(shape, 2);
    Tensor adam_values = cumtl_test::random_tensor<float>(shape, 2),
           adam_fused = cumtl_test::random_tensor<float>(shape, 2);
    Tensor buffer = Tensor::zeros(shape, ScalarType::f32), fused_buffer = Tensor::zeros(shape, ScalarType::f32);
    Tensor m = Tensor::zeros(shape, ScalarType::f32), v = Tensor::zeros(shape, ScalarType::f32);
    Tensor fused_m = Tensor::zeros(shape, ScalarType::f32), fused_v = Tensor::zeros(shape, ScalarType::f32);
    Tensor sgd_working = Tensor::empty(shape, cumtl::scalar_type_v<Half>);
    Tensor adam_working = Tensor::empty(shape, cumtl::scalar_type_v<Half>);
    for (std::uint64_t step = 0; step < 3; ++step) {
      const Tensor gradients = cumtl_test::random_tensor<float>(shape, 10 + step);
      const cumtl::SgdStep sgd{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-2, .first_step = step == 0};
      cumtl::ops::sgd_update(ctx, sgd_values, gradients, buffer, mask, sgd);
      cumtl::ops::sgd_update(ctx, sgd_fused, gradients, fused_buffer, mask, sgd, sgd_working);
      const cumtl::AdamWStep adamw{.lr = 1e-2, .weight_decay = 5e-2, .step = step + 1};
      cumtl::ops::adamw_update(ctx, adam_values, gradients, m, v, mask, adamw);
      cumtl::ops::adamw_update(ctx, adam_fused, gradients, fused_m, fused_v, mask, adamw, adam_working);
    }
    CHECK(sgd_fused.to_vector<float>() == sgd_values.to_vector<float>());
    CHECK(fused_buffer.to_vector<float>() == buffer.to_vector<float>());
    CHECK(sgd_working.to_vector<Half>() == cumtl_test::rounded<Half>(sgd_values));
    CHECK(cumtl_test::any_rounded<Half>(sgd_values));
    CHECK(adam_fused.to_vector<float>() == adam_values.to_vector<float>());
    CHECK(fused_m.to_vector<float>() == m.to_vector<float>());
    CHECK(fused_v.to_vector<float>() == v.to_vector<float>());
    CHECK(adam_working.to_vector<Half>() == cumtl_test::rounded<Half>(adam_values));
    CHECK(cumtl_test::any_rounded<Half>(adam_values));

    Tensor short_working = Tensor::empty(Shape{999}, cumtl::scalar_type_v<Half>);
    CHECK_ERROR_WITH(cumtl::ops::sgd_update(ctx, sgd_values, start, buffer, mask, {.lr = 0.1}, short_working),
                     "ops::sgd_update", "working copy is", "[999]");
    Tensor float_working = Tensor::empty(shape, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::adamw_update(ctx, adam_values, start, m, v, mask, {.lr = 0.1}, float_working),
                     "ops::adamw_update", "bfloat16 or float16 copy of float32 values");
  }

  // An optimizer over a mixed-precision store hands the model a working copy that is current.
  TEST_CASE("optim: a step over a mixed-precision store writes its working copy") {
    Context ctx;
    ParameterStore store;
    store.add_parameter("fc.weight", Shape{200}, true);
    store.add_parameter("fc.bias", Shape{3}, false);
    store.allocate(ctx, ScalarType::f32, ScalarType::bf16);
    CHECK(!store.working_current());
    cumtl::ops::copy(ctx, store.values(), cumtl_test::random_tensor<float>(Shape{203}, 4));
    cumtl::ops::copy(ctx, store.gradients(), cumtl_test::random_tensor<float>(Shape{203}, 5));
    cumtl::optim::AnyOptimizer adamw(ctx, store, cumtl::optim::AdamWOptions{.lr = 1e-2});
    adamw.step(ctx);
    CHECK(store.working_current());
    CHECK(store.working_values().to_vector<cumtl::bfloat16_t>() ==
          cumtl_test::rounded<cumtl::bfloat16_t>(std::as_const(store).values()));
    store.values_written();
    CHECK(!store.working_current());
    cumtl::optim::Sgd sgd(ctx, store, {.lr = 0.5, .momentum = 0.9});
    sgd.step(ctx);
    CHECK(store.working_current());
    CHECK(store.working_values().to_vector<cumtl::bfloat16_t>() ==
          cumtl_test::rounded<cumtl::bfloat16_t>(std::as_const(store).values()));
  }

  TEST_CASE("optim: bad input is rejected") {
    Context ctx;
    Tensor values = Tensor::zeros(Shape{4}, ScalarType::f32);
    const Tensor gradients = Tensor::zeros(Shape{4}, ScalarType::f32);
    Tensor buffer = Tensor::zeros(Shape{4}, ScalarType::f32);
    const Tensor mask = Tensor::zeros(Shape{4}, ScalarType::f32);
    Tensor short_buffer = Tensor::zeros(Shape{3}, ScalarType::f32);
    const Tensor double_mask = Tensor::zeros(Shape{4}, ScalarType::f64);
    Tensor integers = Tensor::zeros(Shape{4}, ScalarType::i64);
    const cumtl::SgdStep sgd{.lr = 0.1};

    CHECK_ERROR_WITH(cumtl::ops::sgd_update(ctx, values, gradients, short_buffer, mask, sgd), "ops::sgd_update",
                     "momentum_buffer");
    CHECK_ERROR_WITH(cumtl::ops::sgd_update(ctx, values, gradients, buffer, double_mask, sgd), "decay_mask");
    CHECK_ERROR_WITH(cumtl::ops::sgd_update(ctx, values, gradients, buffer, Tensor(), sgd), "undefined");
    CHECK_ERROR_WITH(cumtl::ops::sgd_update(ctx, integers, integers, integers, integers, sgd), "float32 or float64");
    CHECK_ERROR_WITH(cumtl::ops::sgd_update(ctx, values, gradients, buffer, mask, {.lr = -1}), "lr");
    CHECK_ERROR_WITH(cumtl::ops::sgd_update(ctx, values, gradients, buffer, mask, {.lr = 0.1, .nesterov = true}),
                     "Nesterov");

    Tensor v = Tensor::zeros(Shape{4}, ScalarType::f32);
    CHECK_ERROR_WITH(cumtl::ops::adamw_update(ctx, values, gradients, buffer, short_buffer, mask, {.lr = 0.1}),
                     "ops::adamw_update", "exp_avg_sq");
    CHECK_ERROR_WITH(cumtl::ops::adamw_update(ctx, values, gradients, buffer, v, mask, {.lr = 0.1, .step = 0}),
                     "1-based");
    CHECK_ERROR_WITH(cumtl::ops::adamw_update(ctx, values, gradients, buffer, v, mask, {.lr = 0.1, .beta1 = 1}),
                     "betas");
    CHECK_ERROR_WITH(cumtl::ops::adamw_update(ctx, values, gradients, buffer, v, mask, {.lr = 0.1, .eps = 0}), "eps");

    ParameterStore unallocated;
    unallocated.add_parameter("w", Shape{2}, true);
    CHECK_ERROR_WITH(cumtl::optim::Sgd(ctx, unallocated, {}), "allocated");
    ParameterStore store;
    make_store(ctx, store, {1, 2, 3});
    CHECK_ERROR_WITH(cumtl::optim::Sgd(ctx, store, {.nesterov = true}), "Nesterov");
    CHECK_ERROR_WITH(cumtl::optim::AdamW(ctx, store, {.beta2 = 1.5}), "betas");

    CHECK_ERROR_WITH(Schedule::constant(0.1).lr(-1), "step must be >= 0");
    CHECK_ERROR_WITH(Schedule::step_decay(0.1, 0, 0.5).lr(3), "step_size");
    CHECK_ERROR_WITH(Schedule::cosine(0.1, 10, 0, /*warmup_steps=*/10).lr(12), "total_steps");
    CHECK_ERROR_WITH(Schedule::cosine(0.1, 10, /*min_lr=*/0.2).lr(1), "min_lr");
  }

  TEST_CASE("loss scale: all_finite finds an infinity or a NaN anywhere") {
    Context ctx;
    for (const std::int64_t count : {1, 7, 100000}) {
      CAPTURE(count);
      Tensor values = cumtl_test::random_tensor<float>(Shape{count}, 3);
      CHECK(cumtl::ops::all_finite(ctx, values));
      for (const float bad : {INFINITY, -INFINITY, NAN})
        for (const std::int64_t at : {std::int64_t(0), count / 2, count - 1}) {
          Tensor spoiled = values.to(cumtl::Device::cpu());
          spoiled.data<float>()[at] = bad;
          CHECK_FALSE(cumtl::ops::all_finite(ctx, spoiled));
        }
    }
    CHECK(cumtl::ops::all_finite(ctx, Tensor::empty(Shape{0}, ScalarType::f32)));
    CHECK(cumtl::ops::all_finite(ctx, Tensor::from_vector<double>({3.4e38 * 10.0}, Shape{1})));  // finite in double
  }

  // A step whose scaled gradients overflowed is skipped: the gradients and
  // so the weights are left as they are, the scale halves and the skip is
  // counted. Finite steps divide by the scale, exactly (powers of two), and
  // after growth_interval of them in a row the scale doubles.
  TEST_CASE("loss scale: a forced overflow skips the step and lowers the scale, without touching the weights") {
    Context ctx;
    ParameterStore store;
    make_store(ctx, store, {1, 2, 3});
    cumtl::optim::DynamicLossScale scaler({.initial = 1024, .growth_interval = 3});
    std::vector<double> overflowed{1, INFINITY, 3};
    set_gradients(ctx, store, overflowed);
    CHECK_FALSE(scaler.unscale(ctx, store.gradients()));
    CHECK(scaler.scale() == 512);
    CHECK(scaler.skipped_steps() == 1);
    CHECK(store.values().to_vector<double>() == std::vector<double>{1, 2, 3});
    const std::vector<double> left = store.gradients().to_vector<double>();
    CHECK(left[1] == INFINITY);

    for (int step = 0; step < 3; ++step) {
      CAPTURE(step);
      set_gradients(ctx, store, {512, -1024, 0.5});
      REQUIRE(scaler.unscale(ctx, store.gradients()));
      CHECK(store.gradients().to_vector<double>() == std::vector<double>{1, -2, 0.5 / 512});
    }
    CHECK(scaler.scale() == 1024);  // three finite steps in a row
    CHECK(scaler.skipped_steps() == 1);
    const cumtl::optim::LossScaleState state = scaler.state();
    cumtl::optim::DynamicLossScale restored;
    restored.set_state(state);
    CHECK(restored.state() == state);
    CHECK_ERROR_WITH(cumtl::optim::DynamicLossScale({.initial = 0}), "DynamicLossScale", "out of range");
  }

  // The same through a float32 model with a float16 trunk: an enormous scale
  // overflows float16 in backward, and the scale comes down until a step fits.
  TEST_CASE("loss scale: an fp16 model's overflowing backward is skipped until the scale fits") {
    Context ctx;
    const std::vector<cumtl::HeadSpec> heads{{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 7}};
    cumtl::MultiHeadModel<float> model(cumtl::ResNetSpec::small(), heads, ScalarType::f16);
    model.allocate(ctx);
    cumtl::Generator generator(5);
    model.initialize(ctx, generator);
    const std::vector<float> initial = model.parameters().values().to_vector<float>();
    Tensor images = Tensor::empty(Shape{4, 16, 16, 3}, ScalarType::f32);
    cumtl::ops::normal(ctx, images, generator, 0, 1);
    Tensor dlogits = Tensor::empty(Shape{4, 7}, ScalarType::f32);
    cumtl::ops::normal(ctx, dlogits, generator, 0, 1);

    cumtl::optim::DynamicLossScale scaler({.initial = 0x1p40});
    int steps = 0;
    for (; steps < 40; ++steps) {
      Tensor scaled = dlogits.to(cumtl::Device::cpu());
      cumtl::ops::scale(ctx, scaled, scaler.scale());
      model.forward(ctx, images, cumtl::Phase::train);
      model.backward(ctx, scaled, cumtl::GradientMode::overwrite);
      if (scaler.unscale(ctx, model.parameters().gradients())) break;
      CHECK(model.parameters().values().to_vector<float>() == initial);
    }
    CHECK(steps > 0);  // 2^40 overflowed float16 (largest 65504)
    CHECK(scaler.skipped_steps() == steps);
    CHECK(scaler.scale() == std::ldexp(1.0, 40 - steps));
    CHECK(cumtl::ops::all_finite(ctx, model.parameters().gradients()));
  }
}
