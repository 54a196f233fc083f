// keel/json.hpp: keel::Error as JSON, the structured error response for an
// API or IPC boundary (target keel::json, on nlohmann_json).
//
//     nlohmann::json body = keel::to_json(err);
//     // {"code":"NOT_FOUND","status":404,"message":"no user 7","context":["loading profile"]}
//     auto back = keel::error_from_json(body);        // Result<Error>, never throws
//     nlohmann::json j = err;  keel::Error e = j.get<keel::Error>();   // ADL forms
//
// "context" lists the frames outermost first, as the one-line format does.
// The source location is deliberately not serialised: it is an internal
// detail that does not belong in a response. Round trip: error_from_json(
// to_json(e)) == e (same code, message and context).
//
// A code this build does not know (a newer peer's kind) decodes as
// Errc::unknown with its message and context kept, as Abseil and gRPC treat
// an unknown status code. to_json never throws: text that is not valid UTF-8
// (a file name, an OS error message) has each invalid sequence replaced by
// U+FFFD, so dump() always succeeds.
//
// Thread-safety: pure functions. error_from_json takes untrusted input: any
// malformed document gives Errc::invalid_argument, never an exception, and an
// error about it quotes at most 64 bytes of it. The header compiles with
// -fno-exceptions (the ADL from_json then aborts on malformed input).
#pragma once

#include <keel/detail/http_status.hpp>
#include <keel/result.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel {

namespace detail {
/// `text` as valid UTF-8: each maximal invalid subsequence becomes U+FFFD
/// (the W3C/Unicode "substitution of maximal subparts" practice). Valid text
/// is copied unchanged.
[[nodiscard]] inline std::string valid_utf8(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char b = byte(i);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;  // range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;  // no overlong forms
      if (b == 0xED) hi = 0x9F;  // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;  // no overlong forms
      if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    }
    std::size_t good = len == 0 ? 0 : 1;  // bytes of a valid prefix seen
    while (good != 0 && good < len && i + good < text.size()) {
      const unsigned char c = byte(i + good);
      const unsigned char min = good == 1 ? lo : 0x80;
      const unsigned char max = good == 1 ? hi : 0xBF;
      if (c < min || c > max) break;
      ++good;
    }
    if (len != 0 && good == len) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      i += good == 0 ? 1 : good;
    }
  }
  return out;
}
}  // namespace detail

namespace detail {
struct JsonPayloadCodec {
  const void* type;
  std::string name;
  nlohmann::json (*encode)(const void* value);
  bool (*decode)(const nlohmann::json& j, Error& into);
};
struct JsonPayloadRegistry {
  std::mutex mu;
  std::vector<JsonPayloadCodec> codecs;
};
inline JsonPayloadRegistry& json_payload_registry() {
  static JsonPayloadRegistry r;
  return r;
}
}  // namespace detail

/// Gives Error payloads of type P (see Error::attach) a JSON form, written by
/// to_json as "payload":{"<name>": <P as JSON>} and read back by
/// error_from_json; P needs nlohmann's to_json/from_json. Call it once at
/// start-up per type (again with the same name: harmless); a name can only
/// mean one type. Payloads of unregistered types are left out of JSON, and an
/// unknown name in a document is skipped (a newer peer's payload).
template <class P>
[[nodiscard]] Result<void> register_json_payload(std::string name) {
  auto& reg = detail::json_payload_registry();
  const std::lock_guard lock(reg.mu);
  for (const auto& c : reg.codecs) {
    if (c.name == name && c.type == &detail::payload_type_tag<P>) return {};
    if (c.name == name || c.type == &detail::payload_type_tag<P>) {
      return fail(Errc::already_exists, "JSON payload name \"{}\" or its type is registered already",
                  detail::excerpt(name));
    }
  }
  reg.codecs.push_back(detail::JsonPayloadCodec{
      &detail::payload_type_tag<P>, std::move(name),
      [](const void* value) -> nlohmann::json { return nlohmann::json(*static_cast<const P*>(value)); },
      [](const nlohmann::json& j, Error& into) -> bool {
#if KEEL_HAS_EXCEPTIONS
        try {
          into.attach(j.get<P>());
        } catch (const nlohmann::json::exception&) {
          return false;
        }
#else
        into.attach(j.get<P>());
#endif
        return true;
      }});
  return {};
}

/// The HTTP status of an error's kind (keel::http_status(Errc), defined with
/// the table in <keel/detail/http_status.hpp>): 404 for not_found, 504 for
/// timeout, 503 for the transient kinds and full, 500 for internal failures.
[[nodiscard]] inline int http_status(const Error& e) noexcept {
  return http_status(e.code());
}

