// keel/channel/oneshot.hpp: keel::oneshot<T>(), one value from one sender to
// one receiver (request/response).
//
//     auto [reply_tx, reply_rx] = keel::oneshot<int>();
//     jobs.send(Job{42, std::move(reply_tx)});   // the worker calls reply_tx.send(answer)
//     keel::Result<int> answer = reply_rx.recv_for(std::chrono::seconds(1));
//
// Thread-safety: the two handles are move-only; each may be used from a
// different thread.
//
// Guarantees: the value is delivered at most once. Dropping the sender
// without sending wakes the receiver with Errc::closed; when the receiver is
// gone (or closed), send fails with Errc::closed and hands the value back.
// recv() after the value was taken gives Errc::closed.
#pragma once

#include <keel/channel/send_result.hpp>
#include <keel/detail/channel_wait.hpp>
#include <keel/result.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace keel {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

template <class T>
class OneshotSender;
template <class T>
class OneshotReceiver;

}  // namespace KEEL_DETAIL_CHANNEL_ABI
namespace detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

template <class T>
struct OneshotState {
  std::mutex m;
  std::optional<T> value;                  // under m
  bool sender_done = false;                // under m: sent, or the sender is gone
  bool receiver_done = false;              // under m: the receiver is gone or closed
  WaitList recv_wait{WaitList::Locked{}};  // the state is under m

  enum class Poll : std::uint8_t { value, empty, closed };
  /// Takes the value if there is one.
  Poll try_take(std::optional<T>& out) {
    std::lock_guard lk(m);
    if (value) {
      out.emplace(std::move(*value));
      value.reset();
      receiver_done = true;  // one value per oneshot
      return Poll::value;
    }
    return (sender_done || receiver_done) ? Poll::closed : Poll::empty;
  }
  bool poll() {
    std::lock_guard lk(m);
    return value.has_value() || sender_done || receiver_done;
  }
};

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace detail
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// The sending half of a oneshot: send(v) once.
template <class T>
class OneshotSender {
 public:
  OneshotSender() noexcept = default;
  OneshotSender(OneshotSender&&) noexcept = default;
  OneshotSender& operator=(OneshotSender&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::move(o.state_);
    }
    return *this;
  }
  OneshotSender(const OneshotSender&) = delete;
  OneshotSender& operator=(const OneshotSender&) = delete;
  ~OneshotSender() { reset(); }

  /// Delivers the value (never waits). Errc::closed, with the value back,
  /// when the receiver is gone or closed, or this sender was already used.
  SendResult<T> send(T value) {
    if (!state_) return {Error(Errc::closed), std::move(value)};
    auto st = std::move(state_);
    {
      std::lock_guard lk(st->m);
      st->sender_done = true;
      if (st->receiver_done) return {Error(Errc::closed), std::move(value)};
      try {
        // From a copy when T's move may throw, so `value` is intact if
        // building it throws; the exception then propagates and this sender
        // is still usable (the receiver is told nothing).
        st->value.emplace(std::move_if_noexcept(value));
      } catch (...) {
        st->sender_done = false;
        state_ = std::move(st);  // the mutex lives on in state_
        throw;
      }
    }
    st->recv_wait.notify_all();
    return {};
  }
  /// True once the receiver is gone or closed (a send would fail).
  [[nodiscard]] bool is_closed() const {
    if (!state_) return true;
    std::lock_guard lk(state_->m);
    return state_->receiver_done;
  }
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  /// Drops the sender without sending: the receiver gets Errc::closed.
  void reset() noexcept {
    if (!state_) return;
    auto st = std::move(state_);
    {
      std::lock_guard lk(st->m);
      st->sender_done = true;
    }
    st->recv_wait.notify_all();
  }

 private:
  template <class U>
  friend std::pair<OneshotSender<U>, OneshotReceiver<U>> oneshot();
  explicit OneshotSender(std::shared_ptr<detail::OneshotState<T>> s) noexcept : state_(std::move(s)) {}
  std::shared_ptr<detail::OneshotState<T>> state_;
};

/// The receiving half of a oneshot.
template <class T>
class OneshotReceiver {
 public:
  OneshotReceiver() noexcept = default;
  OneshotReceiver(OneshotReceiver&&) noexcept = default;
  OneshotReceiver& operator=(OneshotReceiver&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::move(o.state_);
    }
    return *this;
  }
  OneshotReceiver(const OneshotReceiver&) = delete;
  OneshotReceiver& operator=(const OneshotReceiver&) = delete;
  ~OneshotReceiver() { reset(); }

  /// Waits for the value; Errc::closed if the sender went without sending
  /// (or the value was already taken).
  Result<T> recv() { return recv_impl(std::nullopt); }
  /// Waits at most `timeout`: Errc::timeout.
  template <class Rep, class Period>
  Result<T> recv_for(std::chrono::duration<Rep, Period> timeout) {
    return recv_impl(detail::make_deadline(timeout));
  }
  /// Waits until `deadline` (of any clock) at most: Errc::timeout.
  template <class Clock, class Duration>
  Result<T> recv_until(std::chrono::time_point<Clock, Duration> deadline) {
    return recv_impl(detail::make_deadline_at(deadline));
  }
  /// The value if it is there: Errc::empty, or Errc::closed.
  Result<T> try_recv() {
    if (!state_) return Errc::closed;
    std::optional<T> out;
    return finish(state_->try_take(out), out, Errc::empty);
  }
  /// Refuses the value: a later send fails and hands it back.
  void close() {
    if (!state_) return;
    std::lock_guard lk(state_->m);
    state_->receiver_done = true;
  }
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  void reset() noexcept {
    if (!state_) return;
    {
      std::lock_guard lk(state_->m);
      state_->receiver_done = true;
      state_->value.reset();
    }
    state_.reset();
  }

  /// Internal: the shared state, for keel's select.
  [[nodiscard]] const std::shared_ptr<detail::OneshotState<T>>& native_handle() const noexcept {
    return state_;
  }

 private:
  template <class U>
  friend std::pair<OneshotSender<U>, OneshotReceiver<U>> oneshot();
  explicit OneshotReceiver(std::shared_ptr<detail::OneshotState<T>> s) noexcept : state_(std::move(s)) {}

  using Poll = typename detail::OneshotState<T>::Poll;
  static Result<T> finish(Poll p, std::optional<T>& out, Errc would_block) {
    switch (p) {
      case Poll::value:
        return Result<T>(std::in_place, std::move(*out));
      case Poll::empty:
        return would_block;
      case Poll::closed:
        break;
    }
    return Errc::closed;
  }

  Result<T> recv_impl(detail::Deadline deadline) {
    if (!state_) return Errc::closed;
    std::optional<T> out;
    Poll p = state_->try_take(out);
    if (p == Poll::empty) {
      state_->recv_wait.wait(
          [&] {
            p = state_->try_take(out);
            return p != Poll::empty;
          },
          deadline);
    }
    return finish(p, out, Errc::timeout);
  }

  std::shared_ptr<detail::OneshotState<T>> state_;
};

/// `auto [tx, rx] = keel::oneshot<T>();` One value, once.
template <class T>
[[nodiscard]] std::pair<OneshotSender<T>, OneshotReceiver<T>> oneshot() {
  static_assert(std::is_move_constructible_v<T> && !std::is_reference_v<T>,
                "keel::oneshot<T> needs a move-constructible, non-reference T");
  auto s = std::make_shared<detail::OneshotState<T>>();
  return {OneshotSender<T>(s), OneshotReceiver<T>(std::move(s))};
}

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace keel
