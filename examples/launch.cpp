// cumtl-launch: starts the ranks of a data-parallel job on this node, the way
// torchrun does, and watches them (docs/distributed.md).
//
//   cumtl-launch --nproc-per-node N [--nnodes M --node-rank K --master-addr A --master-port P] -- PROGRAM ARGS...
//
// Each rank is PROGRAM ARGS... with torchrun's variables set: RANK, LOCAL_RANK,
// WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT. When a
// rank fails, the others are stopped (SIGTERM, then SIGKILL after --grace
// seconds) and cumtl-launch exits with that rank's status (128 + the signal
// when a signal ended it). Ctrl-C reaches every rank at once (they share the
// terminal), and they stop together at one step after a checkpoint; ranks
// that exit 130 that way are not failures.
//
// Exit status: 0 when every rank exited 0; 2 on a usage error; 130 when the
// ranks stopped on Ctrl-C; otherwise the first failed rank's status.
#include <CLI/CLI.hpp>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "program.hpp"

namespace {

volatile sig_atomic_t termination_signal = 0;

extern "C" void on_termination(int signal_number) {
  termination_signal = signal_number;
}

// A TCP port no process listens on now, for a one-node job that names none.
int free_port() {
  const int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  if (probe < 0) return 29500;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t size = sizeof address;
  int port = 29500;
  if (::bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(probe, reinterpret_cast<sockaddr*>(&address), &size) == 0)
    port = ntohs(address.sin_port);
  ::close(probe);
  return port;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int number = WTERMSIG(status);
    return "was killed by signal " + std::to_string(number) + " (" + strsignal(number) + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

struct Rank {
  int rank = 0;
  pid_t pid = -1;
  std::optional<int> status;  // set once it has ended
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Starts the ranks of a data-parallel job on this node and stops them all when one fails.",
               "cumtl-launch"};
  int processes = 0, nodes = 1, node_rank = 0, port = 0;
  double grace = 10;
  std::string address = "127.0.0.1";
  std::vector<std::string> command;
  app.add_option("--nproc-per-node", processes, "Ranks to start on this node (one per GPU, or CPU ranks)")
      ->required()
      ->check(CLI::PositiveNumber);
  app.add_option("--nnodes", nodes, "Nodes in the job")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--node-rank", node_rank, "This node's index, 0 to nnodes - 1")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--master-addr", address, "Address of node 0, where rank 0 serves the rendezvous")
      ->capture_default_str();
  app.add_option("--master-port", port, "Port of the rendezvous (default: a free port on one node, else 29500)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--grace", grace, "Seconds a rank has to exit after SIGTERM before SIGKILL")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("program", command, "The program and its arguments, after --")->required();
  if (const std::optional<int> status = parse_command_line(app, argc, argv)) return *status;
  if (node_rank >= nodes) {
    std::fprintf(stderr, "cumtl-launch: --node-rank %d is not below --nnodes %d\n", node_rank, nodes);
    return 2;
  }
  if (port == 0) {
    if (nodes > 1) {
      port = 29500;
    } else {
      port = free_port();
    }
  }

  // Ctrl-C goes to the whole foreground process group: the ranks handle it;
  // this process waits for them. SIGTERM and SIGHUP are passed on.
  std::signal(SIGINT, SIG_IGN);
  struct sigaction action {};
  action.sa_handler = on_termination;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGHUP, &action, nullptr);

  const int world = nodes * processes;
  std::vector<Rank> ranks;
  for (int local = 0; local < processes; ++local) {
    Rank rank{.rank = node_rank * processes + local};
    rank.pid = ::fork();
    if (rank.pid < 0) {
      std::fprintf(stderr, "cumtl-launch: fork failed: %s\n", std::strerror(errno));
      for (const Rank& started : ranks) ::kill(started.pid, SIGKILL);
      return 1;
    }
    if (rank.pid == 0) {
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
      std::signal(SIGHUP, SIG_DFL);
      const auto set = [](const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); };
      set("RANK", std::to_string(rank.rank));
      set("LOCAL_RANK", std::to_string(local));
      set("WORLD_SIZE", std::to_string(world));
      set("LOCAL_WORLD_SIZE", std::to_string(processes));
      set("GROUP_RANK", std::to_string(node_rank));
      set("MASTER_ADDR", address);
      set("MASTER_PORT", std::to_string(port));
      // The port is this launcher's choice, free: no torchrun agent around it holds it.
      ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
      std::vector<char*> arguments;
      for (std::string& argument : command) arguments.push_back(argument.data());
      arguments.push_back(nullptr);
      ::execvp(arguments[0], arguments.data());
      std::fprintf(stderr, "cumtl-launch: cannot run '%s': %s\n", arguments[0], std::strerror(errno));
      ::_exit(127);
    }
    ranks.push_back(rank);
  }

  std::optional<int> failure;  // the exit status of the first rank that failed
  std::optional<std::chrono::steady_clock::time_point> kill_at;
  const auto stop_others = [&](const char* why) {
    if (kill_at) return;
    std::fprintf(stderr, "cumtl-launch: %s; stopping the other ranks\n", why);
    for (const Rank& rank : ranks)
      if (!rank.status) ::kill(rank.pid, SIGTERM);
    kill_at = std::chrono::steady_clock::now() +
              std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(grace));
  };
  std::size_t running = ranks.size();
  bool interrupted = false;
  while (running > 0) {
    if (termination_signal != 0 && !kill_at) {
      const std::string why = std::string("received ") + strsignal(termination_signal);
      stop_others(why.c_str());
      failure = failure.value_or(128 + termination_signal);
    }
    if (kill_at && std::chrono::steady_clock::now() >= *kill_at) {
      for (const Rank& rank : ranks)
        if (!rank.status) ::kill(rank.pid, SIGKILL);
    }
    // Every rank that has ended, so that ranks which ended together are judged together.
    std::vector<Rank*> failed;
    for (int status = 0;;) {
      const pid_t ended = ::waitpid(-1, &status, WNOHANG);
      if (ended <= 0) break;
      for (Rank& rank : ranks) {
        if (rank.pid != ended) continue;
        rank.status = status;
        --running;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 130) interrupted = true;
        if (!(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 130))) failed.push_back(&rank);
      }
    }
    if (failed.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (kill_at) continue;  // already stopping: these are the ranks that were told to
    // A rank killed by a signal is the cause, ranks that exit with an error on losing it the effect, in whichever
    // order the kernel hands them over.
    const auto cause =
        std::find_if(failed.begin(), failed.end(), [](const Rank* rank) { return WIFSIGNALED(*rank->status); });
    const Rank& culprit = **(cause != failed.end() ? cause : failed.begin());
    failure = exit_code(*culprit.status);
    const std::string why = "rank " + std::to_string(culprit.rank) + " (pid " + std::to_string(culprit.pid) + ") " +
                            describe(*culprit.status);
    stop_others(why.c_str());
  }
  if (failure) return *failure;
  return interrupted ? 130 : 0;
}
