#pragma once
// CUDA's execution model on the CPU, so that cumtl's own kernels, compiled by
// the host compiler, run where there is no GPU (tests/emulation).
//
// A launch runs its blocks one after another. A block's threads are fibers
// (each with its own stack) on the calling thread, switched only where a GPU
// thread may wait for others: at __syncthreads() and at a warp shuffle. So
// barriers, shared memory and shuffles behave as a GPU's do, the schedule is
// the same on every run, and a barrier some threads never reach is reported
// at once, naming the kernel and where each thread waits (a GPU would hang).
// Under ThreadSanitizer every thread of a block is a fiber of its own, ordered
// with the others only by the barriers and shuffles it takes part in, so a
// missing __syncthreads() is reported as the data race it is; under
// AddressSanitizer every out-of-bounds access of a kernel is reported.
//
// What is emulated:
//   threadIdx, blockIdx, blockDim, gridDim, warpSize;
//   __syncthreads(): a barrier of the block's threads, where a thread that has
//     returned counts as arrived (as on Volta and later);
//   __shared__: one instance per kernel, used by the block that is running;
//   __shfl_xor_sync(): lanes exchange values through their warp; a lane that
//     reads one not taking part (outside the mask, beyond a partial warp, or
//     returned before this shuffle) ends the program with the kernel's name;
//     for ThreadSanitizer a shuffle orders its lanes as a barrier would;
//   atomicAdd(), atomicExch(), atomicMin() on integers.
// Blocks never run at once, so a race between blocks goes unseen. Results are
// the host's arithmetic: without FMA contraction and with the host's exp and
// log, they are those of the CPU twins' operations, not a GPU's last bits.

#if defined(__CUDACC__)
#error "the emulated execution model is for the host compiler; nvcc has the real one"
#endif

#include <sys/mman.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(...)

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline constexpr int warpSize = 32;

// CUDA's math library overloads these for float; the C library has double only.
using std::fmax;
using std::fmin;

