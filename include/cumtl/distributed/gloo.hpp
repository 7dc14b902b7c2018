#pragma once
// GlooCommunicator: the CPU engine, on Gloo (the library behind PyTorch's CPU
// collectives) over TCP. A program that includes this header links Gloo
// (CMake: the cumtl::gloo target, or `-lgloo`).
//
// Rendezvous: rank 0 serves a TcpStoreServer at MASTER_ADDR:MASTER_PORT (the
// port after it where torchrun's agent holds that one, world.hpp); every
// rank publishes its Gloo endpoints there and connects to every other rank
// (a full mesh); the store closes once all are connected. Every collective
// after that runs on Gloo's sockets under the communicator's timeout: a rank
// that dies closes its sockets and the others fail at once; a rank that hangs
// makes them fail after the timeout.
//
// Which interface carries the traffic: GLOO_SOCKET_IFNAME (as in PyTorch) if
// set; else the loopback when every rank is on one node; else this host's name.

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include "cumtl/core/error.hpp"
#include "cumtl/distributed/communicator.hpp"
#include "cumtl/distributed/tcp_store.hpp"
#include "cumtl/distributed/world.hpp"

namespace cumtl::distributed {

namespace detail {

// Gloo's view of the rendezvous store.
class GlooStore final : public gloo::rendezvous::Store {
 public:
  explicit GlooStore(TcpStoreClient& client) : client_(client) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    client_.set(key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string value = client_.get(key);
    return std::vector<char>(value.begin(), value.end());
  }
  void wait(const std::vector<std::string>& keys) override {
    for (const std::string& key : keys) (void)client_.get(key);
  }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds&) override { wait(keys); }

 private:
  TcpStoreClient& client_;
};

}  // namespace detail

struct GlooOptions {
  // How long any collective (and the rendezvous) may wait for the other ranks.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  // The network interface (e.g. "eth0"); empty: GLOO_SOCKET_IFNAME, else chosen as above.
  std::string interface;
};

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const WorldInfo& world, GlooOptions options = {})
      : rank_(world.rank), world_size_(world.world_size), timeout_(options.timeout) {
    CUMTL_REQUIRE(world.world_size >= 1 && world.rank >= 0 && world.rank < world.world_size, "rank ", world.rank,
                  " is outside a world of ", world.world_size);
    std::optional<TcpStoreServer> server;
    if (world.rank == 0) server.emplace(world.rendezvous_port(), world.rendezvous_port_name());
    try {
      TcpStoreClient client(world.master_address, world.rendezvous_port(), timeout_);
      detail::GlooStore store(client);
      gloo::transport::tcp::attr attributes;
      if (!options.interface.empty()) {
        attributes.iface = options.interface;
      } else if (const char* name = std::getenv("GLOO_SOCKET_IFNAME"); name && *name) {
        attributes.iface = name;
      } else if (world.nodes == 1) {
        attributes.hostname = "127.0.0.1";
      } else {
        std::array<char, 256> host{};
        CUMTL_REQUIRE(::gethostname(host.data(), host.size() - 1) == 0, "gethostname failed");
        attributes.hostname = host.data();
      }
      std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attributes);
      auto context = std::make_shared<gloo::rendezvous::Context>(world.rank, world.world_size);
      context->setTimeout(timeout_);
      context->connectFullMesh(store, device);
      context_ = std::move(context);
      // Rank 0's store must outlive every rank's reads of it.
      barrier();
    } catch (const cumtl::Error&) {
      throw;
    } catch (const std::exception& error) {
      CUMTL_FAIL("rank ", rank_, " of ", world_size_, " could not connect to the other ranks: ", error.what());
    }
  }

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return world_size_; }
  std::string engine() const override { return "gloo over TCP"; }

  void all_reduce_sum(std::span<float> values) override { all_reduce(values); }
  void all_reduce_sum(std::span<double> values) override { all_reduce(values); }
  void all_reduce_sum(std::span<std::int64_t> values) override { all_reduce(values); }

  void broadcast(std::span<std::byte> bytes, int root) override {
    CUMTL_REQUIRE(root >= 0 && root < world_size_, "broadcast from rank ", root, " in a world of ", world_size_);
    if (bytes.empty()) return;
    guarded("broadcast", [&] {
      gloo::BroadcastOptions options(context_);
      options.setOutput(reinterpret_cast<std::uint8_t*>(bytes.data()), bytes.size());
      options.setRoot(root);
      options.setTag(next_tag());
      gloo::broadcast(options);
    });
  }

  void barrier() override {
    guarded("barrier", [&] {
      gloo::BarrierOptions options(context_);
      options.setTag(next_tag());
      gloo::barrier(options);
    });
  }

 private:
  template <class T>
  void all_reduce(std::span<T> values) {
    if (values.empty()) return;
    guarded("all-reduce", [&] {
      gloo::AllreduceOptions options(context_);
      options.setOutput(values.data(), values.size());
      options.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, std::size_t)>(&gloo::sum<T>));
      options.setTag(next_tag());
      gloo::allreduce(options);
    });
  }

  std::uint32_t next_tag() noexcept { return tag_++; }

  template <class Operation>
  void guarded(const char* what, Operation&& operation) {
    try {
      operation();
    } catch (const std::exception& error) {
      CUMTL_FAIL("rank ", rank_, " of ", world_size_, ": ", what, " failed — another rank died or did not reach it ",
                 "within ", std::chrono::duration<double>(timeout_).count(), " s (", error.what(), ")");
    }
  }

  int rank_, world_size_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<gloo::Context> context_;
  std::uint32_t tag_ = 0;
};

}  // namespace cumtl::distributed
