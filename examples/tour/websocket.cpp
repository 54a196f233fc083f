// keel-tour, websocket section: an in-process Beast echo server that drops
// the first connection after one echo, and a keel::ws::Client that rides
// through it: connected, message, disconnected, reconnecting, connected again,
// and the message queued while it was down delivered after the reconnect.
#include <keel/websocket.hpp>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "tour.hpp"

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

// Echo server on 127.0.0.1:<ephemeral>; connection number 1 is cut after its first echo.
class EchoServer {
 public:
  EchoServer() : acceptor_(io_, {net::ip::address_v4::loopback(), 0}) {
    net::co_spawn(io_, listen(), net::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;
  ~EchoServer() {
    io_.stop();
    thread_.join();
  }
  [[nodiscard]] unsigned short port() const { return acceptor_.local_endpoint().port(); }

 private:
  net::awaitable<void> listen() {
    for (;;) {
      auto socket = co_await acceptor_.async_accept(net::use_awaitable);
      net::co_spawn(io_, session(std::move(socket), ++connections_), net::detached);
    }
  }
  static net::awaitable<void> session(tcp::socket socket, int number) {
    beast::websocket::stream<tcp::socket> ws(std::move(socket));
    co_await ws.async_accept(net::use_awaitable);
    beast::flat_buffer buffer;
    for (;;) {
      co_await ws.async_read(buffer, net::use_awaitable);
      ws.text(ws.got_text());
      co_await ws.async_write(buffer.data(), net::use_awaitable);
      buffer.consume(buffer.size());
      if (number == 1) {
        ws.next_layer().close();  // no close frame: the client sees a dead socket
        co_return;
      }
    }
  }

  net::io_context io_;
  tcp::acceptor acceptor_;
  int connections_ = 0;
  std::thread thread_;
};

bool expect(keel::ws::Client& client, keel::ws::EventKind kind, std::string* data = nullptr) {
  for (;;) {
    auto ev = client.next_event_for(5s);
    if (!ev) {
      fmt::print("  no {} event: {}\n", keel::ws::to_string(kind), ev.error());
      return false;
    }
    switch (ev->kind) {
      case keel::ws::EventKind::message:
        fmt::print("  event message      \"{}\"\n", ev->data);
        break;
      case keel::ws::EventKind::disconnected:
        fmt::print("  event disconnected ({})\n", ev->reason);
        break;
      case keel::ws::EventKind::reconnecting:
        fmt::print("  event reconnecting (attempt {}, in {} ms)\n", ev->attempt, ev->delay.count());
        break;
      default:
        fmt::print("  event {}\n", keel::ws::to_string(ev->kind));
        break;
    }
    if (ev->kind == kind) {
      if (data != nullptr) *data = ev->data;
      return true;
    }
  }
}

}  // namespace

bool tour::websocket() {
  EchoServer server;
  keel::ws::ClientConfig cfg;
  cfg.url = fmt::format("ws://127.0.0.1:{}/", server.port());
  cfg.ping_interval = 200ms;
  cfg.backoff = {.initial = 50ms, .factor = 2.0, .max = 1s, .jitter = true};
  fmt::print("  keel::ws::Client -> {} (echo server that cuts the first connection)\n", cfg.url);
  auto client = keel::ws::Client::start(cfg);
  if (!client) {
    fmt::print("  start failed: {}\n", client.error());
    return false;
  }
  std::string data;
  if (!expect(*client, keel::ws::EventKind::connected)) return false;
  (void)client->send("hello");
  if (!expect(*client, keel::ws::EventKind::message, &data) || data != "hello") return false;
  if (!expect(*client, keel::ws::EventKind::disconnected)) return false;
  (void)client->send("sent while down");  // waits in the queue for the reconnect
  if (!expect(*client, keel::ws::EventKind::connected)) return false;
  if (!expect(*client, keel::ws::EventKind::message, &data) || data != "sent while down") return false;
  client->close();
  const auto stats = client->stats();
  fmt::print("  closed cleanly: {} connections, {} reconnects, {} sent, {} received\n", stats.connections,
             stats.reconnects, stats.messages_sent, stats.messages_received);
  return stats.connections == 2;
}
