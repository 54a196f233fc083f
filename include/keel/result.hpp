// keel/result.hpp: one-word errors with context chains, and Result<T>.
//
// The error core every keel module returns. `keel::Error` is a single pointer
// wide: a bare error code is held inline (no allocation), and a heap record is
// made only when there is a message or context. `keel::Result<T>` follows the
// std::expected API so code moves to `std::expected<T, keel::Error>` in C++23
// unchanged (one keel extension: a Result converts implicitly from an Error).
//
//     keel::Result<Config> load(const std::string& path) {
//       KEEL_TRY_ASSIGN(auto text, read_file(path));          // `?` in Rust
//       if (text.empty()) return keel::fail(keel::Errc::config, "{} is empty", path);
//       return parse(text).context("parsing " + path);       // anyhow's .context()
//     }
//     if (auto cfg = load("keel.toml"); !cfg) fmt::print("{}\n", cfg.error());
//
// Thread-safety: Error and Result are values; distinct objects may be used from
// distinct threads freely, one object needs external synchronisation to be
// mutated from several threads (like any std type).
//
// Guarantees: nothing here throws except `Result::value()` on an error (it
// throws keel::BadResultAccess, or prints the error and aborts when exceptions
// are disabled) and std::bad_alloc from the allocations of messages/context.
// `operator*` and `operator->` on the wrong alternative are preconditions,
// checked in debug builds (KEEL_ASSERT) as std::expected leaves them undefined.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define KEEL_HAS_EXCEPTIONS 1
#else
#define KEEL_HAS_EXCEPTIONS 0
#endif

