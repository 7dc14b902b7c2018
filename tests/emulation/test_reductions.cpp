// The kernels with shared memory, barriers, warp shuffles and atomics (batch
// normalization, the multi-task loss, the bias gradient), run through their
// CUDA launchers by the emulated execution model, against the CPU twins, on
// the grids of devices of 1, 3 and 132 multiprocessors.
//
// Both sides sum in double, in different orders (row blocks and trees here,
// runs of rows there), so their sums differ in double's last bits; rounded to
// the result's type, that is at most a unit in its last place. The bounds
// below are that unit with room (float 1e-6 on results of order 1, double
// 1e-12), plus one unit of a 2-byte output (2^-7 bf16, 2^-10 f16 of the
// result's scale) where the rounding can fall either way.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "cumtl/cpu/batchnorm.hpp"
#include "cumtl/cpu/linear.hpp"
#include "cumtl/cpu/multitask_loss.hpp"
#include "cumtl/cuda/batchnorm.cuh"
#include "cumtl/cuda/bias.cuh"
#include "cumtl/cuda/multitask_loss.cuh"
#include "cumtl/loss/multitask_loss.hpp"

#include "../support/two_ranks.hpp"
#include "support.hpp"

using cumtl::Activation;
using cumtl::bfloat16_t;
using cumtl::compute_t;
using cumtl::Context;
using cumtl::float16_t;
using cumtl::GradientMode;
using cumtl_emulation_test::cases;
using cumtl_emulation_test::DeviceWithMultiprocessors;
using cumtl_emulation_test::multiprocessor_counts;
using cumtl_emulation_test::random_values;
using cumtl_test::error_over_scale;
using cumtl_test::max_relative_error;

namespace {

// The bound on a result computed in float or double from sums in double.
template <class P>
constexpr double sum_tolerance() {
  return std::is_same_v<P, double> ? 1e-12 : 1e-6;
}

// The same for a result rounded to T.
template <class T>
constexpr double output_tolerance() {
  if constexpr (std::is_same_v<T, bfloat16_t>) return 0x1p-7 + 1e-6;
  if constexpr (std::is_same_v<T, float16_t>) return 0x1p-10 + 1e-6;
  return sum_tolerance<T>();
}

struct Extent {
  std::int64_t rows, columns;
};

constexpr GradientMode gradient_modes[] = {GradientMode::accumulate, GradientMode::overwrite};

// Everything forward train reads and writes; P is compute_t<T>.
template <class T, class P = compute_t<T>>
struct BatchnormForward {
  std::vector<P> running_mean, running_var, saved_mean, saved_invstd;
  std::vector<T> y;
};

template <class T, class P = compute_t<T>>
struct BatchnormBackward {
  std::vector<T> dx, dresidual;
  std::vector<P> dgamma, dbeta;
};

}  // namespace

