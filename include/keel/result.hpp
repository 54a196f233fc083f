// keel/result.hpp: Result<T>, a value or a keel::Error, with the
// std::expected API; keel::fail and the KEEL_TRY macros.
//
// The error core every keel module returns. `keel::Error` (<keel/error.hpp>)
// is a single pointer wide: a bare error code is held inline (no allocation),
// and a heap record is made only when there is a message or context; the kinds
// are in <keel/errc.hpp>. Both are included here. `keel::Result<T>` follows
// the std::expected API so code moves to `std::expected<T, keel::Error>` in
// C++23 unchanged (one keel extension: a Result converts implicitly from an
// Error or an Errc).
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
// are disabled), std::bad_alloc from the allocations of messages/context, and
// whatever T's own operations throw. Assignment and emplace give
// std::expected's guarantees: when a copy or move throws, the Result keeps its
// old contents (strong) whenever T's move constructor does not throw or the
// Result held an error; otherwise (value over value with a throwing move) it
// is left holding Errc::internal, never half-destroyed. The noexcept
// specifications are exact. `operator*` and `operator->` on the wrong
// alternative are preconditions, checked in debug builds (KEEL_ASSERT) as
// std::expected leaves them undefined.
#pragma once

#include <keel/detail/assert.hpp>
#include <keel/errc.hpp>
#include <keel/error.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include <version>
#if defined(__cpp_lib_expected) && __cpp_lib_expected >= 202202L
#include <expected>
#define KEEL_HAS_STD_EXPECTED 1
#else
#define KEEL_HAS_STD_EXPECTED 0
#endif

// Private: try/catch that compiles away under -fno-exceptions.
#if KEEL_HAS_EXCEPTIONS
#define KEEL_DETAIL_TRY_BLOCK try
#define KEEL_DETAIL_CATCH_ALL catch (...)
#define KEEL_DETAIL_RETHROW throw
#else
#define KEEL_DETAIL_TRY_BLOCK if (true)
#define KEEL_DETAIL_CATCH_ALL else
#define KEEL_DETAIL_RETHROW static_cast<void>(0)
#endif

namespace keel {

template <class E>
class unexpected;
template <class T>
class Result;
template <>
class Result<void>;

namespace detail {
// Throws keel::BadResultAccess (or prints and aborts without exceptions).
[[noreturn]] inline void bad_access(const Error& e);
template <class T>
struct is_result : std::false_type {};
template <class T>
struct is_result<Result<T>> : std::true_type {};
template <class T>
inline constexpr bool is_result_v = is_result<std::remove_cvref_t<T>>::value;
template <class T>
struct is_unexpected : std::false_type {};
template <class E>
struct is_unexpected<unexpected<E>> : std::true_type {};
template <class T>
inline constexpr bool is_unexpected_v = is_unexpected<std::remove_cvref_t<T>>::value;
// Whether an Error / an Errc initialises a Result<T>'s value rather than its
// error: only where T is made from it, as std::expected<T, Error> would.
template <class T>
inline constexpr bool error_is_value_v = std::is_same_v<T, Error> || std::is_same_v<T, std::error_code>;
template <class T>
inline constexpr bool errc_is_value_v = error_is_value_v<T> || std::is_same_v<T, Errc>;
}  // namespace detail

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
           (detail::error_is_value_v<T> || !std::is_same_v<std::remove_cvref_t<U>, Error>)&&(
               detail::errc_is_value_v<T> ||
               !std::is_same_v<std::remove_cvref_t<U>, Errc>)&&!detail::is_result_v<U> &&
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
  /// failed Result. Where T is itself made from it (Result<Error>,
  /// Result<std::error_code>, and for an Errc also Result<Errc>), it is the
  /// value instead, as in std::expected<T, Error>, and failures are spelled
  /// keel::fail(...) or keel::unexpected.
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Error e) noexcept requires(!detail::error_is_value_v<T>) : has_(false) {
    ::new (&err_) Error(std::move(e));
  }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Errc c) noexcept requires(!detail::errc_is_value_v<T>) : has_(false) { ::new (&err_) Error(c); }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(unexpected<Error> u) noexcept : has_(false) { ::new (&err_) Error(std::move(u).error()); }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(const unexpected<Errc>& u) noexcept : has_(false) { ::new (&err_) Error(u.error()); }

  /// Result<U> -> Result<T> where a T can be made from a U (explicit when the
  /// conversion U -> T is); the error passes as it is.
  template <class U>
  requires(!std::is_void_v<U> && !std::is_same_v<U, T> &&
           std::is_constructible_v<T, const U&>) explicit(!std::is_convertible_v<const U&, T>)
      Result(const Result<U>& o)
      : has_(o.has_) {
    if (has_) {
      ::new (&val_) T(o.val_);
    } else {
      ::new (&err_) Error(o.err_);
    }
  }
  template <class U>
  requires(!std::is_void_v<U> && !std::is_same_v<U, T> &&
           std::is_constructible_v<T, U>) explicit(!std::is_convertible_v<U, T>) Result(Result<U>&& o)
      : has_(o.has_) {
    if (has_) {
      ::new (&val_) T(std::move(o.val_));
    } else {
      ::new (&err_) Error(std::move(o.err_));
    }
  }
