#include <keel/channel/asio.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace net = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr int kScale = keel_test::sanitizer_scale(8);

}  // namespace

TEST_CASE("asio_channel: a coroutine receives values sent from another thread", "[asio_channel]") {
  // Both wake-up barriers: the default (membarrier on Linux) and the fenced
  // channel the WebSocket client uses.
  const bool fenced = GENERATE(false, true);
  CAPTURE(fenced);
  net::io_context io;
  auto [tx, rx] = keel::detail::make_channel_checked<int>(4, fenced).value();
  const int n = 20000 / kScale;
  long long sum = 0;
  int count = 0;
  bool closed = false;
  net::co_spawn(
      io,
      [&, rx = rx]() -> net::awaitable<void> {
        for (;;) {
          keel::Result<int> v = co_await keel::asio::async_recv(rx, net::use_awaitable);
          if (!v) {
            closed = v.error().code() == keel::Errc::closed;
            break;
          }
          sum += *v;
          ++count;
        }
      },
      net::detached);
  rx.reset();
  std::thread producer([&, tx = std::move(tx)]() mutable {
    for (int i = 1; i <= n; ++i) (void)tx.send(i);
  });        // dropping tx at the end closes the channel
  io.run();  // returns once the coroutine has seen the close
  producer.join();
  REQUIRE(closed);
  REQUIRE(count == n);
  REQUIRE(sum == static_cast<long long>(n) * (n + 1) / 2);
}

TEST_CASE("asio_channel: async_send waits while full without blocking the thread", "[asio_channel]") {
  net::io_context io;
  auto [tx, rx] = keel::channel<std::string>(2);
  const int n = 5000 / kScale;
  int sent = 0;
  int timer_ticks = 0;
  net::co_spawn(
      io,
      [&, tx = tx]() -> net::awaitable<void> {
        for (int i = 0; i < n; ++i) {
          auto r = co_await keel::asio::async_send(tx, std::to_string(i), net::use_awaitable);
          if (!r) co_return;
          ++sent;
        }
      },
      net::detached);
  // A timer on the same single thread keeps ticking while the sender waits:
  // the thread is not blocked.
  net::steady_timer timer(io);
  std::function<void()> tick = [&] {
    timer.expires_after(1ms);
    timer.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      ++timer_ticks;
      if (sent < n) tick();
    });
  };
  tick();
  tx.reset();
  std::vector<std::string> got;
  std::thread consumer([&, rx2 = rx]() mutable {
    std::this_thread::sleep_for(20ms);  // let the sender fill the channel and wait
    while (auto v = rx2.recv()) got.push_back(std::move(*v));
  });
  io.run();
  consumer.join();
  REQUIRE(sent == n);
  REQUIRE(got.size() == static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == std::to_string(i));
  REQUIRE(timer_ticks > 0);
  REQUIRE(rx.stats().send_waits > 0);
}

TEST_CASE("asio_channel: close completes a pending receive with closed", "[asio_channel]") {
  net::io_context io;
  auto [tx, rx] = keel::channel<int>(1);
  std::atomic<int> code{0};
  keel::asio::async_recv(io.get_executor(), rx,
                         [&](keel::Result<int> r) { code = static_cast<int>(r.error().code()); });
  std::thread runner([&] { io.run(); });
  std::this_thread::sleep_for(10ms);
  REQUIRE(code == 0);  // still pending
  tx.close();
  runner.join();  // run() returns: the operation completed and released its work
  REQUIRE(code == static_cast<int>(keel::Errc::closed));
}

TEST_CASE("asio_channel: a refused async_send hands the value back", "[asio_channel]") {
  net::io_context io;
  auto [tx, rx] = keel::channel<std::unique_ptr<int>>(1);
  REQUIRE(tx.send(std::make_unique<int>(1)));
  std::unique_ptr<int> back;
  keel::Errc code{};
  keel::asio::async_send(io.get_executor(), tx, std::make_unique<int>(42),
                         [&](keel::SendResult<std::unique_ptr<int>> r) {
                           REQUIRE_FALSE(r);
                           code = r.error().code();
                           back = std::move(r).error().into_inner();
                         });
  io.poll();  // pending: the channel is full
  REQUIRE_FALSE(back);
  rx.reset();  // last receiver gone: the pending send fails with closed
  io.run();
  REQUIRE(code == keel::Errc::closed);
  REQUIRE(back);
  REQUIRE(*back == 42);
}

TEST_CASE("asio_channel: immediate completions go through the executor", "[asio_channel]") {
  net::io_context io;
  auto [tx, rx] = keel::channel<int>(4);
  REQUIRE(tx.send(7));
  bool done = false;
  keel::asio::async_recv(io.get_executor(), rx, [&](keel::Result<int> r) {
    REQUIRE(r);
    REQUIRE(*r == 7);
    done = true;
  });
  REQUIRE_FALSE(done);  // never inline
  io.run();
  REQUIRE(done);
  // A default (unconnected) handle completes with closed.
  keel::Receiver<int> none;
  keel::Errc code{};
  keel::asio::async_recv(io.get_executor(), none, [&](keel::Result<int> r) { code = r.error().code(); });
  io.restart();
  io.run();
  REQUIRE(code == keel::Errc::closed);
}

TEST_CASE("asio_channel: many coroutines, several threads", "[asio_channel]") {
  net::io_context io;
  auto [tx, rx] = keel::channel<int>(8);
  const int producers = 3;
  const int per = 4000 / kScale;
  std::atomic<long long> sum{0};
  std::atomic<int> count{0};
  for (int p = 0; p < producers; ++p) {
    net::co_spawn(
        io,
        [&, p, tx2 = tx]() -> net::awaitable<void> {
          for (int i = 0; i < per; ++i) {
            if (!co_await keel::asio::async_send(tx2, p * per + i, net::use_awaitable)) co_return;
          }
        },
        net::detached);
  }
  for (int c = 0; c < 2; ++c) {
    net::co_spawn(
        io,
        [&, rx2 = rx]() -> net::awaitable<void> {
          for (;;) {
            auto v = co_await keel::asio::async_recv(rx2, net::use_awaitable);
            if (!v) co_return;
            sum += *v;
            count += 1;
          }
        },
        net::detached);
  }
  tx.reset();
  rx.reset();
  std::thread t1([&] { io.run(); });
  std::thread t2([&] { io.run(); });
  t1.join();
  t2.join();
  const long long total = static_cast<long long>(producers) * per;
  REQUIRE(count == total);
  REQUIRE(sum == total * (total - 1) / 2);
}

TEST_CASE("asio_channel: async_send takes a value convertible to T (T comes from the sender)",
          "[asio_channel]") {
  net::io_context io;
  auto [tx, rx] = keel::channel<std::string>(2);
  bool sent = false;
  keel::asio::async_send(
      tx, "hi", net::bind_executor(io, [&](keel::SendResult<std::string> r) { sent = r.has_value(); }));
  keel::asio::async_send(io.get_executor(), tx, "there", [](keel::SendResult<std::string>) {});
  io.run();
  CHECK(sent);
  CHECK(*rx.try_recv() == "hi");
  CHECK(*rx.try_recv() == "there");
}