TEST_CASE_TEMPLATE("batchnorm: the launchers' passes give the CPU twin's results on every grid", T, float, double,
                   bfloat16_t, float16_t) {
  using P = compute_t<T>;
  Context ctx;
  const Extent extents[] = {{129, 70}, {2, 3}, {37, 7}, {300, 64}, {1000, 33}};
  const bool fusions[] = {true, false};
  std::uint64_t seed = 100;
  for (const int multiprocessors : cases(multiprocessor_counts))
    for (const Extent extent : cases(extents))
      for (const bool fused : cases(fusions)) {  // with the residual add and the ReLU, or neither
        CAPTURE(multiprocessors);
        CAPTURE(extent.rows);
        CAPTURE(extent.columns);
        CAPTURE(fused);
        const DeviceWithMultiprocessors device(multiprocessors);
        const std::int64_t rows = extent.rows, channels = extent.columns, count = rows * channels;
        seed += 10;
        const std::vector<T> x = random_values<T>(count, seed, -2, 3);
        const std::vector<T> residual = fused ? random_values<T>(count, seed + 1, -1, 1) : std::vector<T>{};
        const std::vector<P> gamma = random_values<P>(channels, seed + 2, 0.5, 1.5);
        const std::vector<P> beta = random_values<P>(channels, seed + 3, -0.5, 0.5);
        const Activation activation = fused ? Activation::relu : Activation::none;
        const T* residual_data = fused ? residual.data() : nullptr;

        const auto forward_train = [&](bool emulated) {
          BatchnormForward<T> out{random_values<P>(channels, seed + 4, -0.5, 0.5),
                                  random_values<P>(channels, seed + 5, 0.5, 2), std::vector<P>(std::size_t(channels)),
                                  std::vector<P>(std::size_t(channels)), std::vector<T>(std::size_t(count))};
          if (emulated)
            cumtl::cuda::batchnorm_forward_train(ctx, rows, channels, x.data(), gamma.data(), beta.data(),
                                                 residual_data, activation, 0.1, 1e-5, out.running_mean.data(),
                                                 out.running_var.data(), out.saved_mean.data(), out.saved_invstd.data(),
                                                 out.y.data());
          else
            cumtl::cpu::batchnorm_forward_train(ctx, rows, channels, x.data(), gamma.data(), beta.data(), residual_data,
                                                activation, 0.1, 1e-5, out.running_mean.data(), out.running_var.data(),
                                                out.saved_mean.data(), out.saved_invstd.data(), out.y.data());
          return out;
        };
        const BatchnormForward<T> expected = forward_train(false), actual = forward_train(true);
        CHECK(error_over_scale(actual.y, expected.y) <= output_tolerance<T>());
        CHECK(error_over_scale(actual.saved_mean, expected.saved_mean) <= sum_tolerance<P>());
        CHECK(max_relative_error(actual.saved_invstd, expected.saved_invstd) <= sum_tolerance<P>());
        CHECK(error_over_scale(actual.running_mean, expected.running_mean) <= sum_tolerance<P>());
        CHECK(max_relative_error(actual.running_var, expected.running_var) <= sum_tolerance<P>());
        // A fixed summation order: the same bits every run, whatever the threads' timing.
        CHECK(cumtl_emulation_test::bit_identical(forward_train(true).y, actual.y));

        const auto forward_eval = [&](bool emulated) {
          std::vector<T> y(static_cast<std::size_t>(count));
          if (emulated)
            cumtl::cuda::batchnorm_forward_eval(ctx, rows, channels, x.data(), gamma.data(), beta.data(), residual_data,
                                                activation, 1e-5, expected.running_mean.data(),
                                                expected.running_var.data(), y.data());
          else
            cumtl::cpu::batchnorm_forward_eval(ctx, rows, channels, x.data(), gamma.data(), beta.data(), residual_data,
                                               activation, 1e-5, expected.running_mean.data(),
                                               expected.running_var.data(), y.data());
          return y;
        };
        // The same per-element function of the same coefficients on both sides.
        CHECK(cumtl_emulation_test::bit_identical(forward_eval(true), forward_eval(false)));

        const std::vector<T> dy = random_values<T>(count, seed + 6, -1, 1);
        for (const GradientMode mode : cases(gradient_modes)) {
          CAPTURE(int(mode));
          const auto backward = [&](bool emulated) {
            BatchnormBackward<T> out{std::vector<T>(std::size_t(count)),
                                     fused ? std::vector<T>(std::size_t(count)) : std::vector<T>{},
                                     random_values<P>(channels, seed + 7), random_values<P>(channels, seed + 8)};
            T* dresidual = fused ? out.dresidual.data() : nullptr;
            if (emulated)
              cumtl::cuda::batchnorm_backward(ctx, rows, channels, dy.data(), x.data(), expected.y.data(), gamma.data(),
                                              expected.saved_mean.data(), expected.saved_invstd.data(), activation,
                                              out.dx.data(), dresidual, out.dgamma.data(), out.dbeta.data(), mode);
            else
              cumtl::cpu::batchnorm_backward(ctx, rows, channels, dy.data(), x.data(), expected.y.data(), gamma.data(),
                                             expected.saved_mean.data(), expected.saved_invstd.data(), activation,
                                             out.dx.data(), dresidual, out.dgamma.data(), out.dbeta.data(), mode);
            return out;
          };
          const BatchnormBackward<T> wanted = backward(false), got = backward(true);
          CHECK(error_over_scale(got.dx, wanted.dx) <= output_tolerance<T>());
          CHECK(error_over_scale(got.dgamma, wanted.dgamma) <= sum_tolerance<P>());
          CHECK(error_over_scale(got.dbeta, wanted.dbeta) <= sum_tolerance<P>());
          CHECK(cumtl_emulation_test::bit_identical(got.dresidual, wanted.dresidual));
          CHECK(cumtl_emulation_test::bit_identical(backward(true).dx, got.dx));
        }
      }
}

