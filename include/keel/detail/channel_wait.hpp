// keel/detail/channel_wait.hpp: the waiting machinery under keel's channels.
// Not part of the API.
//
// A WaitList is where threads (and select/async waiters) park until "the
// thing they wait for" (not-empty, not-full) may have become true. The fast
// path costs the notifier a barrier and one relaxed load of `interest_`; the
// mutex and condition variable are touched only when someone is actually
// parked. The protocol (Dekker style) is:
//
//   waiter:   lock m; interest += 1; e = epoch; unlock m; heavy barrier;
//             re-check the condition; lock m; sleep on cv while epoch == e
//   notifier: make the condition true; light barrier; if interest > 0:
//             lock m; epoch += 1; notify
//
// (DekkerBarrier: on Linux the heavy half is membarrier(2) and the light half
// a compiler barrier; elsewhere both are seq_cst fences.) With the barriers, either the waiter's re-check
// sees the new state or the notifier sees interest > 0; a notifier that saw interest bumps epoch under m, so
// the waiter either sees the bump before sleeping or is asleep and gets the notify: no wakeup is ever lost.
// The condition is re-checked without m held (a sender's check notifies receivers and vice versa; holding m
// there would order the two lists' mutexes both ways).
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
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <keel/detail/cpu_relax.hpp>

#if defined(__SANITIZE_THREAD__)
#define KEEL_DETAIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KEEL_DETAIL_TSAN 1
#endif
#endif
#ifndef KEEL_DETAIL_TSAN
#define KEEL_DETAIL_TSAN 0
#endif

// On Linux the waiter half of the wake-up protocol is membarrier(2), so the
// notifier half (every send and receive) needs no fence instruction. Define
// KEEL_NO_MEMBARRIER to use plain fences on both halves instead.
#if defined(__linux__) && !KEEL_DETAIL_TSAN && !defined(KEEL_NO_MEMBARRIER)
#define KEEL_DETAIL_MEMBARRIER 1
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define KEEL_DETAIL_MEMBARRIER 0
#endif

// The settings above (and KEEL_CHANNEL_TEST_HOOKS) change inline class
// bodies: which barrier a waiter and a notifier use, the test hooks. So the
// channels live in an inline namespace named after them: translation units
// built with different settings get distinct types and functions, and a
// channel handle passed between them fails to link instead of pairing a
// fence-only waiter with a barrier-only notifier.
#if defined(KEEL_CHANNEL_TEST_HOOKS)
#if KEEL_DETAIL_TSAN
#define KEEL_DETAIL_CHANNEL_ABI chan_tsan_hooks
#elif KEEL_DETAIL_MEMBARRIER
#define KEEL_DETAIL_CHANNEL_ABI chan_membarrier_hooks
#else
#define KEEL_DETAIL_CHANNEL_ABI chan_fences_hooks
#endif
#else
#if KEEL_DETAIL_TSAN
#define KEEL_DETAIL_CHANNEL_ABI chan_tsan
#elif KEEL_DETAIL_MEMBARRIER
#define KEEL_DETAIL_CHANNEL_ABI chan_membarrier
#else
#define KEEL_DETAIL_CHANNEL_ABI chan_fences
#endif
#endif

namespace keel::detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// A fixed spin, for a sender waiting for room (and drain()): up to 32
/// pause instructions, the caller re-checking its condition after each one
/// (0.35-1.7 us in all on current x86, where a pause costs 10-50 ns).
/// Receivers spin under a SpinPolicy instead (below). `spin()` returns false
/// once the budget is spent, and the caller must then block for real (an
/// idle waiter costs no CPU). No sched_yield: on an oversubscribed machine a
/// yield can give the CPU away for a whole time slice, milliseconds, which
/// is far worse than sleeping on a futex and being woken.
class SpinBudget {
 public:
  bool spin() noexcept {
    if (n_ >= kPauses) return false;
    cpu_relax();
    ++n_;
    return true;
  }
  /// Spins done so far (callers re-check cheaply most rounds, fully now and then).
  [[nodiscard]] std::uint32_t count() const noexcept { return n_; }

