// keel/channel/poll.hpp: waiting on a keel::channel from outside, without
// blocking a thread (an executor, an event loop). Rust's poll_recv(cx) with a
// Waker, in C++: try now, else register a waiter that the channel wakes.
//
//     struct Wake final : keel::ChannelWaiter {       // e.g. posts a retry
//       void wake() noexcept override { loop.post(retry); }
//       bool exclusive() const noexcept override { return true; }
//     };
//     keel::PollReceiver<Job> port(rx);
//     std::optional<Job> job;
//     switch (port.poll_recv(waiter, job)) {
//       case keel::PollStatus::ready:   run(*job); break;
//       case keel::PollStatus::closed:  stop(); break;
//       case keel::PollStatus::pending: break;             // waiter.wake() comes once
//       case keel::PollStatus::retry:   loop.post(retry); break;
//     }
//
// keel::asio::async_recv/async_send are built on this and nothing else.
//
// The contract (see docs/channel.md, "Waiting from an executor"):
// - pending: the waiter is registered; its wake() is called exactly once for
//   this registration (it may have run already by the time poll_* returns),
//   unless cancel_wait() takes the registration back first. After wake() the
//   waiter calls poll_* again (with woken = true).
// - wake() runs on the notifying thread (a sender, a receiver, close()) while
//   the channel's wait list is locked: it must be quick, must not throw, and
//   must not call into the same channel (post a retry instead).
// - Exclusive waiters (exclusive() returns true) are woken one per value (or
//   free slot) and promise to use each wake-up or pass it on: either they
//   poll again, or they call pass_wakeup(). Non-exclusive waiters are woken
//   by every notification, as select's are.
// - close(), or the last handle of either side going, wakes every waiter;
//   the next poll_* says closed (a receiver drains what is buffered first).
// - A waiter stays alive while registered: until its wake() has returned,
//   or cancel_wait() has returned (whatever it returned: once it returns,
//   wake() is not running and will not run for that registration). A
//   wake() that lets a sleeping thread go on must not touch the waiter
//   after that (signal under the waiter's own lock).
// - One registration at a time per waiter and channel side.
//
// Thread-safety: a PollReceiver / PollSender is used by one thread at a time
// (copies from any threads); cancel_wait() and pass_wakeup() may be called
// from any thread.
#pragma once

#include <keel/channel/mpmc.hpp>
#include <keel/detail/channel_wait.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

namespace keel {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// A one-shot waiter that a channel wakes (see the file comment): override
/// `void wake() noexcept` and, for a waiter that uses or passes on every
/// wake-up it gets, `bool exclusive() const noexcept` to return true.
/// Neither copyable nor destroyed through this base.
using ChannelWaiter = detail::Waiter;

/// What PollReceiver::poll_recv and PollSender::poll_send did.
enum class PollStatus : std::uint8_t {
  ready,    ///< done: a value was received (sent); nothing is registered
  closed,   ///< closed (receive: and drained); nothing taken, nothing registered
  pending,  ///< would block: the waiter is registered and wake() comes once
  retry,    ///< would block, but nothing is registered: call again soon (see docs)
};

}  // namespace KEEL_DETAIL_CHANNEL_ABI
namespace detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {
/// Registers `w` in `list`, then re-checks `ready`. Exactly one wake-up or
/// retry follows: pending (wake() comes, or came already) or retry (we took
/// the registration back: ready meanwhile, or the wake-up barrier is
/// degraded and could miss the notification).
template <class Ready>
PollStatus register_waiter(WaitList& list, Waiter& w, Ready&& ready) {
  const bool exact = list.add(&w);  // throws std::bad_alloc: nothing registered
  if (exact && !ready()) return PollStatus::pending;
  if (list.remove(&w)) return PollStatus::retry;
  return PollStatus::pending;  // woken meanwhile: wake() has run
}
}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace detail
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// Receives from a channel without blocking, registering a ChannelWaiter
/// when it would block. Holds the channel but does not count as a
/// receiver: the channel closes when the last Receiver goes even while a
/// PollReceiver exists (its poll_recv then says closed once drained, or at
/// once: buffered values are destroyed with the last Receiver).
template <class T>
class PollReceiver {
 public:
  PollReceiver() noexcept = default;
  explicit PollReceiver(const Receiver<T>& rx) noexcept : chan_(rx.native_handle()) {}

