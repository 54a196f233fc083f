// keel/websocket/event.hpp: what the WebSocket client tells the application
// (events and counters) (part of keel::websocket). The configuration is in
// <keel/websocket/config.hpp> and the outgoing Message in
// <keel/websocket/message.hpp>; both come with this header.
//
//     while (auto ev = client->next_event_for(5s)) {
//       if (ev->kind == keel::ws::EventKind::gave_up) fmt::print("{} ({})\n", ev->reason, ev->http_status);
//     }
//
// Thread-safety: plain values.
#pragma once

#include <keel/result.hpp>
#include <keel/websocket/config.hpp>   // IWYU pragma: export
#include <keel/websocket/message.hpp>  // IWYU pragma: export

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace keel::ws {

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
