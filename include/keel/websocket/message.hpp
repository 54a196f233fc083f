// keel/websocket/message.hpp: an outgoing WebSocket message (part of
// keel::websocket).
//
//     (void)client->send(keel::ws::Message{.data = bytes, .binary = true});
//
// Thread-safety: a plain value.
#pragma once

#include <string>

namespace keel::ws {

/// An outgoing message: text (UTF-8, not validated by keel) or binary.
struct Message {
  std::string data{};
  bool binary = false;
};

}  // namespace keel::ws
