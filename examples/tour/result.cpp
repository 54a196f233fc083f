#include <keel/json.hpp>
#include <keel/result.hpp>

#include "tour.hpp"

namespace {
keel::Result<int> parse_port(std::string_view text) {
  int port = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return keel::fail(keel::Errc::invalid_argument, "port \"{}\" is not a number", text);
    port = port * 10 + (c - '0');
    if (port > 65535) return keel::fail(keel::Errc::invalid_argument, "port {} is out of range", text);
  }
  return port;
}
keel::Result<int> load_port(std::string_view text) {
  KEEL_TRY_ASSIGN(int port, parse_port(text).context("reading listen.port"));
  return port;
}
}  // namespace

bool tour::result() {
  auto ok = load_port("8080");
  auto bad = load_port("80a");
  fmt::print("load_port(\"8080\") -> {}\n", ok.value_or(-1));
  fmt::print("load_port(\"80a\")  -> {}\n", bad.error());
  fmt::print("as JSON: {}\n", keel::to_json(bad.error()).dump());
  fmt::print("sizeof(keel::Error) = {}, sizeof(keel::Result<int>) = {}\n", sizeof(keel::Error),
             sizeof(keel::Result<int>));
  fmt::print("showed: Result<T>, KEEL_TRY_ASSIGN, context chains, the JSON error response\n");
  return ok && *ok == 8080 && !bad && bad.error().code() == keel::Errc::invalid_argument;
}