namespace {

// What one rank holds: its rows of the batch, and the parameters and running statistics every rank shares.
template <class T>
struct RankBatch {
  std::int64_t rows;
  std::vector<T> x, residual, dy;
};

template <class T, class P = compute_t<T>>
struct RankStep {
  BatchnormForward<T> forward;
  BatchnormBackward<T> backward;
};

// One rank's training forward and backward of relu(bn(x) + residual), synchronized over the ranks, through the
// CUDA launchers (emulated) or the CPU twin.
template <class T, class P = compute_t<T>>
RankStep<T> synchronized_step(bool emulated, const RankBatch<T>& batch, std::int64_t channels,
                              const std::vector<P>& gamma, const std::vector<P>& beta,
                              const cumtl::ChannelSumsOverRanks& sums) {
  Context ctx;
  const std::size_t count = std::size_t(batch.rows * channels), width = std::size_t(channels);
  RankStep<T> step{{random_values<P>(channels, 1, -0.5, 0.5), random_values<P>(channels, 2, 0.5, 2),
                    std::vector<P>(width), std::vector<P>(width), std::vector<T>(count)},
                   {std::vector<T>(count), std::vector<T>(count), std::vector<P>(width), std::vector<P>(width)}};
  BatchnormForward<T>& f = step.forward;
  BatchnormBackward<T>& b = step.backward;
  if (emulated) {
    cumtl::cuda::batchnorm_forward_train(ctx, batch.rows, channels, batch.x.data(), gamma.data(), beta.data(),
                                         batch.residual.data(), Activation::relu, 0.1, 1e-5, f.running_mean.data(),
                                         f.running_var.data(), f.saved_mean.data(), f.saved_invstd.data(), f.y.data(),
                                         &sums);
    cumtl::cuda::batchnorm_backward(ctx, batch.rows, channels, batch.dy.data(), batch.x.data(), f.y.data(),
                                    gamma.data(), f.saved_mean.data(), f.saved_invstd.data(), Activation::relu,
                                    b.dx.data(), b.dresidual.data(), b.dgamma.data(), b.dbeta.data(),
                                    GradientMode::overwrite, &sums);
  } else {
    cumtl::cpu::batchnorm_forward_train(ctx, batch.rows, channels, batch.x.data(), gamma.data(), beta.data(),
                                        batch.residual.data(), Activation::relu, 0.1, 1e-5, f.running_mean.data(),
                                        f.running_var.data(), f.saved_mean.data(), f.saved_invstd.data(), f.y.data(),
                                        &sums);
    cumtl::cpu::batchnorm_backward(ctx, batch.rows, channels, batch.dy.data(), batch.x.data(), f.y.data(), gamma.data(),
                                   f.saved_mean.data(), f.saved_invstd.data(), Activation::relu, b.dx.data(),
                                   b.dresidual.data(), b.dgamma.data(), b.dbeta.data(), GradientMode::overwrite, &sums);
  }
  return step;
}

// Both ranks' steps at once, rank 0 emulated or not, rank 1 always the CPU twin, on a thread of its own.
template <class T, class P = compute_t<T>>
std::array<RankStep<T>, 2> two_rank_step(bool rank0_emulated, const std::array<RankBatch<T>, 2>& batches,
                                         std::int64_t channels, const std::vector<P>& gamma,
                                         const std::vector<P>& beta) {
  cumtl_test::SumsOfTwoRanks sums;
  std::array<RankStep<T>, 2> steps;
  cumtl_test::run_two_ranks([&](int rank) {
    const std::size_t r = std::size_t(rank);
    steps[r] = synchronized_step<T>(rank == 0 && rank0_emulated, batches[r], channels, gamma, beta, sums.of_rank(rank));
  });
  // Forward train sums [Σx | count], then the m2s; backward its sums and rows.
  CHECK(sums.sums_of_rank(0) == 3);
  CHECK(sums.sums_of_rank(1) == 3);
  return steps;
}

}  // namespace