#ifndef KEEL_ASSERT
#ifdef NDEBUG
#define KEEL_ASSERT(cond) static_cast<void>(0)
#else
#define KEEL_ASSERT(cond) \
  ((cond) ? static_cast<void>(0) : ::keel::detail::assert_fail(#cond, ::keel::SourceLocation::current()))
#endif
#endif

namespace keel {

/// Where an error was made. std::source_location's interface, built on the
/// compiler builtins so it also works where <source_location> does not
/// (clang 14 with libstdc++ 12).
class SourceLocation {
 public:
  constexpr SourceLocation() noexcept = default;
  [[nodiscard]] static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                                        const char* function = __builtin_FUNCTION(),
                                                        unsigned line = __builtin_LINE()) noexcept {
    SourceLocation loc;
    loc.file_ = file;
    loc.function_ = function;
    loc.line_ = line;
    return loc;
  }
  [[nodiscard]] constexpr const char* file_name() const noexcept { return file_; }
  [[nodiscard]] constexpr const char* function_name() const noexcept { return function_; }
  [[nodiscard]] constexpr unsigned line() const noexcept { return line_; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  unsigned line_ = 0;
};

namespace detail {
[[noreturn]] inline void assert_fail(const char* what, SourceLocation loc) noexcept {
  std::fprintf(stderr, "keel: assertion failed: %s at %s:%u\n", what, loc.file_name(),
               static_cast<unsigned>(loc.line()));
  std::abort();
}
}  // namespace detail

/// The closed set of error kinds shared by every keel module.
/// Values start at 1 so that a value-initialised std::error_code means success.
enum class Errc : std::uint8_t {
  invalid_argument = 1,
  not_found,
  already_exists,
  timeout,
  closed,
  full,
  empty,
  lagged,
  cancelled,
  busy,
  io,
  database,
  crypto,
  auth_failed,
  protocol,
  config,
  resource_exhausted,
  unavailable,
  internal,
  data_loss,  ///< Stored data is damaged or missing (a corrupt record, a vault without its header).
  unknown,    ///< A kind this build does not know (a newer peer's code); the text is kept.
};

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

/// Makes `std::error_code ec = keel::Errc::timeout;` work (found by ADL).
[[nodiscard]] inline std::error_code make_error_code(Errc c) noexcept {
  return {static_cast<int>(c), keel_category()};
}

}  // namespace keel

template <>
struct std::is_error_code_enum<keel::Errc> : std::true_type {};

namespace keel {

/// An error: a code, an optional message, where it was made, and a chain of
/// context frames added on the way up. One pointer wide.
class Error {
 public:
  /// A bare code: no allocation, no message, no location.
  // NOLINTNEXTLINE(google-explicit-constructor): Errc -> Error is the point.
  Error(Errc code) noexcept : bits_((static_cast<std::uintptr_t>(code) << 1U) | 1U) {}

  /// A code with a message and the location it was made at.
  Error(Errc code, std::string message, SourceLocation where = ::keel::SourceLocation::current())
      : bits_(reinterpret_cast<std::uintptr_t>(new Rep{code, std::move(message), where, {}})) {}

  Error(const Error& other) : bits_(other.bits_) {
    if (const Rep* r = other.rep()) bits_ = reinterpret_cast<std::uintptr_t>(new Rep(*r));
  }
  Error(Error&& other) noexcept : bits_(other.bits_) { other.bits_ = kMovedFrom; }
  Error& operator=(const Error& other) {
    if (this != &other) *this = Error(other);
    return *this;
  }
  Error& operator=(Error&& other) noexcept {
    if (this != &other) {
      destroy();
      bits_ = other.bits_;
      other.bits_ = kMovedFrom;
    }
    return *this;
  }
  ~Error() { destroy(); }

  /// Converts a std::error_code. Codes of the keel category keep their kind;
  /// generic/system codes are mapped to the nearest kind (timed_out -> timeout,
  /// ENOENT -> not_found, ...), anything else becomes Errc::io. The original
  /// code's category and message are kept in the message.
  [[nodiscard]] static Error from(std::error_code ec,
                                  SourceLocation where = ::keel::SourceLocation::current()) {
    if (&ec.category() == &keel_category() && ec.value() >= 1 && ec.value() <= kErrcCount) {
      return {static_cast<Errc>(ec.value())};
    }
    return {map_condition(ec), fmt::format("{}: {}", ec.category().name(), ec.message()), where};
  }

  [[nodiscard]] Errc code() const noexcept {
    if (const Rep* r = rep()) return r->code;
    return static_cast<Errc>(bits_ >> 1U);
  }
  /// The root message ("" for a bare code).
  [[nodiscard]] std::string_view message() const noexcept {
    if (const Rep* r = rep()) return r->message;
    return {};
  }
  /// Where the error was made; a default (empty) location for a bare code.
  [[nodiscard]] SourceLocation where() const noexcept {
    if (const Rep* r = rep()) return r->where;
    return {};
  }
  /// Context frames, outermost (added last) first.
  [[nodiscard]] std::vector<std::string_view> contexts() const {
    std::vector<std::string_view> out;
    if (const Rep* r = rep()) out.assign(r->context.rbegin(), r->context.rend());
    return out;
  }
  /// Every message of the chain, outermost context first, the root message
  /// last (omitted when empty), the way anyhow's chain() iterates.
  [[nodiscard]] std::vector<std::string_view> chain() const {
    auto out = contexts();
    if (auto m = message(); !m.empty()) out.push_back(m);
    return out;
  }
  [[nodiscard]] bool is_transient() const noexcept { return keel::is_transient(code()); }
  [[nodiscard]] int http_status() const noexcept { return keel::http_status(code()); }
  [[nodiscard]] std::error_code error_code() const noexcept { return make_error_code(code()); }
  // NOLINTNEXTLINE(google-explicit-constructor): design.md: an Error converts to its error_code.
  operator std::error_code() const noexcept { return error_code(); }

  /// Adds a context frame ("while doing what"); an empty string adds nothing.
  Error& context(std::string what) & {
    if (!what.empty()) mut().context.push_back(std::move(what));
    return *this;
  }
  Error&& context(std::string what) && { return std::move(context(std::move(what))); }

  /// Same kind, message and context (the location is not compared).
  friend bool operator==(const Error& a, const Error& b) noexcept {
    if (a.code() != b.code() || a.message() != b.message()) return false;
    const Rep* ra = a.rep();
    const Rep* rb = b.rep();
    const std::size_t na = ra ? ra->context.size() : 0;
    const std::size_t nb = rb ? rb->context.size() : 0;
    if (na != nb) return false;
    for (std::size_t i = 0; i < na; ++i) {
      if (ra->context[i] != rb->context[i]) return false;
    }
    return true;
  }
  friend bool operator==(const Error& a, Errc b) noexcept { return a.code() == b; }

  /// One line: "outer context: inner context: CODE: message". A context frame
  /// equal to what follows it is written once.
  [[nodiscard]] std::string to_string() const;

 private:
  struct Rep {
    Errc code;
    std::string message;
    SourceLocation where;
    std::vector<std::string> context;  // innermost first
  };
  static_assert(alignof(Rep) >= 2, "the low bit tags inline codes");
  // A moved-from Error reads as Errc::internal with no message.
  static constexpr std::uintptr_t kMovedFrom = (static_cast<std::uintptr_t>(Errc::internal) << 1U) | 1U;

  [[nodiscard]] const Rep* rep() const noexcept {
    return (bits_ & 1U) != 0 ? nullptr : reinterpret_cast<const Rep*>(bits_);
  }
  Rep& mut() {
    if ((bits_ & 1U) != 0) {
      bits_ = reinterpret_cast<std::uintptr_t>(new Rep{code(), {}, {}, {}});
    }
    return *reinterpret_cast<Rep*>(bits_);
  }
  void destroy() noexcept {
    if ((bits_ & 1U) == 0) delete reinterpret_cast<Rep*>(bits_);
  }
  static Errc map_condition(std::error_code ec) noexcept {
    const auto cond = ec.default_error_condition();
    if (cond.category() != std::generic_category()) return Errc::io;
    switch (static_cast<std::errc>(cond.value())) {
      case std::errc::invalid_argument:
        return Errc::invalid_argument;
      case std::errc::no_such_file_or_directory:
        return Errc::not_found;
      case std::errc::file_exists:
        return Errc::already_exists;
      case std::errc::timed_out:
        return Errc::timeout;
      case std::errc::operation_canceled:
        return Errc::cancelled;
      case std::errc::device_or_resource_busy:
        return Errc::busy;
      case std::errc::permission_denied:
        return Errc::auth_failed;
      case std::errc::protocol_error:
        return Errc::protocol;
      case std::errc::not_enough_memory:
        return Errc::resource_exhausted;
      case std::errc::resource_unavailable_try_again:
        return Errc::resource_exhausted;
      case std::errc::connection_refused:
        return Errc::unavailable;
      case std::errc::connection_reset:
        return Errc::unavailable;
      case std::errc::connection_aborted:
        return Errc::unavailable;
      case std::errc::host_unreachable:
        return Errc::unavailable;
      case std::errc::network_unreachable:
        return Errc::unavailable;
      default:
        return Errc::io;
    }
  }

  std::uintptr_t bits_;
};

static_assert(sizeof(Error) == sizeof(void*), "keel::Error is one word");

}  // namespace keel

/// `{}` gives one line, outermost context first: "ctx: CODE: message".
/// `{:v}` appends where the error was made: " [at file:line]".
template <>
struct fmt::formatter<keel::Error> {
  bool verbose = false;
  constexpr auto parse(format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it == 'v') {
      verbose = true;
      ++it;
    }
    if (it != ctx.end() && *it != '}') {
#if FMT_VERSION >= 110000
      fmt::report_error("keel::Error takes {} or {:v}");
#else
      ctx.on_error("keel::Error takes {} or {:v}");
#endif
    }
    return it;
  }
  template <class FormatContext>
  auto format(const keel::Error& e, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = ctx.out();
    const auto frames = e.contexts();
    const auto msg = e.message();
    for (std::size_t i = 0; i < frames.size(); ++i) {
      // Never repeat the cause's text: skip a frame equal to the next one.
      const std::string_view next = i + 1 < frames.size() ? frames[i + 1] : msg;
      if (frames[i] == next) continue;
      out = fmt::format_to(out, "{}: ", frames[i]);
    }
    out = fmt::format_to(out, "{}", keel::to_string(e.code()));
    if (!msg.empty()) out = fmt::format_to(out, ": {}", msg);
    if (verbose) {
      const auto w = e.where();
      if (w.line() != 0) out = fmt::format_to(out, " [at {}:{}]", w.file_name(), w.line());
    }
    return out;
  }
};

template <>
struct fmt::formatter<keel::Errc> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(keel::Errc c, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(keel::to_string(c), ctx);
  }
};

