// A watchdog for the channel and lock-free stress tests: a test that hangs
// (a lost wake-up, a deadlock) fails within seconds with its name on stderr,
// instead of waiting for ctest's timeout. A hung thread cannot be unblocked
// safely, so the watchdog ends the process (std::abort).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "test_support.hpp"

namespace keel_test {

class Watchdog {
 public:
  /// Aborts the process unless destroyed within `limit` (scaled up under a
  /// sanitizer, which runs everything several times slower).
  Watchdog(std::string what, std::chrono::seconds limit) : what_(std::move(what)) {
    const auto budget = limit * (KEEL_TEST_SANITIZED ? 4 : 1);
    thread_ = std::thread([this, budget] {
      std::unique_lock lk(m_);
      if (!cv_.wait_for(lk, budget, [this] { return done_; })) {
        std::fprintf(stderr, "watchdog: '%s' still running after %llds: a hang\n", what_.c_str(),
                     static_cast<long long>(budget.count()));
        std::fflush(stderr);
        std::abort();
      }
    });
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      std::lock_guard lk(m_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::string what_;
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace keel_test
