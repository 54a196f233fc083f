// keel/channel/select.hpp: wait on several receivers at once (crossbeam's
// Select, Go's select), with a timeout, fairly.
//
//     auto r = keel::select_for(std::chrono::milliseconds(100),
//         keel::on(jobs_rx,  [&](keel::Result<Job> j)   { if (j) run(*j); }),
//         keel::on(stop_rx,  [&](keel::Result<Stop> s)  { stopping = true; }),
//         keel::on(events_rx,[&](keel::Result<Event> e) { ... }));   // broadcast too
//     if (!r) { /* Errc::timeout: nothing arrived */ }                // else *r is the arm's index
//
// Or, lower level, a Selector that only says which receiver is ready:
//
//     keel::Selector sel;
//     const auto a = sel.add(rx_a), b = sel.add(rx_b);
//     auto i = sel.ready_for(1s);            // then rx_a/rx_b.try_recv()
//
// Receivers of keel::channel, keel::broadcast and keel::oneshot can be mixed,
// whatever their T.
//
// Semantics:
// - "Ready" means a receive would not wait: a value is there, or the
//   receiver is closed (and drained), or lagged. A closed receiver is always
//   ready, so select keeps returning it: drop it from the set once it says
//   Errc::closed.
// - Fairness: each call starts scanning at a different arm (round robin per
//   thread), so a busy receiver cannot starve the others.
// - select_for / select receive the value themselves and call exactly one
//   arm's function, with the value or the closed/lagged error. With a
//   Selector, another consumer of the same MPMC channel may take the value
//   between ready() and your try_recv() (it then says Errc::empty): loop.
// - Waiting blocks the thread (no spinning) on a condition variable that
//   every watched channel wakes.
// Thread-safety: a Selector is used by one thread at a time; the receivers
// it watches must outlive it.
#pragma once

#include <keel/channel/broadcast.hpp>
#include <keel/channel/mpmc.hpp>
#include <keel/channel/oneshot.hpp>
#include <keel/detail/channel_wait.hpp>
#include <keel/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace keel {

namespace detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

// How select looks at each kind of receiver: ready without consuming, and
// the list that wakes its waiters.
template <class T>
bool select_poll(const Receiver<T>& rx) {
  const auto& c = rx.native_handle();
  return !c || c->poll_recv();
}
template <class T>
WaitList* select_list(const Receiver<T>& rx) {
  const auto& c = rx.native_handle();
  return c ? &c->recv_wait() : nullptr;
}
template <class T>
bool select_poll(const BroadcastReceiver<T>& rx) {
  return rx.poll_ready();
}
template <class T>
WaitList* select_list(const BroadcastReceiver<T>& rx) {
  return rx.wait_list();
}
template <class T>
bool select_poll(const OneshotReceiver<T>& rx) {
  const auto& s = rx.native_handle();
  return !s || s->poll();
}
template <class T>
WaitList* select_list(const OneshotReceiver<T>& rx) {
  const auto& s = rx.native_handle();
  return s ? &s->recv_wait : nullptr;
}

/// Per-thread round robin start, so that fresh Selectors are fair too.
inline std::size_t next_select_start() noexcept {
  thread_local std::size_t counter = 0;
  return counter++;
}

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace detail
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// Waits until one of several receivers is ready; see the file comment.
class Selector {
 public:
  Selector() : start_(detail::next_select_start()) {}

