// keel-tour: channels. A bounded MPMC channel with backpressure and
// close-that-drains, a failed send handing its value back, a oneshot reply,
// a lagging broadcast receiver, and select with a timeout.
#include <keel/channel.hpp>

#include <fmt/format.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tour.hpp"

bool tour::channel() {
  using namespace std::chrono_literals;
  bool ok = true;
  auto check = [&](bool cond, const char* what) {
    if (!cond) {
      fmt::print("  FAILED: {}\n", what);
      ok = false;
    }
  };

  // 1. Producers, a bounded channel, a consumer; the last Sender closes it.
  {
    auto [tx, rx] = keel::channel<int>(8);
    std::vector<std::thread> producers;
    for (int p = 0; p < 3; ++p) {
      producers.emplace_back([p, tx = tx]() mutable {
        for (int i = 0; i < 100; ++i) (void)tx.send(p * 1000 + i);
      });
    }
    tx.reset();
    long long sum = 0;
    int n = 0;
    keel::Result<int> v = keel::Errc::internal;
    while ((v = rx.recv())) {
      sum += *v;
      ++n;
    }
    for (auto& t : producers) t.join();
    const auto st = rx.stats();
    fmt::print(
        "channel: 3 producers sent {} values through capacity {} (high water {}, {} sends waited); "
        "then recv() says {}\n",
        n, st.capacity, st.high_water, st.send_waits, v.error());
    check(n == 300 && sum == 300 * 99 / 2 + 100 * (1000 + 2000) && v.error().code() == keel::Errc::closed,
          "every value once, then closed");
  }

  // 2. A failed send hands the value back.
  {
    auto [tx, rx] = keel::channel<std::string>(1);
    (void)tx.try_send("first");
    auto r = tx.try_send("second");
    fmt::print("try_send on a full channel: {} and the value comes back: \"{}\"\n", r.error().error(),
               r.error().value());
    check(!r && r.error() == keel::Errc::full && r.error().value() == "second", "full hands the value back");
  }

  // 3. oneshot: a reply from a worker thread.
  {
    auto [reply_tx, reply_rx] = keel::oneshot<int>();
    std::thread worker([tx = std::move(reply_tx)]() mutable { (void)tx.send(6 * 7); });
    auto answer = reply_rx.recv_for(1s);
    worker.join();
    fmt::print("oneshot: the worker replied {}\n",
               answer ? std::to_string(*answer) : answer.error().to_string());
    check(answer && *answer == 42, "oneshot reply");
  }

  // 4. broadcast: a receiver that falls behind learns how much it missed.
  {
    auto [tx, rx] = keel::broadcast<int>(4);
    for (int i = 0; i < 10; ++i) (void)tx.send(i);
    auto lag = rx.recv();
    auto next = rx.recv();
    fmt::print("broadcast (capacity 4, 10 sent): {}; lagged_count() = {}; then resumes at {}\n", lag.error(),
               rx.lagged_count(), next ? *next : -1);
    check(!lag && lag.error().code() == keel::Errc::lagged && rx.lagged_count() == 6 && next && *next == 6,
          "broadcast lag");
  }

  // 5. select over receivers of different types, with a timeout.
  {
    auto [jobs_tx, jobs_rx] = keel::channel<std::string>(4);
    auto [stop_tx, stop_rx] = keel::oneshot<bool>();
    auto first = keel::select_for(20ms, keel::on(jobs_rx, [](keel::Result<std::string>) {}),
                                  keel::on(stop_rx, [](keel::Result<bool>) {}));
    (void)jobs_tx.send("resize image");
    std::string job;
    auto second =
        keel::select_for(20ms, keel::on(jobs_rx, [&](keel::Result<std::string> j) { job = j.value_or(""); }),
                         keel::on(stop_rx, [](keel::Result<bool>) {}));
    fmt::print("select: nothing ready -> {}; then arm {} got \"{}\"\n", first.error(), second ? *second : 99,
               job);
    check(!first && first.error().code() == keel::Errc::timeout && second && *second == 0 &&
              job == "resize image",
          "select");
    (void)stop_tx;
  }
  return ok;
}