namespace keel {

inline std::string Error::to_string() const {
  return fmt::format("{}", *this);
}

/// Mirrors std::unexpected<E>: wraps an error so it can initialise any Result<T>.
template <class E>
class unexpected {  // NOLINT(readability-identifier-naming): std::expected's spelling
 public:
  template <class Err = E>
  requires std::is_constructible_v<E, Err> &&
      (!std::is_same_v<std::remove_cvref_t<Err>, unexpected>)constexpr explicit unexpected(Err&& e)
      : e_(std::forward<Err>(e)) {}
  [[nodiscard]] constexpr E& error() & noexcept { return e_; }
  [[nodiscard]] constexpr const E& error() const& noexcept { return e_; }
  [[nodiscard]] constexpr E&& error() && noexcept { return std::move(e_); }

 private:
  E e_;
};
template <class E>
unexpected(E) -> unexpected<E>;

/// Thrown by Result::value() on an error (when exceptions are enabled).
class BadResultAccess : public std::exception {
 public:
  explicit BadResultAccess(Error e) : error_(std::move(e)), what_(error_.to_string()) {}
  [[nodiscard]] const char* what() const noexcept override { return what_.c_str(); }
  [[nodiscard]] const Error& error() const noexcept { return error_; }

 private:
  Error error_;
  std::string what_;
};

namespace detail {
[[noreturn]] inline void bad_access(const Error& e) {
#if KEEL_HAS_EXCEPTIONS
  throw BadResultAccess(e);
#else
  std::fprintf(stderr, "keel: Result::value() on an error: %s\n", e.to_string().c_str());
  std::abort();
#endif
}

/// A format string that records where the call was made (for keel::fail).
template <class... Args>
struct LocatedFormat {
  template <class S>
  requires std::is_convertible_v<const S&, std::string_view>
  // NOLINTNEXTLINE(google-explicit-constructor)
  consteval LocatedFormat(const S& s, SourceLocation l = ::keel::SourceLocation::current())
      : str(s), loc(l) {}
  fmt::format_string<Args...> str;
  SourceLocation loc;
};
}  // namespace detail

template <class T>
class Result;
template <>
class Result<void>;

namespace detail {
template <class T>
struct is_result : std::false_type {};
template <class T>
struct is_result<Result<T>> : std::true_type {};
template <class T>
inline constexpr bool is_result_v = is_result<std::remove_cvref_t<T>>::value;
}  // namespace detail

/// A value of type T or a keel::Error; the std::expected<T, Error> API subset.
template <class T>
class [[nodiscard]] Result {
  static_assert(!std::is_reference_v<T>, "Result<T&> is not supported; use a pointer");
  static_assert(!detail::is_result_v<T>, "Result<Result<T>>: flatten with and_then");

