// Fuzzes keel::error_from_json: arbitrary bytes must give an Error or
// Errc::invalid_argument, never a crash or an exception; whatever parses must
// round-trip through to_json unchanged.
#include <keel/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = keel::error_from_json(text);
  if (!r) {
    if (r.error().code() != keel::Errc::invalid_argument) std::abort();
    return 0;
  }
  auto again = keel::error_from_json(keel::to_json(*r));
  if (!again || !(*again == *r)) std::abort();
  (void)fmt::format("{}", *r);
  return 0;
}
