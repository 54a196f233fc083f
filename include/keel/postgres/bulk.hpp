// keel/postgres/bulk.hpp: batch inserts with COPY FROM STDIN, and many small
// statements in one round trip with libpq's pipeline mode.
//
// Part of <keel/postgres.hpp>.
//
//     KEEL_TRY_ASSIGN(std::uint64_t n, keel::pg::copy_in(conn, "COPY events(id, body) FROM STDIN",
//         [&](keel::pg::CopyWriter& w) -> keel::Result<void> {
//           for (const auto& e : events) KEEL_TRY(w.row(e.id, e.body));
//           return {};
//         }));
//     KEEL_TRY(keel::pg::pipeline(conn, [&](keel::pg::Pipeline& p) -> keel::Result<void> {
//       for (const auto& [id, name] : renames) KEEL_TRY(p.exec("UPDATE users SET name = $2 WHERE id = $1",
//       id, name)); return {};
//     }));
//
// copy_in: rows are written in COPY's text format (the same C++ types as
// statement parameters; std::nullopt is NULL) and streamed to the server in
// 64 KiB pieces. The COPY is one statement: all rows or none. An error from
// the fill function (or an exception, which goes on) aborts it.
//
// pipeline: statements are sent without waiting for each answer; the
// answers are read after every 256 statements and at the end. Outside a
// transaction each such group of up to 256 commits on its own (PostgreSQL
// makes each pipeline sync an implicit transaction); run the pipeline inside
// transaction() for all-or-nothing. After a failed statement the rest of its
// group is skipped by the server, exec() then returns the error, and the
// pipeline returns the first error.
//
// Thread-safety: as for the connection.
#pragma once

#include <keel/postgres/error.hpp>
#include <keel/postgres/pool.hpp>
#include <keel/postgres/types.hpp>
#include <keel/result.hpp>

#include <libpq-fe.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace keel::pg {

namespace detail {
inline void copy_escape(std::string& out, std::string_view s) {
  for (const char ch : s) {
    switch (ch) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(ch);
    }
  }
}

template <class T>
void copy_field(std::string& out, const T& v) {
  Param p;
  encode(p, v);
  if (p.value == nullptr) {
    out += "\\N";
    return;
  }
  if (p.format == 1) {  // bytea: its hex text form, backslash escaped for COPY
    static constexpr char kHex[] = "0123456789abcdef";
    out += "\\\\x";
    for (int i = 0; i < p.length; ++i) {
      const auto b = static_cast<unsigned char>(p.value[i]);
      out.push_back(kHex[b >> 4U]);
      out.push_back(kHex[b & 15U]);
    }
    return;
  }
  copy_escape(out, p.value);
}

template <class F, class A>
decltype(auto) invoke_fill(F& fn, A& arg) {
  using R = std::invoke_result_t<F&, A&>;
  if constexpr (std::is_void_v<R>) {
    std::invoke(fn, arg);
    return Result<void>();
  } else {
    static_assert(keel::detail::is_result_v<std::remove_cvref_t<R>>,
                  "the function must return void or a keel::Result");
    return Result<void>(std::invoke(fn, arg).transform([](auto&&...) {}));
  }
}
}  // namespace detail

/// Writes rows into a COPY ... FROM STDIN (see copy_in).
class CopyWriter {
 public:
  CopyWriter(const CopyWriter&) = delete;
  CopyWriter& operator=(const CopyWriter&) = delete;

  /// Appends one row; its values in the COPY's column order.
  template <class... Args>
  Result<void> row(const Args&... args) {
    if (failed_) return fail(Errc::invalid_argument, "the COPY already failed");
    bool first = true;
    const auto field = [&](const auto& v) {
      if (!first) buf_.push_back('\t');
      first = false;
      detail::copy_field(buf_, v);
    };
    (field(args), ...);
    buf_.push_back('\n');
    ++rows_;
    if (buf_.size() >= kFlushAt) return flush();
    return {};
  }
  /// Rows written so far.
  [[nodiscard]] std::uint64_t rows() const noexcept { return rows_; }

 private:
  template <class F>
  friend Result<std::uint64_t> copy_in(Connection& conn, std::string_view copy_sql, F&& fill);

  static constexpr std::size_t kFlushAt = 64 * 1024;
  explicit CopyWriter(detail::Conn& c) : c_(c) { buf_.reserve(kFlushAt + 1024); }

  Result<void> flush() {
    if (buf_.empty()) return {};
    if (PQputCopyData(c_.pg, buf_.data(), static_cast<int>(buf_.size())) != 1) {
      failed_ = true;
      if (PQstatus(c_.pg) == CONNECTION_BAD) c_.broken = true;
      return fail(Errc::unavailable, "sending COPY data: {}", detail::trim_message(PQerrorMessage(c_.pg)));
    }
    buf_.clear();
    return {};
  }

  detail::Conn& c_;
  std::string buf_;
  std::uint64_t rows_ = 0;
  bool failed_ = false;
};

