// keel/websocket/url.hpp: parsing ws:// and wss:// URLs (part of keel::websocket).
//
//     auto url = keel::ws::Url::parse("wss://example.com:8443/feed?x=1");
//     if (!url) return url.error();              // Errc::invalid_argument, says what is wrong
//     url->secure;      // true
//     url->host;        // "example.com"   (IPv6 literals without their brackets)
//     url->port;        // 8443            (80 / 443 when absent)
//     url->target;      // "/feed?x=1"     (what goes on the HTTP request line)
//
// Thread-safety: a value type. Guarantees: parse() takes untrusted text (it is
// fuzzed): it never reads out of bounds, never throws but std::bad_alloc, and
// rejects what RFC 6455 section 3 rejects (other schemes, fragments), plus
// user info, empty hosts, bad ports and control characters or spaces.
#pragma once

#include <keel/result.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace keel::ws {

/// A parsed WebSocket URL.
struct Url {
  bool secure = false;       ///< wss://
  std::string host;          ///< host name or IP literal (IPv6 without brackets)
  std::uint16_t port = 80;   ///< explicit port, or 80 (ws) / 443 (wss)
  std::string target = "/";  ///< path and query, always starting with '/'

  /// Parses `ws://host[:port][/path][?query]` or `wss://...`; the scheme and
  /// host are case-insensitive (the host is lower-cased). Errc::invalid_argument
  /// with a message naming the problem otherwise.
  [[nodiscard]] static Result<Url> parse(std::string_view text);

  /// The port a URL of this scheme has when it names none.
  [[nodiscard]] std::uint16_t default_port() const noexcept { return secure ? 443 : 80; }

  /// The Host header value: host, bracketed when IPv6, with ":port" unless default.
  [[nodiscard]] std::string host_header() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    if (port != default_port()) h += ":" + std::to_string(port);
    return h;
  }

  /// host[:port] as written in a URL (IPv6 bracketed, the port always given).
  [[nodiscard]] std::string host_header_for_url() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return h + ":" + std::to_string(port);
  }

  /// The canonical text form, which parse() reads back to an equal Url.
  [[nodiscard]] std::string to_string() const {
    std::string s = secure ? "wss://" : "ws://";
    s += host.find(':') != std::string::npos ? "[" + host + "]" : host;
    s += ":" + std::to_string(port);
    s += target;
    return s;
  }

  /// to_string() with every query value replaced by "***", for logs and
  /// events (query strings often carry tokens): "/feed?token=***&v=***".
  [[nodiscard]] std::string redacted() const {
    auto s = to_string();
    const auto q = s.find('?');
    if (q == std::string::npos) return s;
    std::string out = s.substr(0, q + 1);
    std::string_view rest = std::string_view(s).substr(q + 1);
    bool first = true;
    while (true) {
      const auto amp = rest.find('&');
      const auto part = rest.substr(0, amp);
      if (!first) out += '&';
      first = false;
      const auto eq = part.find('=');
      out += part.substr(0, eq);
      if (eq != std::string_view::npos) out += "=***";
      if (amp == std::string_view::npos) break;
      rest = rest.substr(amp + 1);
    }
    return out;
  }

  /// Where an HTTP redirect from this URL leads: `location` is an absolute
  /// ws/wss/http/https URL (http maps to ws, https to wss) or a path
  /// starting with '/'. Errc::invalid_argument otherwise.
  [[nodiscard]] Result<Url> follow(std::string_view location) const;

  friend bool operator==(const Url&, const Url&) = default;
};

namespace detail {
[[nodiscard]] constexpr char ascii_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
[[nodiscard]] constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}
[[nodiscard]] constexpr bool is_host_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '%';
}
}  // namespace detail

inline Result<Url> Url::parse(std::string_view text) {
  constexpr std::size_t kMaxUrl = 8192;
  if (text.size() > kMaxUrl) return fail(Errc::invalid_argument, "URL longer than {} bytes", kMaxUrl);
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f)
      return fail(Errc::invalid_argument, "URL contains a space or control character");
  }
  Url url;
  const auto sep = text.find("://");
  if (sep == std::string_view::npos)
    return fail(Errc::invalid_argument, "URL has no scheme (want ws:// or wss://)");
  const auto scheme = text.substr(0, sep);
  if (detail::iequals(scheme, "ws")) {
    url.secure = false;
  } else if (detail::iequals(scheme, "wss")) {
    url.secure = true;
  } else {
    return fail(Errc::invalid_argument, "unsupported URL scheme \"{}\" (want ws or wss)", scheme);
  }
  std::string_view rest = text.substr(sep + 3);
  if (rest.find('#') != std::string_view::npos) {
    return fail(Errc::invalid_argument, "WebSocket URLs cannot have a fragment");
  }
  const auto path_at = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, path_at);
  std::string_view target = path_at == std::string_view::npos ? std::string_view{} : rest.substr(path_at);
  if (authority.find('@') != std::string_view::npos) {
    return fail(Errc::invalid_argument, "URL user info is not supported");
  }
  std::string_view host;
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      return fail(Errc::invalid_argument, "unterminated IPv6 literal in URL");
    host = authority.substr(1, close - 1);
    if (host.empty()) return fail(Errc::invalid_argument, "empty IPv6 literal in URL");
    for (const char c : host) {
      const bool ok =
          (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
      if (!ok) return fail(Errc::invalid_argument, "bad character in IPv6 literal");
    }
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail(Errc::invalid_argument, "unexpected text after IPv6 literal");
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
    for (const char c : host) {
      if (!detail::is_host_char(c)) return fail(Errc::invalid_argument, "bad character '{}' in URL host", c);
    }
  }
  if (host.empty()) return fail(Errc::invalid_argument, "URL has no host");
  if (host.size() > 253) return fail(Errc::invalid_argument, "URL host is too long");
  url.host.reserve(host.size());
  for (const char c : host) url.host.push_back(detail::ascii_lower(c));
  url.port = url.default_port();
  if (has_port) {
    if (port_text.empty() || port_text.size() > 5) return fail(Errc::invalid_argument, "bad URL port");
    std::uint32_t p = 0;
    for (const char c : port_text) {
      if (c < '0' || c > '9') return fail(Errc::invalid_argument, "bad URL port \"{}\"", port_text);
      p = p * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (p == 0 || p > 65535) return fail(Errc::invalid_argument, "URL port {} out of range", p);
    url.port = static_cast<std::uint16_t>(p);
  }
  if (target.empty()) {
    url.target = "/";
  } else if (target.front() == '?') {
    url.target = "/" + std::string(target);
  } else {
    url.target = std::string(target);
  }
  return url;
}

inline Result<Url> Url::follow(std::string_view location) const {
  if (!location.empty() && location.front() == '/' && (location.size() < 2 || location[1] != '/')) {
    return parse(std::string(secure ? "wss://" : "ws://") + host_header_for_url() + std::string(location));
  }
  const auto sep = location.find("://");
  if (sep == std::string_view::npos)
    return fail(Errc::invalid_argument, "redirect to an unsupported location");
  const auto scheme = location.substr(0, sep);
  if (detail::iequals(scheme, "http")) return parse("ws" + std::string(location.substr(sep)));
  if (detail::iequals(scheme, "https")) return parse("wss" + std::string(location.substr(sep)));
  return parse(location);
}

}  // namespace keel::ws
