// keel/channel/broadcast.hpp: keel::broadcast<T>(capacity), every receiver
// sees every value (tokio's broadcast semantics).
//
//     auto [tx, rx] = keel::broadcast<Event>(64);
//     auto rx2 = tx.subscribe();              // sees values sent from now on
//     (void)tx.send(Event{...});              // never waits
//     auto e = rx.recv();
//     if (!e && e.error().code() == keel::Errc::lagged) {
//       // rx fell more than 64 behind: rx.lagged_count() values were skipped;
//       // the next recv() gives the oldest value still retained.
//     }
//
// Thread-safety: senders and receivers are copyable handles usable from any
// thread. A copied receiver continues from the same position as the original.
//
// Guarantees:
// - A receiver gets every value sent after it subscribed, in send order
//   (one total order for all senders), unless it lags: the channel keeps the
//   last `capacity` values; a receiver more than that behind gets ONE
//   Errc::lagged error (lagged_count() says how many it missed; the message
//   says it too), then continues from the oldest retained value.
// - send never waits (with the default SlowReceiver::lag); it fails with
//   Errc::closed (value handed back) when no receiver exists. When the last
//   sender goes (or close()), receivers get what they have not read yet,
//   then Errc::closed.
// - What happens to a slow receiver is a choice (keel::BroadcastConfig):
//   SlowReceiver::lag (above, tokio's), SlowReceiver::block (a send waits
//   until the slowest receiver has read the value it would overwrite: no
//   receiver ever lags, and one stalled receiver stalls the senders), or
//   SlowReceiver::disconnect (a receiver about to be overtaken is cut off:
//   its recv() says Errc::closed and disconnected() is true; the others
//   never wait and never lag).
// - T must be copyable: each receiver gets its own copy.
// - Implementation: one mutex per channel (the critical sections copy one
//   value); waiting receivers park on a condition variable.
#pragma once

#include <keel/channel/send_result.hpp>
#include <keel/detail/channel_wait.hpp>
#include <keel/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace keel {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

template <class T>
class BroadcastSender;
template <class T>
class BroadcastReceiver;

/// What a broadcast send does when the ring is full and a receiver has not
/// read the oldest value yet.
enum class SlowReceiver : std::uint8_t {
  lag,         ///< overwrite it; that receiver gets Errc::lagged once (tokio)
  block,       ///< wait until every receiver has read it (backpressure)
  disconnect,  ///< overwrite it and cut that receiver off (Errc::closed)
};

/// The settings of make_broadcast(BroadcastConfig).
struct BroadcastConfig {
  std::size_t capacity = 64;
  SlowReceiver slow_receiver = SlowReceiver::lag;
};

}  // namespace KEEL_DETAIL_CHANNEL_ABI
namespace detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// A receiver's position (and whether it was cut off), kept by the state
/// so that a send can see the slowest receiver.
struct BroadcastCursor {
  std::uint64_t next = 0;
  bool disconnected = false;
};

template <class T>
struct BroadcastState {
  BroadcastState(std::size_t capacity, SlowReceiver slow) : ring(capacity), policy(slow) {}

  mutable std::mutex m;
  std::vector<std::optional<T>> ring;  // under m; position p lives at p % size
  const SlowReceiver policy;
  std::uint64_t tail = 0;                  // under m: next position
  std::size_t senders = 1;                 // under m
  std::size_t receivers = 0;               // under m: connected cursors
  bool closed = false;                     // under m
  std::list<BroadcastCursor> cursors;      // under m: one per receiver handle
  WaitList recv_wait{WaitList::Locked{}};  // the state is under m
  WaitList send_wait{WaitList::Locked{}};  // senders blocked by a slow receiver (SlowReceiver::block)

  using Cursor = std::list<BroadcastCursor>::iterator;
  Cursor add_cursor(std::uint64_t next) {  // under m
    cursors.push_back(BroadcastCursor{next, false});
    ++receivers;
    return std::prev(cursors.end());
  }
  void drop_cursor(Cursor c) noexcept {  // under m
    if (!c->disconnected) --receivers;
    cursors.erase(c);
  }
  /// Under m: true when writing position `tail` now needs no receiver to
  /// give way (block: wait; disconnect: cut it off).
  [[nodiscard]] bool overtakes_nobody() const noexcept {
    const std::uint64_t cap = ring.size();
    if (tail < cap) return true;
    for (const auto& c : cursors) {
      if (!c.disconnected && c.next + cap <= tail) return false;
    }
    return true;
  }
  void disconnect_overtaken() noexcept {  // under m
    const std::uint64_t cap = ring.size();
    if (tail < cap) return;
    for (auto& c : cursors) {
      if (!c.disconnected && c.next + cap <= tail) {
        c.disconnected = true;
        --receivers;
      }
    }
  }

