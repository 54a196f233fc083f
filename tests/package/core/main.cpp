// A user of keel::core alone: one header, one target, fmt and Threads only.
#include <keel/core.hpp>

#include <fmt/format.h>

namespace {
keel::Result<int> parse(int raw) {
  if (raw < 0) return keel::fail(keel::Errc::invalid_argument, "negative: {}", raw);
  return raw * 2;
}
keel::Result<int> twice(int raw) {
  KEEL_TRY_ASSIGN(int v, parse(raw));
  return v + 1;
}
}  // namespace

int main() {
  auto ok = twice(20);
  auto bad = twice(-1);
  if (!ok || *ok != 41 || bad || bad.error().code() != keel::Errc::invalid_argument) return 1;
  fmt::print("keel core consumer: {} / {}\n", *ok, bad.error());
  return 0;
}