/// {"code":"NOT_FOUND","status":404,"message":"...","context":[...]}, and
/// "cause":{...} (the same form) for an error that wraps another, and
/// "payload":{...} for its registered payloads.
/// Never throws on any Error's text (invalid UTF-8 is replaced), so the
/// result's dump() does not throw either; std::bad_alloc aside.
[[nodiscard]] inline nlohmann::json to_json(const Error& e) {
  nlohmann::json ctx = nlohmann::json::array();
  for (std::string_view c : e.contexts()) ctx.push_back(detail::valid_utf8(c));
  nlohmann::json j{{"code", std::string(to_string(e.code()))},
                   {"status", http_status(e)},
                   {"message", detail::valid_utf8(e.message())},
                   {"context", std::move(ctx)}};
  if (const Error* cause = e.cause()) j["cause"] = to_json(*cause);
  nlohmann::json payloads = nlohmann::json::object();
  e.for_each_payload([&](const void* type, const void* value) {
    auto& reg = detail::json_payload_registry();
    const std::lock_guard lock(reg.mu);
    for (const auto& c : reg.codecs) {
      if (c.type == type) payloads[c.name] = c.encode(value);
    }
  });
  if (!payloads.empty()) j["payload"] = std::move(payloads);
  return j;
}

/// How deeply error_from_json follows "cause" (deeper is invalid_argument).
inline constexpr int kMaxErrorJsonDepth = 32;

namespace detail {
[[nodiscard]] inline Result<Error> error_from_json_at(const nlohmann::json& j, int depth) {
  if (!j.is_object()) return fail(Errc::invalid_argument, "error JSON must be an object");
  const auto code_it = j.find("code");
  if (code_it == j.end() || !code_it->is_string()) {
    return fail(Errc::invalid_argument, "error JSON needs a string \"code\"");
  }
  // A code this build does not know is a newer peer's kind: keep the text.
  const Errc code = errc_from_string(code_it->get_ref<const std::string&>()).value_or(Errc::unknown);
  std::string message;
  if (const auto m = j.find("message"); m != j.end()) {
    if (!m->is_string()) return fail(Errc::invalid_argument, "error JSON \"message\" must be a string");
    message = m->get<std::string>();
  }
  std::optional<Error> cause;
  if (const auto c = j.find("cause"); c != j.end()) {
    if (depth + 1 >= kMaxErrorJsonDepth) {
      return fail(Errc::invalid_argument, "error JSON \"cause\" nests deeper than {}", kMaxErrorJsonDepth);
    }
    auto inner = error_from_json_at(*c, depth + 1);
    if (!inner) return unexpected<Error>(std::move(inner).error().context("in \"cause\""));
    cause.emplace(std::move(*inner));
  }
  Error e = cause             ? std::move(*cause).wrap(code, std::move(message))
            : message.empty() ? Error(code)
                              : Error(code, std::move(message));
  if (const auto p = j.find("payload"); p != j.end()) {
    if (!p->is_object()) return fail(Errc::invalid_argument, "error JSON \"payload\" must be an object");
    auto& reg = json_payload_registry();
    const std::lock_guard lock(reg.mu);
    for (const auto& [name, value] : p->items()) {
      for (const auto& codec : reg.codecs) {
        if (codec.name == name && !codec.decode(value, e)) {
          return fail(Errc::invalid_argument, "error JSON payload \"{}\" does not decode", excerpt(name));
        }
      }
    }
  }
  if (const auto c = j.find("context"); c != j.end()) {
    if (!c->is_array()) return fail(Errc::invalid_argument, "error JSON \"context\" must be an array");
    // Stored outermost first; re-add innermost first so the order survives.
    for (auto it = c->rbegin(); it != c->rend(); ++it) {
      if (!it->is_string()) return fail(Errc::invalid_argument, "error JSON \"context\" holds a non-string");
      e.context(it->get<std::string>());
    }
  }
  return e;
}
}  // namespace detail

/// Rebuilds an Error from to_json's form. "code" is required (a string; one
/// this build does not know gives Errc::unknown); "message", "context" and
/// "cause" are optional ("cause" nested at most kMaxErrorJsonDepth deep);
/// "status" is ignored (it follows from the code).
[[nodiscard]] inline Result<Error> error_from_json(const nlohmann::json& j) {
  return detail::error_from_json_at(j, 0);
}

/// Parses text then rebuilds the Error; malformed JSON is Errc::invalid_argument.
[[nodiscard]] inline Result<Error> error_from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(Errc::invalid_argument, "error JSON does not parse");
  return error_from_json(j);
}

/// nlohmann ADL hooks: `nlohmann::json j = err;` and `j.get<keel::Error>()`
/// (the latter throws nlohmann::json::other_error on malformed input, as
/// nlohmann's own conversions do; use error_from_json to avoid exceptions).
inline void to_json(nlohmann::json& j, const Error& e) {
  j = to_json(e);
}
inline void from_json(const nlohmann::json& j, Error& e) {
  auto r = error_from_json(j);
  if (!r) {
#if KEEL_HAS_EXCEPTIONS
    throw nlohmann::json::other_error::create(599, r.error().to_string(), &j);
#else
    std::fprintf(stderr, "keel: %s\n", r.error().to_string().c_str());
    std::abort();
#endif
  }
  e = std::move(*r);
}

}  // namespace keel

// nlohmann needs Error to be default-constructible for j.get<Error>().
namespace nlohmann {
template <>
struct adl_serializer<keel::Error> {
  static keel::Error from_json(const json& j) {
    keel::Error e(keel::Errc::internal);
    keel::from_json(j, e);
    return e;
  }
  static void to_json(json& j, const keel::Error& e) { keel::to_json(j, e); }
};
}  // namespace nlohmann
