// keel/errc.hpp: the closed set of error kinds every keel module reports, and
// how they meet std::error_code.
//
//     std::error_code ec = keel::Errc::timeout;          // category "keel"
//     keel::to_string(keel::Errc::not_found);            // "NOT_FOUND", stable
//     keel::http_status(keel::Errc::not_found);          // 404
//     if (os_error == keel::Errc::timeout) { ... }       // true for ETIMEDOUT too
//     keel::errc_from(std::make_error_code(std::errc::too_many_files_open));
//                                                         // Errc::resource_exhausted
//
// Standard library only (no fmt). Everything here is constexpr or noexcept and
// thread-safe. <keel/result.hpp> includes it; include it alone where only the
// kinds are needed.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace keel {

/// The closed set of error kinds shared by every keel module. A caller decides
/// what to do from the kind alone; the message and context explain it.
/// Values start at 1 so that a value-initialised std::error_code means success.
enum class Errc : std::uint8_t {
  /// The caller passed something unusable (bad input, a value out of range).
  invalid_argument = 1,
  /// What was asked for does not exist (a row, a file, a credential).
  not_found,
  /// A create found the name taken.
  already_exists,
  /// A wait ran out of time. Transient.
  timeout,
  /// A channel or connection is shut for good; retrying will not help.
  closed,
  /// A bounded queue is at capacity (backpressure); try later or drop.
  full,
  /// Nothing to take right now (a non-blocking receive).
  empty,
  /// A broadcast receiver fell behind and missed values.
  lagged,
  /// The caller (or its owner) gave up on the operation.
  cancelled,
  /// Something is momentarily in use elsewhere (a lock, EAGAIN, EINTR). Transient.
  busy,
  /// A file or socket operation failed (the OS error is in the message).
  io,
  /// The database reported an error that is not one of the other kinds.
  database,
  /// A cryptographic operation failed for a reason other than authentication.
  crypto,
  /// Wrong key, wrong password, tampered data, or permission denied.
  auth_failed,
  /// A peer broke the protocol (malformed frame, unexpected reply).
  protocol,
  /// The program is misconfigured (a config struct's validate() says why).
  config,
  /// Out of memory, file handles, disk space or quota.
  resource_exhausted,
  /// A peer cannot be reached right now (refused, reset, unreachable). Transient.
  unavailable,
  /// A bug: an invariant broke. Report it.
  internal,
  /// Stored data is damaged or missing (a corrupt record, a vault without its header).
  data_loss,
  /// A kind this build does not know (a newer peer's code); the text is kept.
  unknown,
};

}  // namespace keel

/// Makes `std::error_code ec = keel::Errc::timeout;` work (with make_error_code).
template <>
struct std::is_error_code_enum<keel::Errc> : std::true_type {};

