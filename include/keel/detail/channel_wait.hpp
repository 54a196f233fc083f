// keel/detail/channel_wait.hpp: the waiting machinery under keel's channels.
// Not part of the API.
//
// A WaitList is where threads (and select/async waiters) park until "the
// thing they wait for" (not-empty, not-full) may have become true. The fast
// path costs the notifier one seq_cst fence and one relaxed load of
// `interest_`; the mutex and condition variable are touched only when someone
// is actually parked. The protocol (Dekker style) is:
//
//   waiter:   lock m; interest += 1; e = epoch; unlock m; fence(seq_cst);
//             re-check the condition; lock m; sleep on cv while epoch == e
//   notifier: make the condition true; fence(seq_cst); if interest > 0:
//             lock m; epoch += 1; notify
//
// With the two fences, either the waiter's re-check sees the new state or the
// notifier sees interest > 0; a notifier that saw interest bumps epoch under
// m, so the waiter either sees the bump before sleeping or is asleep and gets
// the notify: no wakeup is ever lost. The condition is re-checked without m
// held (a sender's check notifies receivers and vice versa; holding m there
// would order the two lists' mutexes both ways).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <keel/detail/cpu_relax.hpp>

namespace keel::detail {

/// The cache line size used for padding (64 on every platform keel targets;
/// std::hardware_destructive_interference_size warns on g++ 12).
inline constexpr std::size_t kCacheLine = 64;

/// A bounded spin: a few rounds of exponentially more pause instructions,
/// then a few yields. `spin()` returns false once the budget is spent, and
/// the caller must then block for real (the machines keel runs on have two
/// cores, and users run more threads than that).
class SpinBudget {
 public:
  bool spin() noexcept {
    if (step_ < kPauseSteps) {
      for (std::uint32_t i = 0; i < (1U << step_); ++i) cpu_relax();
      ++step_;
      return true;
    }
    if (step_ < kPauseSteps + kYieldSteps) {
      std::this_thread::yield();
      ++step_;
      return true;
    }
    return false;
  }

 private:
  static constexpr std::uint32_t kPauseSteps = 6;  // 1+2+...+32 = 63 pauses
  static constexpr std::uint32_t kYieldSteps = 4;
  std::uint32_t step_ = 0;
};

/// A one-shot waiter registered in one or several WaitLists (select, Asio).
/// `wake()` is called at most once per registration, under the list's mutex,
/// and the list forgets the waiter as it wakes it; the waiter re-registers if
/// it still has to wait. wake() must be quick and must not touch the list.
class Waiter {
 public:
  virtual void wake() noexcept = 0;

 protected:
  Waiter() = default;
  Waiter(const Waiter&) = default;
  Waiter& operator=(const Waiter&) = default;
  ~Waiter() = default;
};

/// A Waiter for a thread blocked in select: a flag under its own mutex.
class ThreadWaiter final : public Waiter {
 public:
  void wake() noexcept override {
    {
      std::lock_guard lk(m_);
      woken_ = true;
    }
    cv_.notify_one();
  }
  /// Sleeps until woken or the deadline; true when woken. Clears the flag.
  template <class Clock, class Duration>
  bool wait_until(const std::optional<std::chrono::time_point<Clock, Duration>>& deadline) {
    std::unique_lock lk(m_);
    if (deadline) {
      cv_.wait_until(lk, *deadline, [&] { return woken_; });
    } else {
      cv_.wait(lk, [&] { return woken_; });
    }
    const bool w = woken_;
    woken_ = false;
    return w;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool woken_ = false;
};

class WaitList {
 public:
  WaitList() = default;
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;

  /// Call after making the awaited condition true. The fence pairs with the
  /// one in wait()/add(): see the file comment.
  void notify_one() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // relaxed: ordered by the fence above.
    if (interest_.load(std::memory_order_relaxed) == 0) return;
    notify_slow(false);
  }
  /// Wakes every parked thread and waiter (close).
  void notify_all() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (interest_.load(std::memory_order_relaxed) == 0) return;
    notify_slow(true);
  }

