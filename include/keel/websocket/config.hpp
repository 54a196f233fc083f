// keel/websocket/config.hpp: the configuration of a WebSocket client (part
// of keel::websocket).
//
//     keel::ws::ClientConfig cfg{.url = "wss://example.com/feed"};
//     cfg.ping_interval = 10s;                        // dead peer found within 40 s
//     cfg.backoff = {.initial = 200ms, .max = 10s};   // full-jitter reconnect
//     cfg.on_connect = [] { return std::vector{keel::ws::Message{R"({"subscribe":"ticks"})"}}; };
//     if (auto ok = cfg.validate(); !ok) return ok.error();   // Errc::config, naming the field
//
// Every config struct has validate(), returning Errc::config for a bad
// value; Client::start() runs it. Thread-safety: plain values.
#pragma once

#include <keel/backoff.hpp>
#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/websocket/message.hpp>
#include <keel/websocket/proxy.hpp>
#include <keel/websocket/url.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace keel::ws {

/// Where proxies come from. The default reads the environment as curl does.
struct ProxyConfig {
  /// http://[user[:password]@]host[:port] (port 1080 when absent, as curl);
  /// empty: from the environment when from_env, else none.
  std::string url{};
  bool from_env = true;  ///< read http(s)_proxy, all_proxy and no_proxy when `url` is empty
  /// Hosts that go direct (curl's NO_PROXY syntax); empty: the environment's
  /// no_proxy when from_env.
  std::string no_proxy{};

  /// Errc::config for a proxy URL parse_proxy_url() refuses, or success.
  [[nodiscard]] Result<void> validate() const {
    if (!url.empty()) {
      if (auto r = parse_proxy_url(url); !r) return std::move(r).error();
    }
    for (const char c : no_proxy) {
      if (c == '\r' || c == '\n' || c == '\0') return fail(Errc::config, "no_proxy has a control character");
    }
    return {};
  }
};

/// The proxy a connection to `url` goes through under `config`, or nullopt
/// for a direct connection. Errc::config for a bad proxy URL.
[[nodiscard]] inline Result<std::optional<ProxyEndpoint>> proxy_for(const Url& url,
                                                                    const ProxyConfig& config) {
  std::string proxy = config.url;
  std::string no_proxy = config.no_proxy;
  if (config.from_env) {
    if (proxy.empty()) {
      proxy = url.secure ? detail::env_or("https_proxy", "HTTPS_PROXY")
                         : detail::env_or("http_proxy", "HTTP_PROXY");
      if (proxy.empty()) proxy = detail::env_or("all_proxy", "ALL_PROXY");
    }
    if (no_proxy.empty()) no_proxy = detail::env_or("no_proxy", "NO_PROXY");
  }
  if (proxy.empty() || no_proxy_matches(no_proxy, url.host, url.port)) return std::optional<ProxyEndpoint>{};
  KEEL_TRY_ASSIGN(auto p, parse_proxy_url(proxy));
  return std::optional<ProxyEndpoint>(std::move(p));
}

/// ClientConfig::max_retries value for "reconnect forever".
inline constexpr std::uint32_t kUnlimitedRetries = 0xFFFF'FFFFU;

/// What one connection attempt will send: ClientConfig::before_connect may
/// change it (a fresh token in a header, a newly signed URL).
struct HandshakeRequest {
  std::string url;  ///< ws:// or wss:// (same scheme as the config's)
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers, as validated for the config
  std::uint32_t attempt = 0;                                 ///< 0 for the first connection, then 1, 2...
};

/// TLS settings for wss:// URLs.
struct TlsConfig {
  bool verify_peer = true;    ///< verify the certificate chain and the host name (keep it on)
  std::string ca_file{};      ///< PEM file of trusted CAs, instead of the system's
  std::string ca_pem{};       ///< PEM text of trusted CAs, instead of the system's
  std::string server_name{};  ///< name to send (SNI) and verify; the URL's host when empty

  /// Errc::config for a server_name that is no host name or address, or
  /// ca_pem text without a PEM certificate, or success. (The files and the
  /// certificates themselves are read when the client starts.)
  [[nodiscard]] Result<void> validate() const {
    if (server_name.size() > 253) return fail(Errc::config, "tls.server_name is longer than 253 characters");
    for (const char c : server_name) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f || c == '/' || c == '@')
        return fail(Errc::config, "bad character in tls.server_name");
    }
    if (!ca_pem.empty() && ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
      return fail(Errc::config, "tls.ca_pem holds no PEM certificate");
    return {};
  }
};

