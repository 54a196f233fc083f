// keel::Result beside std::expected<T, keel::Error> (C++23): both ways.
#include <keel/result.hpp>  // first: the header stands alone

#include <catch2/catch.hpp>

#include <string>
#include <utility>

#if KEEL_HAS_STD_EXPECTED

using keel::Errc;
using keel::Error;
using keel::Result;

namespace {
std::expected<int, Error> std_parse(int v) {
  if (v < 0) return std::unexpected(Error(Errc::invalid_argument, "negative"));
  return v * 2;
}
Result<int> keel_step(int v) {
  const int x = KEEL_TRY(Result<int>(std_parse(v)));
  return x + 1;
}
}  // namespace

TEST_CASE("Result from std::expected and back", "[result][expected]") {
  CHECK(*keel_step(2) == 5);
  CHECK(keel_step(-1).error() == Error(Errc::invalid_argument, "negative"));

  const Result<std::string> ok = std::string("v");
  const std::expected<std::string, Error> e1 = ok;
  CHECK(*e1 == "v");
  const Result<std::string> bad = keel::fail(Errc::busy, "held");
  std::expected<std::string, Error> e2 = bad.to_expected();
  REQUIRE_FALSE(e2.has_value());
  CHECK(e2.error() == Error(Errc::busy, "held"));
  const Result<std::string> back = std::move(e2);
  CHECK(back.error().message() == "held");

  const Result<void> v_ok;
  const std::expected<void, Error> ev = v_ok;
  CHECK(ev.has_value());
  const Result<void> v_bad = std::expected<void, Error>(std::unexpect, Error(Errc::closed));
  CHECK(v_bad == Errc::closed);
}

#else

TEST_CASE("Result from std::expected and back", "[result][expected]") {
  WARN("this standard library has no std::expected; nothing to check");
}

#endif
