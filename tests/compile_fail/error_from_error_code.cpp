// A foreign std::error_code must not become a keel::Error silently: the
// conversion is explicit (keel::Error::from) because it maps kinds.
#include <keel/result.hpp>

#include <system_error>

keel::Error convert(std::error_code ec) {
#if KEEL_MISUSE
  keel::Error e = ec;  // misuse: implicit conversion between unrelated error types
  return e;
#else
  return keel::Error::from(ec);
#endif
}
