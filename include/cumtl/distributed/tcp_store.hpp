#pragma once
// The rendezvous key-value store: rank 0 serves it at MASTER_ADDR:MASTER_PORT,
// every rank (rank 0 too) is a client, and the ranks publish and read the
// addresses their collective engine needs to connect (Gloo's endpoints, NCCL's
// unique id). Only rendezvous goes through it — a few hundred bytes per rank at
// start — never a tensor. It is the role PyTorch's TCPStore plays for
// torchrun; Gloo ships only file- and Redis-backed stores, and a job over
// several nodes has neither a shared folder nor a Redis server for granted.
//
// Wire format, one request per message, integers little-endian:
//   set: 'S' u32 key_size key u32 value_size value   -> 'K'
//   get: 'G' u32 key_size key                        -> 'Y' u32 value_size value | 'N'
// A get of a key not yet set answers 'N'; the client asks again until its timeout.

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cumtl/core/error.hpp"

namespace cumtl::distributed {

namespace detail {

inline std::string errno_text() {
  return std::strerror(errno);
}

// Sends all of `size` bytes; false when the peer is gone.
inline bool send_all(int socket, const void* data, std::size_t size) {
  const auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t sent = ::send(socket, bytes, size, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    bytes += sent;
    size -= std::size_t(sent);
  }
  return true;
}

// Receives exactly `size` bytes; false on end of stream, an error or the socket's timeout.
inline bool receive_all(int socket, void* data, std::size_t size) {
  auto* bytes = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t got = ::recv(socket, bytes, size, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    bytes += got;
    size -= std::size_t(got);
  }
  return true;
}

inline void put_u32(std::vector<char>& message, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) message.push_back(char((value >> (8 * i)) & 0xFF));
}

inline bool receive_u32(int socket, std::uint32_t& value) {
  unsigned char bytes[4];
  if (!receive_all(socket, bytes, 4)) return false;
  value = std::uint32_t(bytes[0]) | std::uint32_t(bytes[1]) << 8 | std::uint32_t(bytes[2]) << 16 |
          std::uint32_t(bytes[3]) << 24;
  return true;
}

inline bool receive_string(int socket, std::string& text, std::uint32_t limit) {
  std::uint32_t size = 0;
  if (!receive_u32(socket, size) || size > limit) return false;
  text.resize(size);
  return receive_all(socket, text.data(), size);
}

// Keys and values are rendezvous addresses; anything larger is not a cumtl rank.
inline constexpr std::uint32_t max_store_entry = 1u << 20;

}  // namespace detail

class TcpStoreServer {
 public:
  // Listens on every interface at `port` (0: a free port, then port() says which); errors call the port
  // `port_name` (the variable it came from).
  explicit TcpStoreServer(int port, std::string_view port_name = "MASTER_PORT") : port_(port) {
    listener_ = ::socket(AF_INET6, SOCK_STREAM, 0);
    const bool ipv6 = listener_ >= 0;
    if (!ipv6) listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    CUMTL_REQUIRE(listener_ >= 0, "cannot open a socket for the rendezvous: ", detail::errno_text());
    const int yes = 1, no = 0;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    int bound = -1;
    if (ipv6) {
      ::setsockopt(listener_, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no);  // IPv4 peers too
      sockaddr_in6 address{};
      address.sin6_family = AF_INET6;
      address.sin6_addr = in6addr_any;
      address.sin6_port = htons(std::uint16_t(port));
      bound = ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    } else {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_ANY);
      address.sin_port = htons(std::uint16_t(port));
      bound = ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    }
    if (bound != 0 || ::listen(listener_, 128) != 0) {
      const std::string reason = detail::errno_text();
      ::close(listener_);
      CUMTL_FAIL("rank 0 cannot listen on port ", port, " for the other ranks (", port_name, "): ", reason,
                 "; another job may hold it — choose another port");
    }
    sockaddr_storage bound_address{};
    socklen_t size = sizeof bound_address;
    if (::getsockname(listener_, reinterpret_cast<sockaddr*>(&bound_address), &size) == 0)
      port_ = ntohs(bound_address.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound_address)->sin6_port
                                                        : reinterpret_cast<sockaddr_in*>(&bound_address)->sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  ~TcpStoreServer() {
    stopping_.store(true);
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    ::close(listener_);
    std::vector<std::thread> workers;
    {
      const std::lock_guard lock(mutex_);
      for (int connection : connections_) ::shutdown(connection, SHUT_RDWR);
      workers.swap(workers_);
    }
    for (std::thread& worker : workers) worker.join();
    for (int connection : connections_) ::close(connection);
  }

  int port() const noexcept { return port_; }

 private:
  void accept_loop() {
    while (!stopping_.load()) {
      pollfd waiting{listener_, POLLIN, 0};
      if (::poll(&waiting, 1, 100) <= 0) continue;
      const int connection = ::accept(listener_, nullptr, nullptr);
      if (connection < 0) continue;
      const std::lock_guard lock(mutex_);
      if (stopping_.load()) {
        ::close(connection);
        break;
      }
      connections_.push_back(connection);
      workers_.emplace_back([this, connection] { serve(connection); });
    }
  }

