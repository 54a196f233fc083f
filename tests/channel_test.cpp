#include <keel/channel.hpp>

#include <rapidcheck/catch.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

constexpr int kScale = keel_test::sanitizer_scale(8);  // sanitizers are ~10x slower

// Waits (bounded) until pred() holds; for "the other thread is now blocked".
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_CASE("channel: values come out in order", "[channel]") {
  auto [tx, rx] = keel::channel<int>(4);
  REQUIRE(tx.capacity() == 4);
  for (int i = 0; i < 4; ++i) REQUIRE(tx.send(i));
  REQUIRE(rx.size() == 4);
  for (int i = 0; i < 4; ++i) {
    auto v = rx.recv();
    REQUIRE(v);
    REQUIRE(*v == i);
  }
  REQUIRE(rx.empty());
}

TEST_CASE("channel: try_send on a full channel hands the value back", "[channel]") {
  auto [tx, rx] = keel::channel<std::string>(1);
  REQUIRE(tx.try_send("first"));
  auto r = tx.try_send("second");
  REQUIRE_FALSE(r);
  REQUIRE(r.error() == keel::Errc::full);
  REQUIRE(r.code() == keel::Errc::full);
  REQUIRE(r.error().value() == "second");
  std::string back = std::move(r).error().into_inner();
  REQUIRE(back == "second");
  REQUIRE(*rx.recv() == "first");
  auto e = rx.try_recv();
  REQUIRE_FALSE(e);
  REQUIRE(e.error().code() == keel::Errc::empty);
}

TEST_CASE("channel: close drains buffered values, then closed", "[channel]") {
  auto [tx, rx] = keel::channel<int>(8);
  REQUIRE(tx.send(1));
  REQUIRE(tx.send(2));
  tx.close();
  tx.close();  // double close is harmless
  REQUIRE(tx.is_closed());
  auto r = tx.send(3);
  REQUIRE_FALSE(r);
  REQUIRE(r.error() == keel::Errc::closed);
  REQUIRE(r.error().value() == 3);
  REQUIRE(*rx.recv() == 1);
  REQUIRE(*rx.try_recv() == 2);
  REQUIRE(rx.recv().error().code() == keel::Errc::closed);
  REQUIRE(rx.try_recv().error().code() == keel::Errc::closed);
  REQUIRE(rx.recv_for(10ms).error().code() == keel::Errc::closed);
}

TEST_CASE("channel: receiver close stops senders but still drains", "[channel]") {
  auto [tx, rx] = keel::channel<int>(8);
  REQUIRE(tx.send(7));
  rx.close();
  REQUIRE(tx.try_send(8).error() == keel::Errc::closed);
  REQUIRE(*rx.recv() == 7);
  REQUIRE(rx.recv().error().code() == keel::Errc::closed);
}

TEST_CASE("channel: last sender gone closes after drain", "[channel]") {
  auto [tx, rx] = keel::channel<int>(8);
  {
    auto tx2 = tx;
    REQUIRE(tx2.send(1));
    tx.reset();
    REQUIRE_FALSE(rx.is_closed());  // tx2 still alive
    REQUIRE(tx2.send(2));
  }
  REQUIRE(rx.is_closed());
  REQUIRE(*rx.recv() == 1);
  REQUIRE(*rx.recv() == 2);
  REQUIRE(rx.recv().error().code() == keel::Errc::closed);
}

TEST_CASE("channel: last receiver gone fails sends and destroys buffered values", "[channel]") {
  auto counter = std::make_shared<int>(0);
  auto [tx, rx] = keel::channel<std::shared_ptr<int>>(4);
  REQUIRE(tx.send(counter));
  REQUIRE(counter.use_count() == 2);
  auto rx2 = rx;
  rx.reset();
  REQUIRE_FALSE(tx.is_closed());
  rx2.reset();
  REQUIRE(tx.is_closed());
  REQUIRE(counter.use_count() == 1);  // the buffered copy was destroyed
  auto r = tx.send(counter);
  REQUIRE_FALSE(r);
  REQUIRE(r.error() == keel::Errc::closed);
  REQUIRE(r.error().value() == counter);
}

