// keel/postgres/error.hpp: PostgreSQL errors (SQLSTATE codes) as keel::Error.
//
// Part of <keel/postgres.hpp>. Every failure a server or libpq reports
// becomes a keel::Error whose kind says what to do about it, whose message is
// the server's primary message, and whose context keeps the SQLSTATE, the
// server's detail and hint, and the SQL that failed:
//
//     auto r = conn.exec("INSERT INTO users(id) VALUES ($1)", 1);
//     if (!r && r.error().code() == keel::Errc::already_exists) { ... }
//     std::string_view state = keel::pg::sqlstate(r.error());   // "23505"
//     // "running `INSERT ...`: SQLSTATE 23505: detail: Key (id)=(1) already exists.:
//     //  ALREADY_EXISTS: duplicate key value violates unique constraint "users_pkey""
//
// Thread-safety: pure functions; safe from any thread.
#pragma once

#include <keel/detail/sql_excerpt.hpp>
#include <keel/result.hpp>

#include <fmt/format.h>
#include <libpq-fe.h>

#include <string>
#include <string_view>

namespace keel::pg {

/// The keel kind for a five-character SQLSTATE:
/// - 23505 unique_violation -> already_exists; other 23xxx -> database
/// - 40001 serialization_failure, 40P01 deadlock_detected, 55P03
///   lock_not_available -> busy (transient: transaction() retries the first two)
/// - 08xxx connection exceptions, 57P01/57P02/57P03 (admin or crash shutdown,
///   cannot connect now) -> unavailable
/// - 28xxx invalid authorization, 42501 insufficient privilege -> auth_failed
/// - 57014 query_canceled (statement_timeout), 25P03 idle-in-transaction
///   timeout -> timeout
/// - 42xxx (syntax, undefined table/column/function, ...), 22xxx (bad data),
///   0A000 -> invalid_argument
/// - 3D000 (no such database), 3F000 (no such schema) -> not_found
/// - 53xxx (too many connections, disk full, out of memory), 54xxx -> resource_exhausted
/// - 58xxx -> io; XX001/XX002 (data corrupted) -> data_loss; XX000 -> internal
/// - anything else (25xxx, P0001 RAISE, ...) -> database
[[nodiscard]] constexpr Errc errc_for_sqlstate(std::string_view s) noexcept {
  if (s.size() != 5) return Errc::database;
  const std::string_view cls = s.substr(0, 2);
  if (s == "23505") return Errc::already_exists;
  if (s == "40001" || s == "40P01" || s == "55P03") return Errc::busy;
  if (cls == "08" || s == "57P01" || s == "57P02" || s == "57P03") return Errc::unavailable;
  if (cls == "28" || s == "42501") return Errc::auth_failed;
  if (s == "57014" || s == "25P03") return Errc::timeout;
  if (cls == "42" || cls == "22" || s == "0A000") return Errc::invalid_argument;
  if (s == "3D000" || s == "3F000") return Errc::not_found;
  if (cls == "53" || cls == "54") return Errc::resource_exhausted;
  if (cls == "58") return Errc::io;
  if (s == "XX001" || s == "XX002") return Errc::data_loss;
  if (s == "XX000") return Errc::internal;
  return Errc::database;
}

/// True for the SQLSTATEs transaction() retries: 40001 serialization_failure
/// and 40P01 deadlock_detected.
[[nodiscard]] constexpr bool is_retryable_sqlstate(std::string_view s) noexcept {
  return s == "40001" || s == "40P01";
}

namespace detail {
inline constexpr std::string_view kSqlstatePrefix = "SQLSTATE ";

using keel::detail::sql_excerpt;

/// libpq's messages end with a newline (and may hold several lines); keep the text.
[[nodiscard]] inline std::string trim_message(const char* m) {
  std::string s = m != nullptr ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

/// The kind of a failure to connect, from libpq's message (a failed
/// connection has no PGresult and so no SQLSTATE). The server's own texts
/// are English unless lc_messages says otherwise.
[[nodiscard]] inline Errc errc_for_connect_message(std::string_view m) noexcept {
  const auto has = [&](std::string_view what) { return m.find(what) != std::string_view::npos; };
  if (has("password authentication failed") || has("authentication failed") || has("no password supplied") ||
      has("no pg_hba.conf entry") || has("pg_hba.conf rejects") || has("role \"") ||
      has("permission denied for database")) {
    return Errc::auth_failed;
  }
  if (has("database \"") && has("does not exist")) return Errc::not_found;
  if (has("invalid connection option") || has("missing \"=\"") || has("invalid URI") ||
      has("unterminated quoted string") || has("invalid integer value") || has("invalid port number") ||
      has("invalid sslmode") || has("invalid value for parameter")) {
    return Errc::config;
  }
  if (has("too many clients") || has("remaining connection slots")) return Errc::resource_exhausted;
  return Errc::unavailable;
}
}  // namespace detail

/// The SQLSTATE kept in an Error made by this module ("23505"), or "" when it
/// has none (a connection failure, an error keel made itself).
[[nodiscard]] inline std::string_view sqlstate(const Error& e) {
  for (std::string_view frame : e.contexts()) {
    if (frame.substr(0, detail::kSqlstatePrefix.size()) == detail::kSqlstatePrefix &&
        frame.size() >= detail::kSqlstatePrefix.size() + 5) {
      return frame.substr(detail::kSqlstatePrefix.size(), 5);
    }
  }
  return {};
}

namespace detail {
[[nodiscard]] inline Error build_error(Errc kind, std::string_view state, std::string message,
                                       std::string_view detail_text, std::string_view hint,
                                       std::string_view sql, keel::SourceLocation where) {
  Error e(kind, std::move(message), where);
  if (!hint.empty()) e.context(fmt::format("hint: {}", hint));
  if (!detail_text.empty()) e.context(fmt::format("detail: {}", detail_text));
  if (!state.empty()) e.context(fmt::format("{}{}", kSqlstatePrefix, state));
  if (!sql.empty()) e.context(fmt::format("running `{}`", sql_excerpt(sql)));
  return e;
}
}  // namespace detail

/// An Error from the server's fields: kind from errc_for_sqlstate(), the
/// primary message, then context frames for the detail and hint (when
/// present), "SQLSTATE xxxxx", and (when given) the SQL.
[[nodiscard]] inline Error make_error(std::string_view state, std::string message,
                                      std::string_view detail_text = {}, std::string_view hint = {},
                                      std::string_view sql = {},
                                      keel::SourceLocation where = keel::SourceLocation::current()) {
  return detail::build_error(errc_for_sqlstate(state), state, std::move(message), detail_text, hint, sql,
                             where);
}

/// The error a failed PGresult carries. A result without a SQLSTATE (libpq's
/// own failures: the connection dropped, out of memory) is Errc::unavailable
/// when the connection is gone, Errc::database otherwise.
[[nodiscard]] inline Error result_error(const PGresult* res, const PGconn* conn, std::string_view sql = {},
                                        keel::SourceLocation where = keel::SourceLocation::current()) {
  if (res == nullptr) {
    const bool bad = conn == nullptr || PQstatus(conn) == CONNECTION_BAD;
    Error e(bad ? Errc::unavailable : Errc::resource_exhausted,
            conn != nullptr ? detail::trim_message(PQerrorMessage(conn)) : std::string("no connection"),
            where);
    if (!sql.empty()) e.context(fmt::format("running `{}`", detail::sql_excerpt(sql)));
    return e;
  }
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  if (state == nullptr || primary == nullptr) {
    std::string msg = detail::trim_message(PQresultErrorMessage(res));
    if (msg.empty() && conn != nullptr) msg = detail::trim_message(PQerrorMessage(conn));
    const bool bad = conn == nullptr || PQstatus(conn) == CONNECTION_BAD;
    Error e(bad ? Errc::unavailable : Errc::database, std::move(msg), where);
    if (!sql.empty()) e.context(fmt::format("running `{}`", detail::sql_excerpt(sql)));
    return e;
  }
  const char* det = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
  const char* hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
  Errc kind = errc_for_sqlstate(state);
  // A FATAL error closes the connection: whatever its SQLSTATE says, the
  // connection is gone, and the caller needs to know that first.
  if (kind == Errc::database && conn != nullptr && PQstatus(conn) == CONNECTION_BAD) kind = Errc::unavailable;
  return detail::build_error(kind, state, primary, det != nullptr ? det : "", hint != nullptr ? hint : "",
                             sql, where);
}

}  // namespace keel::pg
