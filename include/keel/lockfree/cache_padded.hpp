// keel/lockfree/cache_padded.hpp: keep what two threads write on separate cache lines.
//
// `CachePadded<T>` aligns and pads a value to kCacheLineSize so that it never
// shares a cache line with its neighbours (false sharing turns two independent
// writers into a ping-pong of one line between cores). `Counter` is the padded
// relaxed event counter the other primitives use for statistics.
//
//     struct Stats {
//       keel::CachePadded<std::atomic<std::uint64_t>> pushes;  // written by producers
//       keel::CachePadded<std::atomic<std::uint64_t>> pops;    // written by consumers
//     };
//     stats.pushes->fetch_add(1, std::memory_order_relaxed);
//
// Thread-safety: CachePadded<T> is exactly as thread-safe as T. Counter is safe
// from any number of threads.
#pragma once

#include <keel/detail/cpu_relax.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace keel {

/// The false-sharing granularity padded against. 128 on x86-64 and AArch64:
/// their prefetchers pull cache lines in adjacent pairs, so two hot words 64
/// bytes apart still contend (the figure crossbeam and folly use). 64 elsewhere.
/// The channels pad with the same constant.
inline constexpr std::size_t kCacheLineSize = detail::kCacheLine;

/// A T alone on its own cache line(s): aligned to kCacheLineSize, and its size a
/// multiple of it, so that arrays of CachePadded never share lines either.
template <class T>
struct alignas(kCacheLineSize) CachePadded {
  T value{};

  constexpr CachePadded() = default;
  /// Constructs the value in place from args.
  template <class... Args>
  requires std::is_constructible_v<T, Args...>
  constexpr explicit CachePadded(std::in_place_t, Args&&... args) : value(std::forward<Args>(args)...) {}
  /// Constructs from a value of T (implicit, like a wrapper should be).
  template <class U = T>
  requires std::is_constructible_v<T, U&&> &&
      (!std::is_same_v<std::remove_cvref_t<U>, CachePadded>)constexpr CachePadded(U&& v)
      : value(std::forward<U>(v)) {}  // NOLINT(google-explicit-constructor)

  constexpr T& get() noexcept { return value; }
  constexpr const T& get() const noexcept { return value; }
  constexpr T& operator*() noexcept { return value; }
  constexpr const T& operator*() const noexcept { return value; }
  constexpr T* operator->() noexcept { return &value; }
  constexpr const T* operator->() const noexcept { return &value; }
};

static_assert(sizeof(CachePadded<char>) == kCacheLineSize);
static_assert(alignof(CachePadded<char>) == kCacheLineSize);

/// A monotonic event counter on its own cache line (statistics: pushes, misses,
/// retries). Increments are relaxed: a counter orders nothing else, it only has
/// to be exact once the threads that bumped it have been joined.
class Counter {
 public:
  constexpr Counter() noexcept = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  /// Adds n. Relaxed: the RMW is atomic, so no increment is lost; nothing is
  /// published through the counter, so no ordering is needed.
  void add(std::uint64_t n = 1) noexcept { value_->fetch_add(n, std::memory_order_relaxed); }
  /// The current value. Relaxed: a statistic read racily is fine, and it is
  /// exact after a join (which itself orders the increments before it).
  [[nodiscard]] std::uint64_t load() const noexcept { return value_->load(std::memory_order_relaxed); }
  /// Resets to zero (relaxed, for the same reason as load()).
  void reset() noexcept { value_->store(0, std::memory_order_relaxed); }

 private:
  CachePadded<std::atomic<std::uint64_t>> value_{};
};

namespace detail {
/// The smallest power of two >= n (n >= 1), or 0 when it does not fit.
constexpr std::size_t next_pow2(std::size_t n) noexcept {
  std::size_t p = 1;
  while (p < n) {
    if (p > (static_cast<std::size_t>(-1) >> 1)) return 0;
    p <<= 1;
  }
  return p;
}
}  // namespace detail

}  // namespace keel