TEST_CASE("channel: move-only values", "[channel]") {
  auto [tx, rx] = keel::channel<std::unique_ptr<int>>(2);
  REQUIRE(tx.send(std::make_unique<int>(5)));
  REQUIRE(tx.send(std::make_unique<int>(6)));
  auto full = tx.try_send(std::make_unique<int>(7));
  REQUIRE_FALSE(full);
  REQUIRE(*full.error().value() == 7);
  auto a = rx.recv();
  REQUIRE(a);
  REQUIRE(**a == 5);
  auto b = rx.recv();
  REQUIRE(**b == 6);
  // Values left in the buffer are destroyed with the channel (ASan checks).
  REQUIRE(tx.send(std::make_unique<int>(8)));
}

TEST_CASE("channel: timeouts", "[channel]") {
  auto [tx, rx] = keel::channel<int>(1);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = rx.recv_for(20ms);
  REQUIRE_FALSE(r);
  REQUIRE(r.error().code() == keel::Errc::timeout);
  REQUIRE(std::chrono::steady_clock::now() - t0 >= 20ms);
  REQUIRE(tx.send(1));
  auto s = tx.send_for(2, 20ms);
  REQUIRE_FALSE(s);
  REQUIRE(s.error() == keel::Errc::timeout);
  REQUIRE(s.error().value() == 2);
  REQUIRE(tx.send_until(3, std::chrono::steady_clock::now()).error() == keel::Errc::timeout);
  REQUIRE(*rx.recv_until(std::chrono::steady_clock::now() + 1s) == 1);
  // Huge durations saturate instead of overflowing.
  REQUIRE(tx.send_for(4, std::chrono::hours::max()));
  REQUIRE(*rx.recv_for(std::chrono::nanoseconds::max()) == 4);
  REQUIRE(rx.recv_for(-5s).error().code() == keel::Errc::timeout);
}

TEST_CASE("channel: capacity 0 is rejected", "[channel]") {
  auto r = keel::make_channel<int>(0);
  REQUIRE_FALSE(r);
  REQUIRE(r.error().code() == keel::Errc::invalid_argument);
  REQUIRE_THROWS_AS(keel::channel<int>(0), std::invalid_argument);
  auto ok = keel::make_channel<int>(3);
  REQUIRE(ok);
  REQUIRE(ok->first.capacity() == 3);
}

TEST_CASE("channel: default handles are closed", "[channel]") {
  keel::Sender<int> tx;
  keel::Receiver<int> rx;
  REQUIRE_FALSE(tx.valid());
  REQUIRE(tx.send(1).error() == keel::Errc::closed);
  REQUIRE(tx.try_send(1).error() == keel::Errc::closed);
  REQUIRE(rx.recv().error().code() == keel::Errc::closed);
  REQUIRE(rx.try_recv().error().code() == keel::Errc::closed);
  std::vector<int> out;
  REQUIRE(rx.recv_many(out, 4).error().code() == keel::Errc::closed);
  tx.close();
  rx.close();
  REQUIRE(tx.is_closed());
}

TEST_CASE("channel: SendResult converts to Result<void>", "[channel]") {
  auto [tx, rx] = keel::channel<int>(1);
  auto f = [&](int v) -> keel::Result<void> {
    KEEL_TRY(tx.try_send(v).result());
    return {};
  };
  REQUIRE(f(1));
  auto r = f(2);
  REQUIRE_FALSE(r);
  REQUIRE(r.error().code() == keel::Errc::full);
  keel::Result<void> direct = tx.try_send(3);
  REQUIRE(direct.error().code() == keel::Errc::full);
  auto ctx = tx.try_send(4).context("queueing job");
  REQUIRE(ctx.error().error().to_string() == "queueing job: FULL");
  REQUIRE(ctx.error().value() == 4);
  REQUIRE_THROWS_AS(tx.try_send(5).value(), keel::BadResultAccess);
}

TEST_CASE("channel: recv_many takes a batch", "[channel]") {
  auto [tx, rx] = keel::channel<int>(16);
  for (int i = 0; i < 10; ++i) REQUIRE(tx.send(i));
  std::vector<int> out;
  auto n = rx.recv_many(out, 4);
  REQUIRE(*n == 4);
  REQUIRE(rx.try_recv_many(out, 100) == 6);
  REQUIRE(out.size() == 10);
  for (int i = 0; i < 10; ++i) REQUIRE(out[static_cast<std::size_t>(i)] == i);
  REQUIRE(*rx.recv_many(out, 0) == 0);
  tx.close();
  REQUIRE(rx.recv_many(out, 4).error().code() == keel::Errc::closed);
}

