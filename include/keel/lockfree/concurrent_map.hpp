// keel/lockfree/concurrent_map.hpp: sharded concurrent hash map (the DashMap pattern).
//
// The key space is split over a power-of-two number of shards, each an
// std::unordered_map behind its own reader-writer lock on its own cache lines.
// A writer blocks only its shard. Access is closure-style: there is no guard
// or iterator to hold, so user code can never keep a shard locked across calls.
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
// Progress: blocking per shard (never a global lock). The lock is
// writer-preferring: a writer that has announced itself waits only for the
// readers already inside; new readers of that shard wait for it, so a steady
// stream of writers to one shard can delay its readers (never the reverse).
// The one exception is a nested read (a get or visit made while the thread
// holds another shard's lock, in a callback): it is let in while a writer
// only waits, so two threads reading two maps crosswise, with a writer on
// each, never deadlock. Waiters spin briefly, then sleep, so a preempted
// lock holder gets the CPU back.
//
// Read path (why reads scale): a reader does not write the shard. Each thread
// owns a slot on its own cache line in a process-wide list (taken on first
// use, handed back at thread exit; no registration call) and publishes in it
// the shard it is reading; a writer marks the shard's lock word and then waits
// until no slot names that shard. Two readers of one shard therefore share its
// lines read-only instead of bouncing a reader count between cores; the price
// is on writes, which read every thread's slot (O(threads), still no global
// lock). A nested read (a callback reading another map) uses a reader count in
// the shard's lock word instead, as does any read during thread teardown.
//
// Pitfall: the callbacks (visit, update, upsert, for_each, erase_if) run with
// their shard locked: they must not write the same map (a shard lock is not
// recursive: that deadlocks), should not write another map that a second
// thread may write from a callback of this one (a lock-order cycle), and
// should be short. Reading other maps from a visit or for_each callback is
// safe; reading map B from a write callback of map A while another thread
// reads A from a write callback of B is a lock-order cycle.
#pragma once

#include <keel/lockfree/cache_padded.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace keel::detail::shard_lock {

/// Bounded spin, a few yields, then sleeps growing to 128 us: waits
/// here are for a short critical section, but the machine may have fewer
/// cores than threads, and a preempted holder must get the CPU back instead
/// of competing with waiters that spin or yield in a loop.
inline void backoff(unsigned& spins) noexcept {
  ++spins;
  if (spins < 64) {
    cpu_relax();
  } else if (spins < 72) {
    std::this_thread::yield();
  } else {
    const unsigned shift = std::min(spins - 72U, 7U);
    std::this_thread::sleep_for(std::chrono::microseconds(1U << shift));
  }
}

/// How many shard locks (of any map) the calling thread holds. A read taken
/// while the thread holds one is nested: it uses the shard's reader count and
/// is let in while a writer only waits (see ShardLock).
inline thread_local unsigned t_locks_held = 0;

/// One thread's read announcement: the shard it is reading through the fast
/// path, or null. Padded: its owner writes it on every read.
struct alignas(kCacheLineSize) ReaderSlot {
  std::atomic<const void*> reading{nullptr};
  std::atomic<bool> owned{false};
  ReaderSlot* next = nullptr;  // immutable once the slot is published
};

/// The process-wide list of reader slots, one per live thread that has read a
/// map (slots are reused, never freed). Deliberately never destroyed: threads
/// may exit while statics are torn down.
class Registry {
 public:
  static Registry& instance() {
    static Registry* r = new Registry();
    return *r;
  }

  ReaderSlot* acquire() {
    // acquire: pairs with the release CAS that published each slot (its next).
    for (ReaderSlot* s = head_.load(std::memory_order_acquire); s != nullptr; s = s->next) {
      bool expected = false;
      // relaxed pre-check skips owned slots without writing them; acquire on
      // the CAS pairs with release() so the previous owner's use happens-before ours.
      if (!s->owned.load(std::memory_order_relaxed) &&
          s->owned.compare_exchange_strong(expected, true, std::memory_order_acquire,
                                           std::memory_order_relaxed))
        return s;
    }
    auto* s = new ReaderSlot();
    s->owned.store(true, std::memory_order_relaxed);        // not yet shared
    ReaderSlot* h = head_.load(std::memory_order_relaxed);  // the CAS validates it
    do {
      s->next = h;
      // release: publishes the slot (its next field) to list walkers.
    } while (!head_.compare_exchange_weak(h, s, std::memory_order_release, std::memory_order_relaxed));
    return s;
  }

