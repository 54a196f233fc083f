#include <keel/lockfree.hpp>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tour.hpp"

// A token bucket guarding an endpoint, a sharded map counting hits from two
// threads, and a bounded MPMC queue handing work between them.
bool tour::lockfree() {
  bool ok = true;

  // RateLimiter: bursts of 5, refilled at 10 tokens per second.
  keel::RateLimiter limiter(5, 10.0);
  int granted = 0;
  for (int i = 0; i < 8; ++i) granted += limiter.try_acquire() ? 1 : 0;
  const auto wait = limiter.time_until(1);
  fmt::print("rate limiter (5 burst, 10/s): {} of 8 immediate requests granted, next token in {} ms\n",
             granted, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
  std::this_thread::sleep_for(wait);  // sleep rather than spin
  const bool after_wait = limiter.try_acquire();
  fmt::print("after sleeping that long: {}\n", after_wait ? "granted" : "refused");
  ok = ok && granted == 5 && after_wait;

  // MpmcQueue + ConcurrentMap: two workers count the paths a producer queued.
  keel::MpmcQueue<std::string> requests(64);
  keel::ConcurrentMap<std::string, int> hits;
  const std::vector<std::string> paths = {"/", "/login", "/", "/api", "/", "/api"};
  std::atomic<int> left{static_cast<int>(paths.size())};
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w)
    workers.emplace_back([&] {
      while (left.load() > 0) {
        if (auto path = requests.try_pop()) {
          hits.upsert(*path, [](int& n) { ++n; });
          left.fetch_sub(1);
        } else {
          std::this_thread::yield();
        }
      }
    });
  for (const auto& p : paths) ok = requests.try_push(p) && ok;
  for (auto& t : workers) t.join();
  hits.for_each([](const std::string& path, const int& n) { fmt::print("  {:<7} {} hits\n", path, n); });
  ok = ok && hits.get("/") == 3 && hits.get("/api") == 2 && hits.size() == 3;

  fmt::print("showed: RateLimiter burst/refill, MpmcQueue handoff, ConcurrentMap::upsert and for_each\n");
  return ok;
}
