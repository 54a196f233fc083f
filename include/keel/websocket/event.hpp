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
#include <keel/websocket/url.hpp>

#include <spdlog/logger.h>

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
  std::uint32_t max_retries = 0;            ///< reconnect attempts in a row before gave_up; 0 = forever
  std::size_t send_queue_capacity = 256;    ///< messages send() buffers before it blocks
  std::size_t event_queue_capacity = 1024;  ///< events buffered before reading pauses
  std::size_t max_message_size = 16U * 1024 * 1024;   ///< larger inbound messages fail the connection (1009)
  std::chrono::milliseconds connect_timeout{10'000};  ///< name resolution + TCP connect + TLS handshake
  std::chrono::milliseconds handshake_timeout{10'000};  ///< the HTTP upgrade
  std::chrono::milliseconds close_timeout{2'000};       ///< the close handshake, then the socket is cut
  /// Clients on their own thread (start(config)) only: after its last piece
  /// of work the I/O thread keeps polling this long before it sleeps, so a
  /// send or a reply that comes sooner needs no wake-up of a sleeping thread
  /// (lower latency; costs up to a core while messages keep coming). 0: off.
  std::chrono::microseconds busy_poll{0};
  /// A connection that lasted less than this does not reset the backoff or the
  /// retry count (no reconnect storm against a server that accepts then closes).
  std::chrono::milliseconds stable_after{5'000};
  std::vector<std::pair<std::string, std::string>> headers{};  ///< extra handshake headers
  TlsConfig tls{};
  /// Runs on the client's executor after every (re)connect, before the queued
  /// backlog is sent; the messages it returns go out first (resubscribe here).
  /// Keep it short and non-blocking; do not call Client::close() from it.
  std::function<std::vector<Message>()> on_connect{};
  /// Logger; keel::log::logger() when null.
  std::shared_ptr<spdlog::logger> logger{};

  /// Errc::config naming the offending field, or success (url not parsed here).
  [[nodiscard]] Result<void> validate() const {
    if (ping_interval.count() < 0) return fail(Errc::config, "ping_interval must be >= 0");
    if (max_missed_pongs == 0) return fail(Errc::config, "max_missed_pongs must be >= 1");
    if (auto r = backoff.validate(); !r) return Error(Errc::config, std::string(r.error().message()));
    if (send_queue_capacity == 0) return fail(Errc::config, "send_queue_capacity must be >= 1");
    if (event_queue_capacity == 0) return fail(Errc::config, "event_queue_capacity must be >= 1");
    if (max_message_size == 0) return fail(Errc::config, "max_message_size must be >= 1");
    if (connect_timeout.count() <= 0) return fail(Errc::config, "connect_timeout must be > 0");
    if (handshake_timeout.count() <= 0) return fail(Errc::config, "handshake_timeout must be > 0");
    if (close_timeout.count() <= 0) return fail(Errc::config, "close_timeout must be > 0");
    if (busy_poll.count() < 0) return fail(Errc::config, "busy_poll must be >= 0");
    for (const auto& [name, value] : headers) {
      if (name.empty()) return fail(Errc::config, "empty header name");
      for (const char c : name) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == ':') return fail(Errc::config, "bad character in header name");
      }
      for (const char c : value) {
        if (c == '\r' || c == '\n' || c == '\0')
          return fail(Errc::config, "header {} has a line break", name);
      }
    }
    return {};
  }
};

/// Counters, read without stopping the client.
struct ClientStats {
  bool connected = false;
  std::uint64_t messages_sent = 0;      ///< written to a socket
  std::uint64_t messages_received = 0;  ///< read from a socket
  std::uint64_t connections = 0;        ///< successful opening handshakes
  std::uint64_t reconnects = 0;         ///< reconnecting events
  std::uint64_t queued = 0;             ///< accepted by send() and not yet written or dropped
};

}  // namespace keel::ws
