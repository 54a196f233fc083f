// keel/detail/lockfree_hazard.hpp: hazard pointers for keel's lock-free
// structures (private; the public face is keel::Stack and keel::reclamation_stats).
//
// One process-wide domain. A thread gets a hazard record the first time it
// needs one (no registration call) and gives it back when it exits (a
// thread_local destructor); records are reused, never freed, so there are at
// most as many as threads ever alive at once. A thread that unlinks a node
// retires it into its own list; when the list reaches 2 x records + 64 the
// thread scans every record's hazard and frees each retired node no hazard
// points to. Since at most one node per record can be protected, a scan frees
// at least half its list: retired memory stays below
// records x (2 x records + 64) nodes, and scans cost O(1) amortised per retire.
// Nodes a thread still had retired when it exited go to a shared orphan list
// that the next scan by any thread adopts.
//
// Memory orders: a reader publishes its hazard with a seq_cst store and then
// re-reads the shared pointer with a seq_cst load; the unlinking CAS and the
// scanner's hazard loads are seq_cst too. In the single total order S, if the
// reader's re-read still saw the node, its hazard store precedes the unlink,
// which precedes the scan, so the scan sees the hazard. (Standalone fences
// would be cheaper on some CPUs, but ThreadSanitizer does not model them.)
#pragma once

#include <keel/detail/cpu_relax.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace keel::detail::hazard {

/// A node waiting to be freed, with the function that frees it.
struct Retired {
  void* ptr;
  void (*deleter)(void*) noexcept;
};

/// One thread's hazard slot. Padded: the owner writes it on every protected
/// read and scanners read it.
struct alignas(kCacheLine) Record {
  std::atomic<const void*> hazard{nullptr};
  std::atomic<bool> active{false};
  Record* next = nullptr;  // immutable once the record is published
};

class Domain {
 public:
  /// The process-wide domain. Deliberately never destroyed: threads may still
  /// exit (and run their thread_local cleanup) while statics are torn down.
  static Domain& instance() {
    static Domain* d = new Domain();
    return *d;
  }

  /// A free record, marked active (reused when one is free, else a new one).
  Record* acquire_record() {
    // acquire: pairs with the release CAS that published each record, so its
    // `next` field is visible.
    for (Record* r = head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
      bool expected = false;
      // relaxed pre-check avoids a write to busy records; acquire on the CAS
      // pairs with the release store in release_record(), so the previous
      // owner's last use of the record happens-before ours.
      if (!r->active.load(std::memory_order_relaxed) &&
          r->active.compare_exchange_strong(expected, true, std::memory_order_acquire,
                                            std::memory_order_relaxed))
        return r;
    }
    auto* r = new Record();
    r->active.store(true, std::memory_order_relaxed);   // not yet shared
    Record* h = head_.load(std::memory_order_relaxed);  // the CAS validates it
    do {
      r->next = h;
      // release: publishes the record (its next field) to list walkers.
    } while (!head_.compare_exchange_weak(h, r, std::memory_order_release, std::memory_order_relaxed));
    records_.fetch_add(1, std::memory_order_relaxed);  // statistic only
    return r;
  }

  void release_record(Record* r) noexcept {
    // release: this thread's use of the record happens-before the next owner's
    // (their acquire CAS). The hazard is already null.
    r->active.store(false, std::memory_order_release);
  }

  /// The retire-list length at which a thread scans.
  [[nodiscard]] std::size_t threshold() const noexcept {
    return 2 * records_.load(std::memory_order_relaxed) + 64;  // heuristic; any value works
  }

