// keel/lockfree/concurrent_map.hpp: sharded concurrent hash map (the DashMap pattern).
//
// The key space is split over a power-of-two number of shards, each an
// std::unordered_map behind its own std::shared_mutex on its own cache lines.
// Readers of different shards never touch the same line; readers of one shard
// share its lock; a writer blocks only its shard. Access is closure-style:
// there is no guard or iterator to hold, so user code can never keep a shard
// locked across calls.
//
//     keel::ConcurrentMap<std::string, int> hits;
//     hits.upsert("/index", [](int& n) { ++n; });        // insert 0 then add 1, or add 1
//     if (auto n = hits.get("/index")) fmt::print("{}\n", *n);
//     hits.for_each([](const std::string& k, const int& v) { fmt::print("{} {}\n", k, v); });
//
// Thread-safety: every member may be called from any number of threads.
//
// Guarantees: each operation on one key is linearizable (it happens under
// that key's shard lock). for_each, erase_if and clear visit shards one at a
// time, each under its own lock: they see every entry that exists throughout
// the call, and are not a snapshot of the whole map. size() is the sum of
// per-shard counts read without locks: exact when nothing is writing.
// Progress: blocking (shared_mutex), but never a global lock.
//
// Pitfall: the callbacks (visit, update, upsert, for_each, erase_if) run with
// their shard locked: they must not call back into the same map (a shard
// lock is not recursive: that deadlocks), and should be short.
#pragma once

#include <keel/lockfree/cache_padded.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace keel {

/// Sharded concurrent hash map with closure-style access.
template <class K, class V, class Hash = std::hash<K>, class KeyEqual = std::equal_to<K>>
class ConcurrentMap {
 public:
  using key_type = K;
  using mapped_type = V;
  using map_type = std::unordered_map<K, V, Hash, KeyEqual>;

  /// A map of `shards` shards rounded up to a power of two; 0 picks
  /// 4 x hardware threads (at least 4, at most 1024).
  explicit ConcurrentMap(std::size_t shards = 0) {
    if (shards == 0) {
      const std::size_t hw = std::thread::hardware_concurrency();
      shards = std::clamp<std::size_t>(4 * (hw == 0 ? 1 : hw), 4, 1024);
    }
    shards = std::bit_ceil(std::min<std::size_t>(shards, std::size_t{1} << 16));
    mask_ = shards - 1;
    shards_ = std::make_unique<Shard[]>(shards);
  }

  ConcurrentMap(const ConcurrentMap&) = delete;
  ConcurrentMap& operator=(const ConcurrentMap&) = delete;

  /// Inserts (k, v) if k is absent; true if inserted (an existing value is kept).
  template <class KK, class VV>
  bool insert(KK&& k, VV&& v) {
    Shard& s = shard_for(k);
    std::unique_lock lock(s.mu);
    const bool inserted = s.map.try_emplace(std::forward<KK>(k), std::forward<VV>(v)).second;
    if (inserted) s.bump(1);
    return inserted;
  }

  /// Inserts (k, v) or assigns v to the existing value; true if inserted.
  template <class KK, class VV>
  bool insert_or_assign(KK&& k, VV&& v) {
    Shard& s = shard_for(k);
    std::unique_lock lock(s.mu);
    const bool inserted = s.map.insert_or_assign(std::forward<KK>(k), std::forward<VV>(v)).second;
    if (inserted) s.bump(1);
    return inserted;
  }

  /// A copy of the value for k, or std::nullopt.
  [[nodiscard]] std::optional<V> get(const K& k) const {
    const Shard& s = shard_for(k);
    std::shared_lock lock(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end()) return std::nullopt;
    return it->second;
  }

  [[nodiscard]] bool contains(const K& k) const {
    const Shard& s = shard_for(k);
    std::shared_lock lock(s.mu);
    return s.map.find(k) != s.map.end();
  }

  /// Calls fn(const V&) under the shard's shared lock if k is present (no
  /// copy); returns whether it was.
  template <class F>
  bool visit(const K& k, F&& fn) const {
    const Shard& s = shard_for(k);
    std::shared_lock lock(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end()) return false;
    std::forward<F>(fn)(std::as_const(it->second));
    return true;
  }

  /// Calls fn(V&) in place under the shard's exclusive lock if k is present;
  /// returns whether it was.
  template <class F>
  bool update(const K& k, F&& fn) {
    Shard& s = shard_for(k);
    std::unique_lock lock(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end()) return false;
    std::forward<F>(fn)(it->second);
    return true;
  }