  std::uint64_t lost_below = 0;  // under m: positions below it are gone (a failed send)
  [[nodiscard]] std::uint64_t oldest() const noexcept {
    const std::uint64_t cap = ring.size();
    const std::uint64_t o = tail > cap ? tail - cap : 0;
    return o > lost_below ? o : lost_below;
  }
};

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace detail
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// The sending half of a broadcast channel.
template <class T>
class BroadcastSender {
 public:
  BroadcastSender() noexcept = default;
  BroadcastSender(const BroadcastSender& o) : state_(o.state_) {
    if (state_) {
      std::lock_guard lk(state_->m);
      ++state_->senders;
    }
  }
  BroadcastSender(BroadcastSender&&) noexcept = default;
  BroadcastSender& operator=(const BroadcastSender& o) {
    if (this != &o) *this = BroadcastSender(o);
    return *this;
  }
  BroadcastSender& operator=(BroadcastSender&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::move(o.state_);
    }
    return *this;
  }
  ~BroadcastSender() { reset(); }

  /// Publishes a value to every current receiver. Never waits unless the
  /// channel was made with SlowReceiver::block (then it waits while the
  /// slowest receiver has not read the value it would overwrite).
  /// Errc::closed, with the value back, when there is no receiver or the
  /// channel is closed (also when closed while waiting).
  SendResult<T> send(T value) { return send_impl(value, std::nullopt, true); }
  /// send, waiting at most `timeout` under SlowReceiver::block: Errc::timeout
  /// with the value back.
  template <class Rep, class Period>
  SendResult<T> send_for(T value, std::chrono::duration<Rep, Period> timeout) {
    return send_impl(value, detail::make_deadline(timeout), true);
  }
  /// send without waiting: Errc::full (value back) when SlowReceiver::block
  /// would wait.
  SendResult<T> try_send(T value) { return send_impl(value, std::nullopt, false); }

 private:
  enum class Put : std::uint8_t { ok, closed, full };

  // Under m: writes the value if the policy lets it now.
  Put put(T& value) {
    auto& st = *state_;
    if (st.closed || st.receivers == 0) return Put::closed;
    if (st.policy == SlowReceiver::block && !st.overtakes_nobody()) return Put::full;
    if (st.policy == SlowReceiver::disconnect) {
      st.disconnect_overtaken();
      if (st.receivers == 0) return Put::closed;  // nobody left to read it
    }
    {
      auto& slot = state_->ring[static_cast<std::size_t>(state_->tail % state_->ring.size())];
      // Built in place, from a copy when T's move may throw (then `value` is
      // intact if it does). The slot's old value (the oldest retained) goes
      // first; if the new one then fails to build, that position counts as
      // missed for the receivers still at it (a lag), never as a hole.
      slot.reset();
      try {
        slot.emplace(std::move_if_noexcept(value));
      } catch (...) {
        const std::uint64_t cap = state_->ring.size();
        if (state_->tail >= cap) state_->lost_below = state_->tail - cap + 1;
        throw;
      }
      ++state_->tail;
    }
    return Put::ok;
  }

  // `value` is the caller's parameter (no extra move: T's move may throw).
  SendResult<T> send_impl(T& value, detail::Deadline deadline, bool wait) {
    if (!state_) return {Error(Errc::closed), std::move(value)};
    Put r = Put::full;
    auto attempt = [&] {
      std::lock_guard lk(state_->m);
      r = put(value);
      return r != Put::full;
    };
    if (!attempt() && wait) state_->send_wait.wait(attempt, deadline);
    switch (r) {
      case Put::ok:
        break;
      case Put::closed:
        return {Error(Errc::closed), std::move(value)};
      case Put::full:
        return {Error(wait ? Errc::timeout : Errc::full), std::move(value)};
    }
    state_->recv_wait.notify_all();
    return {};
  }

 public:
  /// A new receiver that sees the values sent from now on.
  [[nodiscard]] BroadcastReceiver<T> subscribe() const;

  /// Closes for everyone: receivers read what they have not, then Errc::closed.
  void close() {
    if (!state_) return;
    {
      std::lock_guard lk(state_->m);
      state_->closed = true;
    }
    state_->recv_wait.notify_all();
    state_->send_wait.notify_all();
  }
  [[nodiscard]] std::size_t receiver_count() const {
    if (!state_) return 0;
    std::lock_guard lk(state_->m);
    return state_->receivers;
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return state_ ? state_->ring.size() : 0; }
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  /// Internal: a new channel (keel::broadcast and make_broadcast call it).
  static std::pair<BroadcastSender, BroadcastReceiver<T>> open(std::size_t capacity, SlowReceiver slow) {
    auto s = std::make_shared<detail::BroadcastState<T>>(capacity, slow);
    auto c = s->add_cursor(0);  // not shared yet: no lock needed
    return {BroadcastSender(s), BroadcastReceiver<T>(std::move(s), c)};
  }

  void reset() noexcept {
    if (!state_) return;
    bool last = false;
    {
      std::lock_guard lk(state_->m);
      last = --state_->senders == 0;
      if (last) state_->closed = true;
    }
    if (last) {
      state_->recv_wait.notify_all();
      state_->send_wait.notify_all();
    }
    state_.reset();
  }

 private:
  explicit BroadcastSender(std::shared_ptr<detail::BroadcastState<T>> s) noexcept : state_(std::move(s)) {}
  std::shared_ptr<detail::BroadcastState<T>> state_;
};