 public:
  using value_type = T;
  using error_type = Error;
  template <class U>
  using rebind = Result<U>;

  Result() requires std::is_default_constructible_v<T> : has_(true) { ::new (&val_) T(); }
  // NOLINTNEXTLINE(google-explicit-constructor)
  template <class U = T>
  requires(std::is_constructible_v<T, U> && !std::is_same_v<std::remove_cvref_t<U>, Result> &&
           !std::is_same_v<std::remove_cvref_t<U>, std::in_place_t> &&
           (std::is_same_v<T, Error> || (!std::is_same_v<std::remove_cvref_t<U>, Error> &&
                                         !std::is_same_v<std::remove_cvref_t<U>, Errc>)) &&
           !detail::is_result_v<U> &&
           !std::is_same_v<std::remove_cvref_t<U>, unexpected<Error>>) explicit(!std::is_convertible_v<U, T>)
      Result(U&& v)
      : has_(true) {
    ::new (&val_) T(std::forward<U>(v));
  }
  template <class... Args>
  explicit Result(std::in_place_t /*unused*/, Args&&... args) : has_(true) {
    ::new (&val_) T(std::forward<Args>(args)...);
  }
  /// Keel extension over std::expected: an Error (or Errc) converts to a
  /// failed Result, except in Result<Error>, where it is the value (as in
  /// std::expected<Error, Error>) and failures need keel::fail / unexpected.
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Error e) noexcept requires(!std::is_same_v<T, Error>) : has_(false) {
    ::new (&err_) Error(std::move(e));
  }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Errc c) noexcept requires(!std::is_same_v<T, Error>) : has_(false) { ::new (&err_) Error(c); }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(unexpected<Error> u) noexcept : has_(false) { ::new (&err_) Error(std::move(u).error()); }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(const unexpected<Errc>& u) noexcept : has_(false) { ::new (&err_) Error(u.error()); }

  Result(const Result& o) noexcept(
      std::is_nothrow_copy_constructible_v<T>) requires std::is_copy_constructible_v<T> : has_(o.has_) {
    if (has_) {
      ::new (&val_) T(o.val_);
    } else {
      ::new (&err_) Error(o.err_);
    }
  }
  Result(Result&& o) noexcept(
      std::is_nothrow_move_constructible_v<T>) requires std::is_move_constructible_v<T> : has_(o.has_) {
    if (has_) {
      ::new (&val_) T(std::move(o.val_));
    } else {
      ::new (&err_) Error(std::move(o.err_));
    }
  }
  Result& operator=(const Result& o) requires std::is_copy_constructible_v<T> {
    if (this != &o) assign(o);
    return *this;
  }
  Result& operator=(Result&& o) noexcept(
      std::is_nothrow_move_constructible_v<T>) requires std::is_move_constructible_v<T> {
    if (this != &o) assign(std::move(o));
    return *this;
  }
  ~Result() { destroy(); }

  [[nodiscard]] bool has_value() const noexcept { return has_; }
  explicit operator bool() const noexcept { return has_; }

  /// The value; on an error throws BadResultAccess (or aborts without exceptions).
  T& value() & {
    if (!has_) detail::bad_access(err_);
    return val_;
  }
  const T& value() const& {
    if (!has_) detail::bad_access(err_);
    return val_;
  }
  T&& value() && {
    if (!has_) detail::bad_access(err_);
    return std::move(val_);
  }
  /// The error. Precondition: !has_value().
  Error& error() & noexcept {
    KEEL_ASSERT(!has_);
    return err_;
  }
  const Error& error() const& noexcept {
    KEEL_ASSERT(!has_);
    return err_;
  }
  Error&& error() && noexcept {
    KEEL_ASSERT(!has_);
    return std::move(err_);
  }
  T& operator*() & noexcept {
    KEEL_ASSERT(has_);
    return val_;
  }
  const T& operator*() const& noexcept {
    KEEL_ASSERT(has_);
    return val_;
  }
  T&& operator*() && noexcept {
    KEEL_ASSERT(has_);
    return std::move(val_);
  }
  T* operator->() noexcept {
    KEEL_ASSERT(has_);
    return std::addressof(val_);
  }
  const T* operator->() const noexcept {
    KEEL_ASSERT(has_);
    return std::addressof(val_);
  }

  template <class U>
  [[nodiscard]] T value_or(U&& fallback) const& {
    return has_ ? val_ : static_cast<T>(std::forward<U>(fallback));
  }
  template <class U>
  [[nodiscard]] T value_or(U&& fallback) && {
    return has_ ? std::move(val_) : static_cast<T>(std::forward<U>(fallback));
  }

  template <class... Args>
  T& emplace(Args&&... args) {
    destroy();
    ::new (&val_) T(std::forward<Args>(args)...);
    has_ = true;
    return val_;
  }

  /// fn(T) -> Result<U>; an error passes through unchanged.
  template <class F>
  auto and_then(F&& f) & {
    return and_then_impl(*this, std::forward<F>(f));
  }
  template <class F>
  auto and_then(F&& f) const& {
    return and_then_impl(*this, std::forward<F>(f));
  }
  template <class F>
  auto and_then(F&& f) && {
    return and_then_impl(std::move(*this), std::forward<F>(f));
  }

  /// fn(T) -> U; gives Result<U> (Result<void> when fn returns void).
  template <class F>
  auto transform(F&& f) & {
    return transform_impl(*this, std::forward<F>(f));
  }
  template <class F>
  auto transform(F&& f) const& {
    return transform_impl(*this, std::forward<F>(f));
  }
  template <class F>
  auto transform(F&& f) && {
    return transform_impl(std::move(*this), std::forward<F>(f));
  }

  /// fn(Error) -> Result<T>; a value passes through unchanged.
  template <class F>
  Result or_else(F&& f) const& {
    static_assert(std::is_same_v<std::remove_cvref_t<std::invoke_result_t<F, const Error&>>, Result>,
                  "or_else: fn must return the same Result<T>");
    if (has_) return *this;
    return std::invoke(std::forward<F>(f), err_);
  }
  template <class F>
  Result or_else(F&& f) && {
    static_assert(std::is_same_v<std::remove_cvref_t<std::invoke_result_t<F, Error&&>>, Result>,
                  "or_else: fn must return the same Result<T>");
    if (has_) return std::move(*this);
    return std::invoke(std::forward<F>(f), std::move(err_));
  }

  /// fn(Error) -> Error; a value passes through unchanged.
  template <class F>
  Result transform_error(F&& f) const& {
    if (has_) return *this;
    return Result(unexpected<Error>(std::invoke(std::forward<F>(f), err_)));
  }
  template <class F>
  Result transform_error(F&& f) && {
    if (has_) return std::move(*this);
    return Result(unexpected<Error>(std::invoke(std::forward<F>(f), std::move(err_))));
  }

  /// Adds a context frame to an error (anyhow's .context()); a value passes.
  Result context(std::string what) && {
    if (!has_) err_.context(std::move(what));
    return std::move(*this);
  }
  /// Like context(), but builds the text only on the error path.
  template <class F>
  Result with_context(F&& make) && {
    if (!has_) err_.context(std::string(std::invoke(std::forward<F>(make))));
    return std::move(*this);
  }

  friend bool operator==(const Result& a, const Result& b) requires requires(const T& x) { x == x; }
  {
    if (a.has_ != b.has_) return false;
    return a.has_ ? a.val_ == b.val_ : a.err_ == b.err_;
  }

 private:
  template <class Self, class F>
  static auto and_then_impl(Self&& self, F&& f) {
    using R = std::remove_cvref_t<std::invoke_result_t<F, decltype((std::forward<Self>(self).val_))>>;
    static_assert(detail::is_result_v<R>, "and_then: fn must return a keel::Result");
    if (self.has_) return std::invoke(std::forward<F>(f), std::forward<Self>(self).val_);
    return R(unexpected<Error>(std::forward<Self>(self).err_));
  }
  template <class Self, class F>
  static auto transform_impl(Self&& self, F&& f) {
    using U = std::remove_cv_t<std::invoke_result_t<F, decltype((std::forward<Self>(self).val_))>>;
    if constexpr (std::is_void_v<U>) {
      if (self.has_) {
        std::invoke(std::forward<F>(f), std::forward<Self>(self).val_);
        return Result<U>();
      }
      return Result<U>(unexpected<Error>(std::forward<Self>(self).err_));
    } else {
      if (self.has_)
        return Result<U>(std::in_place, std::invoke(std::forward<F>(f), std::forward<Self>(self).val_));
      return Result<U>(unexpected<Error>(std::forward<Self>(self).err_));
    }
  }
  template <class R>
  void assign(R&& o) {
    if (has_ && o.has_) {
      val_ = std::forward<R>(o).val_;
    } else if (!has_ && !o.has_) {
      err_ = std::forward<R>(o).err_;
    } else {
      destroy();
      if (o.has_) {
        ::new (&val_) T(std::forward<R>(o).val_);
      } else {
        ::new (&err_) Error(std::forward<R>(o).err_);
      }
      has_ = o.has_;
    }
  }
  void destroy() noexcept {
    if (has_) {
      val_.~T();
    } else {
      err_.~Error();
    }
  }

  template <class>
  friend class Result;

  union {
    T val_;
    Error err_;
  };
  bool has_;
};