// The launchers sum the CPU twin's values, in its layout, between their
// kernels: a rank running them and a rank running the CPU twin make one
// world, and each gets what it would with the CPU twin on both.
TEST_CASE_TEMPLATE("batchnorm synchronized over two ranks: the launchers on one rank give the CPU twin's results", T,
                   float, double, bfloat16_t) {
  using P = compute_t<T>;
  struct Split {
    std::int64_t rows0, rows1, channels;
  };
  const Split splits[] = {{129, 61, 70}, {2, 5, 3}, {400, 300, 33}};
  std::uint64_t seed = 500;
  for (const int multiprocessors : cases(multiprocessor_counts))
    for (const Split split : cases(splits)) {
      CAPTURE(multiprocessors);
      CAPTURE(split.rows0);
      CAPTURE(split.rows1);
      CAPTURE(split.channels);
      const DeviceWithMultiprocessors device(multiprocessors);
      const std::int64_t channels = split.channels;
      seed += 10;
      std::array<RankBatch<T>, 2> batches;
      for (int rank = 0; rank < 2; ++rank) {
        const std::int64_t rows = rank == 0 ? split.rows0 : split.rows1, count = rows * channels;
        // The ranks' shards differ in mean, so each rank's own statistics are far from the whole batch's.
        batches[std::size_t(rank)] = {rows, random_values<T>(count, seed + std::uint64_t(rank), -2 + rank, 3 + rank),
                                      random_values<T>(count, seed + 2 + std::uint64_t(rank), -1, 1),
                                      random_values<T>(count, seed + 4 + std::uint64_t(rank), -1, 1)};
      }
      const std::vector<P> gamma = random_values<P>(channels, seed + 6, 0.5, 1.5);
      const std::vector<P> beta = random_values<P>(channels, seed + 7, -0.5, 0.5);

      const std::array<RankStep<T>, 2> expected = two_rank_step<T>(false, batches, channels, gamma, beta);
      const std::array<RankStep<T>, 2> actual = two_rank_step<T>(true, batches, channels, gamma, beta);
      for (int rank = 0; rank < 2; ++rank) {
        CAPTURE(rank);
        const RankStep<T>& got = actual[std::size_t(rank)];
        const RankStep<T>& wanted = expected[std::size_t(rank)];
        CHECK(error_over_scale(got.forward.y, wanted.forward.y) <= output_tolerance<T>());
        CHECK(error_over_scale(got.forward.saved_mean, wanted.forward.saved_mean) <= sum_tolerance<P>());
        CHECK(max_relative_error(got.forward.saved_invstd, wanted.forward.saved_invstd) <= sum_tolerance<P>());
        CHECK(error_over_scale(got.forward.running_mean, wanted.forward.running_mean) <= sum_tolerance<P>());
        CHECK(max_relative_error(got.forward.running_var, wanted.forward.running_var) <= sum_tolerance<P>());
        CHECK(error_over_scale(got.backward.dx, wanted.backward.dx) <= output_tolerance<T>());
        CHECK(error_over_scale(got.backward.dgamma, wanted.backward.dgamma) <= sum_tolerance<P>());
        CHECK(error_over_scale(got.backward.dbeta, wanted.backward.dbeta) <= sum_tolerance<P>());
        CHECK(cumtl_emulation_test::bit_identical(got.backward.dresidual, wanted.backward.dresidual));
      }
      // Both ranks normalized with the whole batch's statistics: the same on both, to the bit.
      CHECK(cumtl_emulation_test::bit_identical(actual[0].forward.saved_mean, actual[1].forward.saved_mean));
      CHECK(cumtl_emulation_test::bit_identical(actual[0].forward.saved_invstd, actual[1].forward.saved_invstd));
    }
}