/// A receiving half of a broadcast channel: its own position in the stream.
template <class T>
class BroadcastReceiver {
 public:
  BroadcastReceiver() noexcept = default;
  BroadcastReceiver(const BroadcastReceiver& o) : state_(o.state_), lagged_(o.lagged_) {
    if (state_) {
      std::lock_guard lk(state_->m);
      cursor_ = state_->add_cursor(o.cursor_->next);
      cursor_->disconnected = o.cursor_->disconnected;
      if (cursor_->disconnected) --state_->receivers;
    }
  }
  BroadcastReceiver(BroadcastReceiver&&) noexcept = default;
  BroadcastReceiver& operator=(const BroadcastReceiver& o) {
    if (this != &o) *this = BroadcastReceiver(o);
    return *this;
  }
  BroadcastReceiver& operator=(BroadcastReceiver&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::move(o.state_);
      cursor_ = o.cursor_;
      lagged_ = o.lagged_;
    }
    return *this;
  }
  ~BroadcastReceiver() { reset(); }

  /// The next value (a copy), waiting while there is none. Errc::lagged once
  /// after falling behind (see lagged_count()); Errc::closed when closed and
  /// everything was read.
  Result<T> recv() { return recv_impl(std::nullopt); }
  template <class Rep, class Period>
  Result<T> recv_for(std::chrono::duration<Rep, Period> timeout) {
    return recv_impl(detail::make_deadline(timeout));
  }
  /// Waits until `deadline` (of any clock) at most: Errc::timeout.
  template <class Clock, class Duration>
  Result<T> recv_until(std::chrono::time_point<Clock, Duration> deadline) {
    return recv_impl(detail::make_deadline_at(deadline));
  }
  /// A new receiver of the same channel that starts at the newest position:
  /// it sees the values sent from now on, not what this one has yet to read
  /// (tokio's resubscribe). A way out of a lag that only wants fresh values.
  [[nodiscard]] BroadcastReceiver resubscribe() const {
    if (!state_) return {};
    std::lock_guard lk(state_->m);
    return BroadcastReceiver(state_, state_->add_cursor(state_->tail));
  }
  /// Errc::empty when nothing new is there.
  Result<T> try_recv() {
    if (!state_) return Errc::closed;
    std::optional<Result<T>> r = take();
    if (!r) return Errc::empty;
    return std::move(*r);
  }

  /// True when this receiver was cut off for being too slow
  /// (SlowReceiver::disconnect); its receives say Errc::closed.
  [[nodiscard]] bool disconnected() const {
    if (!state_) return false;
    std::lock_guard lk(state_->m);
    return cursor_->disconnected;
  }
  /// How many values the last Errc::lagged skipped (0 before any lag).
  [[nodiscard]] std::uint64_t lagged_count() const noexcept { return lagged_; }
  /// Values sent that this receiver has not read yet (retained ones).
  [[nodiscard]] std::size_t size() const {
    if (!state_) return 0;
    std::lock_guard lk(state_->m);
    if (cursor_->disconnected) return 0;
    const std::uint64_t next = cursor_->next;
    const std::uint64_t from = next < state_->oldest() ? state_->oldest() : next;
    return static_cast<std::size_t>(state_->tail - from);
  }
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  void reset() noexcept {
    if (!state_) return;
    {
      std::lock_guard lk(state_->m);
      state_->drop_cursor(cursor_);
    }
    // A sender may be waiting for this receiver (or for any receiver at all).
    state_->send_wait.notify_all();
    state_.reset();
  }

  /// Internal: for keel's select. True when recv() would not wait.
  [[nodiscard]] bool poll_ready() const {
    if (!state_) return true;
    std::lock_guard lk(state_->m);
    return cursor_->next < state_->tail || state_->closed || cursor_->disconnected;
  }
  [[nodiscard]] detail::WaitList* wait_list() const noexcept { return state_ ? &state_->recv_wait : nullptr; }

 private:
  friend class BroadcastSender<T>;
  using Cursor = typename detail::BroadcastState<T>::Cursor;
  BroadcastReceiver(std::shared_ptr<detail::BroadcastState<T>> s, Cursor c) noexcept
      : state_(std::move(s)), cursor_(c) {}

  // The next value, a lag error, closed, or nothing (std::nullopt).
  std::optional<Result<T>> take() {
    std::optional<Result<T>> r;
    {
      std::lock_guard lk(state_->m);
      std::uint64_t& next = cursor_->next;
      if (cursor_->disconnected) {
        return Result<T>(fail(Errc::closed, "broadcast receiver disconnected: it fell more than {} behind",
                              state_->ring.size()));
      }
      const std::uint64_t oldest = state_->oldest();
      if (next < oldest) {
        lagged_ = oldest - next;
        next = oldest;
        return Result<T>(fail(Errc::lagged, "broadcast receiver lagged: {} values missed", lagged_));
      }
      if (next < state_->tail) {
        const auto& slot = state_->ring[static_cast<std::size_t>(next % state_->ring.size())];
        // Copy first: if T's copy throws, the position is not consumed and
        // the next recv() tries the same value again.
        r.emplace(std::in_place, *slot);
        ++next;
      } else if (state_->closed) {
        return Result<T>(Errc::closed);
      } else {
        return std::nullopt;
      }
    }
    // The slowest receiver moving on may let a blocked sender write.
    if (state_->policy == SlowReceiver::block) state_->send_wait.notify_all();
    return r;
  }

  Result<T> recv_impl(detail::Deadline deadline) {
    if (!state_) return Errc::closed;
    std::optional<Result<T>> r = take();
    if (!r) {
      state_->recv_wait.wait(
          [&] {
            r = take();
            return r.has_value();
          },
          deadline);
    }
    if (!r) return Errc::timeout;
    return std::move(*r);
  }

  std::shared_ptr<detail::BroadcastState<T>> state_;
  Cursor cursor_{};  // in state_->cursors while state_ is set
  std::uint64_t lagged_ = 0;
};