TEST_CASE("channel: stats", "[channel]") {
  auto [tx, rx] = keel::channel<int>(4);
  for (int i = 0; i < 3; ++i) REQUIRE(tx.send(i));
  (void)rx.recv();
  REQUIRE(tx.send(9));
  auto s = rx.stats();
  REQUIRE(s.capacity == 4);
  REQUIRE(s.depth == 3);
  REQUIRE(s.high_water == 3);
  REQUIRE(s.sends == 4);
  REQUIRE(s.send_waits == 0);
  REQUIRE_FALSE(s.closed);
  // A send that has to wait is counted.
  REQUIRE(tx.send(10));
  std::thread t([tx2 = tx]() mutable { (void)tx2.send(11); });
  REQUIRE(eventually([&] { return rx.stats().send_waits == 1; }));
  REQUIRE(*rx.recv() == 1);
  t.join();
  REQUIRE(rx.stats().high_water == 4);
}

TEST_CASE("channel: a blocked receiver wakes on close", "[channel]") {
  auto [tx, rx] = keel::channel<int>(2);
  std::atomic<int> code{0};
  std::thread t([&, rx2 = rx]() mutable { code = static_cast<int>(rx2.recv().error().code()); });
  REQUIRE(eventually([&] { return rx.stats().recv_waits == 1; }));
  tx.close();
  t.join();
  REQUIRE(code == static_cast<int>(keel::Errc::closed));
}

TEST_CASE("channel: a blocked sender wakes on close and gets its value back", "[channel]") {
  auto [tx, rx] = keel::channel<std::string>(1);
  REQUIRE(tx.send("a"));
  std::string back;
  std::atomic<bool> was_closed{false};
  std::thread t([&, tx2 = tx]() mutable {
    auto r = tx2.send("b");
    if (!r) {
      was_closed = r.error() == keel::Errc::closed;
      back = std::move(r).error().into_inner();
    }
  });
  REQUIRE(eventually([&] { return tx.stats().send_waits == 1; }));
  rx.close();
  t.join();
  REQUIRE(was_closed);
  REQUIRE(back == "b");
  REQUIRE(*rx.recv() == "a");  // still drains
}

TEST_CASE("channel: dropping the last receiver wakes a blocked sender", "[channel]") {
  auto [tx, rx] = keel::channel<int>(1);
  REQUIRE(tx.send(1));
  std::atomic<bool> was_closed{false};
  std::thread t([&, tx2 = tx]() mutable { was_closed = tx2.send(2).error() == keel::Errc::closed; });
  REQUIRE(eventually([&] { return tx.stats().send_waits == 1; }));
  rx.reset();
  t.join();
  REQUIRE(was_closed);
}

TEST_CASE("channel: matches a std::deque model (property)", "[channel][property]") {
  rc::prop("random send/try_send/recv/try_recv/close sequences", [] {
    const auto cap = *rc::gen::inRange<std::size_t>(1, 9);
    const auto ops = *rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 5));
    auto [tx, rx] = keel::channel<int>(cap);
    std::deque<int> model;
    bool closed = false;
    int next = 0;
    for (int op : ops) {
      switch (op) {
        case 0: {  // try_send
          const int v = next++;
          auto r = tx.try_send(v);
          if (closed) {
            RC_ASSERT(!r && r.error() == keel::Errc::closed && r.error().value() == v);
          } else if (model.size() == cap) {
            RC_ASSERT(!r && r.error() == keel::Errc::full && r.error().value() == v);
          } else {
            RC_ASSERT(r.has_value());
            model.push_back(v);
          }
          break;
        }
        case 1: {  // send, only when it cannot block
          if (!closed && model.size() == cap) break;
          const int v = next++;
          auto r = tx.send(v);
          if (closed) {
            RC_ASSERT(!r && r.error() == keel::Errc::closed && r.error().value() == v);
          } else {
            RC_ASSERT(r.has_value());
            model.push_back(v);
          }
          break;
        }
        case 2: {  // try_recv
          auto r = rx.try_recv();
          if (!model.empty()) {
            RC_ASSERT(r.has_value() && *r == model.front());
            model.pop_front();
          } else {
            RC_ASSERT(!r && r.error().code() == (closed ? keel::Errc::closed : keel::Errc::empty));
          }
          break;
        }
        case 3: {  // recv, only when it cannot block
          if (model.empty() && !closed) break;
          auto r = rx.recv();
          if (!model.empty()) {
            RC_ASSERT(r.has_value() && *r == model.front());
            model.pop_front();
          } else {
            RC_ASSERT(!r && r.error().code() == keel::Errc::closed);
          }
          break;
        }
        default:  // close, from either side
          if (next % 2 == 0) {
            tx.close();
          } else {
            rx.close();
          }
          closed = true;
          break;
      }
      RC_ASSERT(rx.size() == model.size());
      RC_ASSERT(rx.is_closed() == closed);
    }
  });
}

