#pragma once
// Two data-parallel ranks within one process, a thread each, for the tests of
// synchronized operations: what an all-reduce between them leaves.

#include <array>
#include <barrier>
#include <cstddef>
#include <exception>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cumtl/core/sums_over_ranks.hpp"

namespace cumtl_test {

// Each rank's values become rank 0's plus rank 1's, the same bits on both.
// Counts the sums each rank took part in.
class SumsOfTwoRanks {
 public:
  void sum(int rank, std::span<double> values) {
    offered_[std::size_t(rank)] = values;
    ++sums_[std::size_t(rank)];
    meeting_.arrive_and_wait();
    // Both ranks see a mismatch and leave, so neither waits for the other below.
    if (offered_[0].size() != offered_[1].size()) throw std::logic_error("the ranks sum arrays of different sizes");
    std::vector<double> total(values.size());
    for (std::size_t i = 0; i < total.size(); ++i) total[i] = offered_[0][i] + offered_[1][i];
    meeting_.arrive_and_wait();  // both have read both arrays
    for (std::size_t i = 0; i < total.size(); ++i) values[i] = total[i];
  }

  cumtl::ChannelSumsOverRanks of_rank(int rank) {
    return [this, rank](std::span<double> values) { sum(rank, values); };
  }

  int sums_of_rank(int rank) const { return sums_[std::size_t(rank)]; }

 private:
  std::barrier<> meeting_{2};
  std::array<std::span<double>, 2> offered_;
  std::array<int, 2> sums_{};
};

// Runs run_rank(0) on this thread and run_rank(1) on another, at once, as the
// two ranks of one world; once both have ended, rethrows a failure of either.
template <class RunRank>
void run_two_ranks(RunRank&& run_rank) {
  std::array<std::exception_ptr, 2> failures;
  const auto guarded = [&](int rank) {
    try {
      run_rank(rank);
    } catch (...) {
      failures[std::size_t(rank)] = std::current_exception();
    }
  };
  std::thread other(guarded, 1);
  guarded(0);
  other.join();
  for (const std::exception_ptr& failure : failures)
    if (failure) std::rethrow_exception(failure);
}

}  // namespace cumtl_test
