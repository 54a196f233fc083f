// keel/channel/mpmc.hpp: keel::channel<T>(capacity), the bounded MPMC channel.
//
//     auto [tx, rx] = keel::channel<std::string>(64);
//     std::thread producer([tx = std::move(tx)]() mutable {
//       for (int i = 0; i < 3; ++i) (void)tx.send(fmt::format("job {}", i));
//     });                                   // last Sender gone: the channel closes
//     while (auto job = rx.recv()) fmt::print("{}\n", *job);  // drains, then Errc::closed
//     producer.join();
//
// Thread-safety: Sender and Receiver are handles; copy them to share the
// channel between threads (each copy may be used by one thread at a time,
// any number of copies concurrently).
//
// Guarantees:
// - Values are delivered exactly once, to one receiver. Values sent by one
//   sender are received in the order sent (FIFO by slot claim order overall).
// - When the last Sender goes (or close() is called from either side), no
//   send succeeds afterwards; receivers still get every value already
//   buffered, then Errc::closed. When the last Receiver goes, the buffered
//   values are destroyed (on that thread) and every send fails with
//   Errc::closed.
// - A failed send hands the value back in its SendError; nothing is lost
//   silently.
// - `for (T& v : rx)` receives until the channel is closed and drained;
//   `tx.closed()` waits until it is closed (no receiver left, or close()).
//   Every wait has a `_for` (any duration) and an `_until` (any clock).
// - Progress: the buffer is a lock-free ring (one CAS per operation, no
//   allocation after construction). A full send or empty recv spins briefly,
//   then parks on a condition variable; an idle waiter uses no CPU. A
//   power-of-two capacity is the fast one (a mask instead of a division).
// - T needs a noexcept move constructor (checked at compile time); a
//   move-only T works.
// - Capacity 0 is a rendezvous channel (crossbeam's bounded(0)): nothing is
//   buffered; send() completes when a receiver takes the value, try_send()
//   succeeds only when a receiver is blocked in recv() at that moment, and a
//   send_for() that times out hands the value back. Its hand-off takes a
//   mutex (no lock-free ring behind it).
#pragma once

#include <keel/channel/send_result.hpp>
#include <keel/detail/channel_wait.hpp>
#include <keel/result.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace keel {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// Cheap counters of a channel (each is one relaxed load).
struct ChannelStats {
  std::size_t capacity = 0;
  std::size_t depth = 0;         ///< values buffered now
  std::size_t high_water = 0;    ///< the most values ever buffered at once
  std::uint64_t sends = 0;       ///< values accepted
  std::uint64_t send_waits = 0;  ///< sends that found the channel full and had to wait
  std::uint64_t recv_waits = 0;  ///< receives that found it empty and had to wait
  bool closed = false;
};

template <class T>
class Sender;
template <class T>
class Receiver;

}  // namespace KEEL_DETAIL_CHANNEL_ABI
namespace detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {

template <class T>
std::pair<Sender<T>, Receiver<T>> make_channel_pair(std::size_t capacity, bool fenced = false);

#if defined(KEEL_CHANNEL_TEST_HOOKS)
/// Where a channel calls its test hook.
enum class ChanHook : std::uint8_t {
  after_claim,  ///< a sender claimed its slot and has not written the value yet
  before_full,  ///< a sender found its slot occupied and is about to decide "full"
};
/// Tests only (compiled in when KEEL_CHANNEL_TEST_HOOKS is defined): called
/// with the point and the channel's address, so a test can pause a thread
/// there and force interleavings a scheduler produces only rarely.
inline std::atomic<void (*)(ChanHook, const void*)> channel_test_hook{nullptr};
#define KEEL_DETAIL_CHAN_HOOK(point)                                                            \
  do {                                                                                          \
    /* acquire: the test installed the hook before starting this thread. */                     \
    if (auto* keel_hook_ = ::keel::detail::channel_test_hook.load(std::memory_order_acquire)) { \
      keel_hook_(::keel::detail::ChanHook::point, this);                                        \
    }                                                                                           \
  } while (false)
#else
#define KEEL_DETAIL_CHAN_HOOK(point) \
  do {                               \
  } while (false)
#endif

enum class ChanOp : std::uint8_t { ok, would_block, closed };

template <class T>
class Chan {
 public:
  /// `fenced`: see WaitList (fences on both sides of the wake-up protocol).
  /// A fenced channel also parks a blocked send or recv at once, without the
  /// short spin: it is for values that come at network pace, where a spin
  /// only takes the core from the thread that produces them.
  explicit Chan(std::size_t capacity, bool fenced = false)
      : cap_(capacity),
        batch_(std::clamp<std::size_t>(capacity / 4, 1, 64)),
        pow2_((capacity & (capacity - 1)) == 0),
        slots_(new Slot[capacity]),
        recv_wait_(fenced),
        send_wait_(fenced),
        close_wait_(fenced) {
    for (std::size_t i = 0; i < cap_; ++i) {
      // relaxed: construction happens-before the handles are shared.
      slots_[i].seq.store(2 * i, std::memory_order_relaxed);
    }
  }
  Chan(const Chan&) = delete;
  Chan& operator=(const Chan&) = delete;
  ~Chan() {
    // Every handle is gone: no concurrency, every claimed slot is published.
    const std::uint64_t t = tail_.load(std::memory_order_relaxed) & ~kClosed;
    for (std::uint64_t p = head_.load(std::memory_order_relaxed); p < t; ++p) slot(p).ptr()->~T();
  }

