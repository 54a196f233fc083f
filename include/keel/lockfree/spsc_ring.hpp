// keel/lockfree/spsc_ring.hpp: bounded wait-free single-producer single-consumer ring.
//
// One thread pushes, one thread pops; every operation finishes in a bounded
// number of its own steps (wait-free), allocates nothing, and never blocks.
//
//     keel::SpscRing<std::unique_ptr<Job>> ring(1024);
//     // producer thread                      // consumer thread
//     if (!ring.try_push(std::move(job)))      if (auto job = ring.try_pop()) run(**job);
//       handle_full();                         // or zero-copy: T* p = ring.front(); use(*p); ring.pop();
//
// Thread-safety: at most one thread calls the producer side (try_push,
// try_emplace) and at most one thread calls the consumer side (try_pop, front,
// pop) at a time; they may be different threads. size() and empty() may be
// called from anywhere and are a snapshot.
//
// Guarantees: FIFO; an element pushed happens-before the pop that returns it
// (everything the producer wrote before try_push is visible to the consumer
// after it pops). Elements still in the ring are destroyed with the ring.
//
// Implementation: head and tail are free-running 64-bit counters (slot =
// index & mask), each written by one side only and kept on its own cache line
// together with that side's cached copy of the other counter, so in the steady
// state a side touches the other's line only when its cached view says full
// (producer) or empty (consumer).
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

/// Bounded wait-free single-producer single-consumer FIFO ring. T may be
/// move-only; it must be nothrow-destructible.
template <class T>
class SpscRing {
  static_assert(std::is_nothrow_destructible_v<T>, "SpscRing<T> needs a nothrow destructor");
  static_assert(std::is_object_v<T> && !std::is_const_v<T>, "SpscRing<T> needs a non-const object type");

 public:
  using value_type = T;

  /// A ring that holds at most `capacity` elements (0 is treated as 1). Storage
  /// is allocated once, here: a power of two >= capacity slots, cache-line
  /// aligned. Throws std::length_error when the capacity cannot be represented
  /// and std::bad_alloc when memory runs out, like std::vector.
  explicit SpscRing(std::size_t capacity)
      : capacity_(capacity == 0 ? 1 : capacity), slots_(detail::next_pow2(capacity_)), mask_(slots_ - 1) {
    if (slots_ == 0 || slots_ > static_cast<std::size_t>(-1) / sizeof(T))
      throw std::length_error("keel::SpscRing: capacity too large");
    buf_ = static_cast<T*>(::operator new (slots_ * sizeof(T), std::align_val_t{kAlign}));
  }

  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  ~SpscRing() {
    // No other thread may use the ring now, so relaxed loads see the final
    // values (the caller's join or handoff already ordered them).
    std::size_t head = head_->pos.load(std::memory_order_relaxed);
    const std::size_t tail = tail_->pos.load(std::memory_order_relaxed);
    for (; head != tail; ++head) buf_[head & mask_].~T();
    ::operator delete (buf_, std::align_val_t{kAlign});
  }

  /// Producer: constructs an element in place from args; false (and args
  /// untouched) when the ring is full. Wait-free.
  template <class... Args>
  requires std::is_constructible_v<T, Args...>
  bool try_emplace(Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args...>) {
    // relaxed: tail is written only by this (the producer) thread.
    const std::size_t tail = tail_->pos.load(std::memory_order_relaxed);
    if (tail - tail_->cached_other == capacity_) {
      // acquire: pairs with the consumer's release store of head, so its move
      // out of (and destruction of) the slot we are about to reuse
      // happens-before our construction in it.
      tail_->cached_other = head_->pos.load(std::memory_order_acquire);
      if (tail - tail_->cached_other == capacity_) return false;
    }
    ::new (static_cast<void*>(buf_ + (tail & mask_))) T(std::forward<Args>(args)...);
    // release: publishes the constructed element; pairs with the consumer's
    // acquire load of tail.
    tail_->pos.store(tail + 1, std::memory_order_release);
    return true;
  }

  /// Producer: pushes a copy/move of v; false when full (v is then left as it
  /// was: a failed push does not consume an rvalue). Wait-free.
  bool try_push(const T& v) noexcept(
      std::is_nothrow_copy_constructible_v<T>) requires std::is_copy_constructible_v<T> {
    return try_emplace(v);
  }
  bool try_push(T&& v) noexcept(std::is_nothrow_move_constructible_v<T>) { return try_emplace(std::move(v)); }

