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
// Thread-safety: pure functions. error_from_json takes untrusted input: any
// malformed document gives Errc::invalid_argument, never an exception.
#pragma once

#include <keel/result.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace keel {

/// {"code":"NOT_FOUND","status":404,"message":"...","context":[...]}
[[nodiscard]] inline nlohmann::json to_json(const Error& e) {
  nlohmann::json ctx = nlohmann::json::array();
  for (std::string_view c : e.contexts()) ctx.push_back(std::string(c));
  return nlohmann::json{{"code", std::string(to_string(e.code()))},
                        {"status", e.http_status()},
                        {"message", std::string(e.message())},
                        {"context", std::move(ctx)}};
}

/// Rebuilds an Error from to_json's form. "code" is required; "message" and
/// "context" are optional; "status" is ignored (it follows from the code).
[[nodiscard]] inline Result<Error> error_from_json(const nlohmann::json& j) {
  if (!j.is_object()) return fail(Errc::invalid_argument, "error JSON must be an object");
  const auto code_it = j.find("code");
  if (code_it == j.end() || !code_it->is_string()) {
    return fail(Errc::invalid_argument, "error JSON needs a string \"code\"");
  }
  const auto code = errc_from_string(code_it->get_ref<const std::string&>());
  if (!code) {
    return fail(Errc::invalid_argument, "unknown error code \"{}\"", code_it->get_ref<const std::string&>());
  }
  std::string message;
  if (const auto m = j.find("message"); m != j.end()) {
    if (!m->is_string()) return fail(Errc::invalid_argument, "error JSON \"message\" must be a string");
    message = m->get<std::string>();
  }
  Error e = message.empty() ? Error(*code) : Error(*code, std::move(message));
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
  if (!r) throw nlohmann::json::other_error::create(599, r.error().to_string(), &j);
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
