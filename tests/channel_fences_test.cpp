// The channel with its portable wake-up barrier: seq_cst fences on both
// halves instead of membarrier(2) on the waiter half (what non-Linux
// platforms, and builds with KEEL_NO_MEMBARRIER, get). The main channel test
// covers the membarrier path; this one keeps the fallback honest.
#define KEEL_NO_MEMBARRIER 1
#include <keel/channel.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {
constexpr int kScale = keel_test::sanitizer_scale(8);

// P producers, C consumers, every value delivered exactly once.
void exactly_once(int producers, int consumers, std::size_t capacity, int per_producer) {
  auto [tx, rx] = keel::channel<std::uint64_t>(capacity);
  std::atomic<std::uint64_t> sum{0};
  std::atomic<std::uint64_t> count{0};
  std::atomic<bool> sends_ok{true};  // Catch2's REQUIRE is not thread-safe
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, rx2 = rx]() mutable {
      while (auto v = rx2.recv()) {
        sum += *v;
        ++count;
      }
    });
  }
  rx.reset();
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&sends_ok, tx2 = tx, per_producer]() mutable {
      for (int i = 1; i <= per_producer; ++i) {
        if (!tx2.send(static_cast<std::uint64_t>(i))) sends_ok = false;
      }
    });
  }
  tx.reset();
  for (auto& t : threads) t.join();
  REQUIRE(sends_ok);
  const auto n = static_cast<std::uint64_t>(per_producer);
  REQUIRE(count == n * static_cast<std::uint64_t>(producers));
  REQUIRE(sum == n * (n + 1) / 2 * static_cast<std::uint64_t>(producers));
}
}  // namespace

TEST_CASE("channel (fence barrier): exactly once under contention", "[channel][stress]") {
  exactly_once(4, 2, 64, 50000 / kScale);
  exactly_once(6, 3, 3, 10000 / kScale);
  exactly_once(2, 2, 1, 10000 / kScale);
}

TEST_CASE("channel (fence barrier): blocked receiver and sender wake", "[channel]") {
  auto [tx, rx] = keel::channel<int>(1);
  int got = 0;
  std::thread receiver([&got, rx2 = rx]() mutable { got = rx2.recv().value_or(-1); });
  std::this_thread::sleep_for(20ms);  // let it block (the test holds either way)
  REQUIRE(tx.send(7));
  receiver.join();
  REQUIRE(got == 7);
  REQUIRE(tx.send(1));
  int back = 0;
  bool failed = false;
  std::thread sender([&, tx2 = tx]() mutable {
    auto r = tx2.send(2);
    failed = !r;  // closed while waiting for room: the value comes back
    if (failed) back = std::move(r).error().into_inner();
  });
  std::this_thread::sleep_for(20ms);
  rx.close();
  sender.join();
  REQUIRE(failed);
  REQUIRE(back == 2);
  REQUIRE(rx.recv().value() == 1);  // drains, then closed
  REQUIRE(rx.recv().error() == keel::Errc::closed);
}
