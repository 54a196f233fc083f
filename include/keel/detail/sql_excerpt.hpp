// SQL as error messages quote it, for the SQLite and PostgreSQL modules.
// Depends on the standard library only.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace keel::detail {

/// SQL as it appears in an error's context: whitespace runs folded, cut at 200 chars.
[[nodiscard]] inline std::string sql_excerpt(std::string_view sql) {
  constexpr std::size_t kMax = 200;
  std::string out;
  out.reserve(sql.size() < kMax ? sql.size() : kMax + 3);
  bool space = false;
  for (char c : sql) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    if (out.size() >= kMax) {
      out += "...";
      break;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace keel::detail
