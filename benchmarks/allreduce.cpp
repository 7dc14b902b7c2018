// cumtl-bench-allreduce: the float all-reduce of data-parallel training, timed
// per message size on an engine cumtl-train uses: Gloo on host memory (CPU
// ranks) or, in a build with NCCL, NCCL on GPU memory (one GPU per rank, GPU
// LOCAL_RANK). Started by a launcher, one process per rank:
//
//   cumtl-launch --nproc-per-node 2 -- cumtl-bench-allreduce [--engine gloo|nccl] [--max-bytes 67108864] [--seconds
//   0.5]
//
// Rank 0 prints one row per size, with bandwidths as nccl-tests defines them:
// algorithm bandwidth = bytes / time; bus bandwidth = algorithm bandwidth ×
// 2(n − 1)/n, the rate each link must carry in a ring all-reduce, comparable
// across world sizes and with the hardware's link rate. Each size runs for
// at least --seconds after one warm-up call; the time is the mean over calls,
// the slowest rank's (every call ends when the slowest rank has its sum).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <cumtl/core/tensor.hpp>
#include <cumtl/distributed/gloo.hpp>
#if CUMTL_HAVE_NCCL
#include <cumtl/distributed/nccl.hpp>
#endif

int main(int argc, char** argv) {
  CLI::App app{"Times the float all-reduce between the ranks a launcher started.", "cumtl-bench-allreduce"};
  std::int64_t max_bytes = 64 << 20;
  double seconds = 0.5;
  app.add_option("--max-bytes", max_bytes, "Largest message, in bytes (sizes go up by 4x from 4 KiB)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(4096), std::int64_t(1) << 32));
  app.add_option("--seconds", seconds, "Time spent on each size")->capture_default_str()->check(CLI::PositiveNumber);
  std::string engine_name = "gloo";
  app.add_option("--engine", engine_name, "gloo (host memory) or nccl (GPU memory, in a build with NCCL)")
      ->capture_default_str()
      ->check(CLI::IsMember({"gloo", "nccl"}));
  CLI11_PARSE(app, argc, argv);
  try {
    const cumtl::distributed::WorldInfo world = cumtl::distributed::world_from_environment();
    // Gloo also carries the loop's control and the timings, on the host.
    cumtl::distributed::GlooCommunicator communicator(world);
    std::unique_ptr<cumtl::distributed::Communicator> nccl;
    if (engine_name == "nccl") {
#if CUMTL_HAVE_NCCL
      nccl = std::make_unique<cumtl::distributed::NcclCommunicator>(
          communicator, cumtl::Context::default_for(cumtl::Device::cuda(world.local_rank)));
#else
      CUMTL_FAIL("--engine nccl: this cumtl-bench-allreduce was built without NCCL (CUMTL_NCCL)");
#endif
    }
    cumtl::distributed::Communicator& engine = nccl ? *nccl : communicator;
    cumtl::Context& ctx = cumtl::Context::default_for(engine.memory());
    const int ranks = communicator.world_size();
    if (communicator.is_root())
      std::printf("# %s on %s, %d ranks on %d node(s)\n%12s %12s %14s %14s\n", engine.engine().c_str(),
                  engine.memory().str().c_str(), ranks, world.nodes, "bytes", "time_us", "algbw_GB/s", "busbw_GB/s");
    for (std::int64_t bytes = 4096; bytes <= max_bytes; bytes *= 4) {
      // Zeros: sums that stay finite.
      cumtl::Tensor buffer =
          cumtl::Tensor::zeros(ctx, cumtl::Shape{bytes / std::int64_t(sizeof(float))}, cumtl::ScalarType::f32);
      const std::span<float> values(buffer.data<float>(), std::size_t(buffer.numel()));
      engine.all_reduce_sum(values);  // warm-up: buffers, connections
      communicator.barrier();
      // Every rank runs the same number of calls: rank 0 decides from its clock and tells the others.
      std::int64_t calls = 0;
      const auto started = std::chrono::steady_clock::now();
      for (std::int64_t more = 1; more > 0;) {
        engine.all_reduce_sum(values);
        ++calls;
        more = communicator.is_root() &&
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() < seconds;
        communicator.broadcast(std::as_writable_bytes(std::span(&more, 1)), 0);
      }
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      // The broadcast per call is a few bytes; it is timed with the all-reduce and makes small sizes look slower.
      std::vector<double> times(std::size_t(ranks), 0.0);
      times[std::size_t(communicator.rank())] = elapsed;
      communicator.all_reduce_sum(std::span<double>(times));
      const double slowest = *std::max_element(times.begin(), times.end());
      const double per_call = slowest / double(calls);
      const double algorithm_bandwidth = double(bytes) / per_call / 1e9;
      const double bus_bandwidth = algorithm_bandwidth * 2.0 * (ranks - 1) / ranks;
      if (communicator.is_root())
        std::printf("%12lld %12.1f %14.3f %14.3f\n", static_cast<long long>(bytes), per_call * 1e6, algorithm_bandwidth,
                    bus_bandwidth);
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cumtl-bench-allreduce: error: %s\n", error.what());
    return 1;
  }
}