 private:
  static constexpr std::uint32_t kPauses = 32;
  std::uint32_t n_ = 0;
};

/// How long the receivers of one channel spin before they park, learned
/// from how their recent waits ended. Whether a spin pays depends on the
/// machine, not on the code: with a core to spare, the reply comes in a few
/// microseconds while the receiver spins, but once it parks, waking it costs
/// tens of microseconds (an idle virtual CPU has to be woken by the host);
/// with more runnable threads than cores, a spinning receiver holds the core
/// the replying thread needs, and every spun microsecond delays the reply.
/// So the window (wall-clock time, not a count of `pause`s, whose cost
/// varies tenfold between CPUs) adapts, as glibc's adaptive mutex and
/// WebKit's parking lot do:
/// - a wait that ends while spinning sets the window to 8x the time it took
///   (growing at once, shrinking by 1/64 of the difference per wait), so the
///   next one covers a similar hand-off with room to spare;
/// - a spin that ends in parking halves the window, down to kMinNs (about
///   the old fixed spin of 32 `pause`s);
/// - the first wait, and then every probe_every-th, is a probe: it spins up
///   to kMaxNs, however short the window. A probe that catches its value resets the probing
///   interval to kProbeMin; one that parks doubles it, up to kProbeMax, so on
///   a loaded machine probes cost about kMaxNs / kProbeMax = 0.1 us a wait;
/// - a parked wait that a probe would have caught, while probes catch, makes
///   the next wait a probe (see woke()).
/// An idle receiver spins at most kMaxNs (100 us) before it sleeps, and
/// mostly kMinNs. The fields are hints: plain relaxed loads and stores, races
/// between receivers only blur the estimate.
class SpinPolicy {
 public:
  static constexpr std::uint32_t kMinNs = 500;
  static constexpr std::uint32_t kMaxNs = 100'000;
  static constexpr std::uint32_t kProbeMin = 16;
  static constexpr std::uint32_t kProbeMax = 1024;

  /// What one wait spins for.
  struct Plan {
    std::uint32_t limit_ns;
    bool probe;
  };

