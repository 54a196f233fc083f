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
      R"({"code":null})",
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
  CHECK_THROWS_AS(nlohmann::json::parse(R"({"code":7})").get<Error>(), nlohmann::json::exception);
}

TEST_CASE("an unknown code decodes as UNKNOWN and keeps the text", "[json]") {
  // A newer peer's kind: Abseil and gRPC keep the message under UNKNOWN.
  auto r = keel::error_from_json(std::string_view(
      R"({"code":"QUOTA_SOFT_LIMIT","status":429,"message":"slow down","context":["b","a"]})"));
  REQUIRE(r);
  CHECK(r->code() == Errc::unknown);
  CHECK(r->message() == "slow down");
  CHECK(r->contexts() == std::vector<std::string_view>{"b", "a"});
  CHECK(fmt::format("{}", *r) == "b: a: UNKNOWN: slow down");
  for (const char* code : {"NOPE", "not_found", ""}) {
    INFO(code);
    auto k = keel::error_from_json(nlohmann::json{{"code", code}});
    REQUIRE(k);
    CHECK(k->code() == Errc::unknown);
  }
}

TEST_CASE("errors about hostile input quote a bounded excerpt of it", "[json]") {
  const std::string huge(1 << 20, 'A');
  auto r = keel::error_from_json(nlohmann::json{{"code", "NOT_FOUND"}, {"message", 3}, {"x", huge}});
  REQUIRE_FALSE(r);
  CHECK(r.error().to_string().size() < 200);
  CHECK(keel::detail::excerpt(huge).size() == 64 + 3);
  CHECK(keel::detail::excerpt("a\nb\x01") == "a?b?");
}

