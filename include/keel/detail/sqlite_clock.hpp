// keel/detail/sqlite_clock.hpp: the steady clock keel::sqlite waits on and
// the deadlines its timeouts become. Not part of the API.
#pragma once

#include <chrono>
#include <ctime>
#include <type_traits>

namespace keel::sqlite::detail {

using Clock = std::chrono::steady_clock;

/// The steady clock read cheaply, a few milliseconds behind at most (Linux's
/// CLOCK_MONOTONIC_COARSE, which steady_clock counts from too): for connection
/// ages, not for deadlines.
[[nodiscard]] inline Clock::time_point coarse_now() noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
  timespec ts{};
  if (::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0) {
    return Clock::time_point(std::chrono::duration_cast<Clock::duration>(
        std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
  }
#endif
  return Clock::now();
}

/// `d` as a steady-clock duration (a negative `d`: zero; a huge one: a
/// century, so no arithmetic overflows).
template <class Rep, class Period>
[[nodiscard]] Clock::duration timeout_of(std::chrono::duration<Rep, Period> d) noexcept {
  if (d <= d.zero()) return Clock::duration::zero();
  constexpr auto kCentury = std::chrono::hours(24 * 365 * 100);
  if (d >= kCentury) return std::chrono::duration_cast<Clock::duration>(kCentury);
  return std::chrono::ceil<Clock::duration>(d);
}

/// A steady-clock deadline `d` from now.
template <class Rep, class Period>
[[nodiscard]] Clock::time_point deadline_after(std::chrono::duration<Rep, Period> d,
                                               Clock::time_point now = Clock::now()) noexcept {
  return now + timeout_of(d);
}

/// How long a checkout may wait: a timeout counted from when it first has to
/// wait (so a checkout that finds a connection never reads the clock), or a
/// deadline.
struct WaitLimit {
  Clock::duration timeout{};
  Clock::time_point deadline{};
  bool relative = false;
  [[nodiscard]] static WaitLimit after(Clock::duration d) noexcept { return {d, {}, true}; }
  [[nodiscard]] static WaitLimit until(Clock::time_point tp) noexcept { return {{}, tp, false}; }
};
/// `tp` as a steady-clock deadline.
template <class C, class D>
[[nodiscard]] Clock::time_point steady_deadline(std::chrono::time_point<C, D> tp) noexcept {
  if constexpr (std::is_same_v<C, Clock>) {
    return std::chrono::time_point_cast<Clock::duration>(tp);
  } else {
    return deadline_after(tp - C::now());
  }
}

}  // namespace keel::sqlite::detail
