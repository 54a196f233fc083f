// keel::PollReceiver / keel::PollSender: waiting on a channel from outside
// (an executor) through keel::ChannelWaiter, and the wake-up contract
// docs/channel.md states for it.
#define KEEL_CHANNEL_TEST_HOOKS 1
#include <keel/channel/poll.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"
#include "watchdog.hpp"

using namespace std::chrono_literals;

namespace {

constexpr int kScale = keel_test::sanitizer_scale(8);

/// Counts its wake-ups; a thread can sleep until the next one.
class TestWaiter final : public keel::ChannelWaiter {
 public:
  explicit TestWaiter(bool exclusive = true) : exclusive_(exclusive) {}
  // Notifies under the lock: the sleeping thread may destroy this waiter as
  // soon as it sees the count, so wake() must not touch it after unlocking.
  void wake() noexcept override {
    std::lock_guard lk(m_);
    ++wakes_;
    cv_.notify_one();
  }
  [[nodiscard]] bool exclusive() const noexcept override { return exclusive_; }
  int wakes() {
    std::lock_guard lk(m_);
    return wakes_;
  }
  /// Sleeps until wake() has been called `n` times in all.
  void wait_for_wakes(int n) {
    std::unique_lock lk(m_);
    cv_.wait(lk, [&] { return wakes_ >= n; });
  }

 private:
  const bool exclusive_;
  std::mutex m_;
  std::condition_variable cv_;
  int wakes_ = 0;
};

/// A receive loop the way an executor runs one: poll, and on pending sleep
/// until woken, then poll again with woken = true.
template <class T, class F>
void drive_recv(keel::PollReceiver<T>& port, F&& on_value) {
  TestWaiter w;
  int seen = 0;
  bool woken = false;
  std::optional<T> out;
  for (;;) {
    out.reset();
    switch (port.poll_recv(w, out, woken)) {
      case keel::PollStatus::ready:
        on_value(std::move(*out));
        woken = false;
        break;
      case keel::PollStatus::closed:
        return;
      case keel::PollStatus::pending:
        w.wait_for_wakes(++seen);
        woken = true;
        break;
      case keel::PollStatus::retry:
        std::this_thread::yield();
        woken = false;
        break;
    }
  }
}

template <class T>
bool drive_send(keel::PollSender<T>& port, T value) {
  TestWaiter w;
  int seen = 0;
  bool woken = false;
  for (;;) {
    switch (port.poll_send(w, value, woken)) {
      case keel::PollStatus::ready:
        return true;
      case keel::PollStatus::closed:
        return false;
      case keel::PollStatus::pending:
        w.wait_for_wakes(++seen);
        woken = true;
        break;
      case keel::PollStatus::retry:
        std::this_thread::yield();
        woken = false;
        break;
    }
  }
}

}  // namespace

TEST_CASE("channel_poll: ready, pending, one wake-up, closed", "[channel_poll]") {
  auto [tx, rx] = keel::channel<int>(2);
  keel::PollReceiver<int> port(rx);
  TestWaiter w;
  std::optional<int> out;
  REQUIRE(tx.send(1));
  REQUIRE(port.poll_recv(w, out) == keel::PollStatus::ready);
  CHECK(*out == 1);
  out.reset();
  REQUIRE(port.poll_recv(w, out) == keel::PollStatus::pending);
  CHECK(rx.native_handle()->recv_wait().registered() == 1);
  CHECK(rx.stats().recv_waits == 1);
  REQUIRE(tx.send(2));
  CHECK(w.wakes() == 1);  // once, and the channel forgot the waiter
  CHECK(rx.native_handle()->recv_wait().registered() == 0);
  REQUIRE(tx.send(3));
  CHECK(w.wakes() == 1);
  CHECK_FALSE(port.cancel_wait(w));  // woken already
  REQUIRE(port.poll_recv(w, out, true) == keel::PollStatus::ready);
  CHECK(*out == 2);
  out.reset();
  REQUIRE(port.poll_recv(w, out, true) == keel::PollStatus::ready);
  CHECK(*out == 3);
  out.reset();
  tx.reset();  // last sender: closed
  CHECK(port.poll_recv(w, out) == keel::PollStatus::closed);
  CHECK_FALSE(out);
  CHECK(rx.native_handle()->recv_wait().registered() == 0);

  keel::PollReceiver<int> none;
  CHECK_FALSE(none.valid());
  CHECK(none.poll_recv(w, out) == keel::PollStatus::closed);
  CHECK_FALSE(none.cancel_wait(w));
  none.pass_wakeup();  // harmless
}