  /// Moves from `v` only when it returns ok.
  ChanOp try_push(T& v) noexcept(std::is_nothrow_move_constructible_v<T>) {
    if (cap_ == 0) return rv_try_push(v);
    // relaxed: the slot's sequence number carries the synchronisation.
    std::uint64_t t = tail_.load(std::memory_order_relaxed);
    std::uint32_t spins = 0;
    for (;;) {
      if ((t & kClosed) != 0) return ChanOp::closed;
      Slot& s = slot(t);
      // acquire: pairs with the consumer's release of this slot, so the old
      // value's destruction happens-before we construct the new one.
      const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - 2 * t);
      if (diff == 0) {
        // relaxed: claiming the position orders nothing by itself; the CAS
        // fails (and we see kClosed) once close() has marked the tail.
        if (tail_.compare_exchange_weak(t, t + 1, std::memory_order_relaxed, std::memory_order_relaxed)) {
          KEEL_DETAIL_CHAN_HOOK(after_claim);
          ::new (static_cast<void*>(s.storage)) T(std::move(v));
          // release: publishes the value to the consumer that acquires seq.
          s.seq.store(2 * t + 1, std::memory_order_release);
          note_depth(t + 1);
          // One value wakes one receiver, except in a closed channel: there
          // the receivers that parked on this slot after close() (which found
          // nobody to wake) must all wake, since the one that takes the value
          // may leave without receiving again. The tail is read after the
          // notifier barrier: if close() missed a parked receiver, this load
          // sees the close (see WaitList).
          // relaxed: ordered by the barrier inside notify_one_or_all.
          recv_wait_.notify_one_or_all(
              [this] { return (tail_.load(std::memory_order_relaxed) & kClosed) != 0; });
          return ChanOp::ok;
        }
      } else if (diff < 0) {
        // The slot still holds the value from one lap ago. Really full, or a
        // consumer has claimed it and is moving it out right now, or our t
        // is stale: the receivers may have drained and lapped it meanwhile.
        KEEL_DETAIL_CHAN_HOOK(before_full);
        // relaxed: only a hint; the seq load above is the truth.
        const std::uint64_t h = head_.load(std::memory_order_relaxed);
        // Re-read the tail after the head: if it moved, t was stale (and
        // t - h may even wrap): start over. If not, h <= t (receivers never
        // pass the tail) and t - h is the true depth at the time h was read.
        // relaxed: as above.
        const std::uint64_t now = tail_.load(std::memory_order_relaxed);
        if (now != t) {
          t = now;
          continue;
        }
        if (t - h >= cap_ || ++spins > kInFlightSpins) return ChanOp::would_block;
        cpu_relax();
        t = tail_.load(std::memory_order_relaxed);
      } else {
        t = tail_.load(std::memory_order_relaxed);  // another sender took t
      }
    }
  }

