// keel/backoff.hpp: exponential backoff with full jitter, and retry.
//
// The schedule the WebSocket client reconnects on and that SQLite-style
// retries use: attempt n waits a random time in [0, min(max, initial x
// factor^n)] ("full jitter"), so a crowd of clients that lost the same server
// does not come back in lock-step.
//
//     keel::Backoff backoff({.initial = 100ms, .factor = 2.0, .max = 30s});
//     while (!connect()) std::this_thread::sleep_for(backoff.next());
//     backoff.reset();                                   // after a good connection
//
//     auto r = keel::retry({.initial = 5ms, .max = 200ms}, 8, [&] { return write_row(); });
//
// Thread-safety: a Backoff is a small value owned by one task; use one per
// connection or operation. retry() is reentrant.
// Guarantees: next() never exceeds policy.max, never overflows however many
// attempts, and allocates nothing.
#pragma once

#include <keel/result.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <type_traits>

namespace keel {

/// How delays grow. Defaults match design.md's WebSocket client.
struct BackoffPolicy {
  std::chrono::milliseconds initial{100};  ///< ceiling of the first delay (> 0)
  double factor = 2.0;                     ///< growth per attempt (>= 1)
  std::chrono::milliseconds max{30'000};   ///< largest delay (>= initial)
  bool jitter = true;                      ///< full jitter; false gives the ceiling itself

  /// Errc::invalid_argument naming the offending field, or success.
  [[nodiscard]] Result<void> validate() const {
    if (initial.count() <= 0) return fail(Errc::invalid_argument, "backoff initial must be > 0 ms");
    if (!(factor >= 1.0) || !std::isfinite(factor)) {
      return fail(Errc::invalid_argument, "backoff factor must be finite and >= 1 (got {})", factor);
    }
    if (max < initial) {
      return fail(Errc::invalid_argument, "backoff max ({} ms) is below initial ({} ms)", max.count(),
                  initial.count());
    }
    return {};
  }
};

/// Exponential backoff state: how many attempts were made, and the next delay.
class Backoff {
 public:
  /// An invalid policy is clamped (initial >= 1 ms, factor >= 1, max >=
  /// initial); call policy.validate() first to report it instead.
  explicit Backoff(BackoffPolicy policy = {}, std::uint64_t seed = std::random_device{}())
      : policy_(clamp(policy)), rng_(seed) {}

  /// The delay to wait before the next attempt; counts the attempt.
  [[nodiscard]] std::chrono::milliseconds next() noexcept {
    const auto cap = ceiling();
    if (attempt_ < UINT32_MAX) ++attempt_;
    if (!policy_.jitter || cap.count() == 0) return cap;
    std::uniform_int_distribution<std::int64_t> dist(0, cap.count());
    return std::chrono::milliseconds(dist(rng_));
  }

  /// The ceiling of the next delay: min(max, initial x factor^attempt).
  /// Saturates at max however large the attempt count or max (even
  /// milliseconds::max()): the growth is computed in floating point but only
  /// ever converted back when it is below max, so the result is exact.
  [[nodiscard]] std::chrono::milliseconds ceiling() const noexcept {
    const std::int64_t max = policy_.max.count();
    const double raw = static_cast<double>(policy_.initial.count()) *
                       std::pow(policy_.factor, static_cast<double>(attempt_));
    // static_cast<double>(max) may round up (2^63 for milliseconds::max()):
    // anything not strictly below it saturates, so the conversion below only
    // sees values under 2^63 and never overflows.
    if (!(raw < static_cast<double>(max))) return policy_.max;
    const auto grown = static_cast<std::int64_t>(raw);
    return std::chrono::milliseconds(std::min(grown, max));
  }

  /// Attempts counted by next() since construction or reset().
  [[nodiscard]] std::uint32_t attempt() const noexcept { return attempt_; }
  /// Back to the first delay (after a success).
  void reset() noexcept { attempt_ = 0; }
  [[nodiscard]] const BackoffPolicy& policy() const noexcept { return policy_; }

 private:
  static BackoffPolicy clamp(BackoffPolicy p) noexcept {
    if (p.initial.count() <= 0) p.initial = std::chrono::milliseconds(1);
    if (!(p.factor >= 1.0) || !std::isfinite(p.factor)) p.factor = 1.0;
    if (p.max < p.initial) p.max = p.initial;
    return p;
  }

  BackoffPolicy policy_;
  std::uint32_t attempt_ = 0;
  std::minstd_rand rng_;
};

/// Calls fn() (returning a keel::Result) until it succeeds, fails with a
/// non-transient error (see keel::is_transient), or max_attempts calls were
/// made, sleeping on the backoff schedule between calls. Returns fn's last
/// result; a final transient error gets the context "gave up after N attempts".
template <class F>
auto retry(BackoffPolicy policy, std::uint32_t max_attempts, F&& fn) -> std::invoke_result_t<F&> {
  static_assert(detail::is_result_v<std::invoke_result_t<F&>>, "retry: fn must return a keel::Result");
  Backoff backoff(policy);
  if (max_attempts == 0) max_attempts = 1;
  for (std::uint32_t i = 1;; ++i) {
    auto r = fn();
    if (r.has_value() || !r.error().is_transient()) return r;
    if (i >= max_attempts) return std::move(r).context(fmt::format("gave up after {} attempts", i));
    std::this_thread::sleep_for(backoff.next());
  }
}

}  // namespace keel
