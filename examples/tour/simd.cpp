#include <keel/simd.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "tour.hpp"

// Splitting an HTTP request head the way a protocol parser does.
bool tour::simd() {
  namespace ks = keel::simd;
  const std::string_view request =
      "GET /metrics?window=5m HTTP/1.1\r\n"
      "Host: api.example.com\r\n"
      "User-Agent: keel-tour/1.0\r\n"
      "Accept: application/json\r\n"
      "\r\n"
      "(body)";
  fmt::print("kernels in use: {} (KEEL_SIMD=scalar|sse2|avx2|avx512 to force one)\n", ks::active_isa());

  const std::size_t head_end = ks::find(request, "\r\n\r\n");  // substring search
  const std::string_view head = request.substr(0, head_end);
  const std::size_t lines = ks::count(head, '\n') + 1;
  fmt::print("head is {} bytes, {} lines\n", head.size(), lines);

  const std::size_t query = ks::find_first_of(head, "?#");  // end of the path
  const std::size_t path_end = ks::find(head, ' ');
  fmt::print("request line: method '{}', path '{}'\n", head.substr(0, path_end),
             head.substr(path_end + 1, query - path_end - 1));

  std::size_t line_start = ks::find(head, '\n') + 1;  // skip the request line
  std::size_t headers = 0;
  for (std::size_t eol : ks::matches(head, '\n')) {
    if (eol < line_start) continue;
    const std::string_view line = head.substr(line_start, eol - line_start - 1);  // drop '\r'
    const std::size_t colon = ks::find(line, ':');
    fmt::print("  header {:<10} = {}\n", line.substr(0, colon), line.substr(colon + 2));
    line_start = eol + 1;
    ++headers;
  }
  const std::string_view last = head.substr(line_start);
  fmt::print("  header {:<10} = {}\n", last.substr(0, ks::find(last, ':')),
             last.substr(ks::find(last, ':') + 2));
  ++headers;

  // The same answers as std::string_view's own (slower) searches.
  const bool ok = head_end == request.find("\r\n\r\n") && lines == 4 && headers == 3 &&
                  ks::rfind(request, '\n') == request.rfind('\n') &&
                  head.substr(path_end + 1, query - path_end - 1) == "/metrics";
  fmt::print("found the blank line at {}, {} headers: {}\n", head_end, headers, ok ? "ok" : "WRONG");
  return ok;
}