namespace {

using cumtl::kernels::LossHeadKind;
using cumtl::kernels::LossHeadTable;
using cumtl::kernels::LossNormalization;

// Heads of fewer and of more outputs than a warp has lanes: 7 and 40 classes,
// 12 and 35 labels (the lanes' strided loops then take two turns), as a
// MultiTaskLoss hands them to the kernels.
LossHeadTable loss_heads(LossNormalization normalization, bool missing_as_negative) {
  using cumtl::HeadKind;
  const cumtl::MultiTaskLoss loss(
      {{.name = "emotion", .kind = HeadKind::softmax, .outputs = 7, .weight = 1.0},
       {.name = "au", .kind = HeadKind::sigmoid, .outputs = 12, .weight = 0.5},
       {.name = "compound", .kind = HeadKind::softmax, .outputs = 40, .weight = 0.3, .label_smoothing = 0.1},
       {.name = "landmarks", .kind = HeadKind::sigmoid, .outputs = 35, .weight = 0.7}},
      {.normalization = normalization,
       .missing_sigmoid_labels =
           missing_as_negative ? cumtl::MissingLabels::as_negative : cumtl::MissingLabels::ignore});
  return loss.head_table();
}

// Labels of which about a third are missing; rows that are multiples of 5 lack every binary label.
struct LossLabels {
  std::vector<std::int32_t> classes;
  std::vector<std::int8_t> binary;
};

LossLabels random_labels(const LossHeadTable& table, std::int64_t rows, std::uint64_t seed) {
  const std::vector<double> draws =
      random_values<double>(rows * (table.class_columns + table.binary_columns) * 2, seed, 0, 1);
  std::size_t next = 0;
  LossLabels labels{std::vector<std::int32_t>(std::size_t(rows * table.class_columns), -1),
                    std::vector<std::int8_t>(std::size_t(rows * table.binary_columns), -1)};
  for (std::int64_t row = 0; row < rows; ++row)
    for (int h = 0; h < table.count; ++h) {
      const LossHeadTable::Head& head = table.head[h];
      if (head.kind == LossHeadKind::softmax) {
        const double present = draws[next++], label = draws[next++];
        if (present >= 0.3)
          labels.classes[std::size_t(row * table.class_columns + head.label_column)] =
              std::int32_t(label * head.outputs);
      } else {
        for (int k = 0; k < head.outputs; ++k) {
          const double present = draws[next++], label = draws[next++];
          if (row % 5 != 0 && present >= 0.3)
            labels.binary[std::size_t(row * table.binary_columns + head.label_column + k)] = std::int8_t(label < 0.4);
        }
      }
    }
  return labels;
}

template <class C>
struct LossResult {
  std::vector<std::int32_t> counts;
  unsigned long long first_bad_row = 0;
  std::vector<C> losses;
};

template <class T, class C = compute_t<T>>
LossResult<C> run_loss(Context& ctx, bool emulated, const LossHeadTable& table, std::int64_t rows,
                       const std::vector<T>& logits, const LossLabels& labels, const std::vector<C>& positive_weights,
                       std::vector<T>* gradient) {
  LossResult<C> result{std::vector<std::int32_t>(std::size_t(2 * table.count), -7), 0,
                       std::vector<C>(std::size_t(table.count + 1))};
  const cumtl::kernels::LossOutputs<C> outputs{result.counts.data(), &result.first_bad_row, result.losses.data()};
  T* gradient_data = gradient != nullptr ? gradient->data() : nullptr;
  if (emulated)
    cumtl::cuda::multitask_loss(ctx, table, rows, logits.data(), labels.classes.data(), labels.binary.data(),
                                positive_weights.data(), gradient_data, outputs);
  else
    cumtl::cpu::multitask_loss(ctx, table, rows, logits.data(), labels.classes.data(), labels.binary.data(),
                               positive_weights.data(), gradient_data, outputs);
  return result;
}

}  // namespace

TEST_CASE_TEMPLATE("loss: the three passes give the CPU twin's counts, losses and gradient", T, float, double,
                   bfloat16_t, float16_t) {
  using C = compute_t<T>;
  Context ctx;
  const LossNormalization normalizations[] = {LossNormalization::per_label, LossNormalization::per_sample,
                                              LossNormalization::per_batch};
  const bool missing_as_negative_or_not[] = {false, true};
  const std::int64_t row_counts[] = {100, 1, 7, 8, 9, 300};
  std::uint64_t seed = 500;
  for (const LossNormalization normalization : cases(normalizations))
    for (const bool missing_as_negative : cases(missing_as_negative_or_not))
      for (const std::int64_t rows : cases(row_counts)) {
        CAPTURE(int(normalization));
        CAPTURE(missing_as_negative);
        CAPTURE(rows);
        seed += 10;
        const LossHeadTable table = loss_heads(normalization, missing_as_negative);
        const std::vector<T> logits = random_values<T>(rows * table.logit_columns, seed, -4, 4);
        const LossLabels labels = random_labels(table, rows, seed + 1);
        const std::vector<C> positive_weights = random_values<C>(table.binary_columns, seed + 2, 0.5, 3);
        std::vector<T> expected_gradient(logits.size(), T(C(7))), actual_gradient(logits.size(), T(C(7)));
        const LossResult<C> expected =
            run_loss(ctx, false, table, rows, logits, labels, positive_weights, &expected_gradient);
        const LossResult<C> actual =
            run_loss(ctx, true, table, rows, logits, labels, positive_weights, &actual_gradient);
        CHECK(actual.counts == expected.counts);
        CHECK(actual.first_bad_row == cumtl::kernels::no_bad_row);
        CHECK(max_relative_error(actual.losses, expected.losses) <= 10 * sum_tolerance<C>());
        CHECK(error_over_scale(actual_gradient, expected_gradient) <= 10 * output_tolerance<T>());
        // Without a gradient (evaluation) the losses are the same bits.
        CHECK(run_loss<T>(ctx, true, table, rows, logits, labels, positive_weights, nullptr).losses == actual.losses);
      }
}