TEST_CASE("to_json never throws on invalid UTF-8, and dump() neither", "[json]") {
  // An OS error text or a file name is bytes, not necessarily UTF-8.
  Error e(Errc::io, std::string("open \xff\xfe.txt: ") + "\xc3\x28 bad");
  e.context(std::string("reading /tmp/\xe2\x82"));  // truncated 3-byte sequence
  std::string text;
  REQUIRE_NOTHROW(text = keel::to_json(e).dump());
  const auto back = nlohmann::json::parse(text);
  CHECK(back.at("message") == "open \xef\xbf\xbd\xef\xbf\xbd.txt: \xef\xbf\xbd( bad");
  CHECK(back.at("context").at(0) == "reading /tmp/\xef\xbf\xbd");
  // Valid multi-byte text is kept as is.
  const std::string valid = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  CHECK(keel::detail::valid_utf8(valid) == valid);
  // Overlong forms, surrogates and code points above U+10FFFF are invalid.
  CHECK(keel::detail::valid_utf8("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(keel::detail::valid_utf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(keel::detail::valid_utf8("\xf4\x90\x80\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(keel::detail::valid_utf8("\xf0\x9f\x98") == "\xef\xbf\xbd");  // one maximal subpart
}

TEST_CASE("JSON round trip property", "[json][property]") {
  rc::prop("error_from_json(to_json(e)) keeps code, message and context text", [] {
    const auto kind = static_cast<Errc>(*rc::gen::inRange(1, keel::kErrcCount + 1));
    // Printable ASCII and valid UTF-8 both survive byte for byte.
    const auto msg = *rc::gen::oneOf(rc::gen::arbitrary<std::string>(),
                                     rc::gen::element<std::string>("caf\xc3\xa9", "\xe2\x82\xac 5", ""));
    const auto ctx = *rc::gen::container<std::vector<std::string>>(rc::gen::nonEmpty<std::string>());
    Error e = msg.empty() ? Error(kind) : Error(kind, msg);
    for (const auto& c : ctx) e.context(c);
    const auto j = keel::to_json(e);
    RC_ASSERT(j.at("status").get<int>() == keel::http_status(kind));
    // Through text as well: what crosses an API boundary is bytes.
    auto back = keel::error_from_json(std::string_view(j.dump()));
    RC_ASSERT(back.has_value());
    RC_ASSERT(back->code() == kind);
    RC_ASSERT(back->message() == keel::detail::valid_utf8(msg));
    const auto got = back->contexts();
    RC_ASSERT(got.size() == ctx.size());
    for (std::size_t i = 0; i < ctx.size(); ++i) {
      RC_ASSERT(got[i] == keel::detail::valid_utf8(ctx[ctx.size() - 1 - i]));
    }
  });
  rc::prop("any bytes: to_json's dump never throws and parses back", [](const std::string& bytes) {
    const Error e(Errc::io, bytes);
    std::string text;
    try {
      text = keel::to_json(Error(e).context(bytes)).dump();
    } catch (const std::exception& ex) {
      RC_FAIL(ex.what());
    }
    const auto j = nlohmann::json::parse(text, nullptr, false);
    RC_ASSERT(!j.is_discarded());
    const auto fixed = keel::detail::valid_utf8(bytes);
    RC_ASSERT(keel::detail::valid_utf8(fixed) == fixed);  // idempotent
  });
}

TEST_CASE("a wrapped cause survives the round trip; nesting is bounded", "[json]") {
  Error root(Errc::not_found, "no row 7");
  root.context("reading users");
  Error e = std::move(root).wrap(Errc::internal, "user table out of sync");
  e.context("GET /users/7");
  const auto j = keel::to_json(e);
  CHECK(j.at("cause").at("code") == "NOT_FOUND");
  CHECK(j.at("cause").at("context").at(0) == "reading users");
  auto back = keel::error_from_json(std::string_view(j.dump()));
  REQUIRE(back);
  CHECK(*back == e);
  CHECK(back->root_code() == Errc::not_found);
  CHECK(fmt::format("{}", *back) == fmt::format("{}", e));
  CHECK_FALSE(keel::to_json(Error(Errc::busy)).contains("cause"));

  std::string deep;
  for (int i = 0; i < 40; ++i) deep += R"({"code":"IO","cause":)";
  deep += R"({"code":"IO"})";
  deep += std::string(40, '}');
  auto r = keel::error_from_json(std::string_view(deep));
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == Errc::invalid_argument);
  auto bad_cause = keel::error_from_json(std::string_view(R"({"code":"IO","cause":3})"));
  REQUIRE_FALSE(bad_cause);
  CHECK(bad_cause.error().code() == Errc::invalid_argument);
}

namespace payload_test {
struct RetryAfter {
  long long ms = 0;
};
void to_json(nlohmann::json& j, const RetryAfter& r) {
  j = r.ms;
}
void from_json(const nlohmann::json& j, RetryAfter& r) {
  r.ms = j.get<long long>();
}
struct SqlState {
  std::string code;
};
void to_json(nlohmann::json& j, const SqlState& s) {
  j = s.code;
}
void from_json(const nlohmann::json& j, SqlState& s) {
  s.code = j.get<std::string>();
}
struct Unregistered {
  int v = 0;
};
}  // namespace payload_test

TEST_CASE("registered payloads go through JSON; others are left out", "[json][payload]") {
  REQUIRE(keel::register_json_payload<payload_test::RetryAfter>("retry_after_ms"));
  REQUIRE(keel::register_json_payload<payload_test::RetryAfter>("retry_after_ms"));  // again: harmless
  CHECK(keel::register_json_payload<payload_test::SqlState>("retry_after_ms").error().code() ==
        Errc::already_exists);  // one name, one type
  Error e(Errc::resource_exhausted, "slow down");
  e.attach(payload_test::RetryAfter{1500}).attach(payload_test::Unregistered{1});
  const auto j = keel::to_json(e);
  CHECK(j.at("payload") == nlohmann::json{{"retry_after_ms", 1500}});
  auto back = keel::error_from_json(std::string_view(j.dump()));
  REQUIRE(back);
  REQUIRE(back->payload<payload_test::RetryAfter>() != nullptr);
  CHECK(back->payload<payload_test::RetryAfter>()->ms == 1500);
  CHECK(back->payload<payload_test::Unregistered>() == nullptr);
  // A newer peer's payload is skipped; a registered one of the wrong shape is refused.
  CHECK(keel::error_from_json(std::string_view(R"({"code":"BUSY","payload":{"later":{"x":1}}})")));
  auto bad =
      keel::error_from_json(std::string_view(R"({"code":"BUSY","payload":{"retry_after_ms":"soon"}})"));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == Errc::invalid_argument);
  CHECK_FALSE(keel::error_from_json(std::string_view(R"({"code":"BUSY","payload":[1]})")));
}

TEST_CASE("the HTTP status lives at the JSON boundary, the old spellings still work", "[json]") {
  const keel::Error e(keel::Errc::not_found, "no user 7");
  CHECK(keel::http_status(e) == 404);
  CHECK(keel::http_status(keel::Errc::timeout) == 504);
  CHECK(e.http_status() == 404);  // the member, kept for existing code
  CHECK(keel::to_json(e).at("status").get<int>() == keel::http_status(e));
  CHECK(keel::http_status(keel::Error(keel::Errc::config)) == 500);
}
