// keel/postgres/types.hpp: typed parameters and typed reads of query results.
//
// Part of <keel/postgres.hpp>.
//
//     KEEL_TRY_ASSIGN(keel::pg::Rows rows, conn.exec("SELECT id, name, seen FROM users WHERE id = $1", 42));
//     KEEL_TRY_ASSIGN(std::string name, rows.get<std::string>(0, "name"));
//     KEEL_TRY_ASSIGN(auto seen, rows.get<std::optional<keel::pg::Timestamp>>(0, 2));
//
// Parameters ($1, $2, ...) bind in order:
//
// | C++                                            | sent as                        |
// |------------------------------------------------|--------------------------------|
// | bool                                           | boolean                        |
// | 8/16-bit, 32-bit, 64-bit (and unsigned 32-bit) | smallint, integer, bigint      |
// | unsigned 64-bit                                | numeric                        |
// | float, double                                  | real, double precision         |
// | std::string, std::string_view, const char*     | text of a type the server infers from the SQL |
// | std::vector/std::span of std::uint8_t, std::byte | bytea (binary)               |
// | std::chrono::sys_time<D> (keel::pg::Timestamp) | timestamptz (UTC, microseconds) |
// | std::optional<T> (empty: NULL), std::nullopt, nullptr | T, or NULL              |
//
// Reads convert the text the server sends: rows.get<T>(row, col) or
// rows.get<T>(row, "name") for the same types (strings also as
// std::string_view into the result), and std::optional<T> for a column that
// may be NULL; reading NULL into anything else, a value out of T's range or
// text T cannot hold is Errc::invalid_argument. Timestamps are read from
// ISO output (the pool sets DateStyle = ISO on each connection); a timestamp
// without time zone is taken as UTC.
//
// Thread-safety: a Rows is an immutable value; const members are safe from
// any thread.
#pragma once

#include <keel/postgres/error.hpp>
#include <keel/result.hpp>

#include <fmt/format.h>
#include <libpq-fe.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace keel::pg {

/// A point in time as PostgreSQL keeps it (timestamptz: microseconds, UTC).
using Timestamp = std::chrono::sys_time<std::chrono::microseconds>;

namespace detail {

// Type OIDs of the built-in types keel sends (pg_type.h, stable across versions).
inline constexpr Oid kOidBool = 16;
inline constexpr Oid kOidBytea = 17;
inline constexpr Oid kOidInt8 = 20;
inline constexpr Oid kOidInt2 = 21;
inline constexpr Oid kOidInt4 = 23;
inline constexpr Oid kOidFloat4 = 700;
inline constexpr Oid kOidFloat8 = 701;
inline constexpr Oid kOidTimestamptz = 1184;
inline constexpr Oid kOidNumeric = 1700;

template <class T>
struct is_optional : std::false_type {};
template <class U>
struct is_optional<std::optional<U>> : std::true_type {};

template <class T>
struct is_sys_time : std::false_type {};
template <class D>
struct is_sys_time<std::chrono::sys_time<D>> : std::true_type {};

template <class U>
inline constexpr bool is_bytes_v = std::is_convertible_v<const U&, std::span<const std::uint8_t>> ||
                                   std::is_convertible_v<const U&, std::span<const std::byte>>;

/// One encoded parameter. Text values are NUL-terminated (libpq reads text
/// parameters up to the NUL); `buf` holds numbers and timestamps without
/// allocating. Never moved once encoded (value may point into buf).
struct Param {
  Oid oid = 0;
  const char* value = nullptr;
  int length = 0;
  int format = 0;  // 0 text, 1 binary
  std::array<char, 40> buf{};
  std::string owned;
};

template <class T>
[[nodiscard]] constexpr Oid oid_for() noexcept {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, bool>) {
    return kOidBool;
  } else if constexpr (std::is_integral_v<U>) {
    if constexpr (std::is_signed_v<U> && sizeof(U) <= 2) return kOidInt2;
    if constexpr (std::is_signed_v<U> && sizeof(U) <= 4) return kOidInt4;
    if constexpr (std::is_unsigned_v<U> && sizeof(U) <= 2) return kOidInt4;
    if constexpr (sizeof(U) <= 4 || std::is_signed_v<U>) return kOidInt8;
    return kOidNumeric;
  } else if constexpr (std::is_same_v<U, float>) {
    return kOidFloat4;
  } else if constexpr (std::is_floating_point_v<U>) {
    return kOidFloat8;
  } else if constexpr (is_sys_time<U>::value) {
    return kOidTimestamptz;
  } else if constexpr (is_bytes_v<U>) {
    return kOidBytea;
  } else {
    return 0;  // text: the server infers the type from the statement
  }
}