  /// Calls sink(T&&) with the value when it returns ok.
  template <class Sink>
  ChanOp try_pop(Sink&& sink) {
    if (cap_ == 0) return rv_try_pop(sink);
    std::uint64_t h = head_.load(std::memory_order_relaxed);
    std::uint32_t spins = 0;
    for (;;) {
      Slot& s = slot(h);
      // acquire: pairs with the producer's release; the value is visible.
      const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - (2 * h + 1));
      if (diff == 0) {
        if (head_.compare_exchange_weak(h, h + 1, std::memory_order_relaxed, std::memory_order_relaxed)) {
          // The slot is handed back even if T's destructor throws (the
          // exception then reaches the receiver; the channel goes on).
          struct Release {
            Chan& c;
            Slot& slot;
            std::uint64_t next;
            ~Release() {
              // release: the slot is free for the sender one lap later.
              slot.seq.store(next, std::memory_order_release);
              c.send_wait_.notify_one();
            }
          } release{*this, s, 2 * (h + cap_)};
          T* p = s.ptr();
          sink(std::move(*p));
          p->~T();
          return ChanOp::ok;
        }
      } else if (diff < 0) {
        // Nothing published at h. Empty (or closed), or a sender claimed h
        // and has not finished writing it.
        // relaxed: a tail without kClosed at h means nothing was claimed; a
        // tail with kClosed at h means nothing ever will be.
        const std::uint64_t t = tail_.load(std::memory_order_relaxed);
        if ((t & ~kClosed) <= h) {
          if ((t & kClosed) == 0) return ChanOp::would_block;
          // Closed and drained: pass the wake-up on, so that no receiver
          // stays parked on a wake-up this one consumed (it is leaving).
          recv_wait_.notify_all();
          return ChanOp::closed;
        }
        // A sender is mid-write; it notifies when done.
        if (++spins > kInFlightSpins) return ChanOp::would_block;
        cpu_relax();
        h = head_.load(std::memory_order_relaxed);
      } else {
        h = head_.load(std::memory_order_relaxed);  // another receiver took h
      }
    }
  }

  /// True when try_pop would not block now (a value is ready, or the channel
  /// is closed and drained). A snapshot that never consumes; used by select
  /// and the Asio adapter after registering a waiter. A sender mid-write
  /// counts as not ready: it notifies when done.
  [[nodiscard]] bool poll_recv() const noexcept {
    if (cap_ == 0) {
      std::lock_guard lk(rv_m_);
      return rv_closed() || rv_senders_.size != 0;
    }
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    // acquire: as in try_pop.
    if (slot(h).seq.load(std::memory_order_acquire) == 2 * h + 1) return true;
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    // Closed and drained; or head moved while we looked (re-check to be safe).
    return ((t & kClosed) != 0 && (t & ~kClosed) <= h) || head_.load(std::memory_order_relaxed) != h;
  }
  /// Called by a receiver that waited and then took a value: if the next
  /// value is already published, wake one more parked receiver (see
  /// Receiver::recv_impl). A value published later wakes one by itself.
  void pass_recv_wakeup() noexcept {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    // relaxed: a hint; a spare wake-up only costs the woken a re-check.
    if (slot(h).seq.load(std::memory_order_relaxed) == 2 * h + 1) recv_wait_.notify_one();
  }
  /// Called by a sender that waited and then pushed: if the next slot is
  /// already free, wake one more parked sender (see Sender::send_impl). A
  /// slot freed later wakes one by itself.
  void pass_send_wakeup() noexcept {
    // relaxed: a hint; a spare wake-up only costs the woken a re-check.
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    if ((t & kClosed) != 0) return;  // close() woke every sender
    if (slot(t).seq.load(std::memory_order_relaxed) == 2 * t) send_wait_.notify_one();
  }
  /// True when try_push would not block now (room, or closed). Conservative:
  /// may say true when a retry finds the channel full again.
  [[nodiscard]] bool poll_send() const noexcept {
    if (cap_ == 0) {
      std::lock_guard lk(rv_m_);
      return rv_closed() || rv_receivers_.size != 0;
    }
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    if ((t & kClosed) != 0) return true;
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    return t - h < cap_;
  }

  /// True when a spinning sender should try again: the channel is closed, or
  /// has room for a whole batch (a quarter of the capacity, at most 64). A
  /// sender that refilled a full channel one slot at a time would take each
  /// slot the moment a receiver freed it, and the two sides would trade the
  /// same cache lines for every value; waiting for a batch of room lets the
  /// receivers run ahead on lines the sender no longer touches. Only the
  /// spin phase uses this; a parked sender is woken for any room at all.
  [[nodiscard]] bool room_for_batch() const noexcept {
    // relaxed: a hint that only decides when to retry; try_push is the truth.
    // The slot of position t + batch - 1 is free once the receivers have
    // taken that many; watching it reads a line they write once, where
    // watching head_ would pull away the line they write on every receive.
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    if ((t & kClosed) != 0) return true;
    const std::uint64_t p = t + batch_ - 1;
    const std::uint64_t seq = slot(p).seq.load(std::memory_order_relaxed);
    return static_cast<std::int64_t>(seq - 2 * p) >= 0;
  }

  /// Marks the channel closed; true if this call closed it.
  bool close() noexcept {
    std::uint64_t prev = 0;
    if (cap_ == 0) {
      // Under the rendezvous mutex, so that a blocked send or recv sees the
      // close or is woken by it; each one then leaves (a sender with its
      // value, a receiver with what was handed to it or Errc::closed).
      std::lock_guard lk(rv_m_);
      prev = tail_.fetch_or(kClosed, std::memory_order_acq_rel);
      for (RvSender* s = rv_senders_.head; s != nullptr; s = s->next) s->cv.notify_one();
      for (RvReceiver* r = rv_receivers_.head; r != nullptr; r = r->next) r->cv.notify_one();
    } else {
      // acq_rel: the closing thread's earlier sends are ordered before it.
      prev = tail_.fetch_or(kClosed, std::memory_order_acq_rel);
    }
    recv_wait_.notify_all();
    send_wait_.notify_all();
    close_wait_.notify_all();
    return (prev & kClosed) == 0;
  }
  [[nodiscard]] bool is_closed() const noexcept {
    return (tail_.load(std::memory_order_acquire) & kClosed) != 0;
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }
  [[nodiscard]] std::size_t size() const noexcept {
    // Read head first: tail only grows, so tail - head never underflows.
    const std::uint64_t h = head_.load(std::memory_order_acquire);
    const std::uint64_t t = tail_.load(std::memory_order_acquire) & ~kClosed;
    const std::uint64_t d = t > h ? t - h : 0;
    return static_cast<std::size_t>(d > cap_ ? cap_ : d);
  }
  [[nodiscard]] ChannelStats stats() const noexcept {
    ChannelStats s;
    s.capacity = cap_;
    s.depth = size();
    s.high_water = high_water_.load(std::memory_order_relaxed);
    // Every claimed position is a send (a rendezvous counts its hand-offs).
    s.sends = cap_ == 0 ? rv_sends_.load(std::memory_order_relaxed)
                        : tail_.load(std::memory_order_relaxed) & ~kClosed;
    s.send_waits = send_waits_.load(std::memory_order_relaxed);
    s.recv_waits = recv_waits_.load(std::memory_order_relaxed);
    s.closed = is_closed();
    return s;
  }

  void add_sender() noexcept { senders_.fetch_add(1, std::memory_order_relaxed); }
  void add_receiver() noexcept { receivers_.fetch_add(1, std::memory_order_relaxed); }
  void drop_sender() noexcept {
    // acq_rel: the last sender's close() sees every other sender's writes.
    if (senders_.fetch_sub(1, std::memory_order_acq_rel) == 1) close();
  }
  void drop_receiver() noexcept {
    if (receivers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      close();
      drain();
    }
  }

  WaitList& recv_wait() noexcept { return recv_wait_; }
  SpinPolicy& recv_spin() noexcept { return recv_spin_; }
  WaitList& send_wait() noexcept { return send_wait_; }
  /// Threads waiting for the close itself (Sender::closed()); only close()
  /// notifies it, so the hot paths never touch it.
  WaitList& close_wait() noexcept { return close_wait_; }
  void count_send_wait() noexcept { send_waits_.fetch_add(1, std::memory_order_relaxed); }
  /// Whether a blocked send or recv spins briefly before it parks.
  [[nodiscard]] bool spins() const noexcept { return !recv_wait_.fenced(); }
  void count_recv_wait() noexcept { recv_waits_.fetch_add(1, std::memory_order_relaxed); }

  /// Capacity 0: every value goes from a sender straight to a receiver.
  [[nodiscard]] bool rendezvous() const noexcept { return cap_ == 0; }

  /// Rendezvous send: hands `v` to a blocked receiver, or waits (until the
  /// deadline) for one to take it. Moves from `v` only when it returns ok;
  /// would_block means the deadline passed with the value still here.
  ChanOp rv_send(T& v, const Deadline& deadline) {
    std::unique_lock lk(rv_m_);
    if (rv_closed()) return ChanOp::closed;
    if (rv_hand_to_receiver(v)) return ChanOp::ok;
    RvSender me(&v);
    rv_senders_.push(&me);
    send_waits_.fetch_add(1, std::memory_order_relaxed);
    lk.unlock();
    // Select and async receivers watch the wait list, not rv_m_.
    recv_wait_.notify_one();
    lk.lock();
    while (!me.taken && !rv_closed()) {
      if (!deadline) {
        me.cv.wait(lk);
      } else if (me.cv.wait_until(lk, *deadline) == std::cv_status::timeout) {
        break;
      }
    }
    if (me.taken) return ChanOp::ok;
    rv_senders_.remove(&me);
    return rv_closed() ? ChanOp::closed : ChanOp::would_block;
  }

  /// Rendezvous receive: takes the value of a blocked sender, or waits
  /// (until the deadline) for a sender to hand one over. would_block: the
  /// deadline passed and nothing was handed over.
  ChanOp rv_recv(std::optional<T>& out, const Deadline& deadline) {
    std::unique_lock lk(rv_m_);
    if (rv_closed()) return ChanOp::closed;
    if (rv_take_from_sender(out)) return ChanOp::ok;
    RvReceiver me;
    rv_receivers_.push(&me);
    recv_waits_.fetch_add(1, std::memory_order_relaxed);
    lk.unlock();
    // A receiver is waiting now: async senders may hand over (try_push).
    send_wait_.notify_all();
    lk.lock();
    while (!me.value && !rv_closed()) {
      if (!deadline) {
        me.cv.wait(lk);
      } else if (me.cv.wait_until(lk, *deadline) == std::cv_status::timeout) {
        break;
      }
    }
    if (me.value) {
      // A sender handed it over (before any close or timeout): it is ours.
      out.emplace(std::move(*me.value));
      return ChanOp::ok;
    }
    rv_receivers_.remove(&me);
    return rv_closed() ? ChanOp::closed : ChanOp::would_block;
  }

  /// Senders and receivers blocked in a rendezvous now (a snapshot; tests
  /// use it to know a thread is parked).
  [[nodiscard]] std::size_t rendezvous_senders() const {
    std::lock_guard lk(rv_m_);
    return rv_senders_.size;
  }
  [[nodiscard]] std::size_t rendezvous_receivers() const {
    std::lock_guard lk(rv_m_);
    return rv_receivers_.size;
  }

 private:
  static constexpr std::uint64_t kClosed = std::uint64_t{1} << 63U;
  static constexpr std::uint32_t kInFlightSpins = 64;

  // ---- rendezvous (capacity 0): blocked senders and receivers, under rv_m_.
  // Each record lives in the blocked thread's frame; whoever completes it
  // (the other side, or close()) notifies its condition variable while
  // holding rv_m_, since the record may be gone once the mutex is released.
  struct RvSender {
    explicit RvSender(T* v) noexcept : value(v) {}
    T* value;  // moved from by the receiver that takes it
    RvSender* next = nullptr;
    bool taken = false;
    std::condition_variable cv;
  };
  struct RvReceiver {
    std::optional<T> value;  // moved into by the sender that hands over
    RvReceiver* next = nullptr;
    std::condition_variable cv;
  };
  template <class Node>
  struct RvFifo {  // intrusive, oldest first
    Node* head = nullptr;
    Node* tail = nullptr;
    std::size_t size = 0;
    void push(Node* n) noexcept {
      n->next = nullptr;
      if (tail != nullptr) {
        tail->next = n;
      } else {
        head = n;
      }
      tail = n;
      ++size;
    }
    Node* pop() noexcept {
      Node* n = head;
      if (n != nullptr) {
        head = n->next;
        if (head == nullptr) tail = nullptr;
        --size;
      }
      return n;
    }
    void remove(Node* n) noexcept {
      Node* prev = nullptr;
      for (Node* p = head; p != nullptr; prev = p, p = p->next) {
        if (p != n) continue;
        (prev != nullptr ? prev->next : head) = n->next;
        if (tail == n) tail = prev;
        --size;
        return;
      }
    }
  };

  [[nodiscard]] bool rv_closed() const noexcept {  // under rv_m_ (which close() holds)
    return (tail_.load(std::memory_order_relaxed) & kClosed) != 0;
  }
  bool rv_hand_to_receiver(T& v) noexcept {  // under rv_m_
    RvReceiver* r = rv_receivers_.pop();
    if (r == nullptr) return false;
    r->value.emplace(std::move(v));
    rv_sends_.fetch_add(1, std::memory_order_relaxed);
    r->cv.notify_one();
    return true;
  }
  bool rv_take_from_sender(std::optional<T>& out) noexcept {  // under rv_m_
    RvSender* s = rv_senders_.pop();
    if (s == nullptr) return false;
    out.emplace(std::move(*s->value));
    s->taken = true;
    rv_sends_.fetch_add(1, std::memory_order_relaxed);
    s->cv.notify_one();
    return true;
  }
  ChanOp rv_try_push(T& v) noexcept {
    std::lock_guard lk(rv_m_);
    if (rv_closed()) return ChanOp::closed;
    return rv_hand_to_receiver(v) ? ChanOp::ok : ChanOp::would_block;
  }
  template <class Sink>
  ChanOp rv_try_pop(Sink& sink) {
    std::optional<T> got;
    {
      std::lock_guard lk(rv_m_);
      if (rv_closed()) return ChanOp::closed;
      if (!rv_take_from_sender(got)) return ChanOp::would_block;
    }
    sink(std::move(*got));  // outside the mutex: the sink may be a caller's
    return ChanOp::ok;
  }

  // A slot's sequence number says whose turn it is: 2*p when it is free for
  // the sender of position p, 2*p + 1 when it holds the value of position p
  // (the factor 2 keeps the two states apart even for capacity 1).
  struct Slot {
    std::atomic<std::uint64_t> seq{0};
    alignas(T) unsigned char storage[sizeof(T)];
    T* ptr() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  Slot& slot(std::uint64_t pos) const noexcept {
    // A power-of-two capacity takes a mask; any other a division (tens of
    // cycles, on every operation: power-of-two capacities are the fast ones).
    const std::uint64_t i = pow2_ ? (pos & (cap_ - 1)) : (pos % cap_);
    return slots_[static_cast<std::size_t>(i)];
  }

  void note_depth(std::uint64_t tail_after) noexcept {
    // The high-water mark without reading head_ (the receivers' line) on
    // every send: head_seen_ only lags head_, so tail_after - head_seen_ is
    // at least the true depth. While that bound is within the mark already
    // recorded, the true depth is too and nothing needs doing; only when it
    // is above the mark is head_ read (once per `mark` sends at most when the
    // channel runs near empty, never when it runs near full).
    // relaxed: an approximate statistic; never used for synchronisation.
    std::size_t hw = high_water_.load(std::memory_order_relaxed);
    std::uint64_t h = head_seen_.load(std::memory_order_relaxed);
    if (tail_after - h <= hw) return;
    h = head_.load(std::memory_order_relaxed);
    head_seen_.store(h, std::memory_order_relaxed);
    if (tail_after <= h) return;
    const auto d = static_cast<std::size_t>(tail_after - h);
    while (d > hw && !high_water_.compare_exchange_weak(hw, d, std::memory_order_relaxed)) {
    }
  }

  void drain() noexcept {
    // Destroy what is buffered now that nobody can receive it. Senders
    // already mid-write finish (they claimed before the close).
    SpinBudget spin;
    for (;;) {
      const ChanOp op = try_pop([](T&&) noexcept {});
      if (op == ChanOp::closed) return;
      if (op == ChanOp::would_block && !spin.spin()) std::this_thread::yield();
    }
  }

  // Producers write tail_, consumers head_: separate lines.
  alignas(kCacheLine) std::atomic<std::uint64_t> tail_{0};  // next position to write | kClosed
  // A possibly stale copy of head_, kept beside tail_ for the senders'
  // high-water bookkeeping (see note_depth).
  std::atomic<std::uint64_t> head_seen_{0};
  alignas(kCacheLine) std::atomic<std::uint64_t> head_{0};  // next position to read
  // How long a blocked recv spins before it parks: written by receivers as
  // they wait, so on their line, away from what senders read.
  SpinPolicy recv_spin_;
  alignas(kCacheLine) const std::size_t cap_;
  const std::size_t batch_;
  const bool pow2_;
  const std::unique_ptr<Slot[]> slots_;
  std::atomic<std::size_t> senders_{1};
  std::atomic<std::size_t> receivers_{1};
  alignas(kCacheLine) std::atomic<std::size_t> high_water_{0};
  std::atomic<std::uint64_t> send_waits_{0};
  std::atomic<std::uint64_t> recv_waits_{0};
  alignas(kCacheLine) WaitList recv_wait_;  // receivers waiting for a value
  alignas(kCacheLine) WaitList send_wait_;  // senders waiting for room
  WaitList close_wait_;                     // Sender::closed() waiters (rare)
  // Rendezvous only (capacity 0).
  mutable std::mutex rv_m_;
  RvFifo<RvSender> rv_senders_;      // under rv_m_
  RvFifo<RvReceiver> rv_receivers_;  // under rv_m_
  std::atomic<std::uint64_t> rv_sends_{0};
};

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace detail
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// The sending half of a channel. Copyable: the channel closes when the last
/// copy goes. A default-constructed Sender is not connected (every send
/// fails with Errc::closed).
template <class T>
class Sender {
 public:
  Sender() noexcept = default;
  Sender(const Sender& o) noexcept : chan_(o.chan_) {
    if (chan_) chan_->add_sender();
  }
  Sender(Sender&& o) noexcept = default;
  Sender& operator=(const Sender& o) noexcept {
    if (this != &o) *this = Sender(o);
    return *this;
  }
  Sender& operator=(Sender&& o) noexcept {
    if (this != &o) {
      reset();
      chan_ = std::move(o.chan_);
    }
    return *this;
  }
  ~Sender() { reset(); }

