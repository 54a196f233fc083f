// keel/errc.hpp: the closed set of error kinds every keel module reports, and
// how they meet std::error_code.
//
//     std::error_code ec = keel::Errc::timeout;          // category "keel"
//     keel::to_string(keel::Errc::not_found);            // "NOT_FOUND", stable
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
  /// The caller passed a value the function cannot use, whatever the state
  /// of the system (a malformed string, an out-of-range index). Use config
  /// for bad settings, and not_found / already_exists for a name that does
  /// or does not exist.
  invalid_argument = 1,
  /// What was asked for does not exist (a row, a file, a credential). Use
  /// when the caller named something; empty for a queue with nothing in it.
  not_found,
  /// A create found the name taken. Use only for creation; a conflicting
  /// state of something that exists is invalid_argument or internal.
  already_exists,
  /// A wait or deadline ran out before the operation finished; the operation
  /// may still succeed if retried. Transient.
  timeout,
  /// The channel, connection or pool was shut for good by its owner; retrying
  /// the same object will not help (unavailable when a peer may come back).
  closed,
  /// A bounded queue is at capacity (backpressure): retry later or drop. Use
  /// for keel's own queues; resource_exhausted for the OS's limits.
  full,
  /// A non-blocking receive found nothing to take right now.
  empty,
  /// A broadcast receiver fell behind and missed values; it can go on from
  /// the oldest value still kept.
  lagged,
  /// The caller (or its owner) gave up on the operation (a stop token, a
  /// cancelled retry); not a failure of the operation itself.
  cancelled,
  /// Something is momentarily in use elsewhere (a database lock, EAGAIN,
  /// EINTR); retrying after a pause is expected to work. Transient.
  busy,
  /// A file or socket operation failed and no more specific kind fits; the
  /// OS error is in the message.
  io,
  /// The database reported an error that is none of the other kinds (a
  /// constraint, a syntax error in SQL); SQLite's or PostgreSQL's code is in
  /// the message or a payload.
  database,
  /// A cryptographic operation failed for a reason other than
  /// authentication (a library failure, an unsupported algorithm).
  crypto,
  /// Wrong key, wrong password, data that fails authentication (tampered),
  /// or permission denied. Never retry with the same credentials.
  auth_failed,
  /// A peer broke the protocol (a malformed frame, an unexpected reply).
  /// Use for what came over the wire; invalid_argument for a local caller.
  protocol,
  /// The configuration is wrong: every config struct's validate() and every
  /// bad setting (a field out of range, a bad environment variable) report
  /// this kind, naming the field. Fix the configuration, do not retry.
  config,
  /// Out of memory, file handles, disk space or quota (ENOMEM, EMFILE,
  /// ENOSPC, EDQUOT).
  resource_exhausted,
  /// A peer cannot be reached right now (refused, reset, unreachable) and may
  /// come back. Transient.
  unavailable,
  /// A bug: an invariant broke, or a success was converted into an error.
  /// Report it; the caller cannot fix it.
  internal,
  /// Stored data is damaged or missing (a corrupt record, a vault without its
  /// header): unrecoverable without a backup.
  data_loss,
  /// A kind this build does not know (a newer peer's code, a foreign
  /// exception); the text is kept. Not for new errors: pick a kind above.
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
