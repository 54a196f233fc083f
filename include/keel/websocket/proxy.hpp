// keel/websocket/proxy.hpp: which HTTP CONNECT proxy a WebSocket connection
// goes through (part of keel::websocket).
//
//     keel::ws::ProxyConfig p{.url = "http://user:secret@proxy.corp:3128"};
//     auto via = keel::ws::proxy_for(*keel::ws::Url::parse("wss://feed.example/"), p);
//     if (!via) return via.error();              // Errc::config: a bad proxy URL
//     if (*via) connect_to((*via)->host, (*via)->port);   // else: direct
//
// The environment is read as curl reads it: ws:// URLs use http_proxy (then
// HTTP_PROXY), wss:// URLs https_proxy (then HTTPS_PROXY), both fall back to
// all_proxy (then ALL_PROXY); no_proxy (then NO_PROXY) lists the hosts that
// go direct: "*" for all, a host or IP literal, a domain that also covers
// its subdomains ("example.com" and ".example.com" both match
// "a.example.com"), each optionally with ":port". Only http:// proxies
// (CONNECT over plain TCP; TLS for wss:// runs inside the tunnel) with
// optional basic auth from the URL's user info (percent-decoded).
//
// Thread-safety: plain values and pure functions (the environment is read
// when called).
#pragma once

#include <keel/result.hpp>
#include <keel/websocket/url.hpp>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace keel::ws {

/// A proxy to go through: where it listens, and the Proxy-Authorization
/// credentials (empty user: none).
struct ProxyEndpoint {
  std::string host;  ///< name or IP literal (IPv6 without brackets)
  std::uint16_t port = 1080;
  std::string user{};
  std::string password{};

  /// "http://host:port" without the credentials (for logs and events).
  [[nodiscard]] std::string to_string() const {
    return "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
  }
};

namespace detail {

[[nodiscard]] inline std::string env_or(const char* lower, const char* upper) {
  if (const char* v = std::getenv(lower); v != nullptr && *v != '\0') return v;
  if (upper != nullptr) {
    if (const char* v = std::getenv(upper); v != nullptr && *v != '\0') return v;
  }
  return {};
}

[[nodiscard]] inline Result<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return fail(Errc::config, "bad percent escape in proxy URL");
    int v = 0;
    for (std::size_t k = 1; k <= 2; ++k) {
      const char c = s[i + k];
      v = v * 16 + (c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1000);
    }
    if (v < 0) return fail(Errc::config, "bad percent escape in proxy URL");
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

// Does one no_proxy entry (already trimmed, lower case) cover host:port?
[[nodiscard]] inline bool no_proxy_entry_matches(std::string_view entry, std::string_view host,
                                                 std::uint16_t port) {
  if (entry == "*") return true;
  // An optional ":port" (not inside an IPv6 literal).
  std::string_view name = entry;
  if (!entry.empty() && entry.front() == '[') {
    const auto close = entry.find(']');
    if (close == std::string_view::npos) return false;
    name = entry.substr(1, close - 1);
    const auto rest = entry.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || rest.substr(1) != std::to_string(port)) return false;
    }
  } else if (const auto colon = entry.rfind(':');
             colon != std::string_view::npos && entry.find(':') == colon) {
    name = entry.substr(0, colon);
    if (entry.substr(colon + 1) != std::to_string(port)) return false;
  }
  if (!name.empty() && name.front() == '.') name.remove_prefix(1);
  if (name.empty()) return false;
  if (host == name) return true;
  // A domain covers its subdomains, on a label boundary.
  return host.size() > name.size() && host.substr(host.size() - name.size()) == name &&
         host[host.size() - name.size() - 1] == '.';
}

[[nodiscard]] inline std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(in[k]));
  };
  for (; i + 3 <= in.size(); i += 3) {
    const auto n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(n >> shift) & 63];
  }
  if (const auto rest = in.size() - i; rest != 0) {
    const auto n = (byte(i) << 16) | (rest == 2 ? byte(i + 1) << 8 : 0);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace detail

/// True if `list` (curl's NO_PROXY syntax: comma or space separated) says
/// host:port goes direct. Host names compare case-insensitively.
[[nodiscard]] inline bool no_proxy_matches(std::string_view list, std::string_view host, std::uint16_t port) {
  std::string h;
  for (const char c : host) h += detail::ascii_lower(c);
  std::size_t i = 0;
  while (i < list.size()) {
    while (i < list.size() && (list[i] == ',' || list[i] == ' ' || list[i] == '\t')) ++i;
    const auto start = i;
    while (i < list.size() && list[i] != ',' && list[i] != ' ' && list[i] != '\t') ++i;
    if (i == start) break;
    std::string entry;
    for (const char c : list.substr(start, i - start)) entry += detail::ascii_lower(c);
    if (detail::no_proxy_entry_matches(entry, h, port)) return true;
  }
  return false;
}

/// Parses a proxy URL: http://[user[:password]@]host[:port][/], or the same
/// without "http://". Errc::config for another scheme (https and socks
/// proxies are not supported) or a malformed URL.
[[nodiscard]] inline Result<ProxyEndpoint> parse_proxy_url(std::string_view text) {
  ProxyEndpoint p;
  std::string_view rest = text;
  if (const auto sep = text.find("://"); sep != std::string_view::npos) {
    if (!detail::iequals(text.substr(0, sep), "http"))
      return fail(Errc::config, "proxy scheme \"{}\" is not supported (want http://)", text.substr(0, sep));
    rest = text.substr(sep + 3);
  }
  rest = rest.substr(0, rest.find('/'));
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const auto info = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = info.find(':');
    KEEL_TRY_ASSIGN(p.user, detail::percent_decode(info.substr(0, colon)));
    if (colon != std::string_view::npos) {
      KEEL_TRY_ASSIGN(p.password, detail::percent_decode(info.substr(colon + 1)));
    }
  }
  // The host and port parse as a ws:// authority would.
  auto u = Url::parse("ws://" + std::string(rest));
  if (!u) return fail(Errc::config, "bad proxy URL: {}", u.error().message());
  p.host = u->host;
  p.port = rest.find(':') != std::string_view::npos && rest.back() != ']' ? u->port : std::uint16_t{1080};
  return p;
}

}  // namespace keel::ws

// ProxyConfig and proxy_for() live with the rest of the configuration.
#include <keel/websocket/config.hpp>  // IWYU pragma: export