namespace {

// Each producer sends (id << 32 | seq) for seq in 0..per; every consumer
// checks that each producer's values arrive in increasing order, and the
// totals check that each value arrived exactly once.
// `fenced`: the channel the WebSocket client uses (fences on both halves of
// the wake-up protocol, no spin before parking).
void stress(int producers, int consumers, std::size_t capacity, int per_producer, bool fenced = false) {
  auto [tx, rx] = keel::detail::make_channel_checked<std::uint64_t>(capacity, fenced).value();
  std::vector<std::vector<std::uint32_t>> seen(
      static_cast<std::size_t>(consumers), std::vector<std::uint32_t>(static_cast<std::size_t>(producers)));
  std::vector<std::vector<std::uint64_t>> counts(
      static_cast<std::size_t>(consumers), std::vector<std::uint64_t>(static_cast<std::size_t>(producers)));
  std::atomic<bool> order_ok{true};
  std::atomic<bool> send_ok{true};
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c, rx2 = rx]() mutable {
      auto& last = seen[static_cast<std::size_t>(c)];
      auto& cnt = counts[static_cast<std::size_t>(c)];
      std::vector<std::uint64_t> batch;
      for (;;) {
        batch.clear();
        // Mix recv and recv_many.
        if (c % 2 == 0) {
          auto v = rx2.recv();
          if (!v) break;
          batch.push_back(*v);
        } else {
          auto n = rx2.recv_many(batch, 16);
          if (!n) break;
        }
        for (std::uint64_t v : batch) {
          const auto p = static_cast<std::size_t>(v >> 32U);
          const auto seq = static_cast<std::uint32_t>(v & 0xffffffffU) + 1;  // 1-based
          if (seq <= last[p]) order_ok = false;
          last[p] = seq;
          ++cnt[p];
        }
      }
    });
  }
  rx.reset();
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p, tx2 = tx]() mutable {
      for (int i = 0; i < per_producer; ++i) {
        const std::uint64_t v = (static_cast<std::uint64_t>(p) << 32U) | static_cast<std::uint32_t>(i);
        if (i % 3 == 0) {
          // try_send with a fallback, to exercise the full path.
          auto r = tx2.try_send(v);
          if (!r && !tx2.send(std::move(r).error().into_inner())) send_ok = false;
        } else if (!tx2.send(v)) {
          send_ok = false;
        }
      }
    });
  }
  tx.reset();  // the channel closes when the producers finish
  for (auto& t : threads) t.join();
  REQUIRE(order_ok);
  REQUIRE(send_ok);
  for (int p = 0; p < producers; ++p) {
    std::uint64_t total = 0;
    for (int c = 0; c < consumers; ++c)
      total += counts[static_cast<std::size_t>(c)][static_cast<std::size_t>(p)];
    REQUIRE(total == static_cast<std::uint64_t>(per_producer));
  }
}

}  // namespace

TEST_CASE("channel: stress 4 producers 2 consumers", "[channel][stress]") {
  stress(4, 2, 64, 100000 / kScale);
  stress(4, 2, 1, 10000 / kScale);
}

TEST_CASE("channel: stress 6 producers 3 consumers", "[channel][stress]") {
  stress(6, 3, 16, 50000 / kScale);
  stress(6, 3, 3, 10000 / kScale);
}

