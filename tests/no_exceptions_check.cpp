// The error core built with -fno-exceptions: every header of it compiles, and
// the main operations behave as with exceptions. A plain program (Catch2
// needs exceptions): it prints what failed and exits non-zero.
#include <keel/backoff.hpp>
#include <keel/errc.hpp>
#include <keel/error.hpp>
#include <keel/result.hpp>
#if defined(KEEL_CHECK_JSON)
#include <keel/json.hpp>
#endif
#if defined(KEEL_CHECK_LOG)
#include <keel/log.hpp>
#endif

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <system_error>

#if KEEL_HAS_EXCEPTIONS
#error "this file must be built with -fno-exceptions"
#endif

namespace {

int failures = 0;

void check(bool ok, const char* what, int line) {
  if (!ok) {
    std::fprintf(stderr, "no_exceptions_check.cpp:%d: FAILED: %s\n", line, what);
    ++failures;
  }
}
#define CHECK(...) check(static_cast<bool>(__VA_ARGS__), #__VA_ARGS__, __LINE__)

keel::Result<int> leaf(int v) {
  if (v < 0) return keel::fail(keel::Errc::invalid_argument, "negative {}", v);
  return v + 1;
}
keel::Result<int> middle(int v) {
  KEEL_TRY_ASSIGN(const int x, leaf(v).context("in middle"));
  const int y = KEEL_TRY(leaf(x));
  return y * 2;
}

}  // namespace

int main() {
  CHECK(*middle(1) == 6);
  const auto bad = middle(-1);
  CHECK(!bad);
  CHECK(bad.error().to_string() == "in middle: INVALID_ARGUMENT: negative -1");

  keel::Result<std::string> r = std::string("value");
  const keel::Result<std::string> e = keel::fail(keel::Errc::busy, "held");
  r = e;
  CHECK(!r && r.error().code() == keel::Errc::busy);
  r.emplace("again");
  CHECK(r && *r == "again");
  keel::Result<void> v;
  CHECK(v.has_value());

  CHECK(std::make_error_code(std::errc::timed_out) == keel::Errc::timeout);
  CHECK(keel::Error::from(std::make_error_code(std::errc::too_many_files_open)).code() ==
        keel::Errc::resource_exhausted);

  keel::Backoff backoff({.initial = std::chrono::milliseconds(1),
                         .factor = 2.0,
                         .max = std::chrono::milliseconds::max(),
                         .jitter = false},
                        1);
  for (int i = 0; i < 70; ++i) CHECK(backoff.next().count() >= 0);

#if defined(KEEL_CHECK_JSON)
  keel::Error je(keel::Errc::not_found, "no \xff user");
  const std::string text = keel::to_json(je).dump();
  CHECK(text.find("NOT_FOUND") != std::string::npos);
  const auto back = keel::error_from_json(std::string_view("{\"code\":\"LATER_KIND\",\"message\":\"m\"}"));
  CHECK(back && back->code() == keel::Errc::unknown && back->message() == "m");
  CHECK(!keel::error_from_json(std::string_view("not json")));
#endif
#if defined(KEEL_CHECK_LOG)
  CHECK(keel::log::logger() != nullptr);
  CHECK(!keel::log::parse_level("shouty"));
#endif

  if (failures == 0) std::puts("no_exceptions_check: all passed");
  return failures == 0 ? 0 : 1;
}