/// Runs `copy_sql` (a COPY ... FROM STDIN) and feeds it the rows fill(writer)
/// writes; returns the rows the server stored. fill returns void or a
/// keel::Result; an error (or exception) aborts the COPY and nothing is stored.
template <class F>
Result<std::uint64_t> copy_in(Connection& conn, std::string_view copy_sql, F&& fill) {
  detail::Conn* c = detail::ConnAccess::conn(conn);
  if (c == nullptr) return fail(Errc::invalid_argument, "copy_in on an empty connection");
  PGresult* start = PQexec(c->pg, detail::c_sql(*c, copy_sql));
  if (start == nullptr || PQresultStatus(start) != PGRES_COPY_IN) {
    if (start != nullptr && PQresultStatus(start) == PGRES_COMMAND_OK) {
      PQclear(start);
      return fail(Errc::invalid_argument, "`{}` is not a COPY ... FROM STDIN", detail::sql_excerpt(copy_sql));
    }
    auto r = detail::check_result(*c, start, copy_sql);
    if (!r) return std::move(r).error();
    c->broken = true;  // some other COPY direction: not reusable
    return fail(Errc::invalid_argument, "`{}` is not a COPY ... FROM STDIN", detail::sql_excerpt(copy_sql));
  }
  PQclear(start);
  CopyWriter w(*c);
  // Ends the COPY on every path; with an error message when it must not store anything.
  struct Finish {
    detail::Conn& c;
    const char* abort_reason = "aborted by the caller";
    ~Finish() {
      if (abort_reason != nullptr && PQputCopyEnd(c.pg, abort_reason) == 1) {
        while (PGresult* r = PQgetResult(c.pg)) PQclear(r);
      }
    }
  } finish{*c};
  auto filled = detail::invoke_fill(fill, w);
  if (!filled) return std::move(filled).error().context("filling a COPY (aborted)");
  KEEL_TRY(w.flush());
  finish.abort_reason = nullptr;
  if (PQputCopyEnd(c->pg, nullptr) != 1) {
    c->broken = true;
    return fail(Errc::unavailable, "ending a COPY: {}", detail::trim_message(PQerrorMessage(c->pg)));
  }
  KEEL_TRY_ASSIGN(Rows done, detail::collect(*c, copy_sql));
  return done.affected();
}

/// Queues statements in pipeline mode (see pipeline()).
class Pipeline {
 public:
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// Sends one statement with parameters; reads the answers every 256. An
  /// error found then (the first failed statement's) is returned, and every
  /// later exec() returns it too.
  template <class... Args>
  Result<void> exec(std::string_view sql, const Args&... args) {
    if (error_) return unexpected<Error>(*error_);
    const detail::Params<sizeof...(Args)> p(args...);
    if (PQsendQueryParams(c_.pg, detail::c_sql(c_, sql), p.count(), p.oid_data(), p.value_data(),
                          p.length_data(), p.format_data(), 0) != 1) {
      error_.emplace(result_error(nullptr, c_.pg, sql));
      if (PQstatus(c_.pg) == CONNECTION_BAD) c_.broken = true;
      return unexpected<Error>(*error_);
    }
    ++pending_;
    if (pending_ >= kGroup) {
      sync();
      if (error_) return unexpected<Error>(*error_);
    }
    return {};
  }
  /// Statements the server ran successfully so far (answers read).
  [[nodiscard]] std::uint64_t done() const noexcept { return done_; }
  /// Rows they reported changed or returned.
  [[nodiscard]] std::uint64_t affected() const noexcept { return affected_; }

 private:
  template <class F>
  friend Result<std::uint64_t> pipeline(Connection& conn, F&& fn);

  static constexpr std::size_t kGroup = 256;
  explicit Pipeline(detail::Conn& c) noexcept : c_(c) {}

  /// Marks a sync point and reads every answer up to it.
  void sync() noexcept {
    if (pending_ == 0) return;
    if (PQpipelineSync(c_.pg) != 1) {
      if (!error_) error_.emplace(result_error(nullptr, c_.pg));
      c_.broken = true;
      pending_ = 0;
      return;
    }
    std::size_t nulls = 0;
    for (;;) {
      PGresult* r = PQgetResult(c_.pg);
      if (r == nullptr) {
        // One NULL ends each statement's answers; more than that means the
        // connection is gone.
        if (PQstatus(c_.pg) == CONNECTION_BAD || ++nulls > pending_ + 1) {
          if (!error_) error_.emplace(result_error(nullptr, c_.pg));
          c_.broken = true;
          break;
        }
        continue;
      }
      const auto st = PQresultStatus(r);
      if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        break;
      }
      if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        ++done_;
        affected_ += Rows(r).affected();  // takes r
        continue;
      }
      if (st != PGRES_PIPELINE_ABORTED && !error_) error_.emplace(result_error(r, c_.pg));
      PQclear(r);
    }
    pending_ = 0;
  }

  detail::Conn& c_;
  std::size_t pending_ = 0;
  std::uint64_t done_ = 0;
  std::uint64_t affected_ = 0;
  std::optional<Error> error_;
};

/// Runs fn(pipeline) in libpq's pipeline mode and reads every answer;
/// returns the rows the statements changed (or returned), or the first
/// error. fn returns void or a keel::Result (an error stops it; what was
/// sent is still read).
template <class F>
Result<std::uint64_t> pipeline(Connection& conn, F&& fn) {
  detail::Conn* c = detail::ConnAccess::conn(conn);
  if (c == nullptr) return fail(Errc::invalid_argument, "pipeline on an empty connection");
  if (PQenterPipelineMode(c->pg) != 1) {
    return fail(Errc::invalid_argument, "cannot enter pipeline mode: {}",
                detail::trim_message(PQerrorMessage(c->pg)));
  }
  Pipeline p(*c);
  struct Exit {
    detail::Conn& c;
    Pipeline& p;
    ~Exit() {
      p.sync();
      if (PQexitPipelineMode(c.pg) != 1) c.broken = true;
    }
  };
  Result<void> filled;
  {
    const Exit exit{*c, p};
    filled = detail::invoke_fill(fn, p);
  }
  if (p.error_) return unexpected<Error>(std::move(*p.error_).context("in a pipeline"));
  if (!filled) return std::move(filled).error();
  return p.affected();
}

}  // namespace keel::pg