TEST_CASE("channel (fenced, no spin): stress 4 producers 2 consumers and 3 x 3", "[channel][stress]") {
  stress(4, 2, 64, 50000 / kScale, true);
  stress(4, 2, 1, 10000 / kScale, true);
  stress(3, 3, 3, 10000 / kScale, true);
}

TEST_CASE("channel: stress close while busy", "[channel][stress]") {
  // Producers and consumers race a close: every value accepted by a send is
  // received exactly once, every refused one comes back.
  for (int round = 0; round < 20 / (kScale > 1 ? 4 : 1); ++round) {
    auto [tx, rx] = keel::channel<int>(8);
    std::atomic<std::int64_t> accepted{0};
    std::atomic<std::int64_t> received{0};
    std::atomic<bool> values_back{true};
    std::vector<std::thread> ts;
    for (int p = 0; p < 3; ++p) {
      ts.emplace_back([&, tx2 = tx]() mutable {
        for (int i = 0;; ++i) {
          auto r = tx2.send(i);
          if (!r) {
            if (r.error().value() != i) values_back = false;
            break;
          }
          accepted += 1;
        }
      });
    }
    for (int c = 0; c < 2; ++c) {
      ts.emplace_back([&, rx2 = rx]() mutable {
        while (rx2.recv()) received += 1;
      });
    }
    std::this_thread::sleep_for(2ms);
    if (round % 2 == 0) {
      tx.close();
    } else {
      rx.close();
    }
    for (auto& t : ts) t.join();
    REQUIRE(values_back);
    REQUIRE(accepted.load() == received.load());
  }
}

// ---------------------------------------------------------------- oneshot

TEST_CASE("oneshot: request/response across threads", "[channel][oneshot]") {
  auto [tx, rx] = keel::oneshot<std::string>();
  std::thread t([tx = std::move(tx)]() mutable { (void)tx.send("pong"); });
  auto v = rx.recv_for(5s);
  t.join();
  REQUIRE(v);
  REQUIRE(*v == "pong");
  REQUIRE(rx.try_recv().error().code() == keel::Errc::closed);  // one value only
}

TEST_CASE("oneshot: a dropped sender wakes the receiver with closed", "[channel][oneshot]") {
  auto [tx, rx] = keel::oneshot<int>();
  REQUIRE(rx.try_recv().error().code() == keel::Errc::empty);
  std::thread t([tx = std::move(tx)]() mutable {
    std::this_thread::sleep_for(10ms);
    tx.reset();
  });
  auto r = rx.recv();
  t.join();
  REQUIRE_FALSE(r);
  REQUIRE(r.error().code() == keel::Errc::closed);
}

TEST_CASE("oneshot: timeouts, closed receiver, reuse", "[channel][oneshot]") {
  auto [tx, rx] = keel::oneshot<std::unique_ptr<int>>();
  REQUIRE(rx.recv_for(10ms).error().code() == keel::Errc::timeout);
  rx.close();
  auto r = tx.send(std::make_unique<int>(3));
  REQUIRE_FALSE(r);
  REQUIRE(r.error() == keel::Errc::closed);
  REQUIRE(*r.error().value() == 3);
  REQUIRE(tx.send(std::make_unique<int>(4)).error() == keel::Errc::closed);  // used up
  REQUIRE(rx.recv().error().code() == keel::Errc::closed);

  auto [tx2, rx2] = keel::oneshot<int>();
  rx2.reset();
  REQUIRE(tx2.is_closed());
  REQUIRE(tx2.send(1).error().value() == 1);
  keel::OneshotReceiver<int> none;
  REQUIRE(none.recv().error().code() == keel::Errc::closed);
}

// -------------------------------------------------------------- broadcast

TEST_CASE("broadcast: every receiver sees every value", "[channel][broadcast]") {
  auto [tx, rx1] = keel::broadcast<int>(8);
  auto rx2 = tx.subscribe();
  REQUIRE(tx.receiver_count() == 2);
  for (int i = 0; i < 5; ++i) REQUIRE(tx.send(i));
  auto late = tx.subscribe();  // sees only what comes next
  REQUIRE(tx.send(5));
  for (int i = 0; i < 6; ++i) {
    REQUIRE(*rx1.recv() == i);
    REQUIRE(*rx2.try_recv() == i);
  }
  REQUIRE(*late.recv() == 5);
  REQUIRE(rx1.try_recv().error().code() == keel::Errc::empty);
  REQUIRE(rx1.recv_for(5ms).error().code() == keel::Errc::timeout);
}