#if KEEL_HAS_STD_EXPECTED
  /// From std::expected<U, keel::Error> (C++23), and back with to_expected()
  /// or an implicit conversion.
  template <class U>
  requires std::is_constructible_v<T, const U&>
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(const std::expected<U, Error>& e) : has_(e.has_value()) {
    if (has_) {
      ::new (&val_) T(*e);
    } else {
      ::new (&err_) Error(e.error());
    }
  }
  template <class U>
  requires std::is_constructible_v<T, U>
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(std::expected<U, Error>&& e) : has_(e.has_value()) {
    if (has_) {
      ::new (&val_) T(std::move(*e));
    } else {
      ::new (&err_) Error(std::move(e.error()));
    }
  }
// g++ 12 at -O1 flags the inactive union member as maybe-uninitialized
// through std::expected's constructor; only the active one is read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
  [[nodiscard]] std::expected<T, Error> to_expected() const& {
    if (has_) return std::expected<T, Error>(std::in_place, val_);
    return std::expected<T, Error>(std::unexpect, err_);
  }
  [[nodiscard]] std::expected<T, Error> to_expected() && {
    if (has_) return std::expected<T, Error>(std::in_place, std::move(val_));
    return std::expected<T, Error>(std::unexpect, std::move(err_));
  }
  // NOLINTNEXTLINE(google-explicit-constructor)
  operator std::expected<T, Error>() const& {
    return to_expected();
  }
  // NOLINTNEXTLINE(google-explicit-constructor)
  operator std::expected<T, Error>() && {
    return std::move(*this).to_expected();
  }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

  /// Copying an error copies its record, which allocates: never noexcept.
  Result(const Result& o) requires std::is_copy_constructible_v<T> : has_(o.has_) {
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
  Result& operator=(const Result& o) requires(
      std::is_copy_constructible_v<T>&& std::is_copy_assignable_v<T>) {
    if (this != &o) assign(o);
    return *this;
  }
  Result& operator=(Result&& o) noexcept(
      std::is_nothrow_move_constructible_v<T>&& std::is_nothrow_move_assignable_v<
          T>) requires(std::is_move_constructible_v<T>&& std::is_move_assignable_v<T>) {
    if (this != &o) assign(std::move(o));
    return *this;
  }
  ~Result() {
    destroy();
  }

  [[nodiscard]] bool has_value() const noexcept {
    return has_;
  }
  explicit operator bool() const noexcept {
    return has_;
  }

  /// The value; on an error throws BadResultAccess (or aborts without exceptions).
  T& value() & KEEL_LIFETIMEBOUND {
    if (!has_) detail::bad_access(err_);
    return val_;
  }
  const T& value() const& KEEL_LIFETIMEBOUND {
    if (!has_) detail::bad_access(err_);
    return val_;
  }
  T&& value() && KEEL_LIFETIMEBOUND {
    if (!has_) detail::bad_access(err_);
    return std::move(val_);
  }
  /// The error. Precondition: !has_value().
  Error& error() & noexcept KEEL_LIFETIMEBOUND {
    KEEL_ASSERT(!has_);
    return err_;
  }
  const Error& error() const& noexcept KEEL_LIFETIMEBOUND {
    KEEL_ASSERT(!has_);
    return err_;
  }
  Error&& error() && noexcept KEEL_LIFETIMEBOUND {
    KEEL_ASSERT(!has_);
    return std::move(err_);
  }
  T& operator*() & noexcept KEEL_LIFETIMEBOUND {
    KEEL_ASSERT(has_);
    return val_;
  }
  const T& operator*() const& noexcept KEEL_LIFETIMEBOUND {
    KEEL_ASSERT(has_);
    return val_;
  }
  T&& operator*() && noexcept KEEL_LIFETIMEBOUND {
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

  /// Destroys the contents and makes a T from args. Strong guarantee when
  /// making the T cannot throw, when T's move cannot throw, or when the Result
  /// held an error; otherwise a throw leaves it holding Errc::internal.
  template <class... Args>
  T& emplace(Args&&... args) {
    reinit_value(std::forward<Args>(args)...);
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

  /// Adds a context frame to an error (anyhow's .context()), recording the
  /// caller's location; a value passes.
  Result context(std::string what, SourceLocation where = ::keel::SourceLocation::current()) && {
    if (!has_) err_.context(std::move(what), where);
    return std::move(*this);
  }
  /// Like context(), but builds the text only on the error path.
  template <class F>
  Result with_context(F&& make, SourceLocation where = ::keel::SourceLocation::current()) && {
    if (!has_) err_.context(std::string(std::invoke(std::forward<F>(make))), where);
    return std::move(*this);
  }
  /// Attaches a typed payload to an error (see Error::attach); a value passes.
  template <class P>
  Result attach(P payload) && {
    if (!has_) err_.attach(std::move(payload));
    return std::move(*this);
  }
  /// Re-kinds an error, keeping it as the cause (see Error::wrap); a value passes.
  Result wrap(Errc kind, std::string message = {},
              SourceLocation where = ::keel::SourceLocation::current()) && {
    if (!has_) err_ = std::move(err_).wrap(kind, std::move(message), where);
    return std::move(*this);
  }

  friend bool operator==(const Result& a, const Result& b) requires requires(const T& x) {
    x == x;
  }
  {
    if (a.has_ != b.has_) return false;
    return a.has_ ? a.val_ == b.val_ : a.err_ == b.err_;
  }
  /// Holds an error equal to e (kind, message and context).
  friend bool operator==(const Result& r, const unexpected<Error>& e) noexcept {
    return !r.has_ && r.err_ == e.error();
  }
  friend bool operator==(const Result& r, const Error& e) noexcept requires(!detail::error_is_value_v<T>) {
    return !r.has_ && r.err_ == e;
  }
  /// Holds an error of kind c.
  friend bool operator==(const Result& r, Errc c) noexcept requires(!detail::errc_is_value_v<T>) {
    return !r.has_ && r.err_.code() == c;
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
    } else if (o.has_) {
      reinit_value(std::forward<R>(o).val_);
    } else {
      // Value -> error: make the Error first (copying one may throw
      // bad_alloc), then swap it in; Error's move never throws.
      Error e(std::forward<R>(o).err_);
      val_.~T();
      ::new (&err_) Error(std::move(e));
      has_ = false;
    }
  }
  // Replaces the contents by a T made from args; see emplace() for the guarantee.
  template <class... Args>
  void reinit_value(Args&&... args) {
    if constexpr (std::is_nothrow_constructible_v<T, Args...>) {
      destroy();
      ::new (&val_) T(std::forward<Args>(args)...);
      has_ = true;
    } else if constexpr (std::is_nothrow_move_constructible_v<T>) {
      T tmp(std::forward<Args>(args)...);  // may throw: nothing changed yet
      destroy();
      ::new (&val_) T(std::move(tmp));
      has_ = true;
    } else if (!has_) {
      // std::expected's reinit: keep the Error aside (its move never throws)
      // and put it back if making the T throws.
      Error backup(std::move(err_));
      err_.~Error();
      KEEL_DETAIL_TRY_BLOCK {
        ::new (&val_) T(std::forward<Args>(args)...);
      }
      KEEL_DETAIL_CATCH_ALL {
        ::new (&err_) Error(std::move(backup));
        KEEL_DETAIL_RETHROW;
      }
      has_ = true;
    } else {
      // A value over a value whose move may throw: no room for a backup, so
      // the basic guarantee (a defined error state, nothing destroyed twice).
      val_.~T();
      KEEL_DETAIL_TRY_BLOCK {
        ::new (&val_) T(std::forward<Args>(args)...);
      }
      KEEL_DETAIL_CATCH_ALL {
        ::new (&err_) Error(Errc::internal);
        has_ = false;
        KEEL_DETAIL_RETHROW;
      }
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
  Error& error() & noexcept KEEL_LIFETIMEBOUND {
    KEEL_ASSERT(!has_value());
    return *err_;
  }
  const Error& error() const& noexcept KEEL_LIFETIMEBOUND {
    KEEL_ASSERT(!has_value());
    return *err_;
  }
  Error&& error() && noexcept KEEL_LIFETIMEBOUND {
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
  Result context(std::string what, SourceLocation where = ::keel::SourceLocation::current()) && {
    if (err_) err_->context(std::move(what), where);
    return std::move(*this);
  }
  template <class F>
  Result with_context(F&& make, SourceLocation where = ::keel::SourceLocation::current()) && {
    if (err_) err_->context(std::string(std::invoke(std::forward<F>(make))), where);
    return std::move(*this);
  }
  Result wrap(Errc kind, std::string message = {},
              SourceLocation where = ::keel::SourceLocation::current()) && {
    if (err_) *err_ = std::move(*err_).wrap(kind, std::move(message), where);
    return std::move(*this);
  }
  friend bool operator==(const Result& a, const Result& b) noexcept { return a.err_ == b.err_; }
  friend bool operator==(const Result& r, const unexpected<Error>& e) noexcept {
    return r.err_ && *r.err_ == e.error();
  }
  friend bool operator==(const Result& r, const Error& e) noexcept { return r.err_ && *r.err_ == e; }
  friend bool operator==(const Result& r, Errc c) noexcept { return r.err_ && r.err_->code() == c; }
#if KEEL_HAS_STD_EXPECTED
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(const std::expected<void, Error>& e) {
    if (!e) err_.emplace(e.error());
  }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(std::expected<void, Error>&& e) noexcept {
    if (!e) err_.emplace(std::move(e.error()));
  }
  [[nodiscard]] std::expected<void, Error> to_expected() const& {
    if (err_) return std::expected<void, Error>(std::unexpect, *err_);
    return {};
  }
  [[nodiscard]] std::expected<void, Error> to_expected() && {
    if (err_) return std::expected<void, Error>(std::unexpect, std::move(*err_));
    return {};
  }
  // NOLINTNEXTLINE(google-explicit-constructor)
  operator std::expected<void, Error>() const& {
    return to_expected();
  }
  // NOLINTNEXTLINE(google-explicit-constructor)
  operator std::expected<void, Error>() && {
    return std::move(*this).to_expected();
  }
#endif

 private:
  std::optional<Error> err_;
};

/// A Result holding a value equal to v. (A namespace-scope template, so that
/// nothing converts to a Result to reach it.)
template <class T, class U>
requires(!std::is_void_v<T> && !detail::is_result_v<U> && !detail::is_unexpected_v<U> &&
         (detail::error_is_value_v<T> ||
          !std::is_same_v<U, Error>)&&(detail::errc_is_value_v<T> ||
                                       !std::is_same_v<U, Errc>)&&requires(const T& t, const U& u) {
           static_cast<bool>(t == u);
         }) [[nodiscard]] bool
operator==(const Result<T>& r, const U& v) {
  return r.has_value() && static_cast<bool>(*r == v);
}

static_assert(sizeof(Result<int>) <= 16, "Result<int> fits two words");
static_assert(sizeof(Result<void>) <= 16, "Result<void> fits two words");

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

namespace detail {
// The formatting and allocation of keel::fail, kept out of line and cold so
// that a function which can fail keeps a frameless success path.
#if defined(__GNUC__) || defined(__clang__)
[[gnu::noinline, gnu::cold]]
#endif
inline unexpected<Error>
fail_formatted(Errc code, fmt::string_view format, fmt::format_args args, SourceLocation where) {
  return unexpected<Error>(Error(code, fmt::vformat(format, args), where));
}
}  // namespace detail

/// An error result with a formatted message and the caller's location:
/// `return keel::fail(Errc::not_found, "no user {}", id);`
template <class... Args>
[[nodiscard]] unexpected<Error> fail(Errc code, detail::LocatedFormat<std::type_identity_t<Args>...> f,
                                     Args&&... args) {
  return detail::fail_formatted(code, f.str, fmt::make_format_args(args...), f.loc);
}
/// A bare error result (no message, no allocation).
[[nodiscard]] inline unexpected<Error> fail(Errc code) noexcept {
  return unexpected<Error>(Error(code));
}

#if KEEL_HAS_EXCEPTIONS
namespace detail {
// An Error of `kind` saying `what`; the bare kind if even that cannot be
// allocated.
[[nodiscard]] inline Error error_saying(Errc kind, const char* what, SourceLocation where) noexcept {
  try {
    return {kind, std::string(what), where};
  } catch (...) {
    return {kind};
  }
}
// The exception being handled, as an Error: keel's own keep their Error;
// std::system_error maps its code; std::bad_alloc is a bare
// resource_exhausted (nothing more is allocated); the std::logic_error family
// that means a bad argument is invalid_argument; any other std::exception is
// internal; anything else is unknown.
[[nodiscard]] inline Error current_exception_error(SourceLocation where) noexcept {
  try {
    throw;
  } catch (const BadResultAccess& ex) {
    try {
      return ex.error();
    } catch (...) {
      return {ex.error().code()};
    }
  } catch (const std::system_error& ex) {
    return error_saying(errc_from(ex.code()), ex.what(), where);
  } catch (const std::bad_alloc&) {
    return {Errc::resource_exhausted};
  } catch (const std::invalid_argument& ex) {
    return error_saying(Errc::invalid_argument, ex.what(), where);
  } catch (const std::domain_error& ex) {
    return error_saying(Errc::invalid_argument, ex.what(), where);
  } catch (const std::out_of_range& ex) {
    return error_saying(Errc::invalid_argument, ex.what(), where);
  } catch (const std::length_error& ex) {
    return error_saying(Errc::invalid_argument, ex.what(), where);
  } catch (const std::exception& ex) {
    return error_saying(Errc::internal, ex.what(), where);
  } catch (...) {
    return error_saying(Errc::unknown, "an exception of a type not derived from std::exception", where);
  }
}
}  // namespace detail
#endif

/// Calls fn() and turns an exception it throws into an error Result, at the
/// boundary with code that throws (a dependency, a std container):
///
///     auto n = keel::catch_result([&] { return std::stoi(text); });  // Result<int>
///
/// fn may return a value (Result<T>), void (Result<void>) or a keel::Result
/// (returned as is). The mapping: keel::BadResultAccess gives back its Error;
/// std::system_error its code's kind (see keel::errc_from) with what();
/// std::bad_alloc a bare Errc::resource_exhausted; std::invalid_argument,
/// std::domain_error, std::out_of_range and std::length_error
/// Errc::invalid_argument; any other std::exception Errc::internal; anything
/// else Errc::unknown. The location is the caller's. Without exceptions it
/// just calls fn.
template <class F>
[[nodiscard]] auto catch_result(F&& fn, SourceLocation where = ::keel::SourceLocation::current()) {
  using R = std::invoke_result_t<F&>;
  using Out = std::conditional_t<detail::is_result_v<R>, std::remove_cvref_t<R>, Result<std::remove_cv_t<R>>>;
  auto call = [&]() -> Out {
    if constexpr (detail::is_result_v<R>) {
      return std::invoke(fn);
    } else if constexpr (std::is_void_v<R>) {
      std::invoke(fn);
      return Out();
    } else {
      return Out(std::in_place, std::invoke(fn));
    }
  };
#if KEEL_HAS_EXCEPTIONS
  try {
    return call();
  } catch (...) {
    return Out(unexpected<Error>(detail::current_exception_error(where)));
  }
#else
  static_cast<void>(where);
  return call();
#endif
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

// KEEL_DETAIL_DEPAREN(x): x without its parentheses if it has them, else x,
// so a declaration holding commas can be passed as one macro argument.
#define KEEL_DETAIL_DEPAREN(x) KEEL_DETAIL_DEPAREN_ESC(KEEL_DETAIL_DEPAREN_ISH x)
#define KEEL_DETAIL_DEPAREN_ISH(...) KEEL_DETAIL_DEPAREN_ISH __VA_ARGS__
#define KEEL_DETAIL_DEPAREN_ESC(...) KEEL_DETAIL_DEPAREN_ESC_(__VA_ARGS__)
#define KEEL_DETAIL_DEPAREN_ESC_(...) KEEL_DETAIL_DEPAREN_VAN##__VA_ARGS__
#define KEEL_DETAIL_DEPAREN_VANKEEL_DETAIL_DEPAREN_ISH

#define KEEL_DETAIL_TRY_ASSIGN(ret, tmp, decl, ...)                                                  \
  auto&& tmp = (__VA_ARGS__);                                                                        \
  static_assert(::keel::detail::is_result_v<decltype(tmp)>, "KEEL_TRY_ASSIGN needs a keel::Result"); \
  if (!tmp.has_value()) ret ::keel::detail::propagate(std::forward<decltype(tmp)>(tmp));             \
  KEEL_DETAIL_DEPAREN(decl) = *std::forward<decltype(tmp)>(tmp)

/// `KEEL_TRY_ASSIGN(auto x, expr);` declares x from a Result's value or
/// returns its error; portable (no statement expression). Commas inside expr
/// are fine; a declaration holding commas goes in parentheses:
/// `KEEL_TRY_ASSIGN((auto [key, value]), split(line));`
#define KEEL_TRY_ASSIGN(decl, ...) \
  KEEL_DETAIL_TRY_ASSIGN(return, KEEL_DETAIL_CONCAT(keel_try_tmp_, __COUNTER__), decl, __VA_ARGS__)

/// KEEL_TRY for coroutines: `KEEL_CO_TRY(expr);` evaluates a Result and
/// `co_return`s its error (the coroutine's return_value must accept a
/// keel::Result); a statement, so the value is dropped: use
/// KEEL_CO_TRY_ASSIGN(decl, expr) to keep it.
#define KEEL_CO_TRY(...)                                                                           \
  do {                                                                                             \
    auto&& keel_co_try_r_ = (__VA_ARGS__);                                                         \
    static_assert(::keel::detail::is_result_v<decltype(keel_co_try_r_)>,                           \
                  "KEEL_CO_TRY needs a keel::Result");                                             \
    if (!keel_co_try_r_.has_value())                                                               \
      co_return ::keel::detail::propagate(std::forward<decltype(keel_co_try_r_)>(keel_co_try_r_)); \
  } while (false)
#define KEEL_CO_TRY_ASSIGN(decl, ...) \
  KEEL_DETAIL_TRY_ASSIGN(co_return, KEEL_DETAIL_CONCAT(keel_try_tmp_, __COUNTER__), decl, __VA_ARGS__)
