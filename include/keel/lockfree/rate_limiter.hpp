// keel/lockfree/rate_limiter.hpp: lock-free token bucket in one atomic word.
//
// A bucket of `capacity` tokens, full at construction, refilled continuously
// at `refill_per_second`; try_acquire(n) takes n tokens or takes nothing. The
// whole state is one 64-bit word, the time (in nanoseconds since the limiter
// was made) at which the bucket would be empty: tokens(now) =
// min(capacity, (now - word) / interval). Acquiring n tokens moves the word
// forward by n intervals with one CAS, so there is no lock, no refill thread
// and no separate "last refill" time to keep consistent.
//
//     keel::RateLimiter limiter(100, 20.0);         // bursts of 100, 20/s sustained
//     if (!limiter.try_acquire()) return reply_429(limiter.time_until(1));
//
//     // Tests inject a clock (anything whose now() returns a std::chrono time point):
//     keel::BasicRateLimiter<FakeClock> fake(10, 1.0, FakeClock{&ticks});
//
// Thread-safety: every member may be called from any number of threads.
//
// Guarantees: lock-free. Over any run, the tokens granted never exceed
// capacity + refill_per_second x elapsed, however many threads call (each
// grant is a CAS on the one word, so grants are totally ordered and each
// checks the bucket it consumes). The interval per token is 1e9 /
// refill_per_second nanoseconds rounded UP to a whole nanosecond, so rounding
// can only grant less, never more (rates are exact when they divide 1e9,
// and at most 1e9 per second). A rate of 0 (or negative, or NaN) never refills.
// Memory order: relaxed throughout: the word publishes no other data, and
// atomicity of the CAS alone gives the bound above.
#pragma once

#include <keel/lockfree/cache_padded.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

namespace keel {

/// Token-bucket rate limiter on an injectable clock. Clock needs a `now()`
/// (static or not) returning a time point whose difference is a
/// std::chrono::duration; it is called once per try_acquire.
template <class Clock = std::chrono::steady_clock>
class BasicRateLimiter {
 public:
  using clock_type = Clock;

  /// A full bucket of `capacity` tokens refilled at `refill_per_second`.
  BasicRateLimiter(std::uint64_t capacity, double refill_per_second, Clock clock = Clock{})
      : clock_(std::move(clock)), start_(clock_.now()), capacity_(capacity) {
    if (refill_per_second > 0 && std::isfinite(refill_per_second)) {
      rate_ = refill_per_second;
      const double iv = std::ceil(1e9 / refill_per_second);
      interval_ =
          iv < 1 ? 1 : (iv > static_cast<double>(kMaxSpan) ? kMaxSpan : static_cast<std::int64_t>(iv));
    } else {
      frozen_ = true;  // time stands still at 0: no refill
      interval_ = 1;
    }
    burst_ = sat_mul(capacity_, interval_);
    // relaxed: construction; the object reaches other threads through
    // whatever synchronisation hands it over.
    state_->store(-burst_, std::memory_order_relaxed);  // full bucket at t = 0
  }

  BasicRateLimiter(const BasicRateLimiter&) = delete;
  BasicRateLimiter& operator=(const BasicRateLimiter&) = delete;

  /// Takes n tokens if the bucket holds n now, else takes nothing and returns
  /// false. n == 0 always succeeds; n > capacity() never does.
  [[nodiscard]] bool try_acquire(std::uint64_t n = 1) noexcept {
    if (n == 0) return true;
    if (n > capacity_) return false;
    const std::int64_t cost = sat_mul(n, interval_);
    if (cost > burst_) return false;
    const std::int64_t now = now_ns();
    // relaxed: see the header note; the CAS re-checks against the latest word.
    std::int64_t cur = state_->load(std::memory_order_relaxed);
    for (;;) {
      // A bucket that filled up does not keep accruing: clamp to full.
      const std::int64_t base = std::max(cur, now - burst_);
      const std::int64_t next = base + cost;
      if (next > now) return false;
      // relaxed: the word is the whole state and publishes nothing else; a
      // failed CAS reloads cur and re-checks.
      if (state_->compare_exchange_weak(cur, next, std::memory_order_relaxed, std::memory_order_relaxed))
        return true;
    }
  }

  /// Whole tokens in the bucket now (a snapshot).
  [[nodiscard]] std::uint64_t available() const noexcept {
    const std::int64_t now = now_ns();
    const std::int64_t base = std::max(state_->load(std::memory_order_relaxed), now - burst_);  // snapshot
    return now <= base ? 0 : static_cast<std::uint64_t>((now - base) / interval_);
  }

  /// How long until n tokens could be acquired (zero when they can be now);
  /// nanoseconds::max() when never (n > capacity, or no refill and too few).
  /// Sleep that long rather than spinning on try_acquire.
  [[nodiscard]] std::chrono::nanoseconds time_until(std::uint64_t n = 1) const noexcept {
    using std::chrono::nanoseconds;
    if (n == 0) return nanoseconds{0};
    if (n > capacity_) return nanoseconds::max();
    const std::int64_t cost = sat_mul(n, interval_);
    if (cost > burst_) return nanoseconds::max();
    const std::int64_t now = now_ns();
    const std::int64_t base = std::max(state_->load(std::memory_order_relaxed), now - burst_);  // snapshot
    const std::int64_t wait = base + cost - now;
    if (wait <= 0) return nanoseconds{0};
    return frozen_ ? nanoseconds::max() : nanoseconds{wait};
  }

  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] double refill_per_second() const noexcept { return rate_; }
  /// Nanoseconds per token (1e9 / rate rounded up; 1 when there is no refill).
  [[nodiscard]] std::int64_t interval_ns() const noexcept { return interval_; }

 private:
  // Spans are kept below 2^61 ns (73 years) so sums of two never overflow.
  static constexpr std::int64_t kMaxSpan = std::int64_t{1} << 61;

  static std::int64_t sat_mul(std::uint64_t a, std::int64_t b) noexcept {
    if (a == 0) return 0;
    if (a > static_cast<std::uint64_t>(kMaxSpan / b)) return kMaxSpan;
    return static_cast<std::int64_t>(a) * b;
  }

  std::int64_t now_ns() const noexcept {
    if (frozen_) return 0;
    const auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.now() - start_).count();
    return std::clamp<std::int64_t>(d, 0, kMaxSpan);
  }

  mutable Clock clock_;
  decltype(std::declval<Clock&>().now()) start_;
  std::uint64_t capacity_;
  double rate_ = 0;
  std::int64_t interval_ = 1;
  std::int64_t burst_ = 0;
  bool frozen_ = false;
  CachePadded<std::atomic<std::int64_t>> state_{};  // the time the bucket is empty at
};

/// The rate limiter on std::chrono::steady_clock.
using RateLimiter = BasicRateLimiter<>;

}  // namespace keel