namespace keel {

/// Number of Errc kinds (the largest enumerator's value).
inline constexpr int kErrcCount = 21;

/// A stable SCREAMING_SNAKE_CASE code ("NOT_FOUND"), or "UNKNOWN" for a value
/// outside the enumeration. These strings are part of the API: they never change.
[[nodiscard]] constexpr std::string_view to_string(Errc c) noexcept {
  switch (c) {
    case Errc::invalid_argument:
      return "INVALID_ARGUMENT";
    case Errc::not_found:
      return "NOT_FOUND";
    case Errc::already_exists:
      return "ALREADY_EXISTS";
    case Errc::timeout:
      return "TIMEOUT";
    case Errc::closed:
      return "CLOSED";
    case Errc::full:
      return "FULL";
    case Errc::empty:
      return "EMPTY";
    case Errc::lagged:
      return "LAGGED";
    case Errc::cancelled:
      return "CANCELLED";
    case Errc::busy:
      return "BUSY";
    case Errc::io:
      return "IO";
    case Errc::database:
      return "DATABASE";
    case Errc::crypto:
      return "CRYPTO";
    case Errc::auth_failed:
      return "AUTH_FAILED";
    case Errc::protocol:
      return "PROTOCOL";
    case Errc::config:
      return "CONFIG";
    case Errc::resource_exhausted:
      return "RESOURCE_EXHAUSTED";
    case Errc::unavailable:
      return "UNAVAILABLE";
    case Errc::internal:
      return "INTERNAL";
    case Errc::data_loss:
      return "DATA_LOSS";
    case Errc::unknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

/// Parses a code made by to_string(Errc); std::nullopt for anything else.
[[nodiscard]] constexpr std::optional<Errc> errc_from_string(std::string_view s) noexcept {
  for (int i = 1; i <= kErrcCount; ++i) {
    const auto c = static_cast<Errc>(i);
    if (to_string(c) == s) return c;
  }
  return std::nullopt;
}

/// An HTTP-like status for an API or IPC boundary (see docs/result.md for the
/// reasoning behind each choice).
[[nodiscard]] constexpr int http_status(Errc c) noexcept {
  switch (c) {
    case Errc::invalid_argument:
      return 400;
    case Errc::not_found:
      return 404;
    case Errc::already_exists:
      return 409;
    case Errc::timeout:
      return 504;
    case Errc::closed:
      return 410;  // Gone: the resource existed and is shut.
    case Errc::full:
      return 503;  // Backpressure: try again later.
    case Errc::empty:
      return 404;  // Nothing to hand out right now.
    case Errc::lagged:
      return 409;  // The reader's position conflicts with what is retained.
    case Errc::cancelled:
      return 499;  // Client closed request (nginx, gRPC's mapping).
    case Errc::busy:
      return 503;
    case Errc::io:
      return 500;
    case Errc::database:
      return 500;
    case Errc::crypto:
      return 500;
    case Errc::auth_failed:
      return 401;
    case Errc::protocol:
      return 502;  // Bad Gateway: a peer spoke wrongly.
    case Errc::config:
      return 500;
    case Errc::resource_exhausted:
      return 429;
    case Errc::unavailable:
      return 503;
    case Errc::internal:
      return 500;
    case Errc::data_loss:
      return 500;
    case Errc::unknown:
      return 500;
  }
  return 500;
}

/// True for the kinds worth retrying after a pause: timeout, busy, unavailable.
[[nodiscard]] constexpr bool is_transient(Errc c) noexcept {
  return c == Errc::timeout || c == Errc::busy || c == Errc::unavailable;
}

/// The kind for an errno value (POSIX), the table docs/result.md lists:
/// EINVAL -> invalid_argument, ENOENT -> not_found, EAGAIN/EINTR -> busy,
/// EMFILE/ENOSPC/... -> resource_exhausted, ECONNREFUSED -> unavailable, ...;
/// any other non-zero value is Errc::io. 0 (success) gives Errc::internal:
/// turning success into an error is a bug.
[[nodiscard]] constexpr Errc errc_from_errno(int e) noexcept {
  switch (e) {
    case 0:
      return Errc::internal;
    case EINVAL:
    case EDOM:
    case ERANGE:
    case ENAMETOOLONG:
      return Errc::invalid_argument;
    case ENOENT:
    case ESRCH:
      return Errc::not_found;
    case EEXIST:
      return Errc::already_exists;
    case ETIMEDOUT:
#ifdef ETIME
    case ETIME:
#endif
      return Errc::timeout;
    case ECANCELED:
      return Errc::cancelled;
    case EBUSY:
    case ETXTBSY:
    case EAGAIN:
#if defined(EWOULDBLOCK) && EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINTR:
      return Errc::busy;
    case EACCES:
    case EPERM:
      return Errc::auth_failed;
    case EPROTO:
    case EBADMSG:
      return Errc::protocol;
    case ENOMEM:
    case ENOBUFS:
    case EMFILE:
    case ENFILE:
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
      return Errc::resource_exhausted;
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
    case ENETRESET:
      return Errc::unavailable;
    default:
      return Errc::io;
  }
}

namespace detail {
class KeelCategory final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "keel"; }
  [[nodiscard]] std::string message(int v) const override {
    return std::string(to_string(static_cast<Errc>(v)));
  }
  [[nodiscard]] std::error_condition default_error_condition(int v) const noexcept override {
    switch (static_cast<Errc>(v)) {
      case Errc::invalid_argument:
        return std::errc::invalid_argument;
      case Errc::not_found:
        return std::errc::no_such_file_or_directory;
      case Errc::already_exists:
        return std::errc::file_exists;
      case Errc::timeout:
        return std::errc::timed_out;
      case Errc::cancelled:
        return std::errc::operation_canceled;
      case Errc::busy:
        return std::errc::device_or_resource_busy;
      case Errc::io:
        return std::errc::io_error;
      case Errc::auth_failed:
        return std::errc::permission_denied;
      case Errc::protocol:
        return std::errc::protocol_error;
      case Errc::resource_exhausted:
        return std::errc::resource_unavailable_try_again;
      default:
        return {v, *this};
    }
  }
};
}  // namespace detail

/// The "keel" std::error_category.
[[nodiscard]] inline const std::error_category& keel_category() noexcept {
  static const detail::KeelCategory cat;
  return cat;
}

/// True when `c` is keel's category. Compared by address and, failing that,
/// by name: a program whose shared libraries each hold their own copy of the
/// header-only category still recognises keel codes made in another one.
[[nodiscard]] inline bool is_keel_category(const std::error_category& c) noexcept {
  return &c == &keel_category() || std::strcmp(c.name(), "keel") == 0;
}

/// Makes `std::error_code ec = keel::Errc::timeout;` work (found by ADL).
[[nodiscard]] inline std::error_code make_error_code(Errc c) noexcept {
  return {static_cast<int>(c), keel_category()};
}

namespace detail {
// Whether ec's kind is known: a keel code, an errno value (generic, and on
// POSIX system codes), or a code whose portable condition is an errno.
[[nodiscard]] inline bool errno_like(const std::error_code& ec) noexcept {
  const auto& cat = ec.category();
#ifndef _WIN32
  if (cat == std::system_category()) return true;
#endif
  return cat == std::generic_category() || ec.default_error_condition().category() == std::generic_category();
}
}  // namespace detail

/// The kind of any std::error_code: a keel code keeps its kind (a value this
/// build does not know is Errc::unknown); generic codes, and system codes on
/// POSIX, go through errc_from_errno; a code of another category is mapped by
/// its portable condition when it has one, else Errc::io. Success gives
/// Errc::internal.
[[nodiscard]] inline Errc errc_from(const std::error_code& ec) noexcept {
  if (!ec) return Errc::internal;
  if (is_keel_category(ec.category())) {
    return ec.value() >= 1 && ec.value() <= kErrcCount ? static_cast<Errc>(ec.value()) : Errc::unknown;
  }
  const auto& cat = ec.category();
#ifndef _WIN32
  if (cat == std::system_category()) return errc_from_errno(ec.value());
#endif
  if (cat == std::generic_category()) return errc_from_errno(ec.value());
  const auto cond = ec.default_error_condition();
  if (cond.category() != std::generic_category()) return Errc::io;
  return errc_from_errno(cond.value());
}

/// `ec == keel::Errc::timeout` holds for a keel code of that kind and for a
/// generic or system code of the same meaning (ETIMEDOUT), the way a
/// std::error_condition compares. A code of a category with no portable
/// condition equals no kind; success equals none.
[[nodiscard]] inline bool operator==(const std::error_code& ec, Errc c) noexcept {
  if (!ec) return false;
  if (!is_keel_category(ec.category()) && !detail::errno_like(ec)) return false;
  return errc_from(ec) == c;
}

}  // namespace keel