TEST_CASE("channel_poll: cancel_wait takes the registration back", "[channel_poll]") {
  auto [tx, rx] = keel::channel<std::string>(1);
  keel::PollSender<std::string> port(tx);
  REQUIRE(tx.send("full"));
  TestWaiter w;
  std::string v = "mine";
  REQUIRE(port.poll_send(w, v) == keel::PollStatus::pending);
  CHECK(v == "mine");  // untouched unless ready
  CHECK(port.cancel_wait(w));
  CHECK(*rx.try_recv() == "full");  // frees a slot: nobody to wake
  CHECK(w.wakes() == 0);
  REQUIRE(port.poll_send(w, v) == keel::PollStatus::ready);
  CHECK(*rx.try_recv() == "mine");
}

TEST_CASE("channel_poll: close wakes every waiter, exclusive or not", "[channel_poll]") {
  auto [tx, rx] = keel::channel<int>(1);
  keel::PollReceiver<int> rport(rx);
  keel::PollSender<int> sport(tx);
  std::vector<std::unique_ptr<TestWaiter>> rw;
  for (int i = 0; i < 4; ++i) rw.push_back(std::make_unique<TestWaiter>(i % 2 == 0));
  std::optional<int> out;
  for (auto& w : rw) REQUIRE(rport.poll_recv(*w, out) == keel::PollStatus::pending);
  // A full channel for the senders' side.
  auto [ftx, frx] = keel::channel<int>(1);
  keel::PollSender<int> fport(ftx);
  REQUIRE(ftx.send(0));
  TestWaiter sw1, sw2;
  int a = 1, b = 2;
  REQUIRE(fport.poll_send(sw1, a) == keel::PollStatus::pending);
  REQUIRE(fport.poll_send(sw2, b) == keel::PollStatus::pending);

  tx.close();
  for (auto& w : rw) CHECK(w->wakes() == 1);
  for (auto& w : rw) CHECK(rport.poll_recv(*w, out, true) == keel::PollStatus::closed);
  CHECK(sport.poll_send(sw1, a) == keel::PollStatus::closed);

  frx.reset();  // the last receiver going closes too
  CHECK(sw1.wakes() == 1);
  CHECK(sw2.wakes() == 1);
  CHECK(fport.poll_send(sw1, a, true) == keel::PollStatus::closed);
  CHECK(a == 1);  // handed back
}

TEST_CASE("channel_poll: one value wakes one exclusive waiter; pass_wakeup hands it on", "[channel_poll]") {
  auto [tx, rx] = keel::channel<int>(4);
  keel::PollReceiver<int> port(rx);
  TestWaiter w1, w2, select_like(false);
  std::optional<int> out;
  REQUIRE(port.poll_recv(w1, out) == keel::PollStatus::pending);
  REQUIRE(port.poll_recv(w2, out) == keel::PollStatus::pending);
  REQUIRE(port.poll_recv(select_like, out) == keel::PollStatus::pending);
  REQUIRE(tx.send(1));
  CHECK(w1.wakes() + w2.wakes() == 1);  // one exclusive waiter
  CHECK(select_like.wakes() == 1);      // a non-exclusive one hears every notification
  TestWaiter& woken = w1.wakes() == 1 ? w1 : w2;
  TestWaiter& other = w1.wakes() == 1 ? w2 : w1;
  // The woken one gives up (cancelled): its wake-up goes to the other.
  CHECK_FALSE(port.cancel_wait(woken));
  port.pass_wakeup();
  CHECK(other.wakes() == 1);
  REQUIRE(port.poll_recv(other, out, true) == keel::PollStatus::ready);
  CHECK(*out == 1);
}

namespace {
// Pauses the first sender that claims a slot, until released.
std::atomic<int> g_claims{0};
std::atomic<bool> g_paused{false};
std::atomic<bool> g_release{false};
void pause_first_claim(keel::detail::ChanHook point, const void*) {
  if (point != keel::detail::ChanHook::after_claim || g_claims.fetch_add(1) != 0) return;
  g_paused = true;
  while (!g_release) std::this_thread::yield();
}
}  // namespace