namespace cumtl::emulation {

// What the launch layer's grid shapes read of the device: an H100's
// multiprocessors by default; tests change it to try other grids.
struct DeviceModel {
  int multiprocessors = 132;
  int threads_per_multiprocessor = 2048;
  int blocks_per_multiprocessor = 32;
};

inline DeviceModel& device_model() {
  static DeviceModel model;
  return model;
}

[[noreturn]] inline void abort_kernel(const char* kernel, const std::string& message) {
  std::fprintf(stderr, "emulated kernel %s: %s\n", kernel, message.c_str());
  std::fflush(stderr);
  std::abort();
}

// The sanitizers' view of fibers (no-ops without them).
namespace sanitizer {
#if defined(__SANITIZE_THREAD__)
inline void* current_fiber() {
  return __tsan_get_current_fiber();
}
inline void* create_fiber() {
  return __tsan_create_fiber(0);
}
inline void switch_to(void* fiber) {
  __tsan_switch_to_fiber(fiber, __tsan_switch_to_fiber_no_sync);
}
inline void release(const void* object) {
  __tsan_release(const_cast<void*>(object));
}
inline void acquire(const void* object) {
  __tsan_acquire(const_cast<void*>(object));
}
#else
inline void* current_fiber() {
  return nullptr;
}
inline void* create_fiber() {
  return nullptr;
}
inline void switch_to(void*) {}
inline void release(const void*) {}
inline void acquire(const void*) {}
#endif
#if defined(__SANITIZE_ADDRESS__)
inline void start_switch(void** fake_stack, const void* bottom, std::size_t size) {
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
}
inline void finish_switch(void* fake_stack, const void** bottom, std::size_t* size) {
  __sanitizer_finish_switch_fiber(fake_stack, bottom, size);
}
// A fiber that returned left its last frames' redzones marked on its stack.
inline void forget_stack(void* stack, std::size_t size) {
  __asan_unpoison_memory_region(stack, size);
}
#else
inline void start_switch(void**, const void*, std::size_t) {}
inline void finish_switch(void*, const void**, std::size_t*) {}
inline void forget_stack(void*, std::size_t) {}
#endif
}  // namespace sanitizer

// Where a fiber, or the scheduler, resumes. On x86-64 a switch saves and
// restores the callee-saved registers and the floating-point control words
// (no system call, unlike swapcontext, which also switches the signal mask: a
// switch happens at every barrier of every thread); elsewhere, ucontext.
#if defined(__x86_64__)
extern "C" void cumtl_emulation_switch(void** save_stack_pointer, void* stack_pointer);
extern "C" void cumtl_emulation_fiber_start();
// Weak symbols: every translation unit that includes this header defines them.
asm(R"(
  .pushsection .text
  .weak cumtl_emulation_switch
  .type cumtl_emulation_switch, @function
cumtl_emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cumtl_emulation_switch, .-cumtl_emulation_switch

  .weak cumtl_emulation_fiber_start
  .type cumtl_emulation_fiber_start, @function
cumtl_emulation_fiber_start:
  callq *%r12
  ud2
  .size cumtl_emulation_fiber_start, .-cumtl_emulation_fiber_start
  .popsection
)");

struct ExecutionContext {
  void* stack_pointer = nullptr;
};

// Makes `context` start entry() on the stack [stack, stack + size) at its first switch.
inline void prepare(ExecutionContext& context, void* stack, std::size_t size, void (*entry)()) {
  auto* top = reinterpret_cast<std::uintptr_t*>((reinterpret_cast<std::uintptr_t>(stack) + size) & ~std::uintptr_t(15));
  std::uintptr_t* frame = top - 8;  // control words, r15, r14, r13, r12, rbx, rbp, return address
  const std::uint32_t mxcsr = 0x1f80, x87_control = 0x037f;  // the ABI's initial values
  frame[0] = mxcsr | std::uintptr_t(x87_control) << 32;
  for (int slot = 1; slot < 7; ++slot) frame[slot] = 0;
  frame[4] = reinterpret_cast<std::uintptr_t>(entry);  // r12, called by cumtl_emulation_fiber_start
  frame[7] = reinterpret_cast<std::uintptr_t>(&cumtl_emulation_fiber_start);
  context.stack_pointer = frame;
}

inline void switch_context(ExecutionContext& from, const ExecutionContext& to) {
  cumtl_emulation_switch(&from.stack_pointer, to.stack_pointer);
}
#else
struct ExecutionContext {
  ucontext_t context{};
};

inline void prepare(ExecutionContext& context, void* stack, std::size_t size, void (*entry)()) {
  getcontext(&context.context);
  context.context.uc_stack.ss_sp = stack;
  context.context.uc_stack.ss_size = size;
  context.context.uc_link = nullptr;
  makecontext(&context.context, entry, 0);
}

inline void switch_context(ExecutionContext& from, const ExecutionContext& to) {
  swapcontext(&from.context, &to.context);
}
#endif

// A barrier of `count` threads, some of which may leave for good (drop). Its
// counters are atomics only so that ThreadSanitizer, which sees each thread as
// a fiber of its own, orders the threads by the release on arrival and the
// acquire after the wait (synchronize_block, shuffle_xor) and by nothing else.
class Barrier {
 public:
  void reset(int count) {
    expected_ = count;
    arrived_ = 0;
  }

  // Whether the phase that was current when a thread arrived has completed.
  bool passed(std::uint64_t phase) const { return phase_.load(std::memory_order_relaxed) != phase; }
  std::uint64_t phase() const { return phase_.load(std::memory_order_relaxed); }

  // True when the caller completed the phase; otherwise it must wait for passed(phase).
  bool arrive() {
    sanitizer::release(this);
    if (arrived_.fetch_add(1, std::memory_order_relaxed) + 1 == expected_.load(std::memory_order_relaxed)) {
      complete();
      return true;
    }
    return false;
  }

  void arrive_and_drop() {
    sanitizer::release(this);
    const int expected = expected_.fetch_sub(1, std::memory_order_relaxed) - 1;
    const int arrived = arrived_.load(std::memory_order_relaxed);
    if (arrived > 0 && arrived == expected) complete();
  }

 private:
  void complete() {
    arrived_.store(0, std::memory_order_relaxed);
    phase_.fetch_add(1, std::memory_order_relaxed);
  }

  std::atomic<int> expected_{0};
  std::atomic<int> arrived_{0};
  std::atomic<std::uint64_t> phase_{0};
};

struct Warp {
  int lanes = 0;
  Barrier barrier;
  // Shuffles use the two buffers in turn: a lane can be at most one shuffle
  // ahead of another, so one barrier per shuffle keeps every value until read.
  std::array<std::array<std::array<unsigned char, 8>, warpSize>, 2> values{};
  std::array<std::atomic<int>, warpSize> shuffles{};  // per lane, how many it has taken part in
};

// The coordinates of the thread a fiber runs.
struct ThreadState {
  uint3 thread, block;
  dim3 block_dim, grid_dim;
  int linear = 0;
};

enum class FiberStatus { runnable, waiting, returned };

struct Fiber {
  static constexpr std::size_t stack_size = std::size_t(256) << 10;

