// keel/sqlite/error.hpp: SQLite result codes and SQLiteCpp exceptions as keel::Error.
//
// Part of <keel/sqlite.hpp>. Every SQLiteCpp exception stops at keel's
// boundary and becomes a keel::Error whose kind says what to do about it
// (Errc::busy is worth retrying, Errc::already_exists is a UNIQUE or PRIMARY
// KEY violation, ...), whose message is SQLite's, and whose context names the
// extended result code and the SQL that failed:
//
//     auto r = keel::sqlite::try_sql([&] { return db.execAndGet("SELECT 1").getInt(); });
//     // on failure: "running `SELECT ...`: SQLite SQLITE_ERROR (code 1): DATABASE: no such table: t"
//
// Thread-safety: pure functions; safe from any thread.
#pragma once

#include <keel/detail/sql_excerpt.hpp>
#include <keel/result.hpp>

#include <SQLiteCpp/Exception.h>
#include <sqlite3.h>

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace keel::sqlite {

/// The symbolic name of an SQLite result code's primary part ("SQLITE_BUSY");
/// "SQLITE_UNKNOWN" for anything else (SQLiteCpp's own errors use -1).
[[nodiscard]] constexpr std::string_view code_name(int code) noexcept {
  if (code < 0) return "SQLITE_UNKNOWN";
  switch (code & 0xff) {
    case SQLITE_OK:
      return "SQLITE_OK";
    case SQLITE_ERROR:
      return "SQLITE_ERROR";
    case SQLITE_INTERNAL:
      return "SQLITE_INTERNAL";
    case SQLITE_PERM:
      return "SQLITE_PERM";
    case SQLITE_ABORT:
      return "SQLITE_ABORT";
    case SQLITE_BUSY:
      return "SQLITE_BUSY";
    case SQLITE_LOCKED:
      return "SQLITE_LOCKED";
    case SQLITE_NOMEM:
      return "SQLITE_NOMEM";
    case SQLITE_READONLY:
      return "SQLITE_READONLY";
    case SQLITE_INTERRUPT:
      return "SQLITE_INTERRUPT";
    case SQLITE_IOERR:
      return "SQLITE_IOERR";
    case SQLITE_CORRUPT:
      return "SQLITE_CORRUPT";
    case SQLITE_NOTFOUND:
      return "SQLITE_NOTFOUND";
    case SQLITE_FULL:
      return "SQLITE_FULL";
    case SQLITE_CANTOPEN:
      return "SQLITE_CANTOPEN";
    case SQLITE_PROTOCOL:
      return "SQLITE_PROTOCOL";
    case SQLITE_SCHEMA:
      return "SQLITE_SCHEMA";
    case SQLITE_TOOBIG:
      return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT:
      return "SQLITE_CONSTRAINT";
    case SQLITE_MISMATCH:
      return "SQLITE_MISMATCH";
    case SQLITE_MISUSE:
      return "SQLITE_MISUSE";
    case SQLITE_AUTH:
      return "SQLITE_AUTH";
    case SQLITE_RANGE:
      return "SQLITE_RANGE";
    case SQLITE_NOTADB:
      return "SQLITE_NOTADB";
    case SQLITE_ROW:
      return "SQLITE_ROW";
    case SQLITE_DONE:
      return "SQLITE_DONE";
    default:
      return "SQLITE_UNKNOWN";
  }
}

/// The keel kind for an SQLite (extended) result code:
/// BUSY/LOCKED -> busy, UNIQUE/PRIMARY KEY violations -> already_exists,
/// CANTOPEN/IOERR -> io, NOMEM/FULL -> resource_exhausted, INTERRUPT ->
/// cancelled, MISUSE/RANGE/TOOBIG/MISMATCH -> invalid_argument, everything else
/// (syntax errors, other constraints, CORRUPT, NOTADB, READONLY, ...) -> database.
[[nodiscard]] constexpr Errc errc_for(int extended_code) noexcept {
  if (extended_code == SQLITE_CONSTRAINT_UNIQUE || extended_code == SQLITE_CONSTRAINT_PRIMARYKEY) {
    return Errc::already_exists;
  }
  if (extended_code < 0) return Errc::database;
  switch (extended_code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Errc::busy;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
      return Errc::io;
    case SQLITE_NOMEM:
    case SQLITE_FULL:
      return Errc::resource_exhausted;
    case SQLITE_INTERRUPT:
      return Errc::cancelled;
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
      return Errc::invalid_argument;
    default:
      return Errc::database;
  }
}

namespace detail {
using keel::detail::sql_excerpt;
}  // namespace detail

/// An Error for an SQLite result code: kind from errc_for(), SQLite's message,
/// and context frames naming the code and (when given) the SQL.
[[nodiscard]] inline Error make_error(int extended_code, std::string_view message, std::string_view sql = {},
                                      keel::SourceLocation where = keel::SourceLocation::current()) {
  Error e(errc_for(extended_code), std::string(message), where);
  e.context(fmt::format("SQLite {} (code {})", code_name(extended_code), extended_code));
  if (!sql.empty()) e.context(fmt::format("running `{}`", detail::sql_excerpt(sql)));
  return e;
}

/// The last error of a connection handle as an Error (see make_error).
[[nodiscard]] inline Error last_error(sqlite3* db, std::string_view sql = {},
                                      keel::SourceLocation where = keel::SourceLocation::current()) {
  if (db == nullptr) return Error(Errc::database, "no SQLite connection", where);
  return make_error(sqlite3_extended_errcode(db), sqlite3_errmsg(db), sql, where);
}

/// Converts a SQLiteCpp exception (see make_error).
[[nodiscard]] inline Error from_exception(const SQLite::Exception& ex, std::string_view sql = {},
                                          keel::SourceLocation where = keel::SourceLocation::current()) {
  const int code = ex.getErrorCode();
  const int extended = ex.getExtendedErrorCode();
  if (code > 0 && (extended & 0xff) != code) {
    // Errors that do not touch the connection's error state (sqlite3_bind_*
    // out of range, ...) leave a stale extended code and message on the handle.
    return make_error(code, sqlite3_errstr(code), sql, where);
  }
  return make_error(extended, ex.what(), sql, where);
}

namespace detail {
template <class R>
struct TrySqlResult {
  using type = Result<R>;
};
template <class T>
struct TrySqlResult<Result<T>> {
  using type = Result<T>;
};
/// True for keel::Result<T> (this module's own trait: no other module's detail).
template <class R>
struct IsResult : std::false_type {};
template <class T>
struct IsResult<Result<T>> : std::true_type {};
template <class R>
inline constexpr bool is_result_v = IsResult<std::remove_cvref_t<R>>::value;
}  // namespace detail

/// Runs fn() and turns a SQLite::Exception it throws into an Error (other
/// exceptions pass through). fn may return void, a value T (gives Result<T>)
/// or a keel::Result<T> (returned as is). `sql`, when given, goes in the context.
template <class F>
auto try_sql(F&& fn, std::string_view sql = {}, keel::SourceLocation where = keel::SourceLocation::current())
    -> typename detail::TrySqlResult<std::remove_cvref_t<std::invoke_result_t<F>>>::type {
  using R = std::remove_cvref_t<std::invoke_result_t<F>>;
  using Out = typename detail::TrySqlResult<R>::type;
#if KEEL_HAS_EXCEPTIONS
  try {
#endif
    if constexpr (std::is_void_v<R>) {
      std::invoke(std::forward<F>(fn));
      return Out();
    } else if constexpr (detail::is_result_v<R>) {
      return std::invoke(std::forward<F>(fn));
    } else {
      return Out(std::in_place, std::invoke(std::forward<F>(fn)));
    }
#if KEEL_HAS_EXCEPTIONS
  } catch (const SQLite::Exception& ex) {
    return Out(unexpected<Error>(from_exception(ex, sql, where)));
  }
#endif
}

}  // namespace keel::sqlite
