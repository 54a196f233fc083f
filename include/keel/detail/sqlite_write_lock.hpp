// keel/detail/sqlite_write_lock.hpp: the pool's fair in-process write lock
// (the writers' queue). Not part of the API.
#pragma once

#include <keel/detail/sqlite_clock.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

namespace keel::sqlite::detail {

/// The pool's in-process write lock: a fair (first come, first served)
/// mutex with a deadline. Fair, so a writer that commits and at once begins
/// again cannot starve the others, or the maintenance thread's checkpoint.
/// (Not std::timed_mutex: its try_lock_until goes through
/// pthread_mutex_clocklock, which ThreadSanitizer does not see.)
class WriteLock {
 public:
  /// Takes the lock in arrival order, waiting until the deadline; false if it
  /// did not get it.
  bool try_lock_until(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    const std::uint64_t ticket = next_++;
    if (!cv_.wait_until(lock, deadline, [&] { return serving_ == ticket; })) {
      abandoned_.push_back(ticket);  // skipped when its turn comes
      return false;
    }
    return true;
  }
  void unlock() noexcept {
    {
      const std::lock_guard lock(mu_);
      ++serving_;
      for (auto it = std::find(abandoned_.begin(), abandoned_.end(), serving_); it != abandoned_.end();
           it = std::find(abandoned_.begin(), abandoned_.end(), serving_)) {
        abandoned_.erase(it);
        ++serving_;
      }
    }
    cv_.notify_all();  // each waiter checks its own ticket
  }
  /// Waiters and the holder, if any.
  [[nodiscard]] std::uint64_t queued() const {
    const std::lock_guard lock(mu_);
    return next_ - serving_ - abandoned_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t next_ = 0;                // the next ticket to hand out
  std::uint64_t serving_ = 0;             // the ticket that holds the lock (== next_: free)
  std::vector<std::uint64_t> abandoned_;  // tickets whose waiters gave up (few: timeouts are rare)
};

}  // namespace keel::sqlite::detail