TEST_CASE("loss: the count pass finds the first row with an invalid label") {
  Context ctx;
  const LossHeadTable table = loss_heads(LossNormalization::per_label, false);
  const std::int64_t rows = 700;
  const std::vector<float> logits = random_values<float>(rows * table.logit_columns, 3);
  LossLabels labels = random_labels(table, rows, 4);
  labels.classes[std::size_t(613 * table.class_columns + 1)] = 40;  // 40 classes: 0..39
  labels.binary[std::size_t(377 * table.binary_columns + 20)] = 2;  // 1, 0 or -1
  labels.classes[std::size_t(401 * table.class_columns)] = -2;      // -1 is missing
  const std::vector<float> weights(std::size_t(table.binary_columns), 1.0f);
  for (const int multiprocessors : cases(multiprocessor_counts)) {
    const DeviceWithMultiprocessors device(multiprocessors);
    CHECK(run_loss<float>(ctx, true, table, rows, logits, labels, weights, nullptr).first_bad_row == 377);
    CHECK(run_loss<float>(ctx, false, table, rows, logits, labels, weights, nullptr).first_bad_row == 377);
  }
}

TEST_CASE_TEMPLATE("bias: the column sums give the CPU twin's bias gradient on every grid", T, float, double,
                   bfloat16_t, float16_t) {
  using C = compute_t<T>;
  Context ctx;
  // A linear head's (64 × 7), a convolution's with bias (8·56·56 × 64), and awkward ones.
  const Extent extents[] = {{3000, 33}, {1, 7}, {64, 7}, {100, 1}, {25088, 64}};
  std::uint64_t seed = 900;
  for (const int multiprocessors : cases(multiprocessor_counts))
    for (const Extent extent : cases(extents))
      for (const GradientMode mode : cases(gradient_modes)) {
        CAPTURE(multiprocessors);
        CAPTURE(extent.rows);
        CAPTURE(extent.columns);
        CAPTURE(int(mode));
        const DeviceWithMultiprocessors device(multiprocessors);
        seed += 10;
        const std::vector<T> dy = random_values<T>(extent.rows * extent.columns, seed, -1, 1);
        const std::vector<T> start = random_values<T>(extent.columns, seed + 1, -1, 1);
        std::vector<T> expected = start, actual = start;
        cumtl::cpu::bias_gradient(ctx, extent.rows, extent.columns, dy.data(), expected.data(), mode);
        cumtl::cuda::bias_gradient(ctx, extent.rows, extent.columns, dy.data(), actual.data(), mode);
        // The CPU twin adds the rows one after another in C: within rows·ε_C·Σ|dy| of the exact sum (kernels/bias.cuh),
        // which the emulated kernels reach to within double rounding; then one rounding to T each.
        const double epsilon = std::is_same_v<C, double> ? 0x1p-53 : 0x1p-24;
        const double unit = std::is_same_v<T, bfloat16_t> ? 0x1p-8 : std::is_same_v<T, float16_t> ? 0x1p-11 : epsilon;
        for (std::int64_t column = 0; column < extent.columns; ++column) {
          double magnitude = std::abs(double(C(start[std::size_t(column)])));
          for (std::int64_t row = 0; row < extent.rows; ++row)
            magnitude += std::abs(double(C(dy[std::size_t(row * extent.columns + column)])));
          const double wanted = double(C(expected[std::size_t(column)]));
          const double bound = double(extent.rows + 1) * epsilon * magnitude + 2 * unit * std::abs(wanted) + 1e-300;
          CHECK(std::abs(double(C(actual[std::size_t(column)])) - wanted) <= bound);
        }
      }
}