// The interleaving the `woken` flag is for: a wake-up spent on a value behind
// a slot still being written. Sender A claims slot 0 and pauses; sender B
// publishes slot 1 and wakes w1; w1 finds slot 0 unwritten and registers
// again; A publishes and wakes one waiter X, which takes value A with value
// B ready behind it. Nobody else will notify: X's woken poll must wake the
// other waiter, or that one waits forever with a value in the channel.
TEST_CASE("channel_poll: a woken poll that takes a value wakes another waiter when more are ready",
          "[channel_poll]") {
  keel_test::Watchdog wd("channel_poll: woken poll passes a wake-up on", 30s);
  auto [tx, rx] = keel::channel<int>(4);
  keel::PollReceiver<int> port(rx);
  TestWaiter w1, w2;
  std::optional<int> out;
  g_claims = 0;
  g_paused = false;
  g_release = false;
  keel::detail::channel_test_hook.store(&pause_first_claim, std::memory_order_release);
  std::atomic<bool> a_sent{false};  // Catch's assertions are for the main thread only
  std::thread a([&a_sent, tx2 = tx]() mutable { a_sent = tx2.send(1).has_value(); });
  while (!g_paused) std::this_thread::yield();
  REQUIRE(port.poll_recv(w1, out) == keel::PollStatus::pending);
  REQUIRE(port.poll_recv(w2, out) == keel::PollStatus::pending);
  REQUIRE(tx.send(2));  // slot 1: wakes one waiter (w1, registered first)
  REQUIRE(w1.wakes() + w2.wakes() == 1);
  TestWaiter& first = w1.wakes() == 1 ? w1 : w2;
  TestWaiter& second = w1.wakes() == 1 ? w2 : w1;
  // Slot 0 is still being written: nothing to take, register again.
  REQUIRE(port.poll_recv(first, out, true) == keel::PollStatus::pending);
  g_release = true;  // A publishes slot 0 and wakes one waiter
  a.join();
  REQUIRE(a_sent);
  keel::detail::channel_test_hook.store(nullptr, std::memory_order_release);
  REQUIRE(w1.wakes() + w2.wakes() == 2);
  TestWaiter& x = first.wakes() == 2 ? first : second;
  TestWaiter& y = first.wakes() == 2 ? second : first;
  const int y_before = y.wakes();
  REQUIRE(port.poll_recv(x, out, true) == keel::PollStatus::ready);
  CHECK(*out == 1);
  CHECK(y.wakes() == y_before + 1);  // passed on: value 2 is ready for y
  out.reset();
  REQUIRE(port.poll_recv(y, out, true) == keel::PollStatus::ready);
  CHECK(*out == 2);
}

TEST_CASE("channel_poll: rendezvous channel (capacity 0) with a blocked thread on the other side",
          "[channel_poll]") {
  keel_test::Watchdog wd("channel_poll: rendezvous", 30s);
  SECTION("poll_recv is woken by a sender that blocks, and takes its value") {
    auto [tx, rx] = keel::channel<int>(0);
    keel::PollReceiver<int> port(rx);
    TestWaiter w;
    std::optional<int> out;
    REQUIRE(port.poll_recv(w, out) == keel::PollStatus::pending);
    std::atomic<bool> sent{false};
    std::thread sender([&] { sent = tx.send(42).has_value(); });  // returns once we take it
    w.wait_for_wakes(1);
    REQUIRE(port.poll_recv(w, out, true) == keel::PollStatus::ready);
    CHECK(*out == 42);
    sender.join();
    CHECK(sent);
  }
  SECTION("poll_send is woken by a receiver that blocks, and hands it the value") {
    auto [tx, rx] = keel::channel<int>(0);
    keel::PollSender<int> port(tx);
    TestWaiter w;
    int v = 7;
    REQUIRE(port.poll_send(w, v) == keel::PollStatus::pending);
    std::optional<keel::Result<int>> got;
    std::thread receiver([&, rx2 = rx]() mutable { got.emplace(rx2.recv()); });
    w.wait_for_wakes(1);
    // The receiver may not have parked yet when a spare notification came;
    // poll until the hand-off is done.
    keel::PollStatus s = port.poll_send(w, v, true);
    for (int seen = 1; s != keel::PollStatus::ready; s = port.poll_send(w, v, true)) {
      REQUIRE(s != keel::PollStatus::closed);
      if (s == keel::PollStatus::pending) w.wait_for_wakes(++seen);
    }
    receiver.join();
    REQUIRE(got);
    REQUIRE(*got);
    CHECK(**got == 7);
  }
  SECTION("close wakes a pending poll on a rendezvous channel") {
    auto [tx, rx] = keel::channel<int>(0);
    keel::PollReceiver<int> port(rx);
    TestWaiter w;
    std::optional<int> out;
    REQUIRE(port.poll_recv(w, out) == keel::PollStatus::pending);
    tx.close();
    CHECK(w.wakes() == 1);
    CHECK(port.poll_recv(w, out, true) == keel::PollStatus::closed);
  }
}

TEST_CASE("channel_poll: the poll handles do not keep the channel open", "[channel_poll]") {
  auto [tx, rx] = keel::channel<int>(2);
  keel::PollSender<int> sport(tx);
  keel::PollReceiver<int> rport(rx);
  REQUIRE(tx.send(1));
  tx.reset();  // the PollSender is not a Sender: closed now
  CHECK(rx.is_closed());
  TestWaiter w;
  int v = 2;
  CHECK(sport.poll_send(w, v) == keel::PollStatus::closed);
  std::optional<int> out;
  CHECK(rport.poll_recv(w, out) == keel::PollStatus::ready);  // drains first
  CHECK(rport.poll_recv(w, out) == keel::PollStatus::closed);
}