/// Everything a keel::ws::Client needs. Only `url` has no default.
struct ClientConfig {
  std::string url{};                                ///< ws://... or wss://...
  std::chrono::milliseconds ping_interval{30'000};  ///< 0 disables the heartbeat
  std::uint32_t max_missed_pongs = 3;               ///< dead after this many pings without a pong (>= 1)
  BackoffPolicy backoff{};                          ///< reconnect schedule (full jitter)
  /// Reconnect attempts in a row before gave_up: 0 = never reconnect,
  /// kUnlimitedRetries = forever. Permanent failures (HTTP 4xx but 408 and
  /// 429, a refused certificate, no such host) give up at once.
  std::uint32_t max_retries = kUnlimitedRetries;
  std::uint32_t max_redirects = 5;          ///< HTTP 301/302/307/308 followed per attempt (same scheme only)
  std::size_t send_queue_capacity = 256;    ///< messages send() buffers before it blocks
  std::size_t event_queue_capacity = 1024;  ///< events buffered before reading pauses
  /// Inbound byte budget: once the message events waiting for the application
  /// hold more than this many payload bytes, reading pauses until it drains
  /// below (the queue holds at most inbound_budget + max_message_size bytes).
  std::size_t inbound_budget = 64U * 1024 * 1024;
  std::size_t max_message_size = 1024U * 1024;        ///< larger inbound messages fail the connection (1009)
  std::chrono::milliseconds connect_timeout{10'000};  ///< name resolution + TCP connect + TLS handshake
  std::chrono::milliseconds handshake_timeout{10'000};  ///< the HTTP upgrade
  /// Every closing handshake (ours, the peer's, or one Beast starts on a
  /// protocol error): after this long the socket is cut.
  std::chrono::milliseconds close_timeout{2'000};
  /// Clients on their own thread (start(config)) only: after its last piece
  /// of work the I/O thread keeps polling this long before it sleeps, so a
  /// send or a reply that comes sooner needs no wake-up of a sleeping thread
  /// (lower latency; costs up to a core while messages keep coming). 0: off.
  std::chrono::microseconds busy_poll{0};
  /// A connection that lasted less than this does not reset the backoff or the
  /// retry count (no reconnect storm against a server that accepts then closes).
  std::chrono::milliseconds stable_after{5'000};
  /// Extra handshake headers. Host, Upgrade, Connection, Content-Length and
  /// Sec-WebSocket-* are the client's own and refused here (subprotocols go
  /// in `subprotocols`).
  std::vector<std::pair<std::string, std::string>> headers{};
  /// Subprotocols offered (Sec-WebSocket-Protocol), in order of preference;
  /// the server's choice is in the connected event and Client::subprotocol().
  /// A server that picks one not offered fails the attempt (Errc::protocol).
  std::vector<std::string> subprotocols{};
  /// Runs on the client's executor before every connection attempt, the
  /// first included, with the URL and headers it will use: it may change
  /// both (a fresh bearer token, a newly signed URL). An error fails that
  /// attempt (retried on the backoff schedule). Keep it short.
  std::function<Result<void>(HandshakeRequest&)> before_connect{};
  TlsConfig tls{};
  /// HTTP CONNECT proxy: by default from the environment as curl reads it
  /// (http_proxy for ws://, https_proxy for wss://, all_proxy, no_proxy);
  /// `proxy.from_env = false` with an empty url: always direct.
  ProxyConfig proxy{};
  /// Runs on the client's executor after every (re)connect, before the queued
  /// backlog is sent; the messages it returns go out first (resubscribe here).
  /// Keep it short and non-blocking; do not call Client::close() from it.
  /// If it throws (anything), the connection is closed and the client gives
  /// up (gave_up event): reconnecting without the resubscription would
  /// silently receive nothing.
  std::function<std::vector<Message>()> on_connect{};
  /// Where the client logs; empty: keel::default_logger() (keel::log::adapt()
  /// turns an spdlog logger into one).
  keel::Logger logger{};

  /// Errc::config naming the offending field, or success (url not parsed here).
  [[nodiscard]] Result<void> validate() const {
    if (ping_interval.count() < 0) return fail(Errc::config, "ping_interval must be >= 0");
    if (max_missed_pongs == 0) return fail(Errc::config, "max_missed_pongs must be >= 1");
    if (auto r = backoff.validate(); !r) return Error(Errc::config, std::string(r.error().message()));
    if (send_queue_capacity == 0) return fail(Errc::config, "send_queue_capacity must be >= 1");
    if (event_queue_capacity == 0) return fail(Errc::config, "event_queue_capacity must be >= 1");
    if (max_message_size == 0) return fail(Errc::config, "max_message_size must be >= 1");
    if (inbound_budget == 0) return fail(Errc::config, "inbound_budget must be >= 1");
    if (connect_timeout.count() <= 0) return fail(Errc::config, "connect_timeout must be > 0");
    if (handshake_timeout.count() <= 0) return fail(Errc::config, "handshake_timeout must be > 0");
    if (close_timeout.count() <= 0) return fail(Errc::config, "close_timeout must be > 0");
    if (busy_poll.count() < 0) return fail(Errc::config, "busy_poll must be >= 0");
    if (auto r = validate_headers(headers); !r) return r;
    if (auto r = tls.validate(); !r) return r;
    if (auto r = proxy.validate(); !r) return r;
    for (const auto& p : subprotocols) {
      if (p.empty()) return fail(Errc::config, "empty subprotocol");
      for (const char c : p) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == ',' || c == '"' || c == ';')
          return fail(Errc::config, "bad character in subprotocol \"{}\"", p);
      }
    }
    return {};
  }

  /// Errc::config for a header the client must not take from the user (Host,
  /// Upgrade, Connection, Content-Length, Sec-WebSocket-*) or a malformed one.
  [[nodiscard]] static Result<void> validate_headers(
      const std::vector<std::pair<std::string, std::string>>& list) {
    for (const auto& [name, value] : list) {
      if (name.empty()) return fail(Errc::config, "empty header name");
      for (const char c : name) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == ':') return fail(Errc::config, "bad character in header name");
      }
      for (const char c : value) {
        if (c == '\r' || c == '\n' || c == '\0')
          return fail(Errc::config, "header {} has a line break", name);
      }
      std::string lower(name);
      for (auto& c : lower) c = detail::ascii_lower(c);
      if (lower == "host" || lower == "upgrade" || lower == "connection" || lower == "content-length" ||
          lower == "transfer-encoding" || lower.rfind("sec-websocket-", 0) == 0)
        return fail(Errc::config, "header {} is set by the client itself", name);
    }
    return {};
  }
};

}  // namespace keel::ws