  [[nodiscard]] Plan plan() noexcept {
    // relaxed (all fields): hints, see the class comment.
    const std::uint32_t left = until_probe_.load(std::memory_order_relaxed);
    if (left > 1) {
      until_probe_.store(left - 1, std::memory_order_relaxed);
      return {window_.load(std::memory_order_relaxed), false};
    }
    until_probe_.store(probe_every_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return {kMaxNs, true};
  }
  /// The wait ended while spinning, `elapsed_ns` after it began.
  void caught(Plan p, std::uint64_t elapsed_ns) noexcept {
    const std::uint32_t w = window_.load(std::memory_order_relaxed);
    const auto target = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(8 * elapsed_ns, kMinNs, kMaxNs));
    window_.store(target >= w ? target : w - std::max<std::uint32_t>((w - target) / 64, 1),
                  std::memory_order_relaxed);
    if (p.probe) {
      probe_every_.store(kProbeMin, std::memory_order_relaxed);
      until_probe_.store(kProbeMin, std::memory_order_relaxed);
    }
  }
  /// The spin ran out and the receiver parked.
  void missed(Plan p) noexcept {
    if (p.probe) {
      const std::uint32_t every = std::min(2 * probe_every_.load(std::memory_order_relaxed), kProbeMax);
      probe_every_.store(every, std::memory_order_relaxed);
      until_probe_.store(every, std::memory_order_relaxed);
    }
    const std::uint32_t w = window_.load(std::memory_order_relaxed);
    window_.store(std::max(w / 2, kMinNs), std::memory_order_relaxed);
  }
  /// A receiver that parked after a plan that was not a probe got its value
  /// `total_ns` after it began to wait. If a probe would have caught it, and
  /// probes have been catching lately (the interval is at its minimum), the
  /// next wait probes: on a machine with a core to spare, one late reply
  /// (an interrupt) would otherwise make both sides of a ping-pong park in
  /// turn, each missing the other's wake-up, until the next scheduled probe.
  void woke(Plan p, std::uint64_t total_ns) noexcept {
    if (!p.probe && total_ns < kMaxNs && probe_every_.load(std::memory_order_relaxed) == kProbeMin) {
      until_probe_.store(1, std::memory_order_relaxed);
    }
  }
  /// The current window (tests and stats).
  [[nodiscard]] std::uint32_t window_ns() const noexcept { return window_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint32_t> window_{kMinNs};
  std::atomic<std::uint32_t> until_probe_{1};  // the first wait probes
  std::atomic<std::uint32_t> probe_every_{kProbeMin};
};

/// One wait's spin under a SpinPolicy: `pause`, the caller re-checks its
/// condition, and every 8 pauses the clock is read (a vDSO call, about as
/// long as a few pauses); spin() returns false once the plan's time is up.
/// The caller then reports with finish() and parks if it has to.
class TimedSpin {
 public:
  explicit TimedSpin(SpinPolicy& policy) noexcept
      : policy_(policy), plan_(policy.plan()), start_(std::chrono::steady_clock::now()) {}
  TimedSpin(const TimedSpin&) = delete;
  TimedSpin& operator=(const TimedSpin&) = delete;
  ~TimedSpin() = default;

  bool spin() noexcept {
    cpu_relax();
    if ((++n_ & 7U) != 0) return true;
    return elapsed_ns() < plan_.limit_ns;
  }
  /// `caught`: the condition came true while spinning.
  void finish(bool caught) noexcept {
    if (caught) {
      policy_.caught(plan_, elapsed_ns());
    } else {
      policy_.missed(plan_);
    }
  }
  /// After finish(false): the caller parked and has its value now.
  void woke() noexcept { policy_.woke(plan_, elapsed_ns()); }

 private:
  [[nodiscard]] std::uint64_t elapsed_ns() const noexcept {
    const auto d = std::chrono::steady_clock::now() - start_;
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  }

  SpinPolicy& policy_;
  const SpinPolicy::Plan plan_;
  const std::chrono::steady_clock::time_point start_;
  std::uint32_t n_ = 0;
};

/// A one-shot waiter registered in one or several WaitLists (select, Asio).
/// `wake()` is called at most once per registration, under the list's mutex,
/// and the list forgets the waiter as it wakes it; the waiter re-registers if
/// it still has to wait. wake() must be quick and must not touch the list.
class Waiter {
 public:
  virtual void wake() noexcept = 0;
  /// An exclusive waiter (an Asio operation) promises that a wake-up it
  /// receives is either used (it retries and takes the value or the room,
  /// or finds another consumer took it) or passed on with notify_one() (it
  /// was cancelled or abandoned). So notify_one() wakes one of them, not
  /// all. A select waiter is not exclusive: it may return another channel.
  [[nodiscard]] virtual bool exclusive() const noexcept { return false; }

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

#if defined(KEEL_CHANNEL_TEST_HOOKS)
/// Tests only: when set, called instead of the membarrier(2) system call
/// (with its command), so a test can make the barrier fail at registration
/// or after it.
inline std::atomic<int (*)(int)> membarrier_test_hook{nullptr};
#endif

#if defined(KEEL_CHANNEL_TEST_HOOKS)
/// Tests only: when set and returning true, WaitList::add() throws
/// std::bad_alloc as if registering had failed to allocate.
inline std::atomic<bool (*)()> wait_list_add_fail_hook{nullptr};
#endif

/// The two halves of the Dekker barrier between a notifier (publish, then
/// look for sleepers) and a waiter (register interest, then re-check).
/// Either half being a seq_cst fence on both sides is correct; but the
/// notifier half runs on every send and receive, and a fence there makes the
/// CPU wait for its store of the value to reach the other core (a cache miss
/// paid in full on every operation). So on Linux the waiter half is heavy
/// instead: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every running
/// thread of the process pass a full barrier before it returns, which turns
/// the notifiers' compiler-only barrier into the fence the protocol needs.
/// The waiter pays a system call (a few microseconds) just before it goes to
/// sleep anyway.
///
/// Failure is never a silent downgrade of one side:
/// - registration refused: both halves are fences, from the start, for all.
/// - the expedited barrier refused after registration (ENOMEM; EPERM after a
///   checkpoint/restore): it is retried, then MEMBARRIER_CMD_GLOBAL (slow but
///   needing no registration) serves as the waiter half. If that fails too,
///   the mode becomes `degraded` (stored once, when it changes): notifiers
///   fence from then on, but one that read the old mode may have used only a
///   compiler barrier, so heavy() returns false and the waiter must not sleep
///   without a bound: it re-checks its condition every few milliseconds.
class DekkerBarrier {
 public:
  enum Mode : int { unknown, symmetric, asymmetric, degraded };

