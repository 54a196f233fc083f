// keel-tour: a short demonstration of every keel module (what `make demo`
// runs). Each section says what it showed.
#include "tour/tour.hpp"

#include <fmt/format.h>

int main() {
  struct Section {
    const char* name;
    bool (*run)();
  };
  const Section sections[] = {
      {"result", tour::result}, {"channel", tour::channel},     {"lockfree", tour::lockfree},
      {"simd", tour::simd},     {"sqlite", tour::sqlite},       {"postgres", tour::postgres},
      {"crypto", tour::crypto}, {"websocket", tour::websocket},
  };
  int failed = 0;
  for (const auto& s : sections) {
    fmt::print("\n== {} ==\n", s.name);
    if (!s.run()) {
      fmt::print("!! {} section failed\n", s.name);
      ++failed;
    }
  }
  if (failed != 0) return 1;
  fmt::print("\ntour complete\n");
  return 0;
}
