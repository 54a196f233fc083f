// keel::fail checks its format string against its arguments at compile time,
// as fmt::format does.
#include <keel/result.hpp>

keel::Result<int> lookup(int id) {
#if KEEL_MISUSE
  return keel::fail(keel::Errc::not_found, "no user {} in {}", id);  // one argument short
#else
  return keel::fail(keel::Errc::not_found, "no user {}", id);
#endif
}
