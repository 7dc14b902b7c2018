// Data-parallel building blocks on the CPU: the launchers' environment, the
// rendezvous store, Gloo's collectives between ranks that are threads of this
// process, and the parameter-store and evaluation collectives built on them.
// (Ranks as processes: tests/programs/test_distributed.py.)
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <cumtl/distributed/data_parallel.hpp>
#include <cumtl/distributed/gloo.hpp>
#include <cumtl/distributed/tcp_store.hpp>
#include <cumtl/distributed/world.hpp>
#include <cumtl/models/multi_head.hpp>
#include <cumtl/ops/batchnorm.hpp>
#include <cumtl/train/evaluate.hpp>

#include "../support/shards.hpp"
#include "../support/testing.hpp"

namespace distributed = cumtl::distributed;
using namespace std::chrono_literals;

namespace {

distributed::Environment environment_of(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const std::string& name) -> std::optional<std::string> {
    const auto found = variables.find(name);
    if (found == variables.end()) return std::nullopt;
    return found->second;
  };
}

int free_port() {
  const distributed::TcpStoreServer probe(0);
  return probe.port();
}

// Runs body(communicator) on `world` threads, each one rank of a Gloo world on loopback.
void with_gloo_world(int world, const std::function<void(distributed::Communicator&)>& body) {
  const int port = free_port();
  std::vector<std::thread> ranks;
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  for (int rank = 0; rank < world; ++rank)
    ranks.emplace_back([&, rank] {
      try {
        distributed::WorldInfo info;
        info.rank = rank;
        info.world_size = info.local_world_size = world;
        info.master_port = port;
        distributed::GlooCommunicator communicator(info, {.timeout = 20s});
        body(communicator);
      } catch (const std::exception& error) {
        errors[std::size_t(rank)] = error.what();
      }
    });
  for (std::thread& rank : ranks) rank.join();
  for (int rank = 0; rank < world; ++rank) {
    INFO("rank ", rank);
    CHECK(errors[std::size_t(rank)] == "");
  }
}

}  // namespace

