// keel/websocket/detail/time_budget.hpp: a time budget that cuts what
// overruns it (connect_timeout, handshake_timeout, close_timeout). Not part
// of the API.
#pragma once

#include <keel/websocket/detail/net.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <utility>

namespace keel::ws::detail {

// Calls on_expire (on the strand) if `d` passes before the TimeBudget is
// destroyed. The handler may outlive the TimeBudget, so it checks a shared flag.
class TimeBudget {
 public:
  template <class F>
  TimeBudget(const Strand& strand, std::chrono::milliseconds d, F on_expire)
      : timer_(strand), live_(std::make_shared<bool>(true)), fired_(std::make_shared<bool>(false)) {
    timer_.expires_after(d);
    timer_.async_wait([live = live_, fired = fired_, f = std::move(on_expire)](const ErrorCode& ec) mutable {
      if (!ec && *live) {
        *fired = true;
        f();
      }
    });
  }
  TimeBudget(const TimeBudget&) = delete;
  TimeBudget& operator=(const TimeBudget&) = delete;
  ~TimeBudget() {
    *live_ = false;
    timer_.cancel();
  }
  [[nodiscard]] bool fired() const noexcept { return *fired_; }

 private:
  net::steady_timer timer_;
  std::shared_ptr<bool> live_;
  std::shared_ptr<bool> fired_;
};

}  // namespace keel::ws::detail