  /// Calls fn(V&) under the shard's exclusive lock on k's value, inserting a
  /// value-initialised V first if k is absent; true if it inserted.
  template <class KK, class F>
  requires std::is_default_constructible_v<V>
  bool upsert(KK&& k, F&& fn) {
    Shard& s = shard_for(k);
    std::unique_lock lock(s.mu);
    auto [it, inserted] = s.map.try_emplace(std::forward<KK>(k));
    if (inserted) s.bump(1);
    std::forward<F>(fn)(it->second);
    return inserted;
  }

  /// Removes k; true if it was present.
  bool erase(const K& k) {
    Shard& s = shard_for(k);
    std::unique_lock lock(s.mu);
    const bool erased = s.map.erase(k) != 0;
    if (erased) s.bump(-1);
    return erased;
  }

  /// Removes k and returns its value, or std::nullopt.
  std::optional<V> remove(const K& k) {
    Shard& s = shard_for(k);
    std::unique_lock lock(s.mu);
    auto node = s.map.extract(k);
    if (node.empty()) return std::nullopt;
    s.bump(-1);
    return std::move(node.mapped());
  }

  /// Calls fn(const K&, const V&) for every entry, one shard at a time under
  /// that shard's shared lock (see the header note on what it sees).
  template <class F>
  void for_each(F&& fn) const {
    for (std::size_t i = 0; i <= mask_; ++i) {
      const Shard& s = shards_[i];
      std::shared_lock lock(s.mu);
      for (const auto& [k, v] : s.map) fn(k, v);
    }
  }

  /// Removes every entry for which pred(const K&, V&) is true, one shard at a
  /// time; returns how many it removed.
  template <class F>
  std::size_t erase_if(F&& pred) {
    std::size_t removed = 0;
    for (std::size_t i = 0; i <= mask_; ++i) {
      Shard& s = shards_[i];
      std::unique_lock lock(s.mu);
      std::size_t n = 0;
      for (auto it = s.map.begin(); it != s.map.end();) {
        if (pred(std::as_const(it->first), it->second)) {
          it = s.map.erase(it);
          ++n;
        } else {
          ++it;
        }
      }
      s.bump(-static_cast<std::ptrdiff_t>(n));
      removed += n;
    }
    return removed;
  }

  /// Removes everything, one shard at a time.
  void clear() {
    for (std::size_t i = 0; i <= mask_; ++i) {
      Shard& s = shards_[i];
      std::unique_lock lock(s.mu);
      s.bump(-static_cast<std::ptrdiff_t>(s.map.size()));
      s.map.clear();
    }
  }

  /// Entries (the sum of per-shard counts; exact when no writer is active).
  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t n = 0;
    // relaxed: each count is only written under its shard lock; an unlocked
    // sum is a snapshot by design (exact after the writers are joined).
    for (std::size_t i = 0; i <= mask_; ++i) n += shards_[i].count.load(std::memory_order_relaxed);
    return n;
  }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] std::size_t shard_count() const noexcept { return mask_ + 1; }

 private:
  struct alignas(kCacheLineSize) Shard {
    mutable std::shared_mutex mu;
    map_type map;
    std::atomic<std::size_t> count{0};
    // Called under the exclusive lock. relaxed: see size().
    void bump(std::ptrdiff_t d) noexcept {
      count.store(count.load(std::memory_order_relaxed) + static_cast<std::size_t>(d),
                  std::memory_order_relaxed);
    }
  };

  template <class KK>
  std::size_t index_for(const KK& k) const noexcept(noexcept(Hash{}(k))) {
    // Fibonacci hashing: spread the hash (std::hash of an integer is the
    // identity) and take high bits, so the shard does not correlate with the
    // bucket the shard's unordered_map picks from the low bits.
    const auto h = static_cast<std::uint64_t>(Hash{}(k)) * 0x9E3779B97F4A7C15ull;
    return static_cast<std::size_t>(h >> 40) & mask_;
  }
  template <class KK>
  Shard& shard_for(const KK& k) {
    return shards_[index_for(k)];
  }
  template <class KK>
  const Shard& shard_for(const KK& k) const {
    return shards_[index_for(k)];
  }

  std::size_t mask_ = 0;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace keel