  static void release(ReaderSlot* s) noexcept {
    // release: this thread's use of the slot happens-before the next owner's.
    s->owned.store(false, std::memory_order_release);
  }

  /// Waits until no slot announces a read of `shard`. Called by a writer after
  /// it set the shard's writer bit with a seq_cst RMW.
  void wait_for_readers(const void* shard) const noexcept {
    // acquire: slot publication, as in acquire().
    for (ReaderSlot* s = head_.load(std::memory_order_acquire); s != nullptr; s = s->next) {
      unsigned spins = 0;
      // seq_cst: the writer's side of the Dekker handshake (ShardLock). Reading
      // the reader's later store (null, or another shard) also synchronises
      // with it, so its reads of this shard happen-before our writes.
      while (s->reading.load(std::memory_order_seq_cst) == shard) backoff(spins);
    }
  }

 private:
  Registry() = default;
  std::atomic<ReaderSlot*> head_{nullptr};
};

/// The calling thread's slot, taken on first use and handed back at exit.
struct ThreadSlot {
  ReaderSlot* slot = Registry::instance().acquire();
  ThreadSlot() = default;
  ThreadSlot(const ThreadSlot&) = delete;
  ThreadSlot& operator=(const ThreadSlot&) = delete;
  ~ThreadSlot();
};

// Set once this thread's slot was handed back (thread exit), so that a map
// read from a later thread_local destructor takes the slow path. Trivially
// destructible.
inline thread_local bool t_slot_gone = false;

inline ThreadSlot::~ThreadSlot() {
  t_slot_gone = true;
  Registry::release(slot);  // reading is null: no read is in progress at thread exit
}

/// The calling thread's slot, or nullptr during thread teardown.
inline ReaderSlot* this_thread_slot() {
  if (t_slot_gone) return nullptr;
  thread_local ThreadSlot t;
  return t.slot;
}

/// A shard's reader-writer lock: one word holding the writer's two bits
/// (waiting, holding) and the count of slow-path readers; fast-path readers
/// are the slots naming the shard.
///
/// A writer first announces itself (kWaiting), then waits for the readers
/// inside, then takes the lock (kHeld) with a CAS that succeeds only when no
/// slow-path reader is inside. A top-level read steps aside for a waiting
/// writer (writer preference: a stream of readers cannot starve writers). A
/// nested read (the thread already holds a shard lock, of any map) enters
/// while a writer only waits, and waits only for a writer that holds: it
/// cannot wait for a writer that itself waits for the read this thread
/// already holds (two threads reading two maps crosswise, a writer on each,
/// would otherwise deadlock all four).
///
/// Correctness of the fast path (a Dekker handshake, all four accesses
/// seq_cst): the reader stores its slot then loads the word; the writer sets
/// kWaiting (RMW) then loads every slot. In the single total order one of the
/// two comes first, so either the reader sees the bit (and backs off) or the
/// writer sees the slot (and waits for it to change). kWaiting stays set
/// until unlock, so no fast-path reader enters after the writer's scan.
class ShardLock {
 public:
  void lock() noexcept {
    unsigned spins = 0;
    for (;;) {
      std::uint32_t s = word_.load(std::memory_order_relaxed);  // a guess; the CAS validates
      // seq_cst: the writer's half of the handshake (see the class note); it
      // also acquires the previous writer's unlock.
      if ((s & kWriterBits) == 0 &&
          word_.compare_exchange_weak(s, s | kWaiting, std::memory_order_seq_cst, std::memory_order_relaxed))
        break;
      backoff(spins);
    }
    Registry::instance().wait_for_readers(this);
    // Nested readers may come and go while we wait; take the lock once none
    // is inside. acquire: pairs with each slow reader's release decrement.
    for (;;) {
      std::uint32_t expected = kWaiting;
      if (word_.compare_exchange_weak(expected, kHeld, std::memory_order_acquire, std::memory_order_relaxed))
        break;
      backoff(spins);
    }
    ++t_locks_held;
  }