  /// Takes the next value into `out` (ready), or says closed (closed and
  /// drained), or registers `w` (pending), or asks to be called again
  /// (retry). `woken`: this call follows a wake() of `w`; if it takes a
  /// value and more are ready, it wakes one more waiter, so values that
  /// arrived while `w` was on its way do not wait for the next send.
  /// Throws std::bad_alloc when registering fails (nothing taken then).
  PollStatus poll_recv(ChannelWaiter& w, std::optional<T>& out, bool woken = false) {
    if (!chan_) return PollStatus::closed;
    detail::Chan<T>& c = *chan_;
    switch (c.try_pop([&](T&& v) noexcept { out.emplace(std::move(v)); })) {
      case detail::ChanOp::ok:
        if (woken && c.poll_recv()) c.recv_wait().notify_one();
        return PollStatus::ready;
      case detail::ChanOp::closed:
        return PollStatus::closed;
      case detail::ChanOp::would_block:
        break;
    }
    c.count_recv_wait();
    return detail::register_waiter(c.recv_wait(), w, [&c] { return c.poll_recv(); });
  }
  /// Takes `w`'s registration back. True: it was registered and will not be
  /// woken. False: it was woken already (or never registered); its wake()
  /// has returned. Either way `w` may be destroyed afterwards.
  bool cancel_wait(ChannelWaiter& w) noexcept { return chan_ && chan_->recv_wait().remove(&w); }
  /// For an exclusive waiter that was woken and will not poll again
  /// (cancelled, shutting down): gives the wake-up to the next waiter.
  void pass_wakeup() noexcept {
    if (chan_) chan_->recv_wait().notify_one();
  }
  /// True when connected to a channel.
  [[nodiscard]] bool valid() const noexcept { return chan_ != nullptr; }

 private:
  std::shared_ptr<detail::Chan<T>> chan_;
};

/// Sends on a channel without blocking, registering a ChannelWaiter when it
/// would block. Holds the channel but does not count as a sender: the
/// channel closes when the last Sender goes even while a PollSender exists.
template <class T>
class PollSender {
 public:
  PollSender() noexcept = default;
  explicit PollSender(const Sender<T>& tx) noexcept : chan_(tx.native_handle()) {}

  /// Sends `value` (ready: moved from), or says closed, or registers `w`
  /// (pending), or asks to be called again (retry); `value` is untouched
  /// unless ready. `woken`: as for PollReceiver::poll_recv, with free
  /// slots instead of values. On a rendezvous channel (capacity 0) a send
  /// is ready only when a receiver is blocked in recv() (not one that
  /// polls); a receiver that blocks wakes the pending waiters.
  /// Throws std::bad_alloc when registering fails (nothing sent then).
  PollStatus poll_send(ChannelWaiter& w, T& value, bool woken = false) {
    if (!chan_) return PollStatus::closed;
    detail::Chan<T>& c = *chan_;
    switch (c.try_push(value)) {
      case detail::ChanOp::ok:
        if (woken && c.poll_send()) c.send_wait().notify_one();
        return PollStatus::ready;
      case detail::ChanOp::closed:
        return PollStatus::closed;
      case detail::ChanOp::would_block:
        break;
    }
    c.count_send_wait();
    return detail::register_waiter(c.send_wait(), w, [&c] { return c.poll_send(); });
  }
  /// As PollReceiver::cancel_wait.
  bool cancel_wait(ChannelWaiter& w) noexcept { return chan_ && chan_->send_wait().remove(&w); }
  /// As PollReceiver::pass_wakeup.
  void pass_wakeup() noexcept {
    if (chan_) chan_->send_wait().notify_one();
  }
  [[nodiscard]] bool valid() const noexcept { return chan_ != nullptr; }

 private:
  std::shared_ptr<detail::Chan<T>> chan_;
};

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace keel