/// Success or a keel::Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  using value_type = void;
  using error_type = Error;
  template <class U>
  using rebind = Result<U>;

  Result() noexcept = default;
  explicit Result(std::in_place_t /*unused*/) noexcept {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Error e) noexcept : err_(std::move(e)) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Errc c) noexcept : err_(Error(c)) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(unexpected<Error> u) noexcept : err_(std::move(u).error()) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(const unexpected<Errc>& u) noexcept : err_(Error(u.error())) {}

  [[nodiscard]] bool has_value() const noexcept { return !err_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (err_) detail::bad_access(*err_);
  }
  void operator*() const noexcept { KEEL_ASSERT(has_value()); }
  Error& error() & noexcept {
    KEEL_ASSERT(!has_value());
    return *err_;
  }
  const Error& error() const& noexcept {
    KEEL_ASSERT(!has_value());
    return *err_;
  }
  Error&& error() && noexcept {
    KEEL_ASSERT(!has_value());
    return std::move(*err_);
  }
  void emplace() noexcept { err_.reset(); }

  template <class F>
  auto and_then(F&& f) const& {
    using R = std::remove_cvref_t<std::invoke_result_t<F>>;
    static_assert(detail::is_result_v<R>, "and_then: fn must return a keel::Result");
    if (has_value()) return std::invoke(std::forward<F>(f));
    return R(unexpected<Error>(*err_));
  }
  template <class F>
  auto and_then(F&& f) && {
    using R = std::remove_cvref_t<std::invoke_result_t<F>>;
    static_assert(detail::is_result_v<R>, "and_then: fn must return a keel::Result");
    if (has_value()) return std::invoke(std::forward<F>(f));
    return R(unexpected<Error>(std::move(*err_)));
  }
  template <class F>
  auto transform(F&& f) const& {
    using U = std::remove_cv_t<std::invoke_result_t<F>>;
    if constexpr (std::is_void_v<U>) {
      if (has_value()) {
        std::invoke(std::forward<F>(f));
        return Result<void>();
      }
      return Result<void>(*err_);
    } else {
      if (has_value()) return Result<U>(std::in_place, std::invoke(std::forward<F>(f)));
      return Result<U>(unexpected<Error>(*err_));
    }
  }
  template <class F>
  Result or_else(F&& f) const& {
    if (has_value()) return *this;
    return std::invoke(std::forward<F>(f), *err_);
  }
  template <class F>
  Result or_else(F&& f) && {
    if (has_value()) return std::move(*this);
    return std::invoke(std::forward<F>(f), std::move(*err_));
  }
  template <class F>
  Result transform_error(F&& f) const& {
    if (has_value()) return *this;
    return Result(Error(std::invoke(std::forward<F>(f), *err_)));
  }
  template <class F>
  Result transform_error(F&& f) && {
    if (has_value()) return std::move(*this);
    return Result(Error(std::invoke(std::forward<F>(f), std::move(*err_))));
  }
  Result context(std::string what) && {
    if (err_) err_->context(std::move(what));
    return std::move(*this);
  }
  template <class F>
  Result with_context(F&& make) && {
    if (err_) err_->context(std::string(std::invoke(std::forward<F>(make))));
    return std::move(*this);
  }
  friend bool operator==(const Result& a, const Result& b) noexcept { return a.err_ == b.err_; }

 private:
  std::optional<Error> err_;
};

