// A Result cannot be made from another library's error enum (std::errc):
// only keel::Errc, keel::Error or keel::unexpected<Error> are errors.
#include <keel/result.hpp>

#include <system_error>

keel::Result<int> lookup(bool ok) {
#if KEEL_MISUSE
  if (!ok) return std::errc::timed_out;  // misuse: foreign error enum
#else
  if (!ok) return keel::Errc::timeout;
#endif
  return 1;
}
