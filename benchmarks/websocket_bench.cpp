// keel::ws::Client beside a minimal raw Beast client, against the same local
// Beast echo server (its own thread), in one run:
// - RoundTrip: one message out, its echo back (latency; items/s = round trips/s).
// - Pipelined: 16 messages in flight, then their 16 echoes (throughput).
// Message sizes: 64 bytes and 64 KiB.
//
// The raw client is the floor: synchronous Beast calls on the benchmark
// thread, no queue, no heartbeat, no second thread. It uses the same Beast
// stream settings as keel (one frame per message, 64 KiB write buffer), so
// the ratio is keel's own cost: a channel hop to its I/O thread on the way
// out and another back on the way in. Both sides copy nothing they need not:
// the raw client writes the payload in place and reads into a reused buffer;
// keel's send takes a Message (the copy a user makes) and hands back an
// Event that owns its data.
// Keel_BusyPoll_*: the same client with ClientConfig::busy_poll = 200 us
// (its I/O thread polls instead of sleeping between close messages).
#include <keel/websocket.hpp>

#include <benchmark/benchmark.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

constexpr int kWindow = 16;

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
      socket.set_option(tcp::no_delay(true));
      net::co_spawn(io_, session(std::move(socket)), net::detached);
    }
  }
  static net::awaitable<void> session(tcp::socket socket) {
    beast::websocket::stream<tcp::socket> ws(std::move(socket));
    ws.read_message_max(64U * 1024 * 1024);
    co_await ws.async_accept(net::use_awaitable);
    beast::flat_buffer buffer;
    for (;;) {
      co_await ws.async_read(buffer, net::use_awaitable);
      ws.binary(ws.got_binary());
      co_await ws.async_write(buffer.data(), net::use_awaitable);
      buffer.consume(buffer.size());
    }
  }

  net::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
};

EchoServer& server() {
  static EchoServer s;
  return s;
}

// The minimal raw Beast client: synchronous, on the calling thread.
struct RawClient {
  net::io_context io;
  beast::websocket::stream<tcp::socket> ws{io};
  RawClient() {
    ws.next_layer().connect({net::ip::address_v4::loopback(), server().port()});
    ws.next_layer().set_option(tcp::no_delay(true));
    ws.read_message_max(64U * 1024 * 1024);
    ws.handshake("127.0.0.1", "/");
    ws.binary(true);
    ws.auto_fragment(false);  // keel's settings (client.hpp, kWriteBufferBytes)
    ws.write_buffer_bytes(64U * 1024);
  }
  ~RawClient() {
    boost::system::error_code ec;
    ws.close(beast::websocket::close_code::normal, ec);
  }
};

keel::ws::Client keel_client(bool busy_poll) {
  keel::ws::ClientConfig cfg;
  cfg.url = "ws://127.0.0.1:" + std::to_string(server().port()) + "/";
  cfg.max_message_size = 64U * 1024 * 1024;
  if (busy_poll) cfg.busy_poll = 200us;
  auto c = keel::ws::Client::start(cfg);
  if (!c) {
    std::fprintf(stderr, "keel client: %s\n", c.error().to_string().c_str());
    std::abort();
  }
  for (;;) {
    auto ev = c->next_event_for(10s);
    if (!ev) {
      std::fprintf(stderr, "keel client did not connect\n");
      std::abort();
    }
    if (ev->kind == keel::ws::EventKind::connected) break;
  }
  return std::move(*c);
}

void count(benchmark::State& state, std::int64_t messages) {
  state.SetItemsProcessed(messages);
  state.SetBytesProcessed(messages * state.range(0));
}

void BM_RawBeast_RoundTrip(benchmark::State& state) {
  RawClient c;
  const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
  beast::flat_buffer buffer;
  for (auto _ : state) {
    c.ws.write(net::buffer(payload));
    c.ws.read(buffer);
    buffer.consume(buffer.size());
  }
  count(state, static_cast<std::int64_t>(state.iterations()));
}

void keel_round_trip(benchmark::State& state, bool busy_poll) {
  auto c = keel_client(busy_poll);
  const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
  for (auto _ : state) {
    (void)c.send(keel::ws::Message{payload, true});
    auto ev = c.next_event();
    benchmark::DoNotOptimize(ev);
  }
  count(state, static_cast<std::int64_t>(state.iterations()));
}
void BM_Keel_RoundTrip(benchmark::State& state) {
  keel_round_trip(state, false);
}
void BM_Keel_BusyPoll_RoundTrip(benchmark::State& state) {
  keel_round_trip(state, true);
}

void BM_RawBeast_Pipelined(benchmark::State& state) {
  RawClient c;
  const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
  beast::flat_buffer buffer;
  for (auto _ : state) {
    for (int i = 0; i < kWindow; ++i) c.ws.write(net::buffer(payload));
    for (int i = 0; i < kWindow; ++i) {
      c.ws.read(buffer);
      buffer.consume(buffer.size());
    }
  }
  count(state, static_cast<std::int64_t>(state.iterations()) * kWindow);
}

void keel_pipelined(benchmark::State& state, bool busy_poll) {
  auto c = keel_client(busy_poll);
  const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
  for (auto _ : state) {
    for (int i = 0; i < kWindow; ++i) (void)c.send(keel::ws::Message{payload, true});
    for (int i = 0; i < kWindow; ++i) {
      auto ev = c.next_event();
      benchmark::DoNotOptimize(ev);
    }
  }
  count(state, static_cast<std::int64_t>(state.iterations()) * kWindow);
}
void BM_Keel_Pipelined(benchmark::State& state) {
  keel_pipelined(state, false);
}
void BM_Keel_BusyPoll_Pipelined(benchmark::State& state) {
  keel_pipelined(state, true);
}

}  // namespace

BENCHMARK(BM_RawBeast_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_Keel_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_Keel_BusyPoll_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_RawBeast_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_Keel_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_Keel_BusyPoll_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();

BENCHMARK_MAIN();