  void unlock() noexcept {
    --t_locks_held;
    // release: our writes happen-before the next locker's acquire. A plain
    // store is enough: while kHeld is set nobody else modifies the word
    // (slow readers and writers only CAS from a value without it).
    word_.store(0, std::memory_order_release);
  }

  /// Read-locks; returns the slot used (nullptr for the slow path), to pass to
  /// unlock_shared.
  ReaderSlot* lock_shared() const noexcept {
    ReaderSlot* slot = t_locks_held == 0 ? this_thread_slot() : nullptr;
    // relaxed: only this thread writes its slot, so it reads its own last
    // store. A non-null slot means a read is already in progress on this thread.
    if (slot != nullptr && slot->reading.load(std::memory_order_relaxed) == nullptr) {
      unsigned spins = 0;
      for (;;) {
        // seq_cst store then seq_cst load: the reader's half of the handshake.
        slot->reading.store(this, std::memory_order_seq_cst);
        // (the load, being seq_cst, is also an acquire of the last unlock)
        if ((word_.load(std::memory_order_seq_cst) & kWriterBits) == 0) {
          ++t_locks_held;
          return slot;
        }
        // A writer is in or waiting: step aside (writer preference) and wait.
        // relaxed: we read nothing of the shard yet; the retry re-publishes.
        slot->reading.store(nullptr, std::memory_order_relaxed);
        while ((word_.load(std::memory_order_relaxed) & kWriterBits) != 0) backoff(spins);
      }
    }
    lock_shared_slow();
    ++t_locks_held;
    return nullptr;
  }

  void unlock_shared(ReaderSlot* slot) const noexcept {
    --t_locks_held;
    if (slot != nullptr) {
      // release: our reads of the shard happen-before a writer that sees null.
      slot->reading.store(nullptr, std::memory_order_release);
    } else {
      // release: pairs with the writer's acquire CAS to kHeld.
      word_.fetch_sub(kReader, std::memory_order_release);
    }
  }

 private:
  // A nested (or thread-teardown) read: waits only for a writer that holds
  // the lock, never for one that waits (see the class note).
  void lock_shared_slow() const noexcept {
    unsigned spins = 0;
    for (;;) {
      std::uint32_t s = word_.load(std::memory_order_relaxed);  // a guess; the CAS validates
      // acquire: the last writer's unlock happens-before our reads.
      if ((s & kHeld) == 0 &&
          word_.compare_exchange_weak(s, s + kReader, std::memory_order_acquire, std::memory_order_relaxed))
        return;
      backoff(spins);
    }
  }

  static constexpr std::uint32_t kHeld = 1;     // a writer holds the lock
  static constexpr std::uint32_t kWaiting = 2;  // a writer waits for the readers inside
  static constexpr std::uint32_t kWriterBits = kHeld | kWaiting;
  static constexpr std::uint32_t kReader = 4;
  mutable std::atomic<std::uint32_t> word_{0};
};

/// RAII shared lock on a ShardLock.
class SharedGuard {
 public:
  explicit SharedGuard(const ShardLock& l) noexcept : lock_(l), slot_(l.lock_shared()) {}
  SharedGuard(const SharedGuard&) = delete;
  SharedGuard& operator=(const SharedGuard&) = delete;
  ~SharedGuard() { lock_.unlock_shared(slot_); }

 private:
  const ShardLock& lock_;
  ReaderSlot* slot_;
};

/// RAII exclusive lock on a ShardLock.
class UniqueGuard {
 public:
  explicit UniqueGuard(ShardLock& l) noexcept : lock_(l) { lock_.lock(); }
  UniqueGuard(const UniqueGuard&) = delete;
  UniqueGuard& operator=(const UniqueGuard&) = delete;
  ~UniqueGuard() { lock_.unlock(); }

 private:
  ShardLock& lock_;
};

}  // namespace keel::detail::shard_lock