/// Writes a timestamp as "YYYY-MM-DD HH:MM:SS.ffffff+00" into out (at least
/// 40 chars); returns the length.
template <class D>
std::size_t format_timestamp(std::chrono::sys_time<D> tp, char* out) {
  using namespace std::chrono;
  const auto us = floor<microseconds>(tp);
  const auto day = floor<days>(us);
  const year_month_day ymd{day};
  const hh_mm_ss<microseconds> t{us - day};
  const auto r =
      fmt::format_to_n(out, 39, "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00", static_cast<int>(ymd.year()),
                       static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                       t.hours().count(), t.minutes().count(), t.seconds().count(), t.subseconds().count());
  out[r.size < 39 ? r.size : 39] = '\0';
  return r.size < 39 ? r.size : 39;
}

template <class T>
void encode(Param& p, const T& v) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, std::nullopt_t> || std::is_same_v<U, std::nullptr_t>) {
    p.oid = 0;
    p.value = nullptr;
  } else if constexpr (is_optional<U>::value) {
    if (v) {
      encode(p, *v);
    } else {
      p.oid = oid_for<typename U::value_type>();
      p.value = nullptr;
    }
  } else if constexpr (std::is_same_v<U, bool>) {
    p.oid = kOidBool;
    p.value = v ? "t" : "f";
  } else if constexpr (std::is_same_v<U, char>) {
    static_assert(sizeof(U) == 0, "keel::pg: bind a char as a std::string or an integer type");
  } else if constexpr (std::is_integral_v<U> || std::is_floating_point_v<U>) {
    p.oid = oid_for<U>();
    char* end = p.buf.data();
    if constexpr (std::is_floating_point_v<U>) {
      if (std::isnan(v)) {
        end = fmt::format_to(p.buf.data(), "NaN");
      } else if (std::isinf(v)) {
        end = fmt::format_to(p.buf.data(), "{}", v < 0 ? "-Infinity" : "Infinity");
      } else {
        end = std::to_chars(p.buf.data(), p.buf.data() + p.buf.size() - 1, v).ptr;
      }
    } else {
      end = std::to_chars(p.buf.data(), p.buf.data() + p.buf.size() - 1, v).ptr;
    }
    *end = '\0';
    p.value = p.buf.data();
  } else if constexpr (is_sys_time<U>::value) {
    p.oid = kOidTimestamptz;
    format_timestamp(v, p.buf.data());
    p.value = p.buf.data();
  } else if constexpr (std::is_same_v<U, std::string>) {
    p.value = v.c_str();
  } else if constexpr (std::is_convertible_v<const U&, const char*>) {
    p.value = static_cast<const char*>(v);  // a null pointer is SQL NULL
  } else if constexpr (std::is_convertible_v<const U&, std::string_view>) {
    p.owned.assign(std::string_view(v));
    p.value = p.owned.c_str();
  } else if constexpr (std::is_convertible_v<const U&, std::span<const std::uint8_t>>) {
    const std::span<const std::uint8_t> b(v);
    p.oid = kOidBytea;
    p.format = 1;
    p.value = b.empty() ? "" : reinterpret_cast<const char*>(b.data());
    p.length = static_cast<int>(b.size());
  } else if constexpr (std::is_convertible_v<const U&, std::span<const std::byte>>) {
    const std::span<const std::byte> b(v);
    p.oid = kOidBytea;
    p.format = 1;
    p.value = b.empty() ? "" : reinterpret_cast<const char*>(b.data());
    p.length = static_cast<int>(b.size());
  } else {
    static_assert(sizeof(U) == 0, "keel::pg: no parameter encoding for this type");
  }
}

/// The encoded parameters of one call, laid out the way libpq takes them.
template <std::size_t N>
struct Params {
  std::array<Param, N> p{};
  std::array<Oid, N> oids{};
  std::array<const char*, N> values{};
  std::array<int, N> lengths{};
  std::array<int, N> formats{};

  template <class... Args>
  explicit Params(const Args&... args) {
    std::size_t i = 0;
    (encode(p[i++], args), ...);
    for (std::size_t k = 0; k < N; ++k) {
      oids[k] = p[k].oid;
      values[k] = p[k].value;
      lengths[k] = p[k].length;
      formats[k] = p[k].format;
    }
  }
  Params(const Params&) = delete;
  Params& operator=(const Params&) = delete;
  [[nodiscard]] int count() const noexcept { return static_cast<int>(N); }
  [[nodiscard]] const Oid* oid_data() const noexcept { return N == 0 ? nullptr : oids.data(); }
  [[nodiscard]] const char* const* value_data() const noexcept { return N == 0 ? nullptr : values.data(); }
  [[nodiscard]] const int* length_data() const noexcept { return N == 0 ? nullptr : lengths.data(); }
  [[nodiscard]] const int* format_data() const noexcept { return N == 0 ? nullptr : formats.data(); }
};