  /// Frees every node of `list` that no hazard protects; the rest stay in it.
  /// Also adopts the orphans of exited threads. `scratch` is reused storage;
  /// `newly_retired` is how many nodes joined `list` since its last scan (the
  /// statistic is updated here, in batches, not by every pop).
  void scan(std::vector<Retired>& list, std::vector<const void*>& scratch, std::size_t newly_retired) {
    // relaxed: a hint; the mutex orders the orphans themselves.
    if (has_orphans_.load(std::memory_order_relaxed)) {
      std::lock_guard lock(orphan_mu_);
      list.insert(list.end(), orphans_.begin(), orphans_.end());
      orphans_.clear();
      has_orphans_.store(false, std::memory_order_relaxed);  // under the mutex; hint only
    }
    scratch.clear();
    // acquire: see above (record publication).
    for (Record* r = head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
      // seq_cst: see the header note (it must not be ordered before our
      // unlinking CAS, and it synchronises with the reader's release of the
      // hazard so that its last read of the node happens-before the free).
      const void* h = r->hazard.load(std::memory_order_seq_cst);
      if (h != nullptr) scratch.push_back(h);
    }
    std::sort(scratch.begin(), scratch.end());
    auto keep = std::partition(list.begin(), list.end(), [&](const Retired& x) {
      return std::binary_search(scratch.begin(), scratch.end(), static_cast<const void*>(x.ptr));
    });
    const auto freed = static_cast<std::size_t>(list.end() - keep);
    for (auto it = keep; it != list.end(); ++it) it->deleter(it->ptr);
    list.erase(keep, list.end());
    // relaxed: statistic only. Unsigned wrap-around makes this a signed delta.
    retired_.fetch_add(newly_retired - freed, std::memory_order_relaxed);
  }

