// keel::ws::Client beside raw Beast clients, against the same local Beast
// echo server (its own thread), in one run:
// - RoundTrip: one message out, its echo back (latency; items/s = round trips/s).
// - Pipelined: 16 messages in flight, then their 16 echoes (throughput).
// Message sizes: 64 bytes and 64 KiB.
//
// Three pairs, each keel beside the raw Beast code with the same threading:
// - OneThread: everything on one io_context run by the benchmark thread.
//   RawAsync is a coroutine doing async_write then async_read; KeelOnExecutor
//   is a client started on that io_context (Client::start(executor, cfg)),
//   the benchmark coroutine sending with try_send and awaiting events with
//   keel::asio::async_recv. No thread hand-off on either side.
// - IoThread: the stream on an I/O thread of its own, sends from the
//   application thread, replies back to it. RawIoThread is what a user
//   writes to get that from Beast: post() each message to the I/O thread
//   into a write queue, one read always pending, replies through a
//   mutex + condition_variable deque. Keel is Client::start(cfg) with send()
//   and next_event(). Both cross threads twice per round trip.
// - Sync: RawSync, synchronous Beast calls on the benchmark thread (no queue,
//   no heartbeat, no second thread): the floor, which no client that can be
//   fed from other threads reaches; Keel (own thread) is compared with it too.
// Keel_BusyPoll_*: the own-thread client with ClientConfig::busy_poll = 200 us.
//
// Every raw client uses keel's Beast write settings (frames of up to 64 KiB,
// 64 KiB write buffer, TCP_NODELAY), so a ratio is keel's own cost. The raw
// clients write their payload in place; keel's send takes a Message (the
// copy a user makes) and each Event owns a copy of its data, as RawIoThread's
// replies do.
#include <keel/websocket.hpp>

#include <benchmark/benchmark.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
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

// A raw Beast stream connected to the echo server with keel's settings, on
// its own io_context (used synchronously, or run by the benchmark thread).
struct RawClient {
  net::io_context io;
  beast::websocket::stream<tcp::socket> ws{io};
  bool closed = false;  // closed already (asynchronously)
  RawClient() {
    ws.next_layer().connect({net::ip::address_v4::loopback(), server().port()});
    ws.next_layer().set_option(tcp::no_delay(true));
    ws.read_message_max(64U * 1024 * 1024);
    ws.handshake("127.0.0.1", "/");
    ws.binary(true);
    // keel's settings (websocket/detail/session.hpp, kWriteBufferBytes):
    // frames of at most 64 KiB, so a message up to 64 KiB is one frame.
    ws.auto_fragment(true);
    ws.write_buffer_bytes(64U * 1024);
  }
  ~RawClient() {
    if (closed) return;
    boost::system::error_code ec;
    ws.close(beast::websocket::close_code::normal, ec);
  }
};

keel::ws::ClientConfig keel_config() {
  keel::ws::ClientConfig cfg;
  cfg.url = "ws://127.0.0.1:" + std::to_string(server().port()) + "/";
  cfg.max_message_size = 64U * 1024 * 1024;
  return cfg;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "websocket_bench: %s\n", what);
  std::abort();
}

// Completion of a benchmark coroutine: an exception is a broken benchmark.
void rethrow_fatal(const std::exception_ptr& e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    die(ex.what());
  }
}

keel::ws::Client keel_client(bool busy_poll) {
  auto cfg = keel_config();
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

std::string make_payload(const benchmark::State& state) {
  return std::string(static_cast<std::size_t>(state.range(0)), 'x');
}

// `window` messages out, then their `window` echoes, per iteration, through
// blocking calls on the benchmark thread (RoundTrip: window 1).
template <class Send, class Recv>
void blocking_echo(benchmark::State& state, int window, Send send, Recv recv) {
  for (auto _ : state) {
    for (int i = 0; i < window; ++i) send();
    for (int i = 0; i < window; ++i) recv();
  }
  count(state, static_cast<std::int64_t>(state.iterations()) * window);
}

// ---------------------------------------------------------------- Sync

void raw_sync(benchmark::State& state, int window) {
  RawClient c;
  const std::string payload = make_payload(state);
  beast::flat_buffer buffer;
  blocking_echo(
      state, window, [&] { c.ws.write(net::buffer(payload)); },
      [&] {
        c.ws.read(buffer);
        buffer.consume(buffer.size());
      });
}
void BM_RawSync_RoundTrip(benchmark::State& state) {
  raw_sync(state, 1);
}
void BM_RawSync_Pipelined(benchmark::State& state) {
  raw_sync(state, kWindow);
}

// ---------------------------------------------------------------- IoThread

// Raw Beast with keel's threading: the stream lives on an I/O thread; send()
// may be called from any thread (post() into a write queue, one async_write
// at a time); one read is always pending and its messages reach recv()
// through a mutex + condition_variable deque.
class RawIoThreadClient {
 public:
  RawIoThreadClient() {
    net::co_spawn(raw_.io, reader(), rethrow_fatal);
    thread_ = std::thread([this] { raw_.io.run(); });
  }
  RawIoThreadClient(const RawIoThreadClient&) = delete;
  RawIoThreadClient& operator=(const RawIoThreadClient&) = delete;
  ~RawIoThreadClient() {
    net::post(raw_.io, [this] {
      raw_.ws.async_close(beast::websocket::close_code::normal, [](const boost::system::error_code&) {});
    });
    thread_.join();  // the reader ends with the close; run() then has no work
    raw_.closed = true;
  }

  void send(std::string m) {
    net::post(raw_.io, [this, m = std::move(m)]() mutable {
      out_.push_back(std::move(m));
      if (out_.size() == 1) write_front();
    });
  }

  std::string recv() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !in_.empty(); });
    std::string m = std::move(in_.front());
    in_.pop_front();
    return m;
  }

 private:
  void write_front() {
    raw_.ws.async_write(net::buffer(out_.front()), [this](const boost::system::error_code& ec, std::size_t) {
      if (ec) die("raw write failed");
      out_.pop_front();
      if (!out_.empty()) write_front();
    });
  }

  net::awaitable<void> reader() {
    beast::flat_buffer buffer;
    boost::system::error_code ec;
    for (;;) {
      co_await raw_.ws.async_read(buffer, net::redirect_error(net::use_awaitable, ec));
      if (ec) co_return;  // closed at the end of the benchmark
      std::string m = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      {
        const std::lock_guard lock(mu_);
        in_.push_back(std::move(m));
      }
      cv_.notify_one();
    }
  }

  RawClient raw_;
  std::deque<std::string> out_;  // I/O thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> in_;  // guarded by mu_
  std::thread thread_;
};