  // Answers one client's requests until it disconnects or sends garbage.
  void serve(int connection) {
    for (;;) {
      char operation = 0;
      std::string key;
      if (!detail::receive_all(connection, &operation, 1) ||
          !detail::receive_string(connection, key, detail::max_store_entry))
        return;
      if (operation == 'S') {
        std::string value;
        if (!detail::receive_string(connection, value, detail::max_store_entry)) return;
        {
          const std::lock_guard lock(mutex_);
          entries_[key] = std::move(value);
        }
        if (!detail::send_all(connection, "K", 1)) return;
      } else if (operation == 'G') {
        std::vector<char> reply;
        {
          const std::lock_guard lock(mutex_);
          const auto found = entries_.find(key);
          if (found == entries_.end()) {
            reply.push_back('N');
          } else {
            reply.push_back('Y');
            detail::put_u32(reply, std::uint32_t(found->second.size()));
            reply.insert(reply.end(), found->second.begin(), found->second.end());
          }
        }
        if (!detail::send_all(connection, reply.data(), reply.size())) return;
      } else {
        return;
      }
    }
  }

  int port_;
  int listener_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<int> connections_;
  std::vector<std::thread> workers_;
  std::map<std::string, std::string> entries_;
};

class TcpStoreClient {
 public:
  // Connects to the store at address:port, retrying until `timeout` (rank 0 may start last).
  TcpStoreClient(std::string address, int port, std::chrono::milliseconds timeout)
      : address_(std::move(address)), port_(port), timeout_(timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    std::string last_error = "no answer";
    while (socket_ < 0) {
      socket_ = try_connect(last_error);
      if (socket_ >= 0) break;
      CUMTL_REQUIRE(std::chrono::steady_clock::now() < deadline, "could not reach rank 0's rendezvous at ", where(),
                    " within ", std::chrono::duration<double>(timeout_).count(), " s: ", last_error,
                    " (is MASTER_ADDR right, and has rank 0 started?)");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    timeval limit{};
    limit.tv_sec = timeout_.count() / 1000;
    limit.tv_usec = (timeout_.count() % 1000) * 1000;
    ::setsockopt(socket_, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    ::setsockopt(socket_, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    const int yes = 1;
    ::setsockopt(socket_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  }

  TcpStoreClient(const TcpStoreClient&) = delete;
  TcpStoreClient& operator=(const TcpStoreClient&) = delete;
  ~TcpStoreClient() {
    if (socket_ >= 0) ::close(socket_);
  }

  void set(const std::string& key, const std::string& value) {
    std::vector<char> message{'S'};
    append(message, key);
    append(message, value);
    char reply = 0;
    CUMTL_REQUIRE(detail::send_all(socket_, message.data(), message.size()) &&
                      detail::receive_all(socket_, &reply, 1) && reply == 'K',
                  "the rendezvous at ", where(), " stopped answering while storing '", key, "'");
  }

  // The value of `key`, once some rank has set it; throws after the timeout.
  std::string get(const std::string& key) {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    std::vector<char> message{'G'};
    append(message, key);
    for (auto pause = std::chrono::milliseconds(1);; pause = std::min(pause * 2, std::chrono::milliseconds(50))) {
      char reply = 0;
      CUMTL_REQUIRE(
          detail::send_all(socket_, message.data(), message.size()) && detail::receive_all(socket_, &reply, 1),
          "the rendezvous at ", where(), " stopped answering while reading '", key, "'");
      if (reply == 'Y') {
        std::string value;
        CUMTL_REQUIRE(detail::receive_string(socket_, value, detail::max_store_entry), "the rendezvous at ", where(),
                      " sent a broken answer for '", key, "'");
        return value;
      }
      CUMTL_REQUIRE(reply == 'N', "the rendezvous at ", where(), " sent a broken answer for '", key, "'");
      CUMTL_REQUIRE(std::chrono::steady_clock::now() < deadline, "'", key, "' did not appear in the rendezvous at ",
                    where(), " within ", std::chrono::duration<double>(timeout_).count(),
                    " s: a rank of the job has not started, or has failed");
      std::this_thread::sleep_for(pause);
    }
  }

  std::chrono::milliseconds timeout() const noexcept { return timeout_; }

 private:
  std::string where() const { return address_ + ":" + std::to_string(port_); }

  static void append(std::vector<char>& message, const std::string& text) {
    detail::put_u32(message, std::uint32_t(text.size()));
    message.insert(message.end(), text.begin(), text.end());
  }

  int try_connect(std::string& error) const {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int status = ::getaddrinfo(address_.c_str(), std::to_string(port_).c_str(), &hints, &found);
    if (status != 0) {
      error = std::string("cannot resolve '") + address_ + "': " + ::gai_strerror(status);
      return -1;
    }
    int connected = -1;
    for (addrinfo* candidate = found; candidate && connected < 0; candidate = candidate->ai_next) {
      const int s = ::socket(candidate->ai_family, candidate->ai_socktype, candidate->ai_protocol);
      if (s < 0) continue;
      if (::connect(s, candidate->ai_addr, candidate->ai_addrlen) == 0) {
        connected = s;
      } else {
        error = detail::errno_text();
        ::close(s);
      }
    }
    ::freeaddrinfo(found);
    return connected;
  }

  std::string address_;
  int port_;
  std::chrono::milliseconds timeout_;
  int socket_ = -1;
};

}  // namespace cumtl::distributed
