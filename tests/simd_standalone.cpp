// <keel/simd.hpp> needs nothing beyond the standard library: this file is
// compiled with only keel's include/ directory on the include path, with
// fmt's headers shadowed by ones that fail to compile, and linked against
// nothing but the C++ runtime.
#include <keel/simd.hpp>

#ifdef FMT_VERSION
#error "<keel/simd.hpp> reached fmt"
#endif

#include <cstdio>
#include <string_view>

int main() {
  namespace ks = keel::simd;
  const std::string_view text = "GET /Index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
  const ks::MultiFinder finder({"host:", "HTTP/"});
  const bool ok = ks::find(text, '\n') == 25 && ks::count(text, '\n') == 3 && ks::find(text, "Host") == 26 &&
                  ks::rfind(text, "\r\n") == 45 && ks::find_icase(text, "INDEX") == 5 &&
                  finder.find(text) == ks::MultiMatch{16, 1};
  std::printf("simd standalone (%.*s): %s\n", static_cast<int>(ks::active_isa().size()),
              ks::active_isa().data(), ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