TEST_CASE("broadcast: lag reports exactly how many were missed, then resumes", "[channel][broadcast]") {
  auto [tx, rx] = keel::broadcast<int>(4);
  for (int i = 0; i < 10; ++i) REQUIRE(tx.send(i));
  REQUIRE(rx.size() == 4);
  auto r = rx.recv();
  REQUIRE_FALSE(r);
  REQUIRE(r.error().code() == keel::Errc::lagged);
  REQUIRE(rx.lagged_count() == 6);
  REQUIRE(r.error().message() == "broadcast receiver lagged: 6 values missed");
  for (int i = 6; i < 10; ++i) REQUIRE(*rx.recv() == i);  // the oldest retained onward
  // Lag again by exactly one.
  for (int i = 10; i < 15; ++i) REQUIRE(tx.send(i));
  REQUIRE(rx.try_recv().error().code() == keel::Errc::lagged);
  REQUIRE(rx.lagged_count() == 1);
  REQUIRE(*rx.recv() == 11);
}

TEST_CASE("broadcast: close drains, no receivers refuses", "[channel][broadcast]") {
  auto [tx, rx] = keel::broadcast<std::string>(4);
  REQUIRE(tx.send("a"));
  auto tx2 = tx;
  tx.reset();
  REQUIRE(tx2.send("b"));
  tx2.reset();  // last sender: closed
  REQUIRE(*rx.recv() == "a");
  REQUIRE(*rx.recv() == "b");
  REQUIRE(rx.recv().error().code() == keel::Errc::closed);

  auto [tx3, rx3] = keel::broadcast<std::string>(2);
  rx3.reset();
  auto r = tx3.send("x");
  REQUIRE(r.error() == keel::Errc::closed);
  REQUIRE(r.error().value() == "x");
  REQUIRE_THROWS_AS(keel::broadcast<int>(0), std::invalid_argument);
}

TEST_CASE("broadcast: a blocked receiver wakes on send and on close", "[channel][broadcast]") {
  auto [tx, rx] = keel::broadcast<int>(4);
  std::atomic<int> got{-1};
  std::atomic<int> end_code{0};
  std::thread t([&, rx2 = rx]() mutable {
    got = rx2.recv().value_or(-2);
    end_code = static_cast<int>(rx2.recv().error().code());
  });
  std::this_thread::sleep_for(5ms);
  REQUIRE(tx.send(42));
  REQUIRE(eventually([&] { return got.load() == 42; }));
  tx.close();
  t.join();
  REQUIRE(end_code == static_cast<int>(keel::Errc::closed));
}

TEST_CASE("broadcast: concurrent senders and receivers, exact counts", "[channel][broadcast][stress]") {
  const int per = 2000 / kScale;
  auto [tx, rx] = keel::broadcast<int>(static_cast<std::size_t>(4 * per));  // large: no lag
  std::vector<keel::BroadcastReceiver<int>> rxs{rx, tx.subscribe(), tx.subscribe()};
  std::vector<long long> sums(rxs.size());
  std::vector<std::thread> ts;
  for (std::size_t i = 0; i < rxs.size(); ++i) {
    ts.emplace_back([&, i] {
      while (auto v = rxs[i].recv()) sums[i] += *v;
    });
  }
  std::vector<std::thread> senders;
  for (int s = 0; s < 2; ++s) {
    senders.emplace_back([tx2 = tx, per]() mutable {
      for (int i = 1; i <= per; ++i) (void)tx2.send(i);
    });
  }
  tx.reset();
  for (auto& t : senders) t.join();
  for (auto& t : ts) t.join();
  for (long long s : sums) REQUIRE(s == 2LL * per * (per + 1) / 2);
}

// ----------------------------------------------------------------- select