template <class T>
BroadcastReceiver<T> BroadcastSender<T>::subscribe() const {
  if (!state_) return {};
  std::lock_guard lk(state_->m);
  return BroadcastReceiver<T>(state_, state_->add_cursor(state_->tail));
}

/// `auto [tx, rx] = keel::broadcast<T>(capacity);` Throws
/// std::invalid_argument for capacity 0.
template <class T>
[[nodiscard]] std::pair<BroadcastSender<T>, BroadcastReceiver<T>> broadcast(std::size_t capacity) {
  static_assert(std::is_copy_constructible_v<T>, "keel::broadcast<T> needs a copyable T");
  if (capacity == 0) {
#if KEEL_HAS_EXCEPTIONS
    throw std::invalid_argument("keel::broadcast: capacity must be at least 1");
#else
    detail::bad_access(Error(Errc::invalid_argument, "keel::broadcast: capacity must be at least 1"));
#endif
  }
  return BroadcastSender<T>::open(capacity, SlowReceiver::lag);
}

/// A broadcast channel, or Errc::invalid_argument for capacity 0 (or one
/// too large to allocate), like make_channel.
template <class T>
[[nodiscard]] Result<std::pair<BroadcastSender<T>, BroadcastReceiver<T>>> make_broadcast(
    std::size_t capacity) {
  if (capacity == 0 || capacity > std::vector<std::optional<T>>().max_size()) {
    return fail(Errc::invalid_argument, "broadcast capacity must be in 1..{}, got {}",
                std::vector<std::optional<T>>().max_size(), capacity);
  }
  return broadcast<T>(capacity);
}

/// A broadcast channel with a choice of what happens to a slow receiver
/// (see SlowReceiver), or Errc::invalid_argument for capacity 0.
template <class T>
[[nodiscard]] Result<std::pair<BroadcastSender<T>, BroadcastReceiver<T>>> make_broadcast(
    const BroadcastConfig& config) {
  static_assert(std::is_copy_constructible_v<T>, "keel::broadcast<T> needs a copyable T");
  if (config.capacity == 0 || config.capacity > std::vector<std::optional<T>>().max_size()) {
    return fail(Errc::invalid_argument, "broadcast capacity must be in 1..{}, got {}",
                std::vector<std::optional<T>>().max_size(), config.capacity);
  }
  return BroadcastSender<T>::open(config.capacity, config.slow_receiver);
}

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace keel