  /// Sends, waiting while the channel is full (capacity 0: until a receiver
  /// takes the value). Fails with Errc::closed (the value comes back in the
  /// error).
  SendResult<T> send(T value) { return send_impl(std::move(value), std::nullopt); }

  /// Sends without waiting: Errc::full or Errc::closed hand the value back.
  /// On a rendezvous channel (capacity 0) it succeeds only when a receiver
  /// is blocked in recv() right now (select and async receivers do not count).
  SendResult<T> try_send(T value) {
    if (!chan_) return {Error(Errc::closed), std::move(value)};
    switch (chan_->try_push(value)) {
      case detail::ChanOp::ok:
        return {};
      case detail::ChanOp::would_block:
        return {Error(Errc::full), std::move(value)};
      case detail::ChanOp::closed:
        break;
    }
    return {Error(Errc::closed), std::move(value)};
  }

  /// Sends, waiting at most `timeout` for room: Errc::timeout hands the value back.
  template <class Rep, class Period>
  SendResult<T> send_for(T value, std::chrono::duration<Rep, Period> timeout) {
    return send_impl(std::move(value), detail::make_deadline(timeout));
  }
  /// Sends, waiting until `deadline` (of any clock) at most.
  template <class Clock, class Duration>
  SendResult<T> send_until(T value, std::chrono::time_point<Clock, Duration> deadline) {
    return send_impl(std::move(value), detail::make_deadline_at(deadline));
  }