TEST_CASE("select: picks the ready receiver, of different types", "[channel][select]") {
  auto [itx, irx] = keel::channel<int>(4);
  auto [stx, srx] = keel::channel<std::string>(4);
  auto [btx, brx] = keel::broadcast<double>(4);
  auto [otx, orx] = keel::oneshot<char>();
  REQUIRE(stx.send("hi"));
  std::string got;
  auto r = keel::select_for(100ms, keel::on(irx, [](keel::Result<int>) { FAIL("int arm"); }),
                            keel::on(srx, [&](keel::Result<std::string> s) { got = *s; }),
                            keel::on(brx, [](keel::Result<double>) { FAIL("broadcast arm"); }),
                            keel::on(orx, [](keel::Result<char>) { FAIL("oneshot arm"); }));
  REQUIRE(r);
  REQUIRE(*r == 1);
  REQUIRE(got == "hi");
  // Nothing ready: timeout, no arm called.
  auto t = keel::select_for(10ms, keel::on(irx, [](keel::Result<int>) { FAIL("int arm"); }),
                            keel::on(srx, [](keel::Result<std::string>) { FAIL("string arm"); }));
  REQUIRE(t.error().code() == keel::Errc::timeout);
  // A value arriving from another thread wakes a blocked select.
  std::thread th([&, otx = std::move(otx)]() mutable {
    std::this_thread::sleep_for(10ms);
    (void)otx.send('x');
  });
  char c = 0;
  auto w = keel::select(keel::on(irx, [](keel::Result<int>) {}),
                        keel::on(orx, [&](keel::Result<char> v) { c = *v; }));
  th.join();
  REQUIRE(*w == 1);
  REQUIRE(c == 'x');
  // Broadcast in a Selector.
  keel::Selector sel;
  sel.add(irx);
  const auto bi = sel.add(brx);
  REQUIRE(sel.try_ready().error().code() == keel::Errc::empty);
  REQUIRE(btx.send(1.5));
  REQUIRE(*sel.ready_for(1s) == bi);
  REQUIRE(*brx.try_recv() == 1.5);
  // A closed receiver is ready (with closed).
  itx.close();
  REQUIRE(*sel.ready() == 0);
  keel::Selector empty;
  REQUIRE(empty.ready().error().code() == keel::Errc::invalid_argument);
}

TEST_CASE("select: fair between always-ready receivers", "[channel][select]") {
  auto [atx, arx] = keel::channel<int>(1024);
  auto [btx, brx] = keel::channel<int>(1024);
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(atx.send(i));
    REQUIRE(btx.send(i));
  }
  int a = 0;
  int b = 0;
  for (int i = 0; i < 1000; ++i) {
    auto r = keel::select(keel::on(arx, [&](keel::Result<int>) { ++a; }),
                          keel::on(brx, [&](keel::Result<int>) { ++b; }));
    REQUIRE(r);
  }
  REQUIRE(a + b == 1000);
  REQUIRE(a >= 400);
  REQUIRE(b >= 400);
}

TEST_CASE("select: many threads feeding several channels", "[channel][select][stress]") {
  const int per = 5000 / kScale;
  auto [atx, arx] = keel::channel<int>(4);
  auto [btx, brx] = keel::channel<std::uint64_t>(4);
  std::vector<std::thread> ts;
  for (int p = 0; p < 2; ++p) {
    ts.emplace_back([tx = atx, per]() mutable {
      for (int i = 0; i < per; ++i) (void)tx.send(1);
    });
    ts.emplace_back([tx = btx, per]() mutable {
      for (int i = 0; i < per; ++i) (void)tx.send(2);
    });
  }
  atx.reset();
  btx.reset();
  long long total = 0;
  bool a_open = true;
  bool b_open = true;
  while (a_open || b_open) {
    keel::Result<std::size_t> r = keel::Errc::internal;
    if (a_open && b_open) {
      r = keel::select(keel::on(arx, [&](keel::Result<int> v) { v ? total += *v : (a_open = false, 0); }),
                       keel::on(brx, [&](keel::Result<std::uint64_t> v) {
                         v ? total += static_cast<long long>(*v) : (b_open = false, 0);
                       }));
    } else if (a_open) {
      auto v = arx.recv();
      v ? total += *v : (a_open = false, 0);
    } else {
      auto v = brx.recv();
      v ? total += static_cast<long long>(*v) : (b_open = false, 0);
    }
  }
  for (auto& t : ts) t.join();
  REQUIRE(total == 2LL * per * 3);
}
