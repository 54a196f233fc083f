// Discarding a keel::Result must not compile (under -Werror): the error
// would be lost silently.
#include <keel/result.hpp>

keel::Result<int> parse_port(int raw) {
  if (raw <= 0) return keel::fail(keel::Errc::invalid_argument, "port {} out of range", raw);
  return raw;
}

int use() {
#if KEEL_MISUSE
  parse_port(80);  // misuse: the result is dropped
  return 0;
#else
  return parse_port(80).value_or(0);
#endif
}