  /// Waits until the channel is closed: every receiver gone, or close()
  /// from either side (tokio's Sender::closed()). For a producer that must
  /// stop as soon as nobody listens, even when it has nothing to send.
  void closed() { (void)closed_impl(std::nullopt); }
  /// closed(), waiting at most `timeout`: Errc::timeout.
  template <class Rep, class Period>
  Result<void> closed_for(std::chrono::duration<Rep, Period> timeout) {
    return closed_impl(detail::make_deadline(timeout));
  }
  /// closed(), waiting until `deadline` (of any clock): Errc::timeout.
  template <class Clock, class Duration>
  Result<void> closed_until(std::chrono::time_point<Clock, Duration> deadline) {
    return closed_impl(detail::make_deadline_at(deadline));
  }

  /// Closes the channel for everyone: sends fail, receivers drain what is
  /// buffered and then get Errc::closed. Closing twice is harmless.
  void close() noexcept {
    if (chan_) chan_->close();
  }
  [[nodiscard]] bool is_closed() const noexcept { return !chan_ || chan_->is_closed(); }
  /// True when connected to a channel (false for a default/moved-from handle).
  [[nodiscard]] bool valid() const noexcept { return chan_ != nullptr; }
  [[nodiscard]] std::size_t capacity() const noexcept { return chan_ ? chan_->capacity() : 0; }
  /// Values buffered now (a snapshot).
  [[nodiscard]] std::size_t size() const noexcept { return chan_ ? chan_->size() : 0; }
  [[nodiscard]] ChannelStats stats() const noexcept { return chan_ ? chan_->stats() : ChannelStats{}; }
  /// Drops this handle now (as the destructor does).
  void reset() noexcept {
    if (chan_) {
      chan_->drop_sender();
      chan_.reset();
    }
  }

