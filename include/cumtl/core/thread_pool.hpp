#pragma once
// The CPU backend's threads: a small pool that runs the chunks of one
// operation (the image groups of a convolution, the row blocks of a batch
// norm) on all cores, the calling thread included.
//
// Results never depend on the number of threads. An operation cuts its work
// into chunks by its shape alone, each chunk's result depends only on the
// chunk, and sums over chunks are taken afterwards in chunk order; threads
// only decide who computes a chunk. So a run on 2 cores and one on 16 give the
// same bits, and a checkpoint resumed on another machine continues the run.
//
// Waiting. Between the chunks of one step a worker spins for a few
// microseconds, since the next operation usually follows at once, and then
// sleeps on a futex (std::atomic::wait), so an idle pool does not take the
// cores from the data loader or from the rest of the program.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "cumtl/core/config.hpp"
#include "cumtl/core/error.hpp"

namespace cumtl {

class ThreadPool {
 public:
  // `threads` counts the calling thread: a pool of one runs everything on the caller.
  explicit ThreadPool(int threads) {
    CUMTL_REQUIRE(threads >= 1, "a thread pool needs at least one thread, got ", threads);
    workers_.reserve(std::size_t(threads - 1));
    for (int slot = 1; slot < threads; ++slot) workers_.emplace_back([this, slot] { serve(slot); });
  }

  ~ThreadPool() {
    stopping_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const noexcept { return int(workers_.size()) + 1; }

  // Calls body(chunk, slot) once for each chunk in [0, chunks), spread over the
  // pool's threads, and returns when all have finished; slot, in [0, size()),
  // names the thread running the chunk, for per-thread scratch memory. Which
  // thread takes which chunk varies between calls. Called from inside a body,
  // or while another thread has the pool, it runs every chunk on the caller
  // (slot 0). The first exception a body throws is rethrown here.
  template <class Body>
  void run(std::int64_t chunks, Body&& body) {
    if (chunks <= 0) return;
    if (workers_.empty() || chunks == 1 || inside_pool() || !busy_.try_lock()) {
      for (std::int64_t chunk = 0; chunk < chunks; ++chunk) body(chunk, 0);
      return;
    }
    const std::lock_guard lock(busy_, std::adopt_lock);
    job_body_ = &body;
    job_invoke_ = [](void* erased, std::int64_t chunk, int slot) {
      (*static_cast<std::remove_reference_t<Body>*>(erased))(chunk, slot);
    };
    job_chunks_ = chunks;
    job_error_ = nullptr;
    next_chunk_.store(0, std::memory_order_relaxed);
    running_.store(int(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    work(0);
    for (int running; (running = running_.load(std::memory_order_acquire)) != 0;) wait_for_change(running_, running);
    if (job_error_) std::rethrow_exception(job_error_);
  }

  // Calls body(begin, end) once for each range of at most `chunk` indices that
  // cut [0, count) in order, spread over the threads like run(); for loops
  // whose iterations are independent.
  template <class Body>
  void run_ranges(std::int64_t count, std::int64_t chunk, Body&& body) {
    run((count + chunk - 1) / chunk, [&](std::int64_t index, int) {
      const std::int64_t begin = index * chunk;
      body(begin, std::min(count, begin + chunk));
    });
  }

  // The process's pool: CUMTL_CPU_THREADS threads if that is set, else one per core.
  static ThreadPool& process() {
    static ThreadPool pool(default_thread_count());
    return pool;
  }

  static int default_thread_count() {
    if (const char* text = std::getenv("CUMTL_CPU_THREADS"); text != nullptr && *text != '\0') {
      char* end = nullptr;
      const long count = std::strtol(text, &end, 10);
      CUMTL_REQUIRE(*end == '\0' && count >= 1 && count <= 1024,
                    "CUMTL_CPU_THREADS must be a thread count from 1 to 1024, got \"", text, "\"");
      return int(count);
    }
    return int(std::max(1u, std::thread::hardware_concurrency()));
  }

 private:
  // Polling before a sleep: long enough to catch the next operation of a
  // training step, short enough not to matter to other threads.
  static constexpr std::chrono::microseconds spin_time{20};

  // Returns once `value` differs from `old`: polls for spin_time, reading the
  // clock every 64th poll only (a read costs as much as many polls), then
  // sleeps on the futex.
  template <class Value>
  static void wait_for_change(const std::atomic<Value>& value, Value old) noexcept {
    const auto spin_end = std::chrono::steady_clock::now() + spin_time;
    for (int spin = 0; value.load(std::memory_order_acquire) == old; ++spin) {
      if (spin % 64 == 0 && std::chrono::steady_clock::now() >= spin_end) {
        value.wait(old, std::memory_order_acquire);
        continue;
      }
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
    }
  }

  static bool& inside_pool() {
    thread_local bool inside = false;
    return inside;
  }

  void work(int slot) {
    inside_pool() = true;
    for (;;) {
      const std::int64_t chunk = next_chunk_.fetch_add(1, std::memory_order_relaxed);
      if (chunk >= job_chunks_) break;
      try {
        job_invoke_(job_body_, chunk, slot);
      } catch (...) {
        const std::lock_guard lock(error_mutex_);
        if (!job_error_) job_error_ = std::current_exception();
      }
    }
    inside_pool() = false;
  }

  void serve(int slot) {
    std::uint32_t seen = 0;
    for (;;) {
      wait_for_change(generation_, seen);
      seen = generation_.load(std::memory_order_acquire);
      if (stopping_.load(std::memory_order_relaxed)) return;
      work(slot);
      if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) running_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex busy_;  // held by the thread whose job the workers run
  std::atomic<std::uint32_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<std::int64_t> next_chunk_{0};
  std::atomic<int> running_{0};
  void* job_body_ = nullptr;
  void (*job_invoke_)(void*, std::int64_t, int) = nullptr;
  std::int64_t job_chunks_ = 0;
  std::exception_ptr job_error_;
  std::mutex error_mutex_;
};

}  // namespace cumtl
