// keel/websocket.hpp: a WebSocket client that stays connected (target
// keel::websocket: Boost.Asio/Beast 1.74+, OpenSSL for wss://).
//
// The tokio-tungstenite pattern: a writer fed by a bounded keel channel, a
// reader that always has a read pending, a heartbeat of its own (ping every
// ping_interval; dead after max_missed_pongs pings without a pong),
// reconnect on a full-jitter exponential backoff, and every event delivered
// to the application through a keel channel.
//
//     auto client = keel::ws::Client::start({.url = "ws://127.0.0.1:9000", .ping_interval = 5s});
//     if (!client) { fmt::print(stderr, "{}\n", client.error()); return 1; }
//     (void)client->send("hello");                     // backpressure when the queue is full
//     while (auto ev = client->next_event_for(10s))    // connected, message, disconnected,
//       fmt::print("{}\n", keel::ws::to_string(ev->kind));  // reconnecting, gave_up
//     client->close();                                 // clean close, bounded, any state
//
// Thread-safety: send/try_send/send_for/flush/close/stats and the event
// functions may be called from any thread (close() from several at once);
// the connection runs on one strand.
// What can be lost: a message being written when the socket died (at most
// once, never duplicated; flush() reports it), and what is still queued when
// close() is called or the client gives up. Bounds: 1 MiB per inbound
// message, 64 MiB of inbound events waiting, close_timeout for every closing
// handshake, one connect_timeout per attempt. Proxies (HTTP CONNECT) come
// from the config or the environment as curl reads it.
// See docs/websocket.md for the guarantees, the limits, the threading model
// and tuning.
#pragma once

#include <keel/websocket/client.hpp>
#include <keel/websocket/config.hpp>
#include <keel/websocket/event.hpp>
#include <keel/websocket/message.hpp>
#include <keel/websocket/proxy.hpp>
#include <keel/websocket/url.hpp>