  Fiber() {
    // A guard page below the stack turns an overflow into a fault.
    const std::size_t page = 4096;
    void* mapping =
        mmap(nullptr, stack_size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED) throw std::runtime_error("emulated CUDA: no memory for a thread's stack");
    mprotect(mapping, page, PROT_NONE);
    stack = static_cast<char*>(mapping) + page;
    tsan = sanitizer::create_fiber();
  }
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  ExecutionContext context;
  void* stack = nullptr;
  void* tsan = nullptr;
  void* fake_stack = nullptr;
  ThreadState state;
  std::atomic<FiberStatus> status{FiberStatus::returned};
  std::atomic<Barrier*> waiting_on{nullptr};
  std::atomic<std::uint64_t> waiting_phase{0};
  std::atomic<const char*> waiting_at{nullptr};
};

// Runs the blocks of one launch; kernels reach it through active().
class Launch {
 public:
  Launch(const char* kernel, dim3 grid, dim3 block, const std::function<void()>& body)
      : kernel_(kernel), grid_(grid), block_(block), body_(body) {}

  // The launch the calling thread runs (an atomic, so that its fibers read it unordered by ThreadSanitizer).
  static std::atomic<Launch*>& active() {
    static thread_local std::atomic<Launch*> launch{nullptr};
    return launch;
  }

  const char* kernel() const { return kernel_; }
  Fiber& running() { return *running_.load(std::memory_order_relaxed); }
  Barrier& block_barrier() { return block_barrier_; }
  Warp& warp_of(const Fiber& fiber) { return warps_[std::size_t(fiber.state.linear / warpSize)]; }

  // Every block in turn; each block's fibers until all have returned.
  void run() {
    const int threads = int(block_.x * block_.y * block_.z);
    const std::vector<std::unique_ptr<Fiber>>& fibers = pool(threads);
    warps_ = std::vector<Warp>(std::size_t((threads + warpSize - 1) / warpSize));
    Launch* const outer = active().load(std::memory_order_relaxed);
    active().store(this, std::memory_order_relaxed);
    scheduler_tsan_ = sanitizer::current_fiber();
    const std::int64_t blocks = std::int64_t(grid_.x) * grid_.y * grid_.z;
    for (std::int64_t b = 0; b < blocks; ++b) {
      sanitizer::acquire(&block_end_);  // the last block's threads are done with what is set up here
      const uint3 coordinates{unsigned(b % grid_.x), unsigned(b / grid_.x % grid_.y),
                              unsigned(b / (std::int64_t(grid_.x) * grid_.y))};
      block_barrier_.reset(threads);
      for (std::size_t w = 0; w < warps_.size(); ++w) {
        warps_[w].lanes = std::min(warpSize, threads - int(w) * warpSize);
        warps_[w].barrier.reset(warps_[w].lanes);
        for (std::atomic<int>& shuffles : warps_[w].shuffles) shuffles = 0;
      }
      for (int t = 0; t < threads; ++t) {
        Fiber& fiber = *fibers[std::size_t(t)];
        fiber.state = {{unsigned(t) % block_.x, unsigned(t) / block_.x % block_.y, unsigned(t) / (block_.x * block_.y)},
                       coordinates,
                       block_,
                       grid_,
                       t};
        fiber.status = FiberStatus::runnable;
        sanitizer::forget_stack(fiber.stack, Fiber::stack_size);
        prepare(fiber.context, fiber.stack, Fiber::stack_size, &Launch::fiber_main);
      }
      sanitizer::release(&block_start_);
      run_block(fibers, threads, coordinates);
    }
    sanitizer::acquire(&block_end_);
    active().store(outer, std::memory_order_relaxed);
  }

  // From a fiber: back to the scheduler until it resumes this fiber.
  void yield() {
    Fiber& self = running();
    sanitizer::start_switch(&self.fake_stack, scheduler_stack_, scheduler_stack_size_);
    sanitizer::switch_to(scheduler_tsan_);
    switch_context(self.context, scheduler_);
    sanitizer::finish_switch(self.fake_stack, &scheduler_stack_, &scheduler_stack_size_);
  }