// ------------------------------------------------------------- decoding ---

inline int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Parses ISO timestamps: "YYYY-MM-DD[ HH:MM:SS[.f...]][+HH[:MM[:SS]]]".
inline std::optional<Timestamp> parse_timestamp(std::string_view s) {
  using namespace std::chrono;
  auto num = [&](std::size_t pos, std::size_t len, int& out) {
    if (pos + len > s.size()) return false;
    const auto r = std::from_chars(s.data() + pos, s.data() + pos + len, out);
    return r.ec == std::errc() && r.ptr == s.data() + pos + len;
  };
  int y = 0;
  int mo = 0;
  int d = 0;
  if (!num(0, 4, y) || s.size() < 10 || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' || !num(8, 2, d)) {
    return std::nullopt;
  }
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  microseconds tod{0};
  std::size_t i = 10;
  if (i < s.size() && (s[i] == ' ' || s[i] == 'T')) {
    int h = 0;
    int mi = 0;
    int se = 0;
    if (!num(i + 1, 2, h) || s.size() < i + 9 || s[i + 3] != ':' || !num(i + 4, 2, mi) || s[i + 6] != ':' ||
        !num(i + 7, 2, se)) {
      return std::nullopt;
    }
    tod = hours{h} + minutes{mi} + seconds{se};
    i += 9;
    if (i < s.size() && s[i] == '.') {
      ++i;
      std::int64_t frac = 0;
      int digits = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (digits < 6) {
          frac = frac * 10 + (s[i] - '0');
          ++digits;
        }
        ++i;
      }
      while (digits < 6) {
        frac *= 10;
        ++digits;
      }
      tod += microseconds{frac};
    }
  }
  seconds offset{0};
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    const int sign = s[i] == '-' ? -1 : 1;
    int oh = 0;
    int om = 0;
    int os = 0;
    if (!num(i + 1, 2, oh)) return std::nullopt;
    i += 3;
    if (i < s.size() && s[i] == ':') {
      if (!num(i + 1, 2, om)) return std::nullopt;
      i += 3;
      if (i < s.size() && s[i] == ':') {
        if (!num(i + 1, 2, os)) return std::nullopt;
        i += 3;
      }
    }
    offset = sign * (hours{oh} + minutes{om} + seconds{os});
  }
  if (i != s.size()) return std::nullopt;  // " BC", "infinity", trailing garbage
  return Timestamp{sys_days{ymd}.time_since_epoch() + tod - offset};
}

}  // namespace detail

/// The rows (or command status) of one statement: owns the libpq result.
/// Move-only. Row and column indexes start at 0.
class Rows {
 public:
  Rows() noexcept = default;
  explicit Rows(PGresult* res) noexcept : res_(res) {}

  /// Rows returned (0 for a command).
  [[nodiscard]] std::size_t size() const noexcept {
    return res_ ? static_cast<std::size_t>(PQntuples(res_.get())) : 0;
  }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  /// Columns of each row.
  [[nodiscard]] std::size_t columns() const noexcept {
    return res_ ? static_cast<std::size_t>(PQnfields(res_.get())) : 0;
  }
  /// The rows an INSERT, UPDATE, DELETE, MERGE, SELECT, COPY ... reported (0 otherwise).
  [[nodiscard]] std::uint64_t affected() const noexcept {
    if (!res_) return 0;
    const std::string_view t = PQcmdTuples(res_.get());
    std::uint64_t n = 0;
    std::from_chars(t.data(), t.data() + t.size(), n);
    return n;
  }
  /// The command tag ("INSERT 0 1", "SELECT 3", ...).
  [[nodiscard]] std::string_view command() const noexcept {
    return res_ ? std::string_view(PQcmdStatus(res_.get())) : std::string_view();
  }
  /// A column's name; "" when out of range.
  [[nodiscard]] std::string_view column_name(std::size_t col) const noexcept {
    if (col >= columns()) return {};
    const char* n = PQfname(res_.get(), static_cast<int>(col));
    return n != nullptr ? n : "";
  }
  /// The index of a column by name (exact, case-sensitive); Errc::not_found when absent.
  [[nodiscard]] Result<std::size_t> column(std::string_view name) const {
    for (std::size_t c = 0, n = columns(); c < n; ++c) {
      if (column_name(c) == name) return c;
    }
    return fail(Errc::not_found, "no column \"{}\" in the result", name);
  }
  /// True when the value is NULL (or out of range).
  [[nodiscard]] bool is_null(std::size_t row, std::size_t col) const noexcept {
    if (row >= size() || col >= columns()) return true;
    return PQgetisnull(res_.get(), static_cast<int>(row), static_cast<int>(col)) != 0;
  }

