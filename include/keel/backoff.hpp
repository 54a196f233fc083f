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
//     auto s = keel::retry({.max_attempts = 20, .deadline = 2s,          // all options
//                           .retry_if = [](const keel::Error& e) { return e == keel::Errc::busy; }},
//                          [&] { return send(); });
//
// Thread-safety: a Backoff is a small value owned by one task; use one per
// connection or operation. retry() is reentrant; its clock, sleeper and
// cancellation check run on the calling thread.
// Guarantees: next() never exceeds policy.max, never overflows however many
// attempts, and allocates nothing.
#pragma once

#include <keel/result.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace keel {

/// How delays grow. The defaults are the WebSocket client's reconnect schedule.
struct BackoffPolicy {
  std::chrono::milliseconds initial{100};  ///< ceiling of the first delay (> 0)
  double factor = 2.0;                     ///< growth per attempt (>= 1)
  std::chrono::milliseconds max{30'000};   ///< largest delay (>= initial)
  bool jitter = true;                      ///< full jitter; false gives the ceiling itself

  /// Errc::config naming the offending field, or success.
  [[nodiscard]] Result<void> validate() const {
    if (initial.count() <= 0) return fail(Errc::config, "backoff initial must be > 0 ms");
    if (!(factor >= 1.0) || !std::isfinite(factor)) {
      return fail(Errc::config, "backoff factor must be finite and >= 1 (got {})", factor);
    }
    if (max < initial) {
      return fail(Errc::config, "backoff max ({} ms) is below initial ({} ms)", max.count(), initial.count());
    }
    return {};
  }
};

namespace detail {
/// A fresh 64-bit seed: splitmix64 over a per-thread state seeded once from
/// std::random_device and the clock, so making a Backoff never opens the
/// entropy device again.
[[nodiscard]] inline std::uint64_t next_seed() noexcept {
  thread_local std::uint64_t state = [] {
    std::uint64_t s = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#if KEEL_HAS_EXCEPTIONS
    try {
      std::random_device rd;
      s ^= (static_cast<std::uint64_t>(rd()) << 32U) ^ rd();
    } catch (...) {  // no entropy device: the clock alone
    }
#else
    std::random_device rd;
    s ^= (static_cast<std::uint64_t>(rd()) << 32U) ^ rd();
#endif
    return s;
  }();
  state += 0x9E3779B97F4A7C15ULL;
  std::uint64_t z = state;
  z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31U);
}
}  // namespace detail

/// Exponential backoff state: how many attempts were made, and the next delay.
class Backoff {
 public:
  /// An invalid policy is clamped (initial >= 1 ms, factor >= 1, max >=
  /// initial); call policy.validate() first to report it instead.
  /// `seed` fixes the jitter sequence (tests); by default each Backoff takes
  /// the next value of a per-thread generator, seeded once per thread.
  explicit Backoff(BackoffPolicy policy = {}, std::uint64_t seed = detail::next_seed())
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

/// How retry() runs. Only what differs from the defaults needs saying:
/// `keel::retry({.backoff = {.initial = 5ms}, .max_attempts = 8}, fn)`.
struct RetryOptions {
  BackoffPolicy backoff{};                       ///< the pauses between calls
  std::uint32_t max_attempts = 3;                ///< calls of fn at most (>= 1)
  std::chrono::nanoseconds deadline{0};          ///< budget from the first call; zero: none
  std::function<bool(const Error&)> retry_if{};  ///< which errors to retry; empty: Error::is_transient()
  std::function<bool()> cancelled{};             ///< asked before each pause; true stops with Errc::cancelled
  std::function<std::chrono::steady_clock::time_point()> now{};  ///< the clock; empty: steady_clock::now
  std::function<void(std::chrono::milliseconds)> sleep{};        ///< the pause; empty: this_thread::sleep_for
  std::uint64_t seed = 0;  ///< jitter seed; 0: a per-thread generator's next value

  /// Errc::config naming the offending field, or success.
  [[nodiscard]] Result<void> validate() const {
    if (auto b = backoff.validate(); !b) return b;
    if (max_attempts == 0) return fail(Errc::config, "retry max_attempts must be >= 1");
    if (deadline.count() < 0) return fail(Errc::config, "retry deadline must not be negative");
    return {};
  }
};

/// Calls fn() (returning a keel::Result) until it succeeds, fails with an
/// error opts.retry_if rejects (by default a non-transient one, see
/// keel::is_transient), max_attempts calls were made, the next pause would
/// end past the deadline, or opts.cancelled() says stop; pauses on the
/// backoff schedule between calls, through opts.sleep and opts.now when given
/// (so tests need not sleep). Returns fn's last result; when it gives up on a
/// retryable error the error gets the context "gave up after N attempts" (and
/// why, for a deadline); a cancellation is Errc::cancelled naming the last
/// error. Invalid options are Errc::config, and fn is not called.
template <class F>
auto retry(const RetryOptions& opts, F&& fn) -> std::remove_cvref_t<std::invoke_result_t<F&>> {
  using R = std::remove_cvref_t<std::invoke_result_t<F&>>;
  static_assert(detail::is_result_v<R>, "retry: fn must return a keel::Result");
  if (auto ok = opts.validate(); !ok) return R(unexpected<Error>(std::move(ok).error().context("retry")));
  const auto clock = [&] { return opts.now ? opts.now() : std::chrono::steady_clock::now(); };
  const auto start = opts.deadline.count() > 0 ? clock() : std::chrono::steady_clock::time_point{};
  Backoff backoff(opts.backoff, opts.seed != 0 ? opts.seed : detail::next_seed());
  for (std::uint32_t i = 1;; ++i) {
    R r = fn();
    if (r.has_value()) return r;
    const bool retryable = opts.retry_if ? opts.retry_if(r.error()) : r.error().is_transient();
    if (!retryable) return r;
    if (i >= opts.max_attempts) return std::move(r).context(fmt::format("gave up after {} attempts", i));
    const auto pause = backoff.next();
    if (opts.deadline.count() > 0 && clock() + pause > start + opts.deadline) {
      return std::move(r).context(
          fmt::format("gave up after {} attempts: the deadline ({} ms) would pass", i,
                      std::chrono::duration_cast<std::chrono::milliseconds>(opts.deadline).count()));
    }
    if (opts.cancelled && opts.cancelled()) {
      return R(unexpected<Error>(Error(
          Errc::cancelled, fmt::format("retry cancelled after {} attempts; last error: {}", i, r.error()))));
    }
    if (opts.sleep) {
      opts.sleep(pause);
    } else {
      std::this_thread::sleep_for(pause);
    }
  }
}

/// retry() with a policy and an attempt count, every other option default:
/// `keel::retry({.initial = 5ms, .max = 200ms}, 8, [&] { return write_row(); })`.
/// max_attempts 0 counts as 1.
template <class F>
auto retry(BackoffPolicy policy, std::uint32_t max_attempts, F&& fn)
    -> std::remove_cvref_t<std::invoke_result_t<F&>> {
  RetryOptions opts;
  opts.backoff = policy;
  opts.max_attempts = max_attempts == 0 ? 1 : max_attempts;
  return retry(opts, std::forward<F>(fn));
}

}  // namespace keel
