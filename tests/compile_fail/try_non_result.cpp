// KEEL_TRY / KEEL_TRY_ASSIGN only take a keel::Result (an optional or a bool
// has no error to propagate).
#include <keel/result.hpp>

#include <optional>

keel::Result<int> parse(bool ok) {
  if (!ok) return keel::Errc::invalid_argument;
  return 1;
}

keel::Result<int> caller() {
#if KEEL_MISUSE
  std::optional<int> maybe = 3;
  KEEL_TRY_ASSIGN(const int v, maybe);
#else
  KEEL_TRY_ASSIGN(const int v, parse(true));
#endif
  return v;
}
