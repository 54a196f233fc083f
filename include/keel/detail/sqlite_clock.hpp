// keel/detail/sqlite_clock.hpp: the steady clock keel::sqlite waits on and
// the deadlines its timeouts become. Not part of the API.
#pragma once

#include <chrono>
#include <type_traits>

namespace keel::sqlite::detail {

using Clock = std::chrono::steady_clock;

/// A steady-clock deadline `d` from now (a negative `d`: now; a huge one: a
/// century, so no arithmetic overflows).
template <class Rep, class Period>
[[nodiscard]] Clock::time_point deadline_after(std::chrono::duration<Rep, Period> d,
                                               Clock::time_point now = Clock::now()) noexcept {
  if (d <= d.zero()) return now;
  constexpr auto kCentury = std::chrono::hours(24 * 365 * 100);
  if (d >= kCentury) return now + kCentury;
  return now + std::chrono::ceil<Clock::duration>(d);
}
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