  /// Parks the calling thread until `ready()` returns true or the deadline
  /// passes; returns ready()'s last answer. ready() runs without the list's
  /// mutex held (it may notify the other list of the same channel).
  template <class Ready, class Clock, class Duration>
  bool wait(Ready&& ready, const std::optional<std::chrono::time_point<Clock, Duration>>& deadline) {
    std::unique_lock lk(m_);
    ++sleepers_;
    // seq_cst RMW: the waiter half of the Dekker protocol (with the fence below).
    interest_.fetch_add(1, std::memory_order_seq_cst);
    bool ok = false;
    for (;;) {
      // A notification between our check and our sleep bumps epoch_, so we
      // do not sleep through it.
      const std::uint64_t seen = epoch_;
      lk.unlock();
      std::atomic_thread_fence(std::memory_order_seq_cst);
      ok = ready();
      lk.lock();
      if (ok) break;
      if (epoch_ != seen) continue;
      if (deadline) {
        if (!cv_.wait_until(lk, *deadline, [&] { return epoch_ != seen; })) {
          lk.unlock();
          ok = ready();  // a notification may have raced with the timeout
          lk.lock();
          break;
        }
      } else {
        cv_.wait(lk, [&] { return epoch_ != seen; });
      }
    }
    --sleepers_;
    // relaxed: only a hint for notifiers; a stale non-zero costs a lock.
    interest_.fetch_sub(1, std::memory_order_relaxed);
    return ok;
  }

  /// Registers a one-shot waiter. The caller re-checks its condition after
  /// this returns (the fence is the waiter half of the protocol).
  void add(Waiter* w) {
    {
      std::lock_guard lk(m_);
      waiters_.push_back(w);
      interest_.fetch_add(1, std::memory_order_seq_cst);
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  /// Unregisters a waiter if it is still registered (it may have been woken
  /// and forgotten already). Once this returns, wake() is not running on w.
  /// Returns false when it was not registered any more (it was woken).
  bool remove(Waiter* w) noexcept {
    std::lock_guard lk(m_);
    auto it = std::find(waiters_.begin(), waiters_.end(), w);
    if (it == waiters_.end()) return false;
    *it = waiters_.back();
    waiters_.pop_back();
    interest_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }

 private:
  void notify_slow(bool all) noexcept {
    std::lock_guard lk(m_);
    if (sleepers_ != 0) {
      ++epoch_;
      if (all) {
        cv_.notify_all();
      } else {
        cv_.notify_one();
      }
    }
    if (!waiters_.empty()) {
      // Registered waiters (select, async) are all woken: each re-checks
      // every channel it watches, and none of them can swallow the
      // notification meant for a thread blocked in recv()/send().
      interest_.fetch_sub(static_cast<std::uint32_t>(waiters_.size()), std::memory_order_relaxed);
      for (Waiter* w : waiters_) w->wake();
      waiters_.clear();
    }
  }

  std::atomic<std::uint32_t> interest_{0};  // sleepers_ + waiters_.size()
  std::mutex m_;
  std::condition_variable cv_;
  std::uint32_t sleepers_ = 0;    // under m_
  std::uint64_t epoch_ = 0;       // under m_: bumped by every notification
  std::vector<Waiter*> waiters_;  // under m_
};

/// A deadline from a duration, saturating instead of overflowing.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (d <= std::chrono::duration<Rep, Period>::zero()) return now;
  const auto max_left = std::chrono::steady_clock::time_point::max() - now;
  if (d >= std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(max_left) ||
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(d) >= max_left) {
    return std::chrono::steady_clock::time_point::max();
  }
  return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
}

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

/// deadline_after(d), or no deadline at all when d is too long to represent.
template <class Rep, class Period>
Deadline make_deadline(std::chrono::duration<Rep, Period> d) noexcept {
  const auto t = deadline_after(d);
  if (t == std::chrono::steady_clock::time_point::max()) return std::nullopt;
  return t;
}

}  // namespace keel::detail
