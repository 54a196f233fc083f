// keel/detail/sqlite_maintenance.hpp: the pool's maintenance thread, started
// with the pool and stopped when the last Pool handle goes (PoolOwner). The
// pass it runs is PoolState::maintain_once. Not part of the API.
#pragma once

#include <keel/detail/sqlite_pool_state.hpp>

#include <memory>
#include <thread>
#include <utility>

namespace keel::sqlite::detail {

/// What Pool handles share: closes the pool and stops its thread when the last
/// handle goes. Checked-out connections keep PoolState alive, not this.
class PoolOwner {
 public:
  explicit PoolOwner(std::shared_ptr<PoolState> state) : state_(std::move(state)) {
    thread_ = std::thread([s = state_.get()] { s->maintain(); });
  }
  PoolOwner(const PoolOwner&) = delete;
  PoolOwner& operator=(const PoolOwner&) = delete;
  ~PoolOwner() {
    state_->close();
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] const std::shared_ptr<PoolState>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<PoolState> state_;
  std::thread thread_;
};

}  // namespace keel::sqlite::detail