TEST_SUITE("distributed") {
  TEST_CASE("world: no launcher's variables is a world of one") {
    const distributed::WorldInfo world = distributed::world_from_environment(environment_of({}));
    CHECK(world.rank == 0);
    CHECK(world.world_size == 1);
    CHECK_FALSE(world.distributed());
    CHECK(world.launcher == "");
  }

  TEST_CASE("world: torchrun's, OpenMPI's and Slurm's variables") {
    const distributed::WorldInfo torchrun =
        distributed::world_from_environment(environment_of({{"RANK", "5"},
                                                            {"WORLD_SIZE", "8"},
                                                            {"LOCAL_RANK", "1"},
                                                            {"LOCAL_WORLD_SIZE", "4"},
                                                            {"MASTER_ADDR", "node0"},
                                                            {"MASTER_PORT", "1234"}}));
    CHECK(torchrun.launcher == "torchrun");
    CHECK(torchrun.rank == 5);
    CHECK(torchrun.world_size == 8);
    CHECK(torchrun.local_rank == 1);
    CHECK(torchrun.nodes == 2);
    CHECK(torchrun.master_address == "node0");
    CHECK(torchrun.master_port == 1234);
    CHECK(torchrun.rendezvous_port() == 1234);

    const distributed::WorldInfo mpi =
        distributed::world_from_environment(environment_of({{"OMPI_COMM_WORLD_RANK", "2"},
                                                            {"OMPI_COMM_WORLD_SIZE", "3"},
                                                            {"OMPI_COMM_WORLD_LOCAL_RANK", "2"},
                                                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "3"}}));
    CHECK(mpi.launcher == "OpenMPI");
    CHECK(mpi.rank == 2);
    CHECK(mpi.world_size == 3);
    CHECK(mpi.master_address == "127.0.0.1");
    CHECK(mpi.master_port == 29500);

    const distributed::WorldInfo slurm =
        distributed::world_from_environment(environment_of({{"SLURM_PROCID", "3"},
                                                            {"SLURM_STEP_NUM_TASKS", "4"},
                                                            {"SLURM_LOCALID", "1"},
                                                            {"SLURM_STEP_NUM_NODES", "2"},
                                                            {"SLURM_STEP_ID", "0"},
                                                            {"MASTER_ADDR", "n1"}}));
    CHECK(slurm.launcher == "Slurm");
    CHECK(slurm.rank == 3);
    CHECK(slurm.world_size == 4);
    CHECK(slurm.local_rank == 1);
    CHECK(slurm.nodes == 2);

    // A batch script is one process, whatever the job's task count.
    const distributed::WorldInfo script = distributed::world_from_environment(
        environment_of({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_LOCALID", "0"}}));
    CHECK_FALSE(script.distributed());
  }

  TEST_CASE("world: under torchrun's agent store, the rendezvous takes the port after MASTER_PORT") {
    const auto world_with = [](const char* agent_store, const char* port) {
      return distributed::world_from_environment(environment_of(
          {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", port}, {"TORCHELASTIC_USE_AGENT_STORE", agent_store}}));
    };
    const distributed::WorldInfo agent = world_with("True", "29400");
    CHECK(agent.master_port == 29400);
    CHECK(agent.rendezvous_port() == 29401);
    CHECK(cumtl_test::contains_all(agent.rendezvous_port_name(), {"MASTER_PORT + 1", "torchrun"}));
    // torchrun's c10d rendezvous leaves MASTER_PORT free and says False.
    const distributed::WorldInfo own = world_with("False", "29400");
    CHECK(own.rendezvous_port() == 29400);
    CHECK(own.rendezvous_port_name() == "MASTER_PORT");
    CHECK_ERROR_WITH(world_with("True", "65535"), "MASTER_PORT=65535", "no port after torchrun's store");
  }

  TEST_CASE("world: inconsistent variables are refused by name") {
    CHECK_ERROR_WITH(distributed::world_from_environment(environment_of({{"RANK", "0"}})), "WORLD_SIZE");
    CHECK_ERROR_WITH(distributed::world_from_environment(environment_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}})),
                     "RANK=2", "WORLD_SIZE=2");
    CHECK_ERROR_WITH(distributed::world_from_environment(environment_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}})),
                     "RANK='x'");
    CHECK_ERROR_WITH(distributed::world_from_environment(
                         environment_of({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"}})),
                     "MASTER_ADDR", "several nodes");
    CHECK_ERROR_WITH(distributed::world_from_environment(
                         environment_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}})),
                     "MASTER_PORT=70000");
  }

  TEST_CASE("rendezvous store: values set by one client are read by another, also when set later") {
    distributed::TcpStoreServer server(0);
    distributed::TcpStoreClient writer("127.0.0.1", server.port(), 5s);
    distributed::TcpStoreClient reader("localhost", server.port(), 5s);
    writer.set("rank0", std::string("address\0with zero", 17));
    CHECK(reader.get("rank0") == std::string("address\0with zero", 17));
    std::thread late([&] {
      std::this_thread::sleep_for(100ms);
      writer.set("late", "here");
    });
    CHECK(reader.get("late") == "here");
    late.join();
    writer.set("rank0", "");
    CHECK(reader.get("rank0") == "");
  }

  TEST_CASE("rendezvous store: a key nobody sets, a store nobody serves and a taken port fail with the reason") {
    distributed::TcpStoreServer server(0);
    distributed::TcpStoreClient client("127.0.0.1", server.port(), 300ms);
    CHECK_ERROR_WITH(client.get("never"), "'never' did not appear", "has not started, or has failed");
    CHECK_ERROR_WITH(distributed::TcpStoreServer(server.port()), "cannot listen on port", "MASTER_PORT");
    CHECK_ERROR_WITH(distributed::TcpStoreServer(server.port(), "MASTER_PORT + 1, after torchrun's own store"),
                     "(MASTER_PORT + 1, after torchrun's own store)");
    const int unused = free_port();
    CHECK_ERROR_WITH(distributed::TcpStoreClient("127.0.0.1", unused, 300ms), "could not reach rank 0", "MASTER_ADDR");
  }

  TEST_CASE("gloo: all-reduce, broadcast and barrier between three ranks") {
    with_gloo_world(3, [](distributed::Communicator& communicator) {
      const int rank = communicator.rank();
      CHECK(communicator.world_size() == 3);
      // Values whose sums are exact in every type, so any order of summation gives them.
      std::vector<float> floats(100'003);
      for (std::size_t i = 0; i < floats.size(); ++i) floats[i] = float((rank + 1) * int(i % 1000)) * 0.25f;
      communicator.all_reduce_sum(std::span<float>(floats));
      bool floats_right = true;
      for (std::size_t i = 0; i < floats.size(); ++i) floats_right &= floats[i] == float(6 * int(i % 1000)) * 0.25f;
      CHECK(floats_right);
      std::vector<double> doubles{double(rank), 1e300 * (rank == 1), -0.5};
      communicator.all_reduce_sum(std::span<double>(doubles));
      CHECK(doubles == std::vector<double>{3.0, 1e300, -1.5});
      std::vector<std::int64_t> counts{std::int64_t(1) << (40 + rank), -rank};
      communicator.all_reduce_sum(std::span<std::int64_t>(counts));
      CHECK(counts[0] == (std::int64_t(7) << 40));
      CHECK(counts[1] == -3);
      std::vector<std::byte> bytes(37, std::byte(rank));
      communicator.broadcast(bytes, 2);
      CHECK(bytes == std::vector<std::byte>(37, std::byte(2)));
      communicator.barrier();
    });
  }

  TEST_CASE("data parallel: every rank starts from rank 0's parameters and ends a step with the mean gradient") {
    with_gloo_world(2, [](distributed::Communicator& communicator) {
      cumtl::Context ctx;
      cumtl::ParameterStore store;
      cumtl::Linear<float> linear(store, "fc", 3, 2);
      store.add_buffer("running", cumtl::Shape{2}, 0.0);
      store.allocate(ctx, cumtl::ScalarType::f32);
      cumtl::Generator generator(100 + std::uint64_t(communicator.rank()));  // different on each rank
      linear.initialize(ctx, generator);
      cumtl::ops::fill(ctx, store.buffer_values(), double(communicator.rank() + 7));
      distributed::broadcast_parameters(communicator, store);
      cumtl::Generator rank0(100);
      cumtl::ParameterStore reference_store;
      cumtl::Linear<float> reference(reference_store, "fc", 3, 2);
      reference_store.allocate(ctx, cumtl::ScalarType::f32);
      reference.initialize(ctx, rank0);
      CHECK(store.values().to_vector<float>(ctx) == reference_store.values().to_vector<float>(ctx));
      CHECK(store.buffer_values().to_vector<float>(ctx) == std::vector<float>{7, 7});

      float* gradients = store.gradients().data<float>();
      for (std::int64_t i = 0; i < store.gradients().numel(); ++i)
        gradients[i] = float(i) * (communicator.rank() == 0 ? 1.0f : 3.0f);
      distributed::average_gradients(communicator, store);
      for (std::int64_t i = 0; i < store.gradients().numel(); ++i) CHECK(gradients[i] == float(2 * i));
    });
  }

  TEST_CASE("data parallel: backward says which gradients are final, from the heads' to the stem's") {
    cumtl::Context cpu;
    const cumtl::ResNetSpec spec{.blocks = {1, 2}, .widths = {3, 4}, .stem = cumtl::StemKind::small, .stem_width = 2};
    cumtl::MultiHeadModel<float> model(
        spec, {{.name = "emotion", .kind = cumtl::HeadKind::softmax, .outputs = 3, .weight = 1.0}});
    model.allocate(cpu);
    cumtl::Generator generator(3);
    model.initialize(cpu, generator);
    const cumtl::Tensor logits =
        model.forward(cpu, cumtl_test::random_tensor<float>({4, 6, 6, 3}, 1), cumtl::Phase::train);
    // Snapshots of the gradients at each report; a gradient said to be final must not change afterwards.
    std::vector<std::pair<std::int64_t, std::vector<float>>> reports;
    model.backward(cpu, cumtl_test::random_tensor<float>(logits.shape(), 2), cumtl::GradientMode::overwrite,
                   [&](std::int64_t first_final) {
                     reports.emplace_back(first_final, model.parameters().gradients().to_vector<float>(cpu));
                   });
    const std::vector<float> final_gradients = model.parameters().gradients().to_vector<float>(cpu);
    const std::int64_t total = model.parameters().parameter_count();
    REQUIRE(reports.size() == 1 + 3 + 1);               // the heads, each block, the stem
    CHECK(reports.front().first == total - 4 * 3 - 3);  // the heads' weights and biases come last
    CHECK(reports.back().first == 0);
    for (std::size_t i = 0; i < reports.size(); ++i) {
      const auto& [first_final, gradients] = reports[i];
      INFO("report ", i, ": from element ", first_final, " of ", total);
      if (i > 0) CHECK(first_final < reports[i - 1].first);
      CHECK(std::equal(gradients.begin() + first_final, gradients.end(), final_gradients.begin() + first_final));
    }
  }

  TEST_CASE("data parallel: gradient buckets start from the end, as backward finishes them, and give the mean") {
    // One engine for two ranks that hold the same gradients, which records what it is asked to average.
    class RecordingEngine final : public distributed::Communicator {
     public:
      int rank() const noexcept override { return 0; }
      int world_size() const noexcept override { return 2; }
      std::string engine() const override { return "recording"; }
      void all_reduce_sum(std::span<float> values) override {
        for (float& value : values) value += value;
      }
      void all_reduce_sum(std::span<double>) override {}
      void all_reduce_sum(std::span<std::int64_t>) override {}
      void broadcast(std::span<std::byte>, int) override {}
      void barrier() override {}
      void start_all_reduce_mean(std::span<float> values) override {
        started.emplace_back(values.data(), values.size());
        all_reduce_mean(values);
      }
      void finish_all_reduces() override { ++finished; }
      std::vector<std::pair<float*, std::size_t>> started;
      int finished = 0;
    };
    cumtl::Context cpu;
    cumtl::ParameterStore store;
    cumtl::Linear<float> first(store, "first", 5, 4), second(store, "second", 4, 3);
    store.allocate(cpu, cumtl::ScalarType::f32);
    const std::int64_t total = store.parameter_count();  // 24 + 15 = 39
    float* gradients = store.gradients().data<float>();
    for (std::int64_t i = 0; i < total; ++i) gradients[i] = float(i) - 7.5f;
    const std::vector<float> before(gradients, gradients + total);

    RecordingEngine engine;
    distributed::GradientBuckets buckets(engine, store, 10 * sizeof(float));
    CHECK(buckets.buckets() == std::vector<std::pair<std::int64_t, std::int64_t>>{{29, 39}, {19, 29}, {9, 19}, {0, 9}});
    buckets.ready(24);  // "second" is final: only the last bucket lies wholly there
    REQUIRE(engine.started.size() == 1);
    CHECK(engine.started[0] == std::pair{gradients + 29, std::size_t(10)});
    buckets.ready(24);
    CHECK(engine.started.size() == 1);
    buckets.finish();
    REQUIRE(engine.started.size() == 4);
    CHECK(engine.started[3] == std::pair{gradients, std::size_t(9)});
    CHECK(engine.finished == 1);
    // The mean of two equal ranks is every value itself.
    CHECK(std::vector<float>(gradients, gradients + total) == before);
    // The next step starts from the first bucket again.
    buckets.ready(0);
    CHECK(engine.started.size() == 8);
  }

  TEST_CASE("evaluation: the ranks' shard counts sum to the whole split's metrics") {
    const auto shard_evaluation = [](int rank) {
      cumtl::train::Evaluation evaluation;
      evaluation.emotion.emplace("emotion", 3);
      evaluation.au.emplace("au", 2);
      // rank 0: two right, one wrong; rank 1: one right, one wrong
      if (rank == 0) {
        evaluation.emotion->add(std::vector<float>{1, 0, 0, 0, 1, 0, 0, 0, 1}, std::vector<std::int32_t>{0, 1, 0});
        evaluation.au->add(std::vector<float>{0.9f, 0.1f}, std::vector<std::int8_t>{1, 1});
      } else {
        evaluation.emotion->add(std::vector<float>{0, 0, 1, 0, 1, 0}, std::vector<std::int32_t>{2, 0});
        evaluation.au->add(std::vector<float>{0.9f, 0.9f}, std::vector<std::int8_t>{0, 1});
      }
      evaluation.images = rank == 0 ? 3 : 2;
      evaluation.loss = rank == 0 ? 1.0 : 2.0;
      return evaluation;
    };
    with_gloo_world(2, [&](distributed::Communicator& communicator) {
      cumtl::train::Evaluation evaluation = shard_evaluation(communicator.rank());
      cumtl::train::sum_over_ranks(evaluation, communicator);
      CHECK(evaluation.images == 5);
      CHECK(evaluation.loss == doctest::Approx(7.0 / 5));
      CHECK(evaluation.emotion->count() == 5);
      CHECK(evaluation.emotion->accuracy() == doctest::Approx(3.0 / 5));
      CHECK(evaluation.au->counts(0).true_positives == 1);
      CHECK(evaluation.au->counts(0).false_positives == 1);
      CHECK(evaluation.au->counts(1).true_positives == 1);
      CHECK(evaluation.au->counts(1).false_negatives == 1);
    });
  }

  TEST_CASE("synchronized batch norm: three ranks' shards normalize and backpropagate like the whole batch") {
    using cumtl::Shape;
    using cumtl::Tensor;
    using cumtl_test::shard_of;
    constexpr int world = 3;
    constexpr std::int64_t channels = 5;
    const Shape batch{6, 2, 3, channels}, vector{channels};
    const auto f64 = cumtl::ScalarType::f64;
    const Tensor x = cumtl_test::random_tensor<double>(batch, 1, -1, 3);
    const Tensor residual = cumtl_test::random_tensor<double>(batch, 2);
    const Tensor dy = cumtl_test::random_tensor<double>(batch, 3);
    const Tensor gamma = cumtl_test::random_tensor<double>(vector, 4, 0.5, 1.5);
    const Tensor beta = cumtl_test::random_tensor<double>(vector, 5);
    struct Outputs {
      Tensor y, mean, invstd, running_mean, running_var, dx, dresidual, dgamma, dbeta;
    };
    // Training forward and backward of relu(bn(x) + residual), the end of a residual block.
    const auto run = [&](cumtl::Context& ctx, const Tensor& input, const Tensor& skip, const Tensor& output_gradient,
                         distributed::Communicator* ranks) {
      Outputs out{.y = Tensor::empty(input.shape(), f64),
                  .mean = Tensor::empty(vector, f64),
                  .invstd = Tensor::empty(vector, f64),
                  .running_mean = cumtl_test::random_tensor<double>(vector, 6),
                  .running_var = cumtl_test::random_tensor<double>(vector, 7, 1, 2),
                  .dx = Tensor::empty(input.shape(), f64),
                  .dresidual = Tensor::empty(input.shape(), f64),
                  .dgamma = Tensor::empty(vector, f64),
                  .dbeta = Tensor::empty(vector, f64)};
      cumtl::ops::batchnorm_forward_train(ctx, input, gamma, beta, skip, cumtl::Activation::relu, 0.1, 1e-5,
                                          out.running_mean, out.running_var, out.mean, out.invstd, out.y, ranks);
      cumtl::ops::batchnorm_backward(ctx, output_gradient, input, out.y, gamma, out.mean, out.invstd,
                                     cumtl::Activation::relu, out.dx, out.dresidual, out.dgamma, out.dbeta,
                                     cumtl::GradientMode::overwrite, ranks);
      return out;
    };
    cumtl::Context cpu;
    const Outputs whole = run(cpu, x, residual, dy, nullptr);
    const auto values = [](const Tensor& tensor) {
      cumtl::Context ctx;
      return tensor.to_vector<double>(ctx);
    };

    with_gloo_world(world, [&](distributed::Communicator& communicator) {
      const int rank = communicator.rank();
      cumtl::Context ctx;
      const Outputs own = run(ctx, shard_of<double>(x, rank, world), shard_of<double>(residual, rank, world),
                              shard_of<double>(dy, rank, world), &communicator);
      std::vector<double> dgamma = values(own.dgamma), dbeta = values(own.dbeta);
      communicator.all_reduce_sum(std::span(dgamma));
      communicator.all_reduce_sum(std::span(dbeta));
      // Double sums of 36 values in another order: a few units of 2^-53 relative to the terms. Each rank's own
      // statistics instead would be off by tenths.
      constexpr double bound = 1e-12;
      CHECK(cumtl_test::max_relative_error(values(own.mean), values(whole.mean), 1) < bound);
      CHECK(cumtl_test::max_relative_error(values(own.invstd), values(whole.invstd), 1) < bound);
      CHECK(cumtl_test::max_relative_error(values(own.running_mean), values(whole.running_mean), 1) < bound);
      CHECK(cumtl_test::max_relative_error(values(own.running_var), values(whole.running_var), 1) < bound);
      CHECK(cumtl_test::max_relative_error(values(own.y), values(shard_of<double>(whole.y, rank, world)), 1) < bound);
      CHECK(cumtl_test::max_relative_error(values(own.dx), values(shard_of<double>(whole.dx, rank, world)), 1) < bound);
      CHECK(values(own.dresidual) == values(shard_of<double>(whole.dresidual, rank, world)));
      CHECK(cumtl_test::max_relative_error(dgamma, values(whole.dgamma), 1) < bound);
      CHECK(cumtl_test::max_relative_error(dbeta, values(whole.dbeta), 1) < bound);
    });
  }

  TEST_CASE("synchronized batch norm: over a world of one it is the plain layer, bit for bit") {
    cumtl::Context cpu;
    const cumtl::Shape batch{4, 3}, vector{3};
    const cumtl::Tensor x = cumtl_test::random_tensor<float>(batch, 1);
    const cumtl::Tensor gamma = cumtl_test::random_tensor<float>(vector, 2),
                        beta = cumtl_test::random_tensor<float>(vector, 3);
    const auto forward = [&](distributed::Communicator* ranks) {
      cumtl::Tensor running_mean = cumtl::Tensor::zeros(vector, cumtl::ScalarType::f32);
      cumtl::Tensor running_var = cumtl::Tensor::zeros(vector, cumtl::ScalarType::f32);
      cumtl::Tensor mean = cumtl::Tensor::empty(vector, cumtl::ScalarType::f32);
      cumtl::Tensor invstd = cumtl::Tensor::empty(vector, cumtl::ScalarType::f32);
      cumtl::Tensor y = cumtl::Tensor::empty(batch, cumtl::ScalarType::f32);
      cumtl::ops::batchnorm_forward_train(cpu, x, gamma, beta, cumtl::Tensor(), cumtl::Activation::none, 0.1, 1e-5,
                                          running_mean, running_var, mean, invstd, y, ranks);
      return y.to_vector<float>(cpu);
    };
    distributed::SingleProcess alone;
    CHECK(forward(&alone) == forward(nullptr));
  }

  TEST_CASE("gloo: a rank that leaves makes the others' next collective fail, naming them") {
    const int port = free_port();
    std::string survivor_error;
    std::chrono::duration<double> waited{};
    std::thread leaver([&] {
      distributed::WorldInfo info{.rank = 1, .world_size = 2, .local_world_size = 2, .master_port = port};
      distributed::GlooCommunicator communicator(info, {.timeout = 30s});
    });  // destroyed at once: its sockets close
    std::thread survivor([&] {
      distributed::WorldInfo info{.rank = 0, .world_size = 2, .local_world_size = 2, .master_port = port};
      distributed::GlooCommunicator communicator(info, {.timeout = 30s});
      std::this_thread::sleep_for(200ms);
      const auto started = std::chrono::steady_clock::now();
      survivor_error = cumtl_test::error_message([&] {
        std::vector<float> values(10);
        communicator.all_reduce_sum(std::span<float>(values));
      });
      waited = std::chrono::steady_clock::now() - started;
    });
    leaver.join();
    survivor.join();
    INFO(survivor_error);
    CHECK(cumtl_test::contains_all(survivor_error, {"rank 0 of 2", "all-reduce failed", "another rank died"}));
    CHECK(waited.count() < 10);  // the closed sockets, not the 30 s timeout
  }
}