  /// Frees p once no hazard names it, without allocating: the fallback of a
  /// retire that could not record p. p is already unlinked (our seq_cst CAS
  /// precedes these loads), so a thread that protects it from now on fails
  /// its validation and never reads it; those that did are waited out.
  void free_when_unprotected(void* p, void (*deleter)(void*) noexcept) noexcept {
    for (unsigned spins = 0;; ++spins) {
      bool held = false;
      // acquire: record publication; seq_cst: as in scan().
      for (Record* r = head_.load(std::memory_order_acquire); r != nullptr && !held; r = r->next) {
        held = r->hazard.load(std::memory_order_seq_cst) == p;
      }
      if (!held) break;
      if (spins < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    deleter(p);
  }

  /// Hands nodes over to be adopted by the next scan of any thread. They must
  /// already be counted in the statistic (count_retired or a scan).
  void add_orphans(const Retired* first, std::size_t n) {
    if (n == 0) return;
    std::lock_guard lock(orphan_mu_);
    orphans_.insert(orphans_.end(), first, first + n);
    has_orphans_.store(true, std::memory_order_relaxed);  // hint; the mutex orders the data
  }

  void count_retired(std::size_t n) noexcept {
    retired_.fetch_add(n, std::memory_order_relaxed);
  }  // statistic only
  [[nodiscard]] std::size_t retired() const noexcept { return retired_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t records() const noexcept { return records_.load(std::memory_order_relaxed); }

 private:
  Domain() = default;

  std::atomic<Record*> head_{nullptr};
  std::atomic<std::size_t> records_{0};
  // On its own cache line: every retire writes it, every protected read reads head_.
  alignas(kCacheLine) std::atomic<std::size_t> retired_{0};
  [[maybe_unused]] char retired_pad_[kCacheLine - sizeof(std::atomic<std::size_t>)]{};
  std::mutex orphan_mu_;
  std::vector<Retired> orphans_;
  std::atomic<bool> has_orphans_{false};
};

/// A thread's record and retire list, created on first use, cleaned up at thread exit.
struct ThreadState {
  Record* rec = nullptr;
  std::vector<Retired> retired;
  std::vector<const void*> scratch;
  std::size_t uncounted = 0;  // retired since the last scan, not yet in the statistic

  ThreadState() : rec(Domain::instance().acquire_record()) {}
  ThreadState(const ThreadState&) = delete;
  ThreadState& operator=(const ThreadState&) = delete;
  ~ThreadState();
};

// Set when this thread's ThreadState has been destroyed (thread exit), so that
// a keel structure used from a later thread_local destructor falls back to a
// temporary record instead of touching a dead object. Trivially destructible.
inline thread_local bool t_state_gone = false;

inline ThreadState::~ThreadState() {
  t_state_gone = true;
  Domain& d = Domain::instance();
  rec->hazard.store(nullptr, std::memory_order_release);  // already null; release for the next owner
  if (!retired.empty()) d.scan(retired, scratch, uncounted);
  uncounted = 0;
  d.add_orphans(retired.data(), retired.size());
  d.release_record(rec);
}

/// The calling thread's state, or nullptr after it was destroyed at thread exit.
inline ThreadState* thread_state() {
  if (t_state_gone) return nullptr;
  thread_local ThreadState state;
  return &state;
}

/// For tests: when set and returning true, retire() throws std::bad_alloc
/// (as its list or a scan failing to allocate would). Always compiled (one
/// relaxed load per retire): the hazard domain is process-wide, so it must
/// not differ between translation units.
inline std::atomic<bool (*)()> retire_fail_hook{nullptr};

/// RAII: one hazard slot for the duration of an operation.
class Guard {
 public:
  Guard() : ts_(thread_state()), rec_(ts_ != nullptr ? ts_->rec : Domain::instance().acquire_record()) {}
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  ~Guard() {
    clear();
    if (ts_ == nullptr) Domain::instance().release_record(rec_);
  }

  /// Loads `src`, protects the pointer read, and re-reads until stable: the
  /// returned node (if any) cannot be freed until clear() or another protect().
  template <class N>
  N* protect(const std::atomic<N*>& src) noexcept {
    // acquire: the node's fields written before it was published are visible.
    N* p = src.load(std::memory_order_acquire);
    for (;;) {
      // seq_cst store and seq_cst re-read: see the header note.
      rec_->hazard.store(p, std::memory_order_seq_cst);
      N* q = src.load(std::memory_order_seq_cst);
      if (q == p) return p;
      p = q;
    }
  }

  /// Drops the protection. release: our reads of the node happen-before a
  /// scanner that sees null frees it.
  void clear() noexcept { rec_->hazard.store(nullptr, std::memory_order_release); }

  /// Retires an unlinked node: it is freed once no hazard points to it.
  /// Hands the unlinked node p to be freed once no hazard protects it.
  /// Never throws: when the retire list cannot grow (std::bad_alloc), the
  /// node is freed right here, after waiting until no hazard names it (the
  /// holders are poppers between their protect and their CAS, which fails);
  /// when a scan cannot allocate, the nodes stay retired for the next one.
  void retire(void* p, void (*deleter)(void*) noexcept) noexcept {
    Domain& d = Domain::instance();
    const Retired r{p, deleter};
    try {
      // relaxed: a test installs the hook before the threads it tests start.
      if (auto* fail = retire_fail_hook.load(std::memory_order_relaxed); fail != nullptr && fail()) {
        throw std::bad_alloc();
      }
      if (ts_ == nullptr) {
        d.add_orphans(&r, 1);
        d.count_retired(1);
        return;
      }
      ts_->retired.push_back(r);
    } catch (...) {
      d.free_when_unprotected(p, deleter);
      return;
    }
    ++ts_->uncounted;  // thread-local: no shared write per pop
    if (ts_->retired.size() >= d.threshold()) {
      try {
        d.scan(ts_->retired, ts_->scratch, ts_->uncounted);
        ts_->uncounted = 0;
      } catch (...) {
        // Nothing was freed or lost (the list is intact): the next scan retries.
      }
    }
  }

 private:
  ThreadState* ts_;
  Record* rec_;
};

/// Scans the calling thread's retire list now (frees what is unprotected).
inline void flush() {
  if (ThreadState* ts = thread_state(); ts != nullptr) {
    Domain::instance().scan(ts->retired, ts->scratch, ts->uncounted);
    ts->uncounted = 0;
  }
}

}  // namespace keel::detail::hazard