  friend bool operator==(const Sender& a, const Sender& b) noexcept { return a.chan_ == b.chan_; }

  /// Internal: the shared state, for keel's Asio adapter.
  [[nodiscard]] const std::shared_ptr<detail::Chan<T>>& native_handle() const noexcept { return chan_; }

 private:
  template <class U>
  friend std::pair<Sender<U>, Receiver<U>> detail::KEEL_DETAIL_CHANNEL_ABI::make_channel_pair(std::size_t,
                                                                                              bool);
  template <class U>
  friend class Receiver;
  explicit Sender(std::shared_ptr<detail::Chan<T>> c) noexcept : chan_(std::move(c)) {}

  Result<void> closed_impl(detail::Deadline deadline) {
    if (!chan_) return Result<void>();
    detail::Chan<T>& c = *chan_;
    if (c.close_wait().wait([&] { return c.is_closed(); }, deadline)) return Result<void>();
    return Errc::timeout;
  }

  SendResult<T> send_impl(T value, detail::Deadline deadline) {
    if (!chan_) return {Error(Errc::closed), std::move(value)};
    detail::Chan<T>& c = *chan_;
    detail::ChanOp op = c.rendezvous() ? c.rv_send(value, deadline) : c.try_push(value);
    if (op == detail::ChanOp::would_block && c.spins() && !c.rendezvous()) {
      detail::SpinBudget spin;
      while (op == detail::ChanOp::would_block && spin.spin()) {
        if (c.room_for_batch()) op = c.try_push(value);
      }
    }
    if (op == detail::ChanOp::would_block && !c.rendezvous()) {
      c.count_send_wait();
      c.send_wait().wait(
          [&] {
            op = c.try_push(value);
            return op != detail::ChanOp::would_block;
          },
          deadline);
      // A wake-up can be spent on a slot a receiver is still emptying (the
      // woken sender parks again; that receiver then wakes only one): whoever
      // pushes after waiting wakes one more sender if the next slot is free.
      // Costs nothing when nobody waits.
      if (op == detail::ChanOp::ok) c.pass_send_wakeup();
    }
    switch (op) {
      case detail::ChanOp::ok:
        return {};
      case detail::ChanOp::would_block:
        return {Error(Errc::timeout), std::move(value)};
      case detail::ChanOp::closed:
        break;
    }
    return {Error(Errc::closed), std::move(value)};
  }

