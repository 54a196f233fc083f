// keel/websocket/event.hpp: what the WebSocket client tells the application,
// its configuration and outgoing messages (part of keel::websocket).
//
//     keel::ws::ClientConfig cfg{.url = "wss://example.com/feed"};
//     cfg.ping_interval = 10s;                        // dead peer found within 40 s
//     cfg.backoff = {.initial = 200ms, .max = 10s};   // full-jitter reconnect
//     cfg.on_connect = [] { return std::vector{keel::ws::Message{R"({"subscribe":"ticks"})"}}; };
//
// Thread-safety: plain values.
#pragma once

#include <keel/backoff.hpp>
#include <keel/result.hpp>
#include <keel/websocket/proxy.hpp>
#include <keel/websocket/url.hpp>

#include <keel/logger.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::ws {

/// An outgoing message: text (UTF-8, not validated by keel) or binary.
struct Message {
  std::string data{};
  bool binary = false;
};

/// The kinds of Event, in the order a connection's life produces them.
enum class EventKind : std::uint8_t {
  connected,     ///< the opening handshake succeeded (the backlog goes out next)
  message,       ///< a message arrived: data, binary
  disconnected,  ///< an open connection ended: reason, close_code
  reconnecting,  ///< waiting `delay` before connection attempt number `attempt`
  gave_up,       ///< max_retries reached: no more attempts; the event channel closes
};

/// "connected", "message", "disconnected", "reconnecting", "gave_up".
[[nodiscard]] constexpr std::string_view to_string(EventKind k) noexcept {
  switch (k) {
    case EventKind::connected:
      return "connected";
    case EventKind::message:
      return "message";
    case EventKind::disconnected:
      return "disconnected";
    case EventKind::reconnecting:
      return "reconnecting";
    case EventKind::gave_up:
      return "gave_up";
  }
  return "unknown";
}

/// One thing that happened to the client. Fields not used by `kind` are empty.
struct Event {
  EventKind kind = EventKind::connected;
  std::string data{};                  ///< message: the payload
  bool binary = false;                 ///< message: a binary (not text) message
  std::string reason{};                ///< disconnected, reconnecting, gave_up: why (human-readable)
  std::uint16_t close_code = 0;        ///< disconnected: the close frame's code, 0 when there was none
  std::uint32_t attempt = 0;           ///< reconnecting: 1 for the first retry, 2 for the next...
  std::chrono::milliseconds delay{0};  ///< reconnecting: the wait before that attempt
  /// disconnected, reconnecting, gave_up: what failed, as a code a program can
  /// test: Errc::not_found (no such host, HTTP 404), Errc::auth_failed (HTTP
  /// 401/403), Errc::crypto (certificate refused), Errc::timeout,
  /// Errc::unavailable (refused, reset, HTTP 5xx), Errc::protocol (a broken
  /// peer, HTTP 426, a bad redirect), Errc::closed (a close frame),
  /// Errc::internal; Errc::io for other network errors. Errc{} on connected
  /// and message events.
  Errc error{};
  std::uint16_t http_status = 0;  ///< reconnecting, gave_up: the HTTP status that refused the upgrade, or 0
  bool permanent = false;         ///< gave_up: the failure is one no retry can mend (so none was made)
  std::string subprotocol{};      ///< connected: the subprotocol the server chose, empty when none
};

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
    if (!proxy.url.empty()) {
      if (auto r = parse_proxy_url(proxy.url); !r) return std::move(r).error();
    }
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

/// Counters, read without stopping the client.
struct ClientStats {
  bool connected = false;
  std::uint64_t messages_sent = 0;      ///< written to a socket
  std::uint64_t messages_dropped = 0;   ///< accepted by send() but never written (close, failed write)
  std::uint64_t messages_received = 0;  ///< read from a socket
  std::uint64_t connections = 0;        ///< successful opening handshakes
  std::uint64_t reconnects = 0;         ///< reconnecting events
  std::uint64_t queued = 0;             ///< accepted by send() and not yet written or dropped
  std::uint64_t inbound_bytes = 0;      ///< payload bytes of message events waiting for the application
};

}  // namespace keel::ws
