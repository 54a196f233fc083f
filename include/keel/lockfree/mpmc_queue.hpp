// keel/lockfree/mpmc_queue.hpp: bounded lock-free multi-producer multi-consumer queue.
//
// Dmitry Vyukov's bounded queue design: an array of slots, each with a
// sequence number saying whose turn it is (the producer of lap k, or the
// consumer of lap k); producers and consumers claim positions with one CAS on
// their own counter and then hand the element over through the slot's
// sequence number. Nothing is allocated after construction.
//
//     keel::MpmcQueue<Task> q(4096);
//     // any producer thread                  // any consumer thread
//     if (!q.try_push(std::move(task)))       while (auto t = q.try_pop()) (*t)();
//       shed_load();
//
// Thread-safety: every member may be called from any number of threads.
//
// Guarantees: lock-free (some thread always completes; a thread may retry its
// CAS while others succeed). Each element is popped exactly once; elements
// pushed by one producer are popped in the order that producer pushed them
// (globally: in the order their positions were claimed). A push happens-before
// the pop that returns the element. Elements left are destroyed with the queue.
//
// When "full"/"empty" may be reported early (and only then): try_push fails
// if the slot it needs still holds the element of the previous lap, which
// includes the window in which a consumer has claimed that element but not yet
// finished moving it out; try_pop fails if the next position has been claimed
// by a producer that has not yet finished constructing its element. Both
// windows last one element move. A queue with fewer than capacity() elements
// and no try_pop in flight never reports full; a queue holding an element
// whose push has returned, with no push in flight ahead of it, never reports empty.
#pragma once

#include <keel/lockfree/cache_padded.hpp>
#include <keel/result.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace keel {

/// Bounded lock-free MPMC FIFO queue (Vyukov). T may be move-only; it must be
/// nothrow-destructible.
template <class T>
class MpmcQueue {
  static_assert(std::is_nothrow_destructible_v<T>, "MpmcQueue<T> needs a nothrow destructor");
  static_assert(std::is_object_v<T> && !std::is_const_v<T>, "MpmcQueue<T> needs a non-const object type");
  static_assert(std::is_nothrow_move_constructible_v<T>, "MpmcQueue<T> needs a nothrow move constructor");

 public:
  using value_type = T;

  /// A queue of capacity() = the smallest power of two >= max(capacity, 2)
  /// slots (the power of two turns positions into slots with a mask). Throws
  /// std::length_error / std::bad_alloc like std::vector.
  explicit MpmcQueue(std::size_t capacity) : slots_(detail::next_pow2(capacity < 2 ? 2 : capacity)) {
    if (slots_ == 0 || slots_ > static_cast<std::size_t>(-1) / sizeof(Cell))
      throw std::length_error("keel::MpmcQueue: capacity too large");
    mask_ = slots_ - 1;
    cells_ = static_cast<Cell*>(::operator new (slots_ * sizeof(Cell), std::align_val_t{kAlign}));
    for (std::size_t i = 0; i < slots_; ++i) {
      // Before publication (the constructor's end); relaxed is enough, the
      // object reaches other threads through whatever synchronisation hands
      // them the queue.
      ::new (static_cast<void*>(cells_ + i)) Cell;
      cells_[i].seq.store(i, std::memory_order_relaxed);
    }
  }

  MpmcQueue(const MpmcQueue&) = delete;
  MpmcQueue& operator=(const MpmcQueue&) = delete;

  ~MpmcQueue() {
    // Exclusive access now; relaxed loads see the final values.
    std::size_t head = head_->load(std::memory_order_relaxed);
    const std::size_t tail = tail_->load(std::memory_order_relaxed);
    for (; head != tail; ++head) cells_[head & mask_].ptr()->~T();
    for (std::size_t i = 0; i < slots_; ++i) cells_[i].~Cell();
    ::operator delete (cells_, std::align_val_t{kAlign});
  }

  /// Constructs an element in place; false when full (see the header note for
  /// the exact condition). When T's constructor from args may throw, the
  /// element is built first (an exception then leaves the queue untouched) and
  /// moved into the slot, so a full queue has consumed the arguments.
  template <class... Args>
  requires std::is_constructible_v<T, Args...>
  bool try_emplace(Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args...>) {
    if constexpr (std::is_nothrow_constructible_v<T, Args...>) {
      return emplace_nothrow(std::forward<Args>(args)...);
    } else {
      T tmp(std::forward<Args>(args)...);
      return emplace_nothrow(std::move(tmp));
    }
  }

  /// Pushes a copy/move of v; false when full (an rvalue is then left intact).
  bool try_push(const T& v) noexcept(
      std::is_nothrow_copy_constructible_v<T>) requires std::is_copy_constructible_v<T> {
    return try_emplace(v);
  }
  bool try_push(T&& v) noexcept { return emplace_nothrow(std::move(v)); }

