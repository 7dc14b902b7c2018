#pragma once
// Where this process stands in a data-parallel job: its rank, the world size,
// its rank on its node, and where rank 0 waits for the others — read from the
// environment the usual launchers set, so torchrun, cumtl-launch, mpirun and
// srun all start cumtl the same way:
//
//   torchrun, cumtl-launch   RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE
//   OpenMPI's mpirun         OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE
//   Slurm's srun             SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID
//   every launcher           MASTER_ADDR (default 127.0.0.1 when every rank is
//                            on one node), MASTER_PORT (default 29500)
//
// Rank 0 serves cumtl's rendezvous at MASTER_PORT, except under torchrun's
// agent store: torchrun's default (static) rendezvous keeps its own store
// listening at MASTER_PORT and says so to its workers with
// TORCHELASTIC_USE_AGENT_STORE=True; cumtl then takes the port after it.
//
// Slurm's variables count only inside a job step (SLURM_STEP_ID set): a batch
// script itself is one process even when the job has many tasks. No variable
// set means a world of one, today's single-process run.

#include <charconv>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cumtl/core/error.hpp"

namespace cumtl::distributed {

struct WorldInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // ranks on this node (on Slurm: the world's share per node)
  int nodes = 1;
  std::string master_address = "127.0.0.1";
  int master_port = 29500;
  std::string launcher;                        // "torchrun", "OpenMPI", "Slurm"; empty for a world of one
  bool launcher_store_at_master_port = false;  // TORCHELASTIC_USE_AGENT_STORE=True

  bool distributed() const noexcept { return world_size > 1; }
  // Where rank 0 serves the rendezvous, and what messages call that port.
  int rendezvous_port() const noexcept { return launcher_store_at_master_port ? master_port + 1 : master_port; }
  std::string rendezvous_port_name() const {
    return launcher_store_at_master_port ? "MASTER_PORT + 1, after torchrun's own store" : "MASTER_PORT";
  }
};

// Looks a variable up; nothing when it is unset.
using Environment = std::function<std::optional<std::string>(const std::string&)>;

inline Environment process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* value = std::getenv(name.c_str())) return std::string(value);
    return std::nullopt;
  };
}

namespace detail {

inline int parse_count(const Environment& environment, const std::string& name, int minimum) {
  const std::optional<std::string> text = environment(name);
  CUMTL_REQUIRE(text.has_value(), "the environment sets some of a launcher's variables but not ", name);
  int value = 0;
  const char* end = text->data() + text->size();
  const auto [stop, error] = std::from_chars(text->data(), end, value);
  CUMTL_REQUIRE(error == std::errc() && stop == end && value >= minimum, name, "='", *text,
                "' is not an integer >= ", minimum);
  return value;
}

}  // namespace detail

inline WorldInfo world_from_environment(const Environment& environment = process_environment()) {
  struct Convention {
    const char* launcher;
    const char* rank;
    const char* size;
    const char* local_rank;
    const char* local_size;  // nullptr: not set by this launcher
    const char* nodes;       // nullptr: world size / local world size
    const char* marker;      // a variable that must also be set; nullptr: none
  };
  static constexpr Convention conventions[] = {
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", nullptr, nullptr},
      {"OpenMPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
       "OMPI_COMM_WORLD_LOCAL_SIZE", nullptr, nullptr},
      {"Slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", nullptr, "SLURM_STEP_NUM_NODES",
       "SLURM_STEP_ID"},
  };
  WorldInfo world;
  for (const Convention& convention : conventions) {
    if (!environment(convention.rank) && !environment(convention.size)) continue;
    if (convention.marker && !environment(convention.marker)) continue;
    world.launcher = convention.launcher;
    world.world_size = detail::parse_count(environment, convention.size, 1);
    world.rank = detail::parse_count(environment, convention.rank, 0);
    CUMTL_REQUIRE(world.rank < world.world_size, convention.rank, "=", world.rank, " is not below ", convention.size,
                  "=", world.world_size);
    world.local_rank =
        environment(convention.local_rank) ? detail::parse_count(environment, convention.local_rank, 0) : world.rank;
    if (convention.nodes) {
      world.nodes = detail::parse_count(environment, convention.nodes, 1);
      world.local_world_size = (world.world_size + world.nodes - 1) / world.nodes;
    } else {
      world.local_world_size = environment(convention.local_size)
                                   ? detail::parse_count(environment, convention.local_size, 1)
                                   : world.world_size;
      world.nodes = (world.world_size + world.local_world_size - 1) / world.local_world_size;
    }
    CUMTL_REQUIRE(world.local_rank < world.local_world_size, convention.local_rank, "=", world.local_rank,
                  " is not below the node's ", world.local_world_size, " ranks");
    break;
  }
  if (const std::optional<std::string> address = environment("MASTER_ADDR")) {
    CUMTL_REQUIRE(!address->empty(), "MASTER_ADDR is set but empty");
    world.master_address = *address;
  } else {
    CUMTL_REQUIRE(world.nodes == 1, "a job of ", world.world_size, " ranks over ",
                  "several nodes needs MASTER_ADDR: the address of the node that runs rank 0");
  }
  if (environment("MASTER_PORT")) {
    world.master_port = detail::parse_count(environment, "MASTER_PORT", 1);
    CUMTL_REQUIRE(world.master_port <= 65535, "MASTER_PORT=", world.master_port, " is not a TCP port");
  }
  if (const std::optional<std::string> agent_store = environment("TORCHELASTIC_USE_AGENT_STORE")) {
    world.launcher_store_at_master_port = *agent_store == "True" || *agent_store == "true" || *agent_store == "1";
    CUMTL_REQUIRE(!world.launcher_store_at_master_port || world.master_port < 65535, "MASTER_PORT=", world.master_port,
                  " leaves no port after torchrun's store (TORCHELASTIC_USE_AGENT_STORE=", *agent_store,
                  ") for cumtl's rendezvous");
  }
  return world;
}

}  // namespace cumtl::distributed
