// keel/websocket/detail/runner.hpp: the io_context and thread of a client
// that runs on a thread of its own. Not part of the API.
#pragma once

#include <keel/websocket/detail/net.hpp>

#include <keel/detail/cpu_relax.hpp>

#include <atomic>
#include <chrono>
#include <thread>

namespace keel::ws::detail {

// The io_context and thread of a client that runs on its own thread.
struct Runner {
  net::io_context ioc{1};
  std::thread thread;
  std::atomic<bool> orphaned{false};  // the thread deletes this Runner when run() returns
};

// io_context::run(), except that the thread keeps polling for `spin` after
// its last handler before it sleeps in the reactor (ClientConfig::busy_poll):
// a send, or the peer's reply, that comes within `spin` is picked up without
// the kernel having to wake this thread.
inline void run_busy(net::io_context& ioc, std::chrono::microseconds spin) {
  auto idle_since = Clock::now();
  for (;;) {
    if (ioc.poll() != 0) {
      idle_since = Clock::now();
      continue;
    }
    if (ioc.stopped()) return;  // out of work, or stop(): as run() would return
    if (Clock::now() - idle_since < spin) {
      for (int i = 0; i < 16; ++i) keel::detail::cpu_relax();
      continue;
    }
    if (ioc.run_one() == 0) return;
    idle_since = Clock::now();
  }
}

}  // namespace keel::ws::detail
