#include <keel/json.hpp>  // first: the header stands alone

#include <rapidcheck/catch.h>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

using keel::Errc;
using keel::Error;

TEST_CASE("to_json gives the structured error response", "[json]") {
  Error e(Errc::not_found, "no user 7");
  e.context("loading profile").context("GET /users/7");
  const auto j = keel::to_json(e);
  CHECK(
      j.dump() ==
      R"({"code":"NOT_FOUND","context":["GET /users/7","loading profile"],"message":"no user 7","status":404})");
  const nlohmann::json adl = e;
  CHECK(adl == j);
  CHECK(keel::to_json(Error(Errc::timeout)).dump() ==
        R"({"code":"TIMEOUT","context":[],"message":"","status":504})");
}

TEST_CASE("error_from_json rebuilds an equal Error", "[json]") {
  Error e(Errc::auth_failed, "bad password");
  e.context("unlocking vault");
  auto back = keel::error_from_json(keel::to_json(e));
  REQUIRE(back);
  CHECK(*back == e);
  CHECK(fmt::format("{}", *back) == fmt::format("{}", e));
  const auto via_adl = keel::to_json(e).get<Error>();
  CHECK(via_adl == e);
  auto from_text = keel::error_from_json(std::string_view(R"({"code":"BUSY"})"));
  REQUIRE(from_text);
  CHECK(*from_text == Error(Errc::busy));
}

TEST_CASE("error_from_json refuses malformed input without throwing", "[json]") {
  const std::vector<std::string> bad = {
      "",
      "not json",
      "[]",
      "42",
      R"({})",
      R"({"code":7})",
      R"({"code":"NOPE"})",
      R"({"code":"not_found"})",
      R"({"code":"NOT_FOUND","message":3})",
      R"({"code":"NOT_FOUND","context":"x"})",
      R"({"code":"NOT_FOUND","context":[1]})",
      R"({"code":"NOT_FOUND","message":"x")",
  };
  for (const auto& text : bad) {
    INFO(text);
    auto r = keel::error_from_json(std::string_view(text));
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::invalid_argument);
  }
  CHECK_THROWS_AS(nlohmann::json::parse(R"({"code":"NOPE"})").get<Error>(), nlohmann::json::exception);
}

TEST_CASE("JSON round trip property", "[json][property]") {
  rc::prop("error_from_json(to_json(e)) == e", [] {
    const auto kind = static_cast<Errc>(*rc::gen::inRange(1, keel::kErrcCount + 1));
    const auto msg = *rc::gen::arbitrary<std::string>();
    const auto ctx = *rc::gen::container<std::vector<std::string>>(rc::gen::nonEmpty<std::string>());
    Error e = msg.empty() ? Error(kind) : Error(kind, msg);
    for (const auto& c : ctx) e.context(c);
    const auto j = keel::to_json(e);
    RC_ASSERT(j.at("status").get<int>() == keel::http_status(kind));
    // Through text as well: what crosses an API boundary is bytes.
    auto back = keel::error_from_json(
        std::string_view(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    RC_ASSERT(back.has_value());
    RC_ASSERT(back->code() == kind);
    RC_ASSERT(back->contexts().size() == ctx.size());
  });
}