void raw_io_thread(benchmark::State& state, int window) {
  RawIoThreadClient c;
  const std::string payload = make_payload(state);
  blocking_echo(
      state, window, [&] { c.send(payload); },
      [&] {
        auto m = c.recv();
        benchmark::DoNotOptimize(m);
      });
}
void BM_RawIoThread_RoundTrip(benchmark::State& state) {
  raw_io_thread(state, 1);
}
void BM_RawIoThread_Pipelined(benchmark::State& state) {
  raw_io_thread(state, kWindow);
}

void keel_own_thread(benchmark::State& state, int window, bool busy_poll) {
  auto c = keel_client(busy_poll);
  const std::string payload = make_payload(state);
  blocking_echo(
      state, window,
      [&] {
        (void)c.send(keel::ws::Message{payload, true});
      },
      [&] {
        auto ev = c.next_event();
        benchmark::DoNotOptimize(ev);
      });
}
void BM_Keel_RoundTrip(benchmark::State& state) {
  keel_own_thread(state, 1, false);
}
void BM_Keel_BusyPoll_RoundTrip(benchmark::State& state) {
  keel_own_thread(state, 1, true);
}
void BM_Keel_Pipelined(benchmark::State& state) {
  keel_own_thread(state, kWindow, false);
}
void BM_Keel_BusyPoll_Pipelined(benchmark::State& state) {
  keel_own_thread(state, kWindow, true);
}

// ---------------------------------------------------------------- OneThread

// `window` messages out, then their echoes, per iteration; all on c.io, run
// by the benchmark thread.
void raw_async(benchmark::State& state, int window) {
  RawClient c;
  const std::string payload = make_payload(state);
  beast::flat_buffer buffer;
  auto loop = [&]() -> net::awaitable<void> {
    const auto out = net::buffer(payload);
    for (auto _ : state) {
      for (int i = 0; i < window; ++i) co_await c.ws.async_write(out, net::use_awaitable);
      for (int i = 0; i < window; ++i) {
        co_await c.ws.async_read(buffer, net::use_awaitable);
        buffer.consume(buffer.size());
      }
    }
  };
  net::co_spawn(c.io, loop, rethrow_fatal);
  c.io.run();
  count(state, static_cast<std::int64_t>(state.iterations()) * window);
}
void BM_RawAsync_RoundTrip(benchmark::State& state) {
  raw_async(state, 1);
}
void BM_RawAsync_Pipelined(benchmark::State& state) {
  raw_async(state, kWindow);
}

// The same on a keel client started on the benchmark thread's io_context.
// try_send, not send: a coroutine must not block its thread (the queue of
// 256 never fills here).
void keel_on_executor(benchmark::State& state, int window) {
  net::io_context io{1};
  auto c = keel::ws::Client::start(io.get_executor(), keel_config());
  if (!c) die("keel client did not start");
  const std::string payload = make_payload(state);
  auto loop = [&]() -> net::awaitable<void> {
    const auto& events = c->events();
    for (;;) {
      auto ev = co_await keel::asio::async_recv(events, net::use_awaitable);
      if (!ev) die("keel client did not connect");
      if (ev->kind == keel::ws::EventKind::connected) break;
    }
    for (auto _ : state) {
      for (int i = 0; i < window; ++i) {
        if (!c->try_send(keel::ws::Message{payload, true})) die("try_send failed");
      }
      for (int i = 0; i < window; ++i) {
        auto ev = co_await keel::asio::async_recv(events, net::use_awaitable);
        benchmark::DoNotOptimize(ev);
      }
    }
    c->close();  // on the client's own io_context: starts the close, returns
  };
  net::co_spawn(io, loop, rethrow_fatal);
  io.run();  // returns once the client has closed
  count(state, static_cast<std::int64_t>(state.iterations()) * window);
}
void BM_KeelOnExecutor_RoundTrip(benchmark::State& state) {
  keel_on_executor(state, 1);
}
void BM_KeelOnExecutor_Pipelined(benchmark::State& state) {
  keel_on_executor(state, kWindow);
}

}  // namespace

BENCHMARK(BM_RawAsync_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_KeelOnExecutor_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_RawAsync_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_KeelOnExecutor_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_RawIoThread_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_Keel_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_Keel_BusyPoll_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_RawIoThread_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_Keel_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_Keel_BusyPoll_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_RawSync_RoundTrip)->Arg(64)->Arg(64 * 1024)->UseRealTime();
BENCHMARK(BM_RawSync_Pipelined)->Arg(64)->Arg(64 * 1024)->UseRealTime();

BENCHMARK_MAIN();
