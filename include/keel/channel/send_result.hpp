// keel/channel/send_result.hpp: what a channel send returns.
//
// A send that fails never destroys the value: the value comes back inside the
// error, the way tokio's and crossbeam's SendError<T> do.
//
//     if (auto r = tx.try_send(std::move(job)); !r) {
//       if (r.error() == keel::Errc::full) retry_later(std::move(r.error()).into_inner());
//     }
//     KEEL_TRY(tx.send(std::move(job)).result());  // drop the value, keep the Error
//
// SendResult<T> reads like std::expected<void, SendError<T>>, and converts
// to keel::Result<void> (dropping the value) for code that does not want it.
#pragma once

#include <keel/result.hpp>

#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace keel {

/// A failed send: why it failed (Errc::closed, Errc::full, Errc::timeout) and
/// the value that was not sent.
template <class T>
class SendError {
 public:
  SendError(Error error, T value) noexcept(std::is_nothrow_move_constructible_v<T>)
      : error_(std::move(error)), value_(std::move(value)) {}

  /// Why the send failed.
  [[nodiscard]] const Error& error() const& noexcept { return error_; }
  [[nodiscard]] Error&& error() && noexcept { return std::move(error_); }
  [[nodiscard]] Errc code() const noexcept { return error_.code(); }

  /// The value that was not sent.
  [[nodiscard]] T& value() & noexcept { return value_; }
  [[nodiscard]] const T& value() const& noexcept { return value_; }
  [[nodiscard]] T&& value() && noexcept { return std::move(value_); }
  /// Takes the unsent value back (tokio's into_inner).
  [[nodiscard]] T into_inner() && noexcept(std::is_nothrow_move_constructible_v<T>) {
    return std::move(value_);
  }

  /// Adds a context frame to the error.
  SendError& context(std::string what) & {
    error_.context(std::move(what));
    return *this;
  }

  friend bool operator==(const SendError& e, Errc c) noexcept { return e.code() == c; }

 private:
  Error error_;
  T value_;
};

/// The result of a send: success, or a SendError<T> holding the value back.
template <class T>
class [[nodiscard]] SendResult {
 public:
  using value_type = void;
  using error_type = SendError<T>;

  /// Success.
  SendResult() noexcept = default;
  // NOLINTNEXTLINE(google-explicit-constructor): a SendError is a failed SendResult.
  SendResult(SendError<T> e) noexcept(std::is_nothrow_move_constructible_v<T>) : err_(std::move(e)) {}
  SendResult(Error e, T value) noexcept(std::is_nothrow_move_constructible_v<T>)
      : err_(std::in_place, std::move(e), std::move(value)) {}

  [[nodiscard]] bool has_value() const noexcept { return !err_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  /// Nothing on success; throws BadResultAccess on an error (as Result<void>).
  void value() const {
    if (err_) detail::bad_access(err_->error());
  }

  /// The error and the unsent value. Precondition: !has_value().
  [[nodiscard]] SendError<T>& error() & noexcept {
    KEEL_ASSERT(err_.has_value());
    return *err_;
  }
  [[nodiscard]] const SendError<T>& error() const& noexcept {
    KEEL_ASSERT(err_.has_value());
    return *err_;
  }
  [[nodiscard]] SendError<T>&& error() && noexcept {
    KEEL_ASSERT(err_.has_value());
    return std::move(*err_);
  }

  /// The error code, or std::nullopt on success.
  [[nodiscard]] std::optional<Errc> code() const noexcept {
    if (err_) return err_->code();
    return std::nullopt;
  }

  /// A keel::Result<void> with the same outcome; the unsent value is dropped.
  [[nodiscard]] Result<void> result() const& {
    if (err_) return err_->error();
    return {};
  }
  [[nodiscard]] Result<void> result() && {
    if (err_) return std::move(*err_).error();
    return {};
  }
  // NOLINTNEXTLINE(google-explicit-constructor): `return tx.send(v);` in a Result<void> function.
  operator Result<void>() const& { return result(); }
  // NOLINTNEXTLINE(google-explicit-constructor)
  operator Result<void>() && { return std::move(*this).result(); }

  /// Adds a context frame to the error (the value stays inside).
  SendResult context(std::string what) && {
    if (err_) err_->context(std::move(what));
    return std::move(*this);
  }

 private:
  std::optional<SendError<T>> err_;
};

}  // namespace keel