TEST_CASE("channel_poll: a failed registration leaves nothing registered", "[channel_poll]") {
  auto [tx, rx] = keel::channel<int>(1);
  keel::PollReceiver<int> port(rx);
  TestWaiter w;
  std::optional<int> out;
  keel::detail::wait_list_add_fail_hook.store(
      +[] { return true; }, std::memory_order_release);
  CHECK_THROWS_AS(port.poll_recv(w, out), std::bad_alloc);
  keel::detail::wait_list_add_fail_hook.store(nullptr, std::memory_order_release);
  CHECK(rx.native_handle()->recv_wait().registered() == 0);
  REQUIRE(tx.send(1));
  CHECK(w.wakes() == 0);
  CHECK(port.poll_recv(w, out) == keel::PollStatus::ready);
}

// Lost wake-ups: two capacity-1 channels, ping-pong between two threads that
// wait only through poll and a ChannelWaiter (as an executor does); then
// several polling producers and consumers on one channel. Each must finish
// behind the watchdog with every value received exactly once.
TEST_CASE("channel_poll: ping-pong through external waiters loses no wake-up", "[channel_poll][stress]") {
  keel_test::Watchdog wd("channel_poll: ping-pong", 60s);
  const int rounds = 20000 / kScale;
  auto [ping_tx, ping_rx] = keel::channel<int>(1);
  auto [pong_tx, pong_rx] = keel::channel<int>(1);
  keel::PollSender<int> ping_s(ping_tx), pong_s(pong_tx);
  keel::PollReceiver<int> ping_r(ping_rx), pong_r(pong_rx);
  std::atomic<int> echo_failures{0};
  std::thread echo([&, pong_tx2 = std::move(pong_tx)]() mutable {
    drive_recv(ping_r, [&](int v) {
      if (!drive_send(pong_s, v + 1)) echo_failures += 1;
    });
    pong_tx2.reset();
  });
  long long sum = 0;
  int got = 0;
  for (int i = 0; i < rounds; ++i) {
    REQUIRE(drive_send(ping_s, i));
    std::optional<int> reply;
    {
      TestWaiter w;
      int seen = 0;
      bool woken = false;
      for (;;) {
        const auto s = pong_r.poll_recv(w, reply, woken);
        if (s == keel::PollStatus::ready) break;
        REQUIRE(s != keel::PollStatus::closed);
        if (s == keel::PollStatus::pending) {
          w.wait_for_wakes(++seen);
          woken = true;
        } else {
          woken = false;
        }
      }
    }
    REQUIRE(*reply == i + 1);
    sum += *reply;
    ++got;
  }
  ping_tx.reset();  // closes: echo's drive_recv returns
  echo.join();
  CHECK(echo_failures == 0);
  CHECK(got == rounds);
  CHECK(sum == static_cast<long long>(rounds) * (rounds + 1) / 2);
}

TEST_CASE("channel_poll: polling producers and consumers, exactly once", "[channel_poll][stress]") {
  keel_test::Watchdog wd("channel_poll: producers and consumers", 60s);
  const std::size_t cap = GENERATE(1U, 3U, 0U);
  CAPTURE(cap);
  const int producers = 3;
  const int consumers = 3;
  const int per = (cap == 0 ? 2000 : 10000) / kScale;
  auto [tx, rx] = keel::channel<int>(cap);
  std::atomic<long long> sum{0};
  std::atomic<int> count{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c, rx2 = rx]() mutable {
      if (cap == 0 && c == 0) {
        // A rendezvous needs a blocked thread on one side: this consumer blocks.
        while (auto v = rx2.recv()) {
          sum += *v;
          count += 1;
        }
        return;
      }
      keel::PollReceiver<int> port(rx2);
      drive_recv(port, [&](int v) {
        sum += v;
        count += 1;
      });
    });
  }
  rx.reset();
  std::atomic<int> send_failures{0};  // Catch's assertions are for the main thread only
  std::vector<std::thread> senders;
  for (int p = 0; p < producers; ++p) {
    senders.emplace_back([&, p, tx2 = tx]() mutable {
      keel::PollSender<int> port(tx2);
      for (int i = 0; i < per; ++i) {
        // Mix polling and blocking senders.
        const bool ok = i % 3 == 0 ? tx2.send(p * per + i).has_value() : drive_send(port, p * per + i);
        if (!ok) send_failures += 1;
      }
    });
  }
  tx.reset();
  for (auto& t : senders) t.join();
  for (auto& t : threads) t.join();
  CHECK(send_failures == 0);
  const long long total = static_cast<long long>(producers) * per;
  CHECK(count == total);
  CHECK(sum == total * (total - 1) / 2);
}