  /// Consumer: the oldest element, or nullptr when empty. The element stays in
  /// the ring (and valid) until pop(). Wait-free.
  [[nodiscard]] T* front() noexcept {
    // relaxed: head is written only by this (the consumer) thread.
    return ready_slot(head_->pos.load(std::memory_order_relaxed));
  }

  /// Consumer: destroys the element front() returned and frees its slot.
  /// Precondition: front() != nullptr (checked in debug builds).
  void pop() noexcept {
    const std::size_t head = head_->pos.load(std::memory_order_relaxed);  // own counter
    KEEL_ASSERT(head != head_->cached_other);
    release_slot(head);
  }

  /// Consumer: moves the oldest element out, or std::nullopt when empty. Wait-free.
  [[nodiscard]] std::optional<T> try_pop() noexcept(std::is_nothrow_move_constructible_v<T>) {
    const std::size_t head = head_->pos.load(std::memory_order_relaxed);  // own counter
    if (!ready(head)) return std::nullopt;
    std::optional<T> out(std::move(buf_[head & mask_]));
    release_slot(head);
    return out;
  }

  /// Consumer: moves the oldest element into `out`; false when empty.
  bool try_pop(T& out) noexcept(std::is_nothrow_move_assignable_v<T>) {
    const std::size_t head = head_->pos.load(std::memory_order_relaxed);  // own counter
    if (!ready(head)) return false;
    out = std::move(buf_[head & mask_]);
    release_slot(head);
    return true;
  }

  /// Elements in the ring: exact from either side thread, a snapshot elsewhere.
  [[nodiscard]] std::size_t size() const noexcept {
    // acquire on both: a consistent-enough snapshot. head is read first, and
    // both only grow with head <= tail, so the difference is never negative.
    const std::size_t head = head_->pos.load(std::memory_order_acquire);
    const std::size_t tail = tail_->pos.load(std::memory_order_acquire);
    const std::size_t n = tail - head;
    return n > capacity_ ? capacity_ : n;
  }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  /// The most elements the ring holds (the constructor's argument, or 1 for 0).
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

 private:
  // Consumer: whether the producer has published the slot at `head`. Returns
  // a bool rather than a pointer so that the hot path has no null test.
  bool ready(std::size_t head) noexcept {
    if (head != head_->cached_other) [[likely]]
      return true;
    // acquire: pairs with the producer's release store of tail, so the
    // element's construction happens-before our reading it.
    const std::size_t tail = tail_->pos.load(std::memory_order_acquire);
    head_->cached_other = tail;
    return head != tail;
  }

  // Consumer: the slot at `head` if the producer has published it, else nullptr.
  T* ready_slot(std::size_t head) noexcept { return ready(head) ? buf_ + (head & mask_) : nullptr; }

  // Consumer: destroys the element at `head` and hands its slot back.
  void release_slot(std::size_t head) noexcept {
    buf_[head & mask_].~T();
    // release: our reads of the slot and the destruction happen-before the
    // producer reuses it (pairs with its acquire load of head).
    head_->pos.store(head + 1, std::memory_order_release);
  }

  static constexpr std::size_t kAlign = alignof(T) > kCacheLineSize ? alignof(T) : kCacheLineSize;

  // One side's own counter and its cached view of the other side's counter.
  struct Side {
    std::atomic<std::size_t> pos{0};
    std::size_t cached_other{0};
  };

  // Read-only after construction: shared by both sides without contention.
  std::size_t capacity_;
  std::size_t slots_;
  std::size_t mask_;
  T* buf_ = nullptr;
  CachePadded<Side> tail_;  // producer's line
  CachePadded<Side> head_;  // consumer's line
};

/// A ring holding exactly `capacity` elements, or Errc::invalid_argument for
/// capacity 0 or one too large to allocate (the constructor treats 0 as 1 and
/// throws for the latter; the factory adjusts nothing). std::bad_alloc still
/// propagates. The ring is neither copyable nor movable, hence the pointer.
template <class T>
[[nodiscard]] Result<std::unique_ptr<SpscRing<T>>> make_spsc_ring(std::size_t capacity) {
  if (capacity == 0) return fail(Errc::invalid_argument, "SpscRing capacity must be at least 1");
  const std::size_t slots = detail::next_pow2(capacity);
  if (slots == 0 || slots > static_cast<std::size_t>(-1) / sizeof(T)) {
    return fail(Errc::invalid_argument, "SpscRing capacity {} is too large", capacity);
  }
  return std::make_unique<SpscRing<T>>(capacity);
}

}  // namespace keel