  /// The notifier half, between publishing and reading the interest count.
  static void light() noexcept {
#if KEEL_DETAIL_MEMBARRIER
    // relaxed: a notifier that sees asymmetric relies on the waiters'
    // membarrier, which every waiter does once the mode is asymmetric (see
    // heavy()); one that sees anything else fences.
    if (mode_.load(std::memory_order_relaxed) == asymmetric) {
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the compiler must not reorder
      return;
    }
#endif
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  /// The waiter half, between registering interest and re-checking. True
  /// when exact; false in the degraded mode (the caller sleeps in bounded
  /// slices, re-checking between them).
  static bool heavy() noexcept {
#if KEEL_DETAIL_MEMBARRIER
    int m = mode_.load(std::memory_order_relaxed);
    if (m == unknown) m = decide();
    if (m == asymmetric) {
      for (int attempt = 0; attempt < 3; ++attempt) {
        if (call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return true;
      }
      // Every running thread passes a barrier (an RCU grace period): slow,
      // but exact, and needs no registration.
      if (call(MEMBARRIER_CMD_GLOBAL) == 0) return true;
      // relaxed: only the value matters; notifiers that read it fence.
      int expected = asymmetric;
      mode_.compare_exchange_strong(expected, degraded, std::memory_order_relaxed);
      m = degraded;
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return m != degraded;
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return true;
#endif
  }

  /// The mode in use (unknown until the first waiter). For tests and stats.
  [[nodiscard]] static Mode mode() noexcept {
#if KEEL_DETAIL_MEMBARRIER
    return static_cast<Mode>(mode_.load(std::memory_order_relaxed));
#else
    return symmetric;
#endif
  }

#if defined(KEEL_CHANNEL_TEST_HOOKS)
  /// Tests only: forget the decision, so the next waiter registers again.
  static void test_reset() noexcept {
#if KEEL_DETAIL_MEMBARRIER
    mode_.store(unknown, std::memory_order_relaxed);
#endif
  }
#endif

 private:
#if KEEL_DETAIL_MEMBARRIER
  static int call(int cmd) noexcept {
#if defined(KEEL_CHANNEL_TEST_HOOKS)
    // acquire: the test installed the hook before starting the waiters.
    if (auto* hook = membarrier_test_hook.load(std::memory_order_acquire)) return hook(cmd);
#endif
    return static_cast<int>(syscall(__NR_membarrier, cmd, 0, 0));
  }
  // The first waiter(s) register; the first decision wins. A waiter never
  // passes heavy() with a plain fence after the mode became asymmetric: it
  // either read asymmetric itself or decided (and then reads the winner).
  static int decide() noexcept {
    const int want = call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 ? asymmetric : symmetric;
    int expected = unknown;
    // relaxed: the mode is a value; the protocol's ordering comes from the
    // barriers themselves.
    if (mode_.compare_exchange_strong(expected, want, std::memory_order_relaxed)) return want;
    return expected;
  }
  inline static std::atomic<int> mode_{unknown};
#endif
};

class WaitList {
 public:
  /// `fenced`: both halves of the wake-up protocol are seq_cst fences (every
  /// notifier pays a fence, a waiter no system call). For channels whose
  /// waiters register often and whose senders are few and slow next to a
  /// system call: an Asio coroutine re-arming async_recv after every
  /// message (the WebSocket client's queues). Otherwise the DekkerBarrier.
  explicit WaitList(bool fenced = false) noexcept : fenced_(fenced) {}
  /// For state guarded by a mutex that both the notifier (around its change,
  /// before it notifies) and the waiter's ready() check take (oneshot,
  /// broadcast): no barrier on either side. Either the waiter's check locks
  /// after the notifier's change and sees it, or the check's unlock
  /// synchronises with the notifier's lock, so the waiter's increment of the
  /// interest count happens-before the notifier reads it.
  struct Locked {};
  explicit WaitList(Locked) noexcept : fenced_(false), locked_(true) {}
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;

  [[nodiscard]] bool fenced() const noexcept { return fenced_; }

  /// Call after making the awaited condition true. The fence pairs with the
  /// one in wait()/add(): see the file comment.
  void notify_one() noexcept {
    if (interest_after_publish() == 0) return;
    notify_slow(false);
  }
  /// Wakes every parked thread and waiter (close).
  void notify_all() noexcept {
    if (interest_after_publish() == 0) return;
    notify_slow(true);
  }
  /// notify_one, or notify_all when `all()` says so; all() runs after the
  /// notifier barrier (so it sees what a parked waiter's re-check saw) and
  /// only when someone is parked.
  template <class All>
  void notify_one_or_all(All&& all) noexcept {
    if (interest_after_publish() == 0) return;
    notify_slow(all());
  }

  /// Threads registered to sleep and not yet signalled (a snapshot; tests
  /// use it to know a thread is parked).
  [[nodiscard]] std::uint32_t sleepers() noexcept {
    std::lock_guard lk(m_);
    return unsignaled_;
  }
  /// One-shot waiters (select, async) registered now (a snapshot).
  [[nodiscard]] std::size_t registered() noexcept {
    std::lock_guard lk(m_);
    return waiters_.size();
  }

  /// Parks the calling thread until `ready()` returns true or the deadline
  /// passes; returns ready()'s last answer. ready() runs without the list's
  /// mutex held (it may notify the other list of the same channel).
  template <class Ready, class Clock, class Duration>
  bool wait(Ready&& ready, const std::optional<std::chrono::time_point<Clock, Duration>>& deadline) {
    std::unique_lock lk(m_);
    unsigned slices = 0;
    for (;;) {
      // Register one unit of interest, then re-check (the Dekker half).
      ++unsignaled_;
      // seq_cst RMW, and the fence below: the waiter half of the protocol.
      interest_.fetch_add(1, std::memory_order_seq_cst);
      const std::uint64_t seen = epoch_;
      lk.unlock();
      const bool exact = waiter_fence();
      const bool ok = ready();
      lk.lock();
      if (ok || epoch_ != seen) {
        if (epoch_ == seen) retract();  // nobody signalled us: take the unit back
        if (ok) return true;
        continue;  // signalled but the value went elsewhere: register again
      }
      bool signalled = true;
      if (!exact) {
        // Degraded barrier (see DekkerBarrier): a notification may be missed,
        // so sleep in bounded slices and re-check between them.
        const auto slice_end = Clock::now() + degraded_slice(slices++);
        if (!deadline || slice_end < *deadline) {
          if (!cv_.wait_until(lk, slice_end, [&] { return epoch_ != seen; })) retract();
          continue;  // signalled or the slice ended: register again and re-check
        }
      }
      if (deadline) {
        signalled = cv_.wait_until(lk, *deadline, [&] { return epoch_ != seen; });
      } else {
        cv_.wait(lk, [&] { return epoch_ != seen; });
      }
      if (!signalled) {
        retract();
        lk.unlock();
        return ready();  // one last look: a value may have raced the timeout
      }
      // Signalled: the notifier consumed our unit and made the condition
      // true just before. Look first without registering (no barrier, no
      // system call): usually the value is there. Only if another thread
      // took it, register again and re-check (the loop).
      lk.unlock();
      if (ready()) return true;
      lk.lock();
    }
  }

  /// Registers a one-shot waiter. The caller re-checks its condition after
  /// this returns (the fence is the waiter half of the protocol). Returns
  /// false when the barrier is degraded (see DekkerBarrier): a wake-up may
  /// then be missed, and the caller must re-check at a bounded interval.
  /// Throws std::bad_alloc (nothing registered then).
  [[nodiscard]] bool add(Waiter* w) {
    add_deferred(w);
    return waiter_fence();
  }

  /// add() without the waiter half of the barrier, for a waiter that
  /// registers in several lists: it then calls Fences::pass() once for all
  /// of them before re-checking (one membarrier instead of one per list).
  void add_deferred(Waiter* w) {
    std::lock_guard lk(m_);
#if defined(KEEL_CHANNEL_TEST_HOOKS)
    // acquire: installed by the test before it calls in.
    if (auto* fail = wait_list_add_fail_hook.load(std::memory_order_acquire); fail != nullptr && fail()) {
      throw std::bad_alloc();
    }
#endif
    waiters_.push_back(w);
    interest_.fetch_add(1, std::memory_order_seq_cst);
  }
  /// The waiter half for several lists registered with add_deferred().
  class Fences {
   public:
    void need(const WaitList& l) noexcept {
      if (l.locked_) return;
      (l.fenced_ ? fence_ : heavy_) = true;
    }
    /// Same answer as add(): false when the barrier is degraded.
    [[nodiscard]] bool pass() const noexcept {
#if !KEEL_DETAIL_TSAN
      if (heavy_) return DekkerBarrier::heavy();  // includes a seq_cst fence
      if (fence_) std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
      return true;
    }

   private:
    bool heavy_ = false;
    bool fence_ = false;
  };

  /// How long a waiter sleeps between re-checks when the barrier is
  /// degraded: 1 ms, doubling to 64 ms.
  static std::chrono::milliseconds degraded_slice(unsigned n) noexcept {
    return std::chrono::milliseconds(1U << std::min(n, 6U));
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
  // The notifier half: after publishing, read interest_ so that either we
  // see the waiter's registration or the waiter's re-check sees our publish.
  std::uint32_t interest_after_publish() noexcept {
    // relaxed: ordered by the state's mutex (see Locked).
    if (locked_) return interest_.load(std::memory_order_relaxed);
#if KEEL_DETAIL_TSAN
    // ThreadSanitizer does not model fences (and g++ rejects them under
    // -Werror): an acq_rel RMW on interest_ gives the same guarantee, since
    // it and the waiter's increment are ordered in interest_'s modification
    // order and the later one synchronises with the earlier.
    return interest_.fetch_add(0, std::memory_order_acq_rel);
#else
    // relaxed load after the notifier half of the barrier (see DekkerBarrier,
    // or a plain seq_cst fence pairing with the waiter's when fenced).
    if (fenced_) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    } else {
      DekkerBarrier::light();
    }
    return interest_.load(std::memory_order_relaxed);
#endif
  }
  // The waiter half, after its seq_cst increment of interest_. False when
  // the barrier is degraded (the waiter must not sleep without a bound).
  bool waiter_fence() const noexcept {
#if !KEEL_DETAIL_TSAN
    if (locked_) return true;  // the state's mutex orders both sides
    if (fenced_) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    } else {
      return DekkerBarrier::heavy();
    }
#endif
    return true;
  }

  // Each sleeping (or about to sleep) thread holds one unit in unsignaled_
  // and interest_; a notification consumes units, so once the sleepers are
  // signalled, later notifications take the fast path again even before
  // the woken threads have run (important on an oversubscribed machine).
  // Invariant: unsignaled_ >= threads blocked in cv_ and not yet signalled;
  // any excess is consumed by the next notification (one spare lock).
  void notify_slow(bool all) noexcept {
    std::lock_guard lk(m_);
    const bool signalled = unsignaled_ != 0;
    if (signalled) {
      ++epoch_;
      if (all) {
        interest_.fetch_sub(unsignaled_, std::memory_order_relaxed);
        unsignaled_ = 0;
        cv_.notify_all();
      } else {
        --unsignaled_;
        interest_.fetch_sub(1, std::memory_order_relaxed);
        cv_.notify_one();
      }
    }
    if (!waiters_.empty()) {
      // Select waiters are all woken: each re-checks every channel it
      // watches, and none of them can swallow the notification meant for a
      // thread blocked in recv()/send(). Exclusive waiters (Asio, external
      // pollers) use or pass on what wakes them, so notify_one wakes one of
      // them (no thundering herd) -- even when a parked thread was signalled
      // too: `signalled` may have spent the notification on a spare unit
      // (two threads that saw the same epoch bump both keep theirs, see
      // wait()), and skipping the exclusive waiter then loses its wake-up
      // for good. A spare wake-up only costs the woken one a re-check.
      bool given = false;
      std::size_t kept = 0;
      for (Waiter* w : waiters_) {
        if (!all && w->exclusive()) {
          if (given) {
            waiters_[kept++] = w;
            continue;
          }
          given = true;
        }
        w->wake();
      }
      interest_.fetch_sub(static_cast<std::uint32_t>(waiters_.size() - kept), std::memory_order_relaxed);
      waiters_.resize(kept);
    }
  }

  void retract() noexcept {  // under m_
    if (unsignaled_ == 0) return;
    --unsignaled_;
    // relaxed: a stale non-zero only costs a notifier one lock.
    interest_.fetch_sub(1, std::memory_order_relaxed);
  }

  const bool fenced_;
  const bool locked_ = false;
  std::atomic<std::uint32_t> interest_{0};  // unsignaled_ + waiters_.size()
  std::mutex m_;
  std::condition_variable cv_;
  std::uint32_t unsignaled_ = 0;  // under m_: sleepers not yet signalled
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

/// A deadline from a time point of any clock (another clock's is converted
/// through the time left on it), saturating like make_deadline().
template <class Clock, class Duration>
Deadline make_deadline_at(std::chrono::time_point<Clock, Duration> t);

/// deadline_after(d), or no deadline at all when d is too long to represent.
template <class Rep, class Period>
Deadline make_deadline(std::chrono::duration<Rep, Period> d) noexcept {
  const auto t = deadline_after(d);
  if (t == std::chrono::steady_clock::time_point::max()) return std::nullopt;
  return t;
}

template <class Clock, class Duration>
Deadline make_deadline_at(std::chrono::time_point<Clock, Duration> t) {
  if constexpr (std::is_same_v<std::chrono::time_point<Clock, Duration>,
                               std::chrono::steady_clock::time_point>) {
    if (t == std::chrono::steady_clock::time_point::max()) return std::nullopt;
    return t;
  } else {
    const auto now = Clock::now();
    if (t <= now) return std::chrono::steady_clock::now();
    return make_deadline(t - now);
  }
}

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace keel::detail
