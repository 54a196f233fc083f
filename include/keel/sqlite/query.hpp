// keel/sqlite/query.hpp: one-line queries through the statement cache.
//
// Part of <keel/sqlite.hpp>.
//
//     KEEL_TRY(keel::sqlite::execute(conn, "INSERT INTO users(id, name) VALUES (?, ?)", 42, "ada"));
//     KEEL_TRY_ASSIGN(std::string name, keel::sqlite::query_one<std::string>(conn, "SELECT name FROM users
//     WHERE id = ?", 42)); KEEL_TRY_ASSIGN(auto email, keel::sqlite::query_optional<std::string>(conn,
//     "SELECT email FROM users WHERE id = ?", 7));
//
// Parameters bind in order: integers (as 64-bit), bool, floating point,
// strings (std::string, std::string_view, const char*), byte blobs
// (std::vector<std::uint8_t>, std::span<const std::uint8_t>), and
// std::nullopt / nullptr / an empty std::optional as NULL. Results convert
// the first column of the first row to T: the same types, and std::optional<U>
// for a column that may be NULL. query_one gives Errc::not_found when there
// is no row; query_optional gives std::nullopt.
//
// Thread-safety: as for the connection.
#pragma once

#include <keel/result.hpp>
#include <keel/sqlite/error.hpp>
#include <keel/sqlite/pool.hpp>

#include <SQLiteCpp/Column.h>
#include <SQLiteCpp/Statement.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace keel::sqlite {

namespace detail {

template <class T>
struct is_optional : std::false_type {};
template <class U>
struct is_optional<std::optional<U>> : std::true_type {};

template <class T>
void bind_one(SQLite::Statement& st, int i, const T& v) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, std::nullopt_t> || std::is_same_v<U, std::nullptr_t>) {
    st.bind(i);
  } else if constexpr (is_optional<U>::value) {
    if (v) {
      bind_one(st, i, *v);
    } else {
      st.bind(i);
    }
  } else if constexpr (std::is_same_v<U, bool>) {
    st.bind(i, static_cast<std::int32_t>(v ? 1 : 0));
  } else if constexpr (std::is_integral_v<U>) {
    st.bind(i, static_cast<std::int64_t>(v));
  } else if constexpr (std::is_floating_point_v<U>) {
    st.bind(i, static_cast<double>(v));
  } else if constexpr (std::is_same_v<U, std::string>) {
    st.bind(i, v);
  } else if constexpr (std::is_convertible_v<const U&, std::string_view>) {
    st.bind(i, std::string(std::string_view(v)));
  } else if constexpr (std::is_convertible_v<const U&, std::span<const std::uint8_t>>) {
    const std::span<const std::uint8_t> bytes(v);
    st.bind(i, static_cast<const void*>(bytes.data()), static_cast<int>(bytes.size()));
  } else {
    static_assert(sizeof(U) == 0, "keel::sqlite: no binding for this parameter type");
  }
}

template <class T>
T column_as(const SQLite::Column& c) {
  if constexpr (is_optional<T>::value) {
    if (c.isNull()) return std::nullopt;
    return column_as<typename T::value_type>(c);
  } else if constexpr (std::is_same_v<T, bool>) {
    return c.getInt64() != 0;
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(c.getInt64());
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(c.getDouble());
  } else if constexpr (std::is_same_v<T, std::string>) {
    return c.getString();
  } else if constexpr (std::is_same_v<T, std::vector<std::uint8_t>>) {
    const auto* p = static_cast<const std::uint8_t*>(c.getBlob());
    const auto n = static_cast<std::size_t>(c.getBytes());
    return p == nullptr ? T{} : T(p, p + n);
  } else {
    static_assert(sizeof(T) == 0, "keel::sqlite: no conversion to this result type");
  }
}

template <class... Args>
Result<std::reference_wrapper<SQLite::Statement>> prepare_bound(PooledConnection& conn, std::string_view sql,
                                                                const Args&... args) {
  KEEL_TRY_ASSIGN(SQLite::Statement & st, conn.prepare_cached(sql));
  auto bound = try_sql(
      [&] {
        int i = 0;
        (bind_one(st, ++i, args), ...);
      },
      sql);
  if (!bound) return std::move(bound).error().context("binding parameters");
  return std::ref(st);
}

}  // namespace detail

/// Runs one statement with parameters (through the statement cache); returns
/// the rows it changed.
template <class... Args>
[[nodiscard]] Result<int> execute(PooledConnection& conn, std::string_view sql, const Args&... args) {
  KEEL_TRY_ASSIGN(SQLite::Statement & st, detail::prepare_bound(conn, sql, args...));
  return try_sql([&] { return st.exec(); }, sql);
}

/// The first column of the first row, or std::nullopt when there is no row.
template <class T, class... Args>
[[nodiscard]] Result<std::optional<T>> query_optional(PooledConnection& conn, std::string_view sql,
                                                      const Args&... args) {
  KEEL_TRY_ASSIGN(SQLite::Statement & st, detail::prepare_bound(conn, sql, args...));
  return try_sql(
      [&]() -> std::optional<T> {
        if (!st.executeStep()) return std::nullopt;
        auto v = detail::column_as<T>(st.getColumn(0));
        st.reset();  // do not hold the read snapshot
        return v;
      },
      sql);
}

/// The first column of the first row; Errc::not_found when there is no row.
template <class T, class... Args>
[[nodiscard]] Result<T> query_one(PooledConnection& conn, std::string_view sql, const Args&... args) {
  KEEL_TRY_ASSIGN(auto v, query_optional<T>(conn, sql, args...));
  if (!v) return fail(Errc::not_found, "no row for `{}`", detail::sql_excerpt(sql));
  return std::move(*v);
}

}  // namespace keel::sqlite