  /// The value at (row, col) as T (see the header for the types).
  template <class T>
  [[nodiscard]] Result<T> get(std::size_t row, std::size_t col) const {
    if (row >= size() || col >= columns()) {
      return fail(Errc::invalid_argument, "no value at row {} column {} ({} rows of {} columns)", row, col,
                  size(), columns());
    }
    const int r = static_cast<int>(row);
    const int c = static_cast<int>(col);
    if (PQgetisnull(res_.get(), r, c) != 0) {
      if constexpr (detail::is_optional<T>::value) {
        return T{};
      } else {
        return fail(Errc::invalid_argument, "column \"{}\" is NULL in row {}; read it as std::optional",
                    column_name(col), row);
      }
    } else {
      const std::string_view text(PQgetvalue(res_.get(), r, c),
                                  static_cast<std::size_t>(PQgetlength(res_.get(), r, c)));
      if constexpr (detail::is_optional<T>::value) {
        auto v = convert<typename T::value_type>(text, col);
        if (!v) return std::move(v).error();
        return T(std::move(*v));
      } else {
        return convert<T>(text, col);
      }
    }
  }
  /// The value in the named column of `row`.
  template <class T>
  [[nodiscard]] Result<T> get(std::size_t row, std::string_view name) const {
    KEEL_TRY_ASSIGN(std::size_t col, column(name));
    return get<T>(row, col);
  }
  /// The first column of the first row; Errc::not_found when there is no row.
  template <class T>
  [[nodiscard]] Result<T> scalar() const {
    if (empty()) return fail(Errc::not_found, "the statement returned no row");
    return get<T>(0, 0);
  }

  /// The libpq result (owned by this Rows; do not PQclear it).
  [[nodiscard]] PGresult* native_handle() const noexcept { return res_.get(); }
  explicit operator bool() const noexcept { return res_ != nullptr; }

 private:
  struct Clear {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
  };

  template <class T>
  Result<T> convert(std::string_view text, std::size_t col) const {
    auto bad = [&](std::string_view what) {
      return fail(Errc::invalid_argument, "column \"{}\": \"{}\" is not {}", column_name(col),
                  text.substr(0, 64), what);
    };
    if constexpr (std::is_same_v<T, std::string>) {
      return std::string(text);
    } else if constexpr (std::is_same_v<T, std::string_view>) {
      return text;
    } else if constexpr (std::is_same_v<T, bool>) {
      if (text == "t" || text == "true") return true;
      if (text == "f" || text == "false") return false;
      return bad("a boolean");
    } else if constexpr (std::is_integral_v<T>) {
      T v{};
      const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
      if (r.ec == std::errc::result_out_of_range)
        return bad(fmt::format("in range of a {}-byte integer", sizeof(T)));
      if (r.ec != std::errc() || r.ptr != text.data() + text.size()) return bad("an integer");
      return v;
    } else if constexpr (std::is_floating_point_v<T>) {
      if (text == "NaN") return std::numeric_limits<T>::quiet_NaN();
      if (text == "Infinity") return std::numeric_limits<T>::infinity();
      if (text == "-Infinity") return -std::numeric_limits<T>::infinity();
      T v{};
      const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
      if (r.ec != std::errc() || r.ptr != text.data() + text.size()) return bad("a number");
      return v;
    } else if constexpr (std::is_same_v<T, std::vector<std::uint8_t>> ||
                         std::is_same_v<T, std::vector<std::byte>>) {
      if (text.size() < 2 || text[0] != '\\' || text[1] != 'x' || text.size() % 2 != 0) {
        return bad("bytea in hex format");
      }
      T out;
      out.reserve((text.size() - 2) / 2);
      for (std::size_t i = 2; i < text.size(); i += 2) {
        const int hi = detail::hex_value(text[i]);
        const int lo = detail::hex_value(text[i + 1]);
        if (hi < 0 || lo < 0) return bad("bytea in hex format");
        out.push_back(static_cast<typename T::value_type>((hi << 4) | lo));
      }
      return out;
    } else if constexpr (detail::is_sys_time<T>::value) {
      const auto ts = detail::parse_timestamp(text);
      if (!ts) return bad("an ISO timestamp");
      return std::chrono::time_point_cast<typename T::duration>(*ts);
    } else {
      static_assert(sizeof(T) == 0, "keel::pg: no conversion to this type");
    }
  }

  std::unique_ptr<PGresult, Clear> res_;
};

}  // namespace keel::pg