  /// Moves the oldest element out, or std::nullopt when empty (see the header
  /// note for the exact condition).
  [[nodiscard]] std::optional<T> try_pop() noexcept {
    std::size_t pos = head_->load(std::memory_order_relaxed);  // hint; the CAS decides
    Cell* cell;
    for (;;) {
      cell = cells_ + (pos & mask_);
      // acquire: pairs with the producer's release store of seq, so the
      // element's construction happens-before we read it.
      const std::size_t seq = cell->seq.load(std::memory_order_acquire);
      const auto dif = static_cast<std::ptrdiff_t>(seq - (pos + 1));
      if (dif == 0) {
        // relaxed: as for tail_, the claim needs only atomicity.
        if (head_->compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed, std::memory_order_relaxed))
          break;
      } else if (dif < 0) {
        const std::size_t now = head_->load(std::memory_order_relaxed);  // hint
        if (now == pos) return std::nullopt;
        pos = now;
      } else {
        pos = head_->load(std::memory_order_relaxed);  // hint
      }
    }
    T* p = cell->ptr();
    std::optional<T> out(std::move(*p));
    p->~T();
    // release: our move out and destruction happen-before the next lap's
    // producer constructs here (its acquire load of seq).
    cell->seq.store(pos + mask_ + 1, std::memory_order_release);
    return out;
  }

  /// Elements in the queue: a snapshot (exact when no operation is in flight).
  [[nodiscard]] std::size_t size() const noexcept {
    // relaxed: an instantaneous estimate; head is read first so the
    // difference is not negative unless positions moved meanwhile (clamped).
    const std::size_t head = head_->load(std::memory_order_relaxed);
    const std::size_t tail = tail_->load(std::memory_order_relaxed);
    const auto n = static_cast<std::ptrdiff_t>(tail - head);
    if (n <= 0) return 0;
    return static_cast<std::size_t>(n) > slots_ ? slots_ : static_cast<std::size_t>(n);
  }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  /// The number of slots: the constructor's capacity rounded up to a power of two.
  [[nodiscard]] std::size_t capacity() const noexcept { return slots_; }

 private:
  template <class... Args>
  bool emplace_nothrow(Args&&... args) noexcept {
    // relaxed: the position is a hint; the CAS below decides, and the slot's
    // sequence number carries the data ordering.
    std::size_t pos = tail_->load(std::memory_order_relaxed);
    Cell* cell;
    for (;;) {
      cell = cells_ + (pos & mask_);
      // acquire: pairs with the consumer's release store of seq after it moved
      // the previous lap's element out, so that happens-before we reuse it.
      const std::size_t seq = cell->seq.load(std::memory_order_acquire);
      const auto dif = static_cast<std::ptrdiff_t>(seq - pos);
      if (dif == 0) {
        // relaxed: claiming the position needs only atomicity; the element is
        // handed over through cell->seq, not through tail_.
        if (tail_->compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed, std::memory_order_relaxed))
          break;
      } else if (dif < 0) {
        // The slot still holds the previous lap's element: full, unless other
        // producers moved on meanwhile (then our pos was stale; retry).
        const std::size_t now = tail_->load(std::memory_order_relaxed);  // hint, as above
        if (now == pos) return false;
        pos = now;
      } else {
        pos = tail_->load(std::memory_order_relaxed);  // another producer took pos; hint, as above
      }
    }
    ::new (static_cast<void*>(cell->ptr())) T(std::forward<Args>(args)...);
    // release: publishes the element to the consumer of this position (its
    // acquire load of seq).
    cell->seq.store(pos + 1, std::memory_order_release);
    return true;
  }

  struct Cell {
    std::atomic<std::size_t> seq{0};
    alignas(T) unsigned char storage[sizeof(T)];
    T* ptr() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };
  static constexpr std::size_t kAlign = alignof(Cell) > kCacheLineSize ? alignof(Cell) : kCacheLineSize;

  std::size_t slots_;
  std::size_t mask_ = 0;
  Cell* cells_ = nullptr;
  CachePadded<std::atomic<std::size_t>> tail_{};  // producers' position
  CachePadded<std::atomic<std::size_t>> head_{};  // consumers' position
};

/// A queue of exactly `capacity` slots, or Errc::invalid_argument when the
/// constructor would have to adjust it: capacity must be a power of two, at
/// least 2 (the constructor rounds up instead), and small enough to allocate.
/// std::bad_alloc still propagates. Neither copyable nor movable, hence the
/// pointer.
template <class T>
[[nodiscard]] Result<std::unique_ptr<MpmcQueue<T>>> make_mpmc_queue(std::size_t capacity) {
  if (capacity < 2 || (capacity & (capacity - 1)) != 0) {
    return fail(Errc::invalid_argument, "MpmcQueue capacity must be a power of two >= 2, got {}", capacity);
  }
  try {
    return std::make_unique<MpmcQueue<T>>(capacity);
  } catch (const std::length_error&) {
    return fail(Errc::invalid_argument, "MpmcQueue capacity {} is too large", capacity);
  }
}

}  // namespace keel
