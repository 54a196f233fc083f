// keel::Error with KEEL_ERROR_STACKTRACE=1: errors made with a message record
// the call stack they were made on (Boost.Stacktrace), bare kinds do not, and
// `{:v}` prints it. Built only where Boost.Stacktrace is installed; every
// other test runs with the switch off.
#include <keel/result.hpp>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <string>

#if !KEEL_ERROR_STACKTRACE
#error "this test is built with KEEL_ERROR_STACKTRACE=1"
#endif

namespace {

// Out of line, so it is a frame of its own in the recorded stack.
[[gnu::noinline]] keel::Result<int> keel_stacktrace_leaf(int v) {
  if (v < 0) return keel::fail(keel::Errc::invalid_argument, "negative {}", v);
  return v;
}

[[gnu::noinline]] keel::Result<int> keel_stacktrace_middle(int v) {
  KEEL_TRY_ASSIGN(int x, keel_stacktrace_leaf(v));
  return x + 1;
}

}  // namespace

TEST_CASE("an error made with a message records where it was made on the stack", "[result][stacktrace]") {
  auto r = keel_stacktrace_middle(-1);
  REQUIRE_FALSE(r);
  const auto* trace = keel::stacktrace(r.error());
  REQUIRE(trace != nullptr);
  REQUIRE_FALSE(trace->empty());
  // Names are looked up only now, from the recorded addresses.
  const std::string text = boost::stacktrace::to_string(*trace);
  CHECK(text.find("keel_stacktrace_leaf") != std::string::npos);
  CHECK(text.find("keel_stacktrace_middle") != std::string::npos);
  // The leaf is above its caller.
  CHECK(text.find("keel_stacktrace_leaf") < text.find("keel_stacktrace_middle"));
}

TEST_CASE("a bare kind records no stack and stays allocation-free", "[result][stacktrace]") {
  keel::Error bare = keel::Errc::busy;
  CHECK(keel::stacktrace(bare) == nullptr);
  CHECK(fmt::format("{:v}", bare) == "BUSY");
  keel::Result<int> r = keel::fail(keel::Errc::timeout);
  CHECK(keel::stacktrace(r.error()) == nullptr);
}

TEST_CASE("{:v} ends with the stack and {} stays one line", "[result][stacktrace]") {
  auto r = keel_stacktrace_leaf(-2);
  REQUIRE_FALSE(r);
  const std::string verbose = fmt::format("{:v}", r.error());
  const auto at = verbose.find("\n\nStack trace:\n");
  REQUIRE(at != std::string::npos);
  CHECK(verbose.substr(0, verbose.find('\n')).find("INVALID_ARGUMENT: negative -2 [at ") == 0);
  CHECK(verbose.find("keel_stacktrace_leaf", at) != std::string::npos);
  CHECK(fmt::format("{}", r.error()) == "INVALID_ARGUMENT: negative -2");
}

TEST_CASE("copies keep the stack and a wrapped error reports its root's", "[result][stacktrace]") {
  auto r = keel_stacktrace_leaf(-3);
  REQUIRE_FALSE(r);
  const keel::Error copy = r.error();
  REQUIRE(keel::stacktrace(copy) != nullptr);
  CHECK(*keel::stacktrace(copy) == *keel::stacktrace(r.error()));

  const auto* root_trace = keel::stacktrace(r.error());
  const auto root_frames = *root_trace;
  keel::Error outer = std::move(r.error()).wrap(keel::Errc::internal, "table out of sync");
  REQUIRE(keel::stacktrace(outer) != nullptr);
  CHECK(*keel::stacktrace(outer) == root_frames);
  CHECK(outer.payload<keel::Stacktrace>() != nullptr);  // the outer error has its own
}