  // From a fiber: waits at `barrier` (arrived already) until its phase completes.
  void wait(Barrier& barrier, std::uint64_t phase, const char* where) {
    Fiber& self = running();
    self.waiting_on = &barrier;
    self.waiting_phase = phase;
    self.waiting_at = where;
    self.status = FiberStatus::waiting;
    yield();
  }

 private:
  // Fibers (and their stacks) are made once per process and reused by every launch.
  static const std::vector<std::unique_ptr<Fiber>>& pool(int threads) {
    static std::vector<std::unique_ptr<Fiber>> fibers;
    while (int(fibers.size()) < threads) fibers.push_back(std::make_unique<Fiber>());
    return fibers;
  }

  static void fiber_main() {
    Launch& launch = *active().load(std::memory_order_relaxed);
    sanitizer::finish_switch(nullptr, &launch.scheduler_stack_, &launch.scheduler_stack_size_);
    sanitizer::acquire(&launch.block_start_);
    try {
      launch.body_();
    } catch (const std::exception& error) {
      abort_kernel(launch.kernel_, std::string("a thread threw: ") + error.what());
    }
    Fiber& self = launch.running();
    launch.warp_of(self).barrier.arrive_and_drop();
    launch.block_barrier_.arrive_and_drop();
    // What is read of the launch after the release, the scheduler may be rewriting for the next launch.
    const void* const scheduler_stack = launch.scheduler_stack_;
    const std::size_t scheduler_stack_size = launch.scheduler_stack_size_;
    void* const scheduler_tsan = launch.scheduler_tsan_;
    const ExecutionContext scheduler = launch.scheduler_;
    self.status = FiberStatus::returned;
    sanitizer::release(&launch.block_end_);
    sanitizer::start_switch(nullptr, scheduler_stack, scheduler_stack_size);
    sanitizer::switch_to(scheduler_tsan);
    ExecutionContext finished;  // never resumed
    switch_context(finished, scheduler);
  }

  void resume(Fiber& fiber) {
    running_.store(&fiber, std::memory_order_relaxed);
    const ExecutionContext target = fiber.context;  // read as the scheduler, before the switch
    sanitizer::start_switch(&scheduler_fake_stack_, fiber.stack, Fiber::stack_size);
    sanitizer::switch_to(fiber.tsan);
    switch_context(scheduler_, target);
    sanitizer::finish_switch(scheduler_fake_stack_, nullptr, nullptr);
  }

  // Sweeps over the block's fibers, running each that can go on until it waits or returns.
  void run_block(const std::vector<std::unique_ptr<Fiber>>& fibers, int threads, uint3 coordinates) {
    for (;;) {
      bool ran = false, all_returned = true;
      for (int t = 0; t < threads; ++t) {
        Fiber& fiber = *fibers[std::size_t(t)];
        FiberStatus status = fiber.status;
        if (status == FiberStatus::returned) continue;
        all_returned = false;
        if (status == FiberStatus::waiting && fiber.waiting_on.load()->passed(fiber.waiting_phase)) {
          fiber.status = FiberStatus::runnable;
          status = FiberStatus::runnable;
        }
        if (status != FiberStatus::runnable) continue;
        resume(fiber);
        ran = true;
      }
      if (all_returned) return;
      if (!ran) report_stuck(fibers, threads, coordinates);
    }
  }

  [[noreturn]] void report_stuck(const std::vector<std::unique_ptr<Fiber>>& fibers, int threads, uint3 coordinates) {
    std::string message = "block (" + std::to_string(coordinates.x) + ", " + std::to_string(coordinates.y) + ", " +
                          std::to_string(coordinates.z) + ") can go no further:";
    for (int t = 0; t < threads; ++t) {
      const Fiber& fiber = *fibers[std::size_t(t)];
      message += " thread " + std::to_string(t) + " ";
      message += fiber.status == FiberStatus::returned ? std::string("returned")
                                                       : std::string("waits at ") + fiber.waiting_at.load();
      message += ";";
    }
    abort_kernel(kernel_, message);
  }