  /// Watches a receiver (keel::Receiver, BroadcastReceiver or
  /// OneshotReceiver); returns its index. `rx` must outlive the Selector.
  template <class R>
  std::size_t add(const R& rx) {
    entries_.push_back(Entry{&rx,
                             [](const void* p) { return detail::select_poll(*static_cast<const R*>(p)); },
                             [](const void* p) { return detail::select_list(*static_cast<const R*>(p)); }});
    return entries_.size() - 1;
  }
  /// A temporary receiver would be gone before the Selector looks at it.
  template <class R>
  std::size_t add(const R&& rx) = delete;
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// The index of a ready receiver now, or Errc::empty.
  Result<std::size_t> try_ready() {
    if (entries_.empty()) return fail(Errc::invalid_argument, "select on no receivers");
    if (auto i = poll_once()) return *i;
    return Errc::empty;
  }
  /// Waits for a ready receiver.
  Result<std::size_t> ready() { return wait_impl(std::nullopt); }
  /// Waits at most `timeout`: Errc::timeout.
  template <class Rep, class Period>
  Result<std::size_t> ready_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_impl(detail::make_deadline(timeout));
  }
  /// Waits until `deadline` (of any clock) at most: Errc::timeout.
  template <class Clock, class Duration>
  Result<std::size_t> ready_until(std::chrono::time_point<Clock, Duration> deadline) {
    return wait_impl(detail::make_deadline_at(deadline));
  }

 private:
  struct Entry {
    const void* rx;
    bool (*poll)(const void*);
    detail::WaitList* (*list)(const void*);
  };

  std::optional<std::size_t> poll_once() {
    const std::size_t n = entries_.size();
    const std::size_t first = start_++ % n;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (first + k) % n;
      if (entries_[i].poll(entries_[i].rx)) return i;
    }
    return std::nullopt;
  }

  Result<std::size_t> wait_impl(detail::Deadline deadline) {
    if (entries_.empty()) return fail(Errc::invalid_argument, "select on no receivers");
    if (auto i = poll_once()) return *i;
    detail::ThreadWaiter waiter;
    unsigned slices = 0;
    for (;;) {
      std::optional<std::size_t> hit;
      bool woken = true;
      {
        // Registered in the first `n` lists; every way out of this block
        // (an exception from add() included) unregisters from exactly those,
        // so no list keeps a pointer to this stack frame's waiter.
        std::size_t n = 0;
        struct Unregister {
          const std::vector<Entry>& entries;
          detail::ThreadWaiter& w;
          const std::size_t& n;
          ~Unregister() {
            for (std::size_t i = 0; i < n; ++i) {
              if (detail::WaitList* l = entries[i].list(entries[i].rx)) (void)l->remove(&w);
            }
          }
        } unregister{entries_, waiter, n};
        detail::WaitList::Fences fences;
        for (; n < entries_.size(); ++n) {
          detail::WaitList* l = entries_[n].list(entries_[n].rx);
          if (l == nullptr) continue;
          l->add_deferred(&waiter);  // may throw: n excludes this one
          fences.need(*l);
        }
        // Registered; one barrier for all the lists (not one membarrier
        // each): a change from now on wakes us.
        const bool exact = fences.pass();
        hit = poll_once();
        if (!hit) {
          if (exact) {
            woken = waiter.wait_until(deadline);
          } else {
            // Degraded wake-up barrier: sleep in bounded slices.
            const auto slice_end =
                std::chrono::steady_clock::now() + detail::WaitList::degraded_slice(slices++);
            if (deadline && *deadline <= slice_end) {
              woken = waiter.wait_until(deadline);
            } else {
              (void)waiter.wait_until(detail::Deadline(slice_end));
            }
          }
        }
      }
      if (hit) return *hit;
      if (auto i = poll_once()) return *i;
      if (!woken) return Errc::timeout;
    }
  }

  std::vector<Entry> entries_;
  std::size_t start_;
};

/// One arm of select_for: a receiver and what to do with what it gives.
template <class R, class F>
struct SelectArm {
  R* rx;
  F fn;
};

/// `keel::on(rx, [](keel::Result<T> v) {...})`: an arm for select/select_for.
template <class R, class F>
[[nodiscard]] SelectArm<R, std::decay_t<F>> on(R& rx, F&& fn) {
  return {&rx, std::forward<F>(fn)};
}

}  // namespace KEEL_DETAIL_CHANNEL_ABI
namespace detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

template <class Arm>
bool run_arm(Arm& arm) {
  auto r = arm.rx->try_recv();
  if (!r && r.error().code() == Errc::empty) return false;  // taken by another consumer
  arm.fn(std::move(r));
  return true;
}

template <class... Arms>
Result<std::size_t> select_impl(Deadline deadline, Arms&... arms) {
  Selector sel;
  (sel.add(*arms.rx), ...);
  for (;;) {
    Result<std::size_t> idx = deadline ? sel.ready_until(*deadline) : sel.ready();
    if (!idx) return idx;
    std::size_t i = 0;
    bool handled = false;
    ((i++ == *idx ? (handled = run_arm(arms)) : false), ...);
    if (handled) return idx;
  }
}

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace detail
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// Receives from whichever arm is ready first, calls its function with the
/// Result (a value, or the closed/lagged error), and returns the arm's index.
template <class... Arms>
Result<std::size_t> select(Arms... arms) {
  static_assert(sizeof...(Arms) > 0, "select needs at least one arm");
  return detail::select_impl(std::nullopt, arms...);
}

/// select until a deadline (of any clock): Errc::timeout when no arm was
/// ready in time (no function is called then).
template <class Clock, class Duration, class... Arms>
Result<std::size_t> select_until(std::chrono::time_point<Clock, Duration> deadline, Arms... arms) {
  static_assert(sizeof...(Arms) > 0, "select_until needs at least one arm");
  return detail::select_impl(detail::make_deadline_at(deadline), arms...);
}

/// select with a timeout: Errc::timeout when no arm was ready in time (no
/// function is called then).
template <class Rep, class Period, class... Arms>
Result<std::size_t> select_for(std::chrono::duration<Rep, Period> timeout, Arms... arms) {
  static_assert(sizeof...(Arms) > 0, "select_for needs at least one arm");
  return detail::select_impl(detail::make_deadline(timeout), arms...);
}

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace keel