static_assert(sizeof(Result<int>) <= 16, "Result<int> fits two words");
static_assert(sizeof(Result<void>) <= 16, "Result<void> fits two words");

/// An error result with a formatted message and the caller's location:
/// `return keel::fail(Errc::not_found, "no user {}", id);`
template <class... Args>
[[nodiscard]] unexpected<Error> fail(Errc code, detail::LocatedFormat<std::type_identity_t<Args>...> f,
                                     Args&&... args) {
  return unexpected<Error>(Error(code, fmt::format(f.str, std::forward<Args>(args)...), f.loc));
}
/// A bare error result (no message, no allocation).
[[nodiscard]] inline unexpected<Error> fail(Errc code) noexcept {
  return unexpected<Error>(Error(code));
}

namespace detail {
template <class R>
[[nodiscard]] unexpected<Error> propagate(R&& r) {
  return unexpected<Error>(std::forward<R>(r).error());
}
}  // namespace detail

}  // namespace keel

#define KEEL_DETAIL_CONCAT_(a, b) a##b
#define KEEL_DETAIL_CONCAT(a, b) KEEL_DETAIL_CONCAT_(a, b)

#if defined(__GNUC__) || defined(__clang__)
/// Evaluates a Result expression; on error returns the error from the
/// enclosing function (which must return a keel::Result), otherwise yields the
/// value (nothing for Result<void>). Rust's `?`. Uses a GNU statement
/// expression; KEEL_TRY_ASSIGN works everywhere.
#define KEEL_TRY(...)                                                                                   \
  __extension__({                                                                                       \
    auto&& keel_try_r_ = (__VA_ARGS__);                                                                 \
    static_assert(::keel::detail::is_result_v<decltype(keel_try_r_)>, "KEEL_TRY needs a keel::Result"); \
    if (!keel_try_r_.has_value())                                                                       \
      return ::keel::detail::propagate(std::forward<decltype(keel_try_r_)>(keel_try_r_));               \
    *std::forward<decltype(keel_try_r_)>(keel_try_r_);                                                  \
  })
#else
#define KEEL_TRY(...)                                                                     \
  do {                                                                                    \
    auto&& keel_try_r_ = (__VA_ARGS__);                                                   \
    if (!keel_try_r_.has_value())                                                         \
      return ::keel::detail::propagate(std::forward<decltype(keel_try_r_)>(keel_try_r_)); \
  } while (false)
#endif

#define KEEL_DETAIL_TRY_ASSIGN(tmp, decl, ...)                                                       \
  auto&& tmp = (__VA_ARGS__);                                                                        \
  static_assert(::keel::detail::is_result_v<decltype(tmp)>, "KEEL_TRY_ASSIGN needs a keel::Result"); \
  if (!tmp.has_value()) return ::keel::detail::propagate(std::forward<decltype(tmp)>(tmp));          \
  decl = *std::forward<decltype(tmp)>(tmp)

/// `KEEL_TRY_ASSIGN(auto x, expr);` declares x from a Result's value or
/// returns its error. Commas inside expr are fine.
#define KEEL_TRY_ASSIGN(decl, ...) \
  KEEL_DETAIL_TRY_ASSIGN(KEEL_DETAIL_CONCAT(keel_try_tmp_, __COUNTER__), decl, __VA_ARGS__)