  const char* kernel_;
  dim3 grid_, block_;
  const std::function<void()>& body_;
  Barrier block_barrier_;
  std::vector<Warp> warps_;
  std::atomic<Fiber*> running_{nullptr};
  ExecutionContext scheduler_;
  void* scheduler_tsan_ = nullptr;
  void* scheduler_fake_stack_ = nullptr;
  const void* scheduler_stack_ = nullptr;
  std::size_t scheduler_stack_size_ = 0;
  // The addresses by which ThreadSanitizer orders the scheduler's setting up
  // of a block before its threads, and the threads of a block before the next
  // setting up; never the threads of a block among themselves.
  char block_start_ = 0;
  char block_end_ = 0;
};

// The running thread's coordinates.
inline const ThreadState& thread_state() {
  return Launch::active().load(std::memory_order_relaxed)->running().state;
}

// Runs body() once per thread of a grid of `grid` blocks of `block` threads,
// with the coordinates set; a configuration a GPU would refuse throws.
inline void run(const char* kernel, dim3 grid, dim3 block, const std::function<void()>& body) {
  const std::int64_t threads = std::int64_t(block.x) * block.y * block.z;
  if (threads < 1 || threads > 1024 || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.y > 65535 || grid.z < 1 ||
      grid.z > 65535)
    throw std::invalid_argument(std::string("launch of ") + kernel + ": invalid configuration argument (grid " +
                                std::to_string(grid.x) + "×" + std::to_string(grid.y) + "×" + std::to_string(grid.z) +
                                ", block " + std::to_string(block.x) + "×" + std::to_string(block.y) + "×" +
                                std::to_string(block.z) + ")");
  Launch(kernel, grid, block, body).run();
}

inline void synchronize_block() {
  Launch& launch = *Launch::active().load(std::memory_order_relaxed);
  Barrier& barrier = launch.block_barrier();
  const std::uint64_t phase = barrier.phase();
  if (!barrier.arrive()) launch.wait(barrier, phase, "__syncthreads()");
  sanitizer::acquire(&barrier);
}

template <class T>
T shuffle_xor(unsigned mask, T value, int lane_mask, int width) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8);
  Launch& launch = *Launch::active().load(std::memory_order_relaxed);
  const Fiber& self = launch.running();
  Warp& warp = launch.warp_of(self);
  const int lane = self.state.linear % warpSize;
  if ((mask >> lane & 1u) == 0) abort_kernel(launch.kernel(), "__shfl_xor_sync from a lane outside its own mask");
  const int shuffle = warp.shuffles[std::size_t(lane)]++;
  auto& values = warp.values[std::size_t(shuffle % 2)];
  std::memcpy(values[std::size_t(lane)].data(), &value, sizeof(T));
  const std::uint64_t phase = warp.barrier.phase();
  if (!warp.barrier.arrive()) launch.wait(warp.barrier, phase, "__shfl_xor_sync()");
  sanitizer::acquire(&warp.barrier);
  int source = lane ^ lane_mask;
  if (source / width > lane / width) source = lane;  // a later group of `width` lanes: the caller's own value
  if (source >= warp.lanes || (mask >> source & 1u) == 0 || warp.shuffles[std::size_t(source)] <= shuffle)
    abort_kernel(launch.kernel(), "__shfl_xor_sync: lane " + std::to_string(lane) + " reads lane " +
                                      std::to_string(source) + ", which is not taking part (mask " +
                                      std::to_string(mask) + ", " + std::to_string(warp.lanes) + " lanes in the warp)");
  T result;
  std::memcpy(&result, values[std::size_t(source)].data(), sizeof(T));
  return result;
}

}  // namespace cumtl::emulation

#define threadIdx (::cumtl::emulation::thread_state().thread)
#define blockIdx (::cumtl::emulation::thread_state().block)
#define blockDim (::cumtl::emulation::thread_state().block_dim)
#define gridDim (::cumtl::emulation::thread_state().grid_dim)

inline void __syncthreads() {
  ::cumtl::emulation::synchronize_block();
}

template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize) {
  return ::cumtl::emulation::shuffle_xor(mask, value, lane_mask, width);
}

template <class T>
T atomicAdd(T* address, T value) {
  static_assert(std::is_integral_v<T>, "only integer atomics are emulated (cumtl's kernels use no others)");
  return std::atomic_ref<T>(*address).fetch_add(value);
}

template <class T>
T atomicExch(T* address, T value) {
  static_assert(std::is_integral_v<T>, "only integer atomics are emulated (cumtl's kernels use no others)");
  return std::atomic_ref<T>(*address).exchange(value);
}

template <class T>
T atomicMin(T* address, T value) {
  static_assert(std::is_integral_v<T>, "only integer atomics are emulated (cumtl's kernels use no others)");
  std::atomic_ref<T> target(*address);
  T old = target.load();
  while (value < old && !target.compare_exchange_weak(old, value)) {
  }
  return old;
}