  std::shared_ptr<detail::Chan<T>> chan_;
};

/// The receiving half of a channel. Copyable (MPMC): each value goes to one
/// receiver. When the last copy goes, buffered values are destroyed and
/// sends fail with Errc::closed.
template <class T>
class Receiver {
 public:
  Receiver() noexcept = default;
  Receiver(const Receiver& o) noexcept : chan_(o.chan_) {
    if (chan_) chan_->add_receiver();
  }
  Receiver(Receiver&& o) noexcept = default;
  Receiver& operator=(const Receiver& o) noexcept {
    if (this != &o) *this = Receiver(o);
    return *this;
  }
  Receiver& operator=(Receiver&& o) noexcept {
    if (this != &o) {
      reset();
      chan_ = std::move(o.chan_);
    }
    return *this;
  }
  ~Receiver() { reset(); }

  /// The next value, waiting while empty; Errc::closed once the channel is
  /// closed and drained.
  Result<T> recv() { return recv_impl(std::nullopt); }

  /// The next value without waiting: Errc::empty, or Errc::closed once closed
  /// and drained.
  Result<T> try_recv() {
    if (!chan_) return Errc::closed;
    std::optional<T> out;
    const detail::ChanOp op = chan_->try_pop([&](T&& v) { out.emplace(std::move(v)); });
    return finish(op, out, Errc::empty);
  }

  /// The next value, waiting at most `timeout`: Errc::timeout.
  template <class Rep, class Period>
  Result<T> recv_for(std::chrono::duration<Rep, Period> timeout) {
    return recv_impl(detail::make_deadline(timeout));
  }
  /// The next value, waiting until `deadline` (of any clock) at most.
  template <class Clock, class Duration>
  Result<T> recv_until(std::chrono::time_point<Clock, Duration> deadline) {
    return recv_impl(detail::make_deadline_at(deadline));
  }

  /// `for (T& v : rx)`: an input iterator whose every step is a recv(); the
  /// loop ends when the channel is closed and drained.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = T*;
    using reference = T&;
    iterator() = default;
    explicit iterator(Receiver* rx) : rx_(rx) { ++*this; }
    T& operator*() const { return *cur_; }
    T* operator->() const { return &*cur_; }
    iterator& operator++() {
      auto r = rx_->recv();
      if (r) {
        cur_.emplace(std::move(*r));
      } else {
        cur_.reset();
      }
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return !it.cur_; }

