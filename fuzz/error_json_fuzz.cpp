// Fuzzes keel::error_from_json and keel::to_json: arbitrary bytes must give an
// Error or Errc::invalid_argument, never a crash or an exception; whatever
// parses must round-trip through to_json unchanged; and the same bytes used as
// an Error's message and context (not necessarily UTF-8) must still give a
// JSON document that dumps without throwing.
#include <keel/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = keel::error_from_json(text);
  if (r) {
    auto again = keel::error_from_json(keel::to_json(*r));
    if (!again || !(*again == *r)) std::abort();
    (void)fmt::format("{}", *r);
    (void)fmt::format("{:v}", *r);
  } else if (r.error().code() != keel::Errc::invalid_argument) {
    std::abort();
  }
  keel::Error raw(keel::Errc::io, std::string(text));
  raw.context(std::string(text));
  try {
    const std::string dumped = keel::to_json(raw).dump();
    if (nlohmann::json::parse(dumped, nullptr, false).is_discarded()) std::abort();
  } catch (...) {
    std::abort();
  }
  return 0;
}