namespace keel {

/// Sharded concurrent hash map with closure-style access.
template <class K, class V, class Hash = std::hash<K>, class KeyEqual = std::equal_to<K>>
class ConcurrentMap {
 public:
  using key_type = K;
  using mapped_type = V;
  using map_type = std::unordered_map<K, V, Hash, KeyEqual>;

  /// A map of `shards` shards rounded up to a power of two; 0 picks
  /// 8 x hardware threads (at least 16, at most 1024), so that two writers
  /// rarely meet on one shard.
  explicit ConcurrentMap(std::size_t shards = 0) {
    if (shards == 0) {
      const std::size_t hw = std::thread::hardware_concurrency();
      shards = std::clamp<std::size_t>(8 * (hw == 0 ? 1 : hw), 16, 1024);
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
    const detail::shard_lock::UniqueGuard lock(s.mu);
    const bool inserted = s.map.try_emplace(std::forward<KK>(k), std::forward<VV>(v)).second;
    if (inserted) s.bump(1);
    return inserted;
  }

  /// Inserts (k, v) or assigns v to the existing value; true if inserted.
  template <class KK, class VV>
  bool insert_or_assign(KK&& k, VV&& v) {
    Shard& s = shard_for(k);
    const detail::shard_lock::UniqueGuard lock(s.mu);
    const bool inserted = s.map.insert_or_assign(std::forward<KK>(k), std::forward<VV>(v)).second;
    if (inserted) s.bump(1);
    return inserted;
  }

  /// A copy of the value for k, or std::nullopt.
  [[nodiscard]] std::optional<V> get(const K& k) const {
    const Shard& s = shard_for(k);
    const detail::shard_lock::SharedGuard lock(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end()) return std::nullopt;
    return it->second;
  }

  [[nodiscard]] bool contains(const K& k) const {
    const Shard& s = shard_for(k);
    const detail::shard_lock::SharedGuard lock(s.mu);
    return s.map.find(k) != s.map.end();
  }

  /// Calls fn(const V&) under the shard's shared lock if k is present (no
  /// copy); returns whether it was.
  template <class F>
  bool visit(const K& k, F&& fn) const {
    const Shard& s = shard_for(k);
    const detail::shard_lock::SharedGuard lock(s.mu);
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
    const detail::shard_lock::UniqueGuard lock(s.mu);
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
    const detail::shard_lock::UniqueGuard lock(s.mu);
    auto [it, inserted] = s.map.try_emplace(std::forward<KK>(k));
    if (inserted) s.bump(1);
    std::forward<F>(fn)(it->second);
    return inserted;
  }

  /// Removes k; true if it was present.
  bool erase(const K& k) {
    Shard& s = shard_for(k);
    const detail::shard_lock::UniqueGuard lock(s.mu);
    const bool erased = s.map.erase(k) != 0;
    if (erased) s.bump(-1);
    return erased;
  }

  /// Removes k and returns its value, or std::nullopt.
  std::optional<V> remove(const K& k) {
    Shard& s = shard_for(k);
    const detail::shard_lock::UniqueGuard lock(s.mu);
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
      const detail::shard_lock::SharedGuard lock(s.mu);
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
      const detail::shard_lock::UniqueGuard lock(s.mu);
      // The count follows every erase, even when pred throws midway (the
      // guard runs before the lock is released).
      struct Count {
        Shard& shard;
        std::size_t n = 0;
        ~Count() { shard.bump(-static_cast<std::ptrdiff_t>(n)); }
      } count{s};
      for (auto it = s.map.begin(); it != s.map.end();) {
        if (pred(std::as_const(it->first), it->second)) {
          it = s.map.erase(it);
          ++count.n;
        } else {
          ++it;
        }
      }
      removed += count.n;
    }
    return removed;
  }

  /// Removes everything, one shard at a time.
  void clear() {
    for (std::size_t i = 0; i <= mask_; ++i) {
      Shard& s = shards_[i];
      const detail::shard_lock::UniqueGuard lock(s.mu);
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
    detail::shard_lock::ShardLock mu;
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