   private:
    Receiver* rx_ = nullptr;
    mutable std::optional<T> cur_;
  };
  /// Starts the loop (receives the first value, waiting for it).
  iterator begin() { return iterator(this); }
  [[nodiscard]] std::default_sentinel_t end() const noexcept { return {}; }

  /// Waits for at least one value, then appends up to `max` buffered values
  /// to `out` in one go; returns how many. Errc::closed once closed and
  /// drained. Cheaper per value than recv() when values arrive in bursts.
  ///
  /// Why Errc::closed at the end rather than 0 items (tokio returns 0): a
  /// Result keeps "closed" impossible to mistake for "nothing this time",
  /// and `while (auto n = rx.recv_many(batch, 64))` reads the same way.
  /// Exception safety: room in `out` is reserved before anything is taken
  /// (std::bad_alloc then leaves the channel untouched), so no received
  /// value is lost.
  Result<std::size_t> recv_many(std::vector<T>& out, std::size_t max) {
    if (max == 0) return std::size_t{0};
    out.reserve(out.size() + 1);  // may throw: nothing taken yet
    KEEL_TRY_ASSIGN(T first, recv());
    out.push_back(std::move(first));  // into reserved room: cannot throw
    return 1 + try_recv_many(out, max - 1);
  }
  /// Appends up to `max` values that are buffered now, without waiting.
  /// Room is reserved first (for as many as are buffered, up to max), so
  /// std::bad_alloc leaves the channel untouched; no value is ever lost.
  std::size_t try_recv_many(std::vector<T>& out, std::size_t max) {
    if (!chan_) return 0;
    const std::size_t want = std::min(max, chan_->size());
    if (want == 0) return 0;
    if (out.capacity() - out.size() < want) out.reserve(out.size() + want);  // may throw: nothing taken
    std::size_t n = 0;
    // Each value is moved straight into reserved room (T's move is noexcept).
    while (n < max && out.size() < out.capacity() &&
           chan_->try_pop([&](T&& x) noexcept { out.push_back(std::move(x)); }) == detail::ChanOp::ok) {
      ++n;
    }
    return n;
  }

  /// Closes the channel: sends fail from now on; this and the other
  /// receivers still drain what is buffered, then get Errc::closed.
  void close() noexcept {
    if (chan_) chan_->close();
  }
  [[nodiscard]] bool is_closed() const noexcept { return !chan_ || chan_->is_closed(); }
  [[nodiscard]] bool valid() const noexcept { return chan_ != nullptr; }
  [[nodiscard]] std::size_t capacity() const noexcept { return chan_ ? chan_->capacity() : 0; }
  [[nodiscard]] std::size_t size() const noexcept { return chan_ ? chan_->size() : 0; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] ChannelStats stats() const noexcept { return chan_ ? chan_->stats() : ChannelStats{}; }
  void reset() noexcept {
    if (chan_) {
      chan_->drop_receiver();
      chan_.reset();
    }
  }

  friend bool operator==(const Receiver& a, const Receiver& b) noexcept { return a.chan_ == b.chan_; }

  /// Internal: the shared state, for keel's select and Asio adapter.
  [[nodiscard]] const std::shared_ptr<detail::Chan<T>>& native_handle() const noexcept { return chan_; }

 private:
  template <class U>
  friend std::pair<Sender<U>, Receiver<U>> detail::KEEL_DETAIL_CHANNEL_ABI::make_channel_pair(std::size_t,
                                                                                              bool);
  explicit Receiver(std::shared_ptr<detail::Chan<T>> c) noexcept : chan_(std::move(c)) {}

  static Result<T> finish(detail::ChanOp op, std::optional<T>& out, Errc would_block) {
    switch (op) {
      case detail::ChanOp::ok:
        return Result<T>(std::in_place, std::move(*out));
      case detail::ChanOp::would_block:
        return would_block;
      case detail::ChanOp::closed:
        break;
    }
    return Errc::closed;
  }

  Result<T> recv_impl(detail::Deadline deadline) {
    if (!chan_) return Errc::closed;
    detail::Chan<T>& c = *chan_;
    std::optional<T> out;
    if (c.rendezvous()) return finish(c.rv_recv(out, deadline), out, Errc::timeout);
    auto sink = [&](T&& v) { out.emplace(std::move(v)); };
    detail::ChanOp op = c.try_pop(sink);
    std::optional<detail::TimedSpin> spin;
    if (op == detail::ChanOp::would_block && c.spins()) {
      spin.emplace(c.recv_spin());
      while (op == detail::ChanOp::would_block && spin->spin()) op = c.try_pop(sink);
      spin->finish(op != detail::ChanOp::would_block);
    }
    if (op == detail::ChanOp::would_block) {
      c.count_recv_wait();
      c.recv_wait().wait(
          [&] {
            op = c.try_pop(sink);
            return op != detail::ChanOp::would_block;
          },
          deadline);
      // A wake-up can be spent on a value behind a slot still being written
      // (the woken receiver parks again; the slot's sender then wakes only
      // one): whoever takes a value after waiting wakes one more receiver
      // if another value is ready. Costs nothing when nobody waits.
      if (op == detail::ChanOp::ok) {
        c.pass_recv_wakeup();
        if (spin) spin->woke();
      }
    }
    return finish(op, out, Errc::timeout);
  }

  std::shared_ptr<detail::Chan<T>> chan_;
};

}  // namespace KEEL_DETAIL_CHANNEL_ABI
namespace detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {
template <class T>
std::pair<Sender<T>, Receiver<T>> make_channel_pair(std::size_t capacity, bool fenced) {
  auto c = std::make_shared<Chan<T>>(capacity, fenced);
  return {Sender<T>(c), Receiver<T>(std::move(c))};
}
}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace detail
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// The largest capacity a channel accepts.
inline constexpr std::size_t kMaxChannelCapacity = std::size_t{1} << 40U;

}  // namespace KEEL_DETAIL_CHANNEL_ABI
namespace detail {
inline namespace KEEL_DETAIL_CHANNEL_ABI {
/// make_channel, with the choice of wake-up barrier (see WaitList).
template <class T>
[[nodiscard]] Result<std::pair<Sender<T>, Receiver<T>>> make_channel_checked(std::size_t capacity,
                                                                             bool fenced) {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "keel::channel<T> needs a noexcept move constructor (wrap T in a std::unique_ptr)");
  static_assert(!std::is_reference_v<T>, "keel::channel<T&>: send a pointer or std::reference_wrapper");
  if (capacity > kMaxChannelCapacity) {
    return fail(Errc::invalid_argument, "channel capacity must be in 0..{}, got {}", kMaxChannelCapacity,
                capacity);
  }
  return make_channel_pair<T>(capacity, fenced);
}
}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace detail
inline namespace KEEL_DETAIL_CHANNEL_ABI {

/// A bounded MPMC channel (capacity 0: a rendezvous channel, see the file
/// comment), or Errc::invalid_argument above kMaxChannelCapacity.
template <class T>
[[nodiscard]] Result<std::pair<Sender<T>, Receiver<T>>> make_channel(std::size_t capacity) {
  return detail::make_channel_checked<T>(capacity, false);
}

/// make_channel for a channel whose waiters re-arm after nearly every value
/// (a pump awaiting it through keel::asio::async_recv): its wake-ups use a
/// fence on both sides instead of membarrier(2) on the waiter's side, which
/// costs a little on every send and recv and saves a process-wide barrier
/// per wait. Same errors as make_channel.
template <class T>
[[nodiscard]] Result<std::pair<Sender<T>, Receiver<T>>> make_fenced_channel(std::size_t capacity) {
  return detail::make_channel_checked<T>(capacity, true);
}

/// `auto [tx, rx] = keel::channel<T>(capacity);` A bounded MPMC channel.
/// Capacity 0 makes a rendezvous channel (see the file comment). Throws
/// std::invalid_argument above kMaxChannelCapacity, the way std containers
/// reject impossible sizes; make_channel<T>() reports it as a Result instead.
template <class T>
[[nodiscard]] std::pair<Sender<T>, Receiver<T>> channel(std::size_t capacity) {
  auto r = make_channel<T>(capacity);
  if (!r) {
#if KEEL_HAS_EXCEPTIONS
    throw std::invalid_argument(r.error().to_string());
#else
    detail::bad_access(r.error());
#endif
  }
  return std::move(*r);
}

}  // namespace KEEL_DETAIL_CHANNEL_ABI
}  // namespace keel
