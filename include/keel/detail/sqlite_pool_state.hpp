// keel/detail/sqlite_pool_state.hpp: the state a Pool's handles, its
// connections and its maintenance thread share (PoolState): opening and
// configuring connections, checkout and return, statistics, and the
// maintenance pass (retiring, topping up, WAL checkpoints). Not part of the API.
#pragma once

#include <keel/detail/sqlite_clock.hpp>
#include <keel/detail/sqlite_connection.hpp>
#include <keel/detail/sqlite_write_lock.hpp>
#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/sqlite/config.hpp>
#include <keel/sqlite/error.hpp>

#include <SQLiteCpp/Database.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace keel::sqlite::detail {

/// What a PoolState's connections are for.
enum class Role : std::uint8_t {
  any,     ///< read and write (no split)
  writer,  ///< the one writer connection of a split pool
  reader,  ///< read-only connections of a split pool
};

/// The state a Pool's handles, its connections and its maintenance thread share.
class PoolState : public std::enable_shared_from_this<PoolState> {
 public:
  explicit PoolState(PoolConfig config, Role role = Role::any) : cfg_(std::move(config)), role_(role) {
    log_ = keel::resolve_logger(cfg_.logger);
  }
  [[nodiscard]] Role role() const noexcept { return role_; }
  /// The name SQLite opens (the memdb URI for ":memory:").
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  PoolState(const PoolState&) = delete;
  PoolState& operator=(const PoolState&) = delete;
  ~PoolState() { anchor_.reset(); }

  [[nodiscard]] const PoolConfig& config() const noexcept { return cfg_; }
  [[nodiscard]] const keel::Logger& log() const noexcept { return log_; }
  WriteLock& writer() noexcept { return writer_; }

  /// Validates the configuration, works out the name and flags, opens the
  /// first connection (setting journal_mode) and the rest of min_idle.
  Result<void> start() {
    KEEL_TRY(cfg_.validate());
    if (cfg_.connection_timeout <= cfg_.busy_timeout) {
      log_->warn("keel::sqlite: connection_timeout ({} ms) should exceed busy_timeout ({} ms)",
                 cfg_.connection_timeout.count(), cfg_.busy_timeout.count());
    }
    flags_ = (cfg_.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
             SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE;  // (a "cache=shared" URI wins)
    if (cfg_.path == ":memory:") {
      // One database per pool that every connection sees: the memdb VFS
      // shares a database between the connections of a process when its name
      // starts with '/'. (Shared-cache ":memory:" would also share it, but
      // shared cache reports table locks as SQLITE_LOCKED, which the busy
      // handler never waits out.) An anchor connection keeps it alive.
      static std::atomic<std::uint64_t> counter{0};
      // relaxed: only uniqueness matters.
      const auto n = counter.fetch_add(1, std::memory_order_relaxed);
      name_ = fmt::format("file:/keel-memdb-{}-{}?vfs=memdb", static_cast<const void*>(this), n);
      memory_ = true;
    } else {
      name_ = cfg_.path;
      if (cfg_.file_mode != 0 && !cfg_.read_only && !cfg_.path.starts_with("file:")) {
        KEEL_TRY(create_private(cfg_.path, cfg_.file_mode));
      }
    }

    KEEL_TRY_ASSIGN(auto first, open_connection(true));
    if (!memory_ && !cfg_.read_only) {
      const char* file = sqlite3_db_filename(first->db.getHandle(), "main");
      if (file != nullptr && *file != '\0') wal_path_ = std::string(file) + "-wal";
    }
    if (memory_) {
      KEEL_TRY_ASSIGN(auto anchor, open_connection(false));
      anchor->pool.reset();  // owned by this state: no reference back
      anchor_ = std::move(anchor);
    }
    const std::size_t warm = std::max<std::size_t>(cfg_.min_idle, 1);
    nslots_ = std::max<std::size_t>(cfg_.max_size, warm);
    slots_ = std::make_unique<Slot[]>(nslots_);
    std::vector<std::unique_ptr<Conn>> conns;
    conns.push_back(std::move(first));
    while (conns.size() < warm) {
      KEEL_TRY_ASSIGN(auto c, open_connection(false));
      conns.push_back(std::move(c));
    }
    {
      const std::lock_guard lock(mu_);
      size_ = conns.size();
      for (auto& c : conns) place(std::move(c));
    }
    log_->debug("keel::sqlite: pool opened on {} ({} connections, max {})", cfg_.path, warm, cfg_.max_size);
    return {};
  }

  /// Checks a connection out, waiting until `deadline`; `start` is now (the
  /// caller has usually just read the clock).
  Result<std::unique_ptr<Conn>> acquire(WaitLimit limit) {
    // Ages need no precision; the precise clock is read only to wait.
    auto age_now = cfg_.max_lifetime.count() > 0 ? coarse_now() : Clock::time_point{};
    // The fast path: an idle connection taken from its slot without the lock.
    std::size_t at = 0;
    std::unique_ptr<Conn> c(claim_idle(false, &at));
    if (c && !too_old(*c, age_now)) {
      // relaxed: a statistic; the slot's line is this thread's after the claim.
      slots_[at].gets.fetch_add(1, std::memory_order_relaxed);
      return c;
    }
    return acquire_locked(limit, std::move(c), age_now);
  }

 private:
  /// acquire() past the fast path, with what that took (a connection past
  /// max_lifetime, or none). Out of line, so that acquire() inlines small.
  [[gnu::noinline]] Result<std::unique_ptr<Conn>> acquire_locked(WaitLimit limit, std::unique_ptr<Conn> c,
                                                                 Clock::time_point age_now) {
    std::vector<std::unique_ptr<Conn>> expired;  // closed after the lock is released
    std::unique_lock lock(mu_);
    bool waited = false;
    bool started = false;       // the clock was read for a wait
    Clock::time_point start{};  // then: the deadline's base for a timeout, the wait's start
    for (;;) {
      if (c) {  // past max_lifetime
        --size_;
        ++closed_count_;
        expired.push_back(std::move(c));
      }
      if (closed_) return fail(Errc::closed, "the pool on {} is closed", cfg_.path);
      // While others wait, slots left empty are marked (see claim_idle).
      c.reset(claim_idle(waiting_ > 0));
      if (c) {
        if (too_old(*c, age_now)) continue;
        checked_out(waited, start);
        lock.unlock();
        expired.clear();
        return c;
      }
      if (size_ < cfg_.max_size) {
        ++size_;
        ++opening_;
        lock.unlock();
        expired.clear();
        auto opened = open_connection(false);
        lock.lock();
        --opening_;
        if (!opened) {
          --size_;
          lock.unlock();
          cv_.notify_one();  // someone else may open one, or take a returned one
          return std::move(opened).error().context(fmt::format("checking out a connection to {}", cfg_.path));
        }
        if (closed_) {
          --size_;
          ++closed_count_;
          lock.unlock();
          return fail(Errc::closed, "the pool on {} is closed", cfg_.path);
        }
        checked_out(waited, start);
        return opened;
      }
      const auto now = Clock::now();
      if (!started) {
        started = true;
        start = now;
        if (limit.relative) limit.deadline = now + limit.timeout;
      }
      if (now >= limit.deadline) {
        ++timeouts_;
        record_wait(now - start);
        lock.unlock();
        const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
            limit.relative ? limit.timeout : std::max(limit.deadline - start, Clock::duration::zero()));
        log_->warn("keel::sqlite: no connection to {} free after {} ms ({} in use)", cfg_.path,
                   timeout.count(), cfg_.max_size);
        return fail(Errc::timeout, "no connection to {} became free within {} ms (max_size {})", cfg_.path,
                    timeout.count(), cfg_.max_size);
      }
      // Counted as a waiter, look once more, marking every empty slot: a
      // connection coming back then finds no empty slot, takes the locked
      // path and wakes a waiter. (A connection put in a slot before the mark
      // is found by this look.)
      ++waiting_;
      c.reset(claim_idle(true));
      if (c) {
        leave_waiting();
        continue;
      }
      if (!waited) {
        waited = true;
        ++waits_;
      }
      cv_.wait_until(lock, limit.deadline);
      leave_waiting();
      age_now = Clock::now();
    }
  }

 public:
  /// Takes a connection back: rolls back an open transaction, resets
  /// statements left mid-step, then makes it idle (or closes it).
  ///
  /// Each connection keeps its PoolState alive (Conn::pool), so a checkout
  /// copies no shared pointer. This may drop the last reference (the pool
  /// closed, no Pool handle left, this connection the last one out): nothing
  /// here touches the state after that reference goes.
  void release(std::unique_ptr<Conn>&& c) noexcept {
    if (!c) return;
    if (!c->owns_write_lock) {
      release_conn(std::move(c));
      return;
    }
    c->owns_write_lock = false;
    const std::shared_ptr<PoolState> keep = c->pool;  // for the unlock below
    release_conn(std::move(c));
    writer_.unlock();  // after the connection is idle again, for the next in line
  }

 private:
  // Takes c by reference (it is empty on return): moving it through by value
  // would leave a moved-from pointer to destroy at every call.
  void release_conn(std::unique_ptr<Conn>&& c) noexcept {
    c->cache.reset_used();  // then the loops below find only statements from elsewhere busy
    sqlite3* h = c->db.getHandle();
    if (sqlite3_get_autocommit(h) == 0) {
      log_->warn("keel::sqlite: connection {} returned with an open transaction; rolling it back", c->id);
      for (sqlite3_stmt* s = sqlite3_next_stmt(h, nullptr); s != nullptr; s = sqlite3_next_stmt(h, s)) {
        if (sqlite3_stmt_busy(s) != 0) sqlite3_reset(s);
      }
      if (c->run(TxStmt::rollback) != SQLITE_DONE && sqlite3_get_autocommit(h) == 0) c->broken = true;
      if (!c->reader) {
        sqlite3_exec(h, "PRAGMA query_only = 0", nullptr, nullptr, nullptr);
        c->query_only = false;
      }
    } else if (sqlite3_txn_state(h, nullptr) != SQLITE_TXN_NONE) {
      // Outside a transaction, a read transaction is open only while a
      // statement is mid-step on the database (it holds that snapshot): one
      // call rules that out instead of walking every statement at every
      // return. (Statements mid-step without reading the database, such as
      // `SELECT 1`, hold nothing; they can only be the caller's own, which
      // must be finalized before the connection goes back.)
      for (sqlite3_stmt* s = sqlite3_next_stmt(h, nullptr); s != nullptr; s = sqlite3_next_stmt(h, s)) {
        if (sqlite3_stmt_busy(s) != 0) sqlite3_reset(s);
      }
    }
    c->savepoint_depth = 0;
    const auto now = coarse_now();  // for ages only
    if (!c->broken && !too_old(*c, now)) {
      // The fast path: into an empty slot, without the lock. Nothing here
      // touches the state once the connection is in its slot (close() may
      // take it and drop the last reference). A marked or closed slot sends
      // it the locked way.
      c->last_used = now;
      std::size_t& home = hint();
      std::size_t i = home;
      for (std::size_t k = 0; k < nslots_; ++k, i = next_slot(i)) {
        auto& slot = slots_[i].conn;
        Conn* v = slot.load(std::memory_order_relaxed);
        if (v == nullptr &&
            slot.compare_exchange_strong(v, c.get(), std::memory_order_release, std::memory_order_relaxed)) {
          (void)c.release();  // owned by the slot now
          home = i;           // (thread-local: not the state)
          return;
        }
        // As loaded, or as the failed exchange found it.
        if (v == wait_mark() || v == closed_mark()) break;
      }
    }
    std::unique_lock lock(mu_);
    if (closed_ || c->broken || too_old(*c, now)) {
      --size_;
      ++closed_count_;
      const bool closed = closed_;
      lock.unlock();
      const std::shared_ptr<PoolState> keep = std::move(c->pool);  // goes last
      cv_.notify_one();
      if (!closed) wake_maintenance();
      log_->debug("keel::sqlite: closing connection {}", c->id);
      c.reset();
      return;
    }
    place(std::move(c));
    // Under the lock: once it is released, close() may drop this connection
    // and with it the last reference to this state.
    if (waiting_ > 0) cv_.notify_one();
  }

 public:
  /// Closes idle connections, fails waiters with Errc::closed; connections
  /// checked out are closed when they come back.
  void close() noexcept {
    std::vector<std::unique_ptr<Conn>> idle;
    {
      const std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      for (std::size_t i = 0; i < nslots_; ++i) {
        // Closed slots send every connection coming back the locked way.
        Conn* v = slots_[i].conn.exchange(closed_mark(), std::memory_order_acq_rel);
        if (is_conn(v)) idle.emplace_back(v);
      }
      size_ -= idle.size();
      closed_count_ += idle.size();
    }
    cv_.notify_all();
    wake_maintenance();
    idle.clear();
    log_->debug("keel::sqlite: pool on {} closed", cfg_.path);
  }

  [[nodiscard]] PoolStats stats() const {
    const std::lock_guard lock(mu_);
    PoolStats s;
    s.size = size_;
    const std::size_t idle = idle_in_slots();
    s.idle = idle;
    // Out of a slot, not being opened: checked out. Checkouts and returns in
    // flight can make the idle count lag (then this is 0, not negative).
    s.in_use = size_ >= idle + opening_ ? size_ - idle - opening_ : 0;
    s.max_size = cfg_.max_size;
    s.gets = gets_;
    for (std::size_t i = 0; i < nslots_; ++i) s.gets += slots_[i].gets.load(std::memory_order_relaxed);
    s.waits = waits_;
    s.timeouts = timeouts_;
    s.longest_wait = longest_wait_;
    s.opened = opened_;
    s.closed = closed_count_;
    s.wal_bytes = wal_bytes_;
    s.checkpoint_lag_frames = checkpoint_lag_;
    s.checkpoints = checkpoints_;
    s.checkpoint_failures = checkpoint_failures_;
    return s;
  }

  /// The maintenance loop (run by the pool's thread until close()).
  void maintain() noexcept {
    std::unique_lock lock(mu_);
    while (!closed_) {
      maint_cv_.wait_for(lock, cfg_.maintenance_interval, [&] { return closed_ || maint_wake_; });
      maint_wake_ = false;
      if (closed_) break;
      lock.unlock();
      maintain_once();
      lock.lock();
    }
  }

  /// One maintenance pass: retire idle connections past idle_timeout (keeping
  /// min_idle) or max_lifetime, then open connections up to min_idle idle.
  void maintain_once() noexcept {
    std::vector<std::unique_ptr<Conn>> retired;
    std::size_t need = 0;
    {
      const std::lock_guard lock(mu_);
      if (closed_) return;
      const auto now = Clock::now();
      // Each idle connection is taken from its slot to be looked at (it is
      // then no one else's), and put back unless retired.
      // Those kept go back to the slot they came from, where the thread that
      // uses them looks first.
      std::vector<std::pair<std::unique_ptr<Conn>, std::size_t>> kept;
      std::size_t idle = idle_in_slots();
      std::size_t at = 0;
      while (Conn* p = claim_idle(waiting_ > 0, &at)) {
        std::unique_ptr<Conn> c(p);
        const bool old = too_old(*c, now);
        const bool unused =
            cfg_.idle_timeout.count() > 0 && now - c->last_used >= cfg_.idle_timeout && idle > cfg_.min_idle;
        if (old || unused) {
          retired.push_back(std::move(c));
          if (idle > 0) --idle;
          --size_;
          ++closed_count_;
        } else {
          kept.emplace_back(std::move(c), at);
        }
      }
      for (auto& [c, slot] : kept) place(std::move(c), slot);
      if (!kept.empty() && waiting_ > 0) cv_.notify_all();
      idle = kept.size();
      if (idle < cfg_.min_idle) {
        need = std::min(cfg_.min_idle - idle, cfg_.max_size - size_);
        size_ += need;
        opening_ += need;
      }
    }
    if (!retired.empty())
      log_->debug("keel::sqlite: retiring {} idle connections to {}", retired.size(), cfg_.path);
    retired.clear();
    checkpoint_if_large();
    for (std::size_t i = 0; i < need; ++i) {
      auto c = open_connection(false);
      std::unique_lock lock(mu_);
      if (!c || closed_) {
        size_ -= need - i;
        opening_ -= need - i;
        if (c) ++closed_count_;
        lock.unlock();
        if (!c) log_->warn("keel::sqlite: could not top up the pool: {}", c.error());
        cv_.notify_all();
        return;  // c (if any) closes here, outside the lock
      }
      --opening_;
      c.value()->last_used = Clock::now();
      place(std::move(*c));
      lock.unlock();
      cv_.notify_one();
    }
  }

  /// Runs a TRUNCATE checkpoint on an idle connection when the -wal file has
  /// passed wal_checkpoint_bytes (from the maintenance thread).
  void checkpoint_if_large() noexcept {
    if (cfg_.wal_checkpoint_bytes <= 0 || wal_path_.empty()) return;
    struct stat st {};
    const std::uint64_t size =
        ::stat(wal_path_.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : std::uint64_t{0};
    {
      const std::lock_guard lock(mu_);
      wal_bytes_ = size;
      if (closed_ || size < static_cast<std::uint64_t>(cfg_.wal_checkpoint_bytes)) return;
    }
    // In line with this process's writers (the lock is fair), so they cannot
    // keep the checkpoint from SQLite's write lock; the lock first, then an
    // idle connection (a split pool's writer holds the lock while it holds
    // its connection).
    if (!writer_.try_lock_until(Clock::now() + cfg_.busy_timeout)) return;
    std::unique_ptr<Conn> c;
    {
      const std::lock_guard lock(mu_);
      if (!closed_) c.reset(claim_idle(waiting_ > 0));
    }
    if (!c) {
      writer_.unlock();
      return;
    }
    int log_frames = 0;
    int done = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(c->db.getHandle(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &done);
    writer_.unlock();
    std::uint64_t failures = 0;
    {
      const std::lock_guard lock(mu_);
      if (rc == SQLITE_OK) {
        ++checkpoints_;
        consecutive_failures_ = 0;
        checkpoint_lag_ = 0;
        wal_bytes_ = 0;
      } else {
        ++checkpoint_failures_;
        failures = ++consecutive_failures_;
        checkpoint_lag_ = log_frames > done ? static_cast<std::uint64_t>(log_frames - done) : 0;
      }
    }
    if (rc == SQLITE_OK) {
      log_->debug("keel::sqlite: checkpointed and truncated the {}-byte write-ahead log of {}", size,
                  cfg_.path);
    } else if (failures == 3 || (failures > 3 && failures % 60 == 0)) {
      log_->warn(
          "keel::sqlite: the write-ahead log of {} is {} bytes and {} checkpoints in a row could not "
          "finish ({}): a reader or writer keeps an old snapshot open",
          cfg_.path, size, failures, sqlite3_errmsg(c->db.getHandle()));
    }
    release(std::move(c));
  }

  void wake_maintenance() noexcept {
    {
      const std::lock_guard lock(mu_);
      maint_wake_ = true;
    }
    maint_cv_.notify_one();
  }

 private:
  void checked_out(bool waited, Clock::time_point start) {
    ++gets_;
    if (waited) record_wait(Clock::now() - start);
  }
  [[nodiscard]] bool too_old(const Conn& c, Clock::time_point now) const noexcept {
    return cfg_.max_lifetime.count() > 0 && now - c.created >= cfg_.max_lifetime;
  }

  // Idle connections live in slots_ (one per connection max_size allows), so
  // that checkout and return take no lock when an idle connection is there and
  // no one waits. A slot holds a connection, nothing, wait_mark() (empty while
  // a checkout waits: a return then takes the locked path and wakes it) or
  // closed_mark() (after close()). Marks are set and cleared under mu_.
  static Conn* wait_mark() noexcept { return reinterpret_cast<Conn*>(std::uintptr_t{1}); }
  static Conn* closed_mark() noexcept { return reinterpret_cast<Conn*>(std::uintptr_t{2}); }
  static bool is_conn(const Conn* v) noexcept { return reinterpret_cast<std::uintptr_t>(v) > 2; }
  /// Idle connections now in their slots (a snapshot while checkouts run).
  [[nodiscard]] std::size_t idle_in_slots() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < nslots_; ++i)
      n += is_conn(slots_[i].conn.load(std::memory_order_relaxed)) ? std::size_t{1} : std::size_t{0};
    return n;
  }
  /// Where this thread starts looking (its home slot) and, at each checkout
  /// and return, where it last found or left a connection. A thread gives a
  /// connection back to the slot it took it from, so it gets the same one
  /// (warm in its core's cache) next time; two threads that start at the
  /// same slot part at their first clash, since the one that finds it empty
  /// moves on and makes its home where it takes a connection. Threads are
  /// numbered in the order they first check out, spread over the slots.
  /// (One per thread for every pool of that size: worked out again only when
  /// the size differs, since a division costs more than the rest of a
  /// checkout's bookkeeping.)
  [[nodiscard]] std::size_t& hint() const noexcept {
    struct Hint {
      std::size_t slots;  // the pool size `slot` is for (0: none yet)
      std::size_t slot;
    };
    thread_local Hint h{0, 0};  // constant-initialised: no guard at each access
    if (h.slots != nslots_) {
      static std::atomic<std::size_t> threads{0};
      thread_local const std::size_t mine =
          threads.fetch_add(1, std::memory_order_relaxed);  // relaxed: only spreading matters
      h.slots = nslots_;
      h.slot = mine % nslots_;
    }
    return h.slot;
  }
  /// The slot after i, wrapping (without a division).
  [[nodiscard]] std::size_t next_slot(std::size_t i) const noexcept { return i + 1 == nslots_ ? 0 : i + 1; }
  /// Takes an idle connection from a slot (nullptr: none); with `mark` (under
  /// mu_), leaves the slots it passes empty marked instead, and the one it
  /// takes from too.
  Conn* claim_idle(bool mark, std::size_t* at = nullptr) noexcept {
    Conn* const left = mark ? wait_mark() : nullptr;
    std::size_t& home = hint();
    std::size_t i = home;
    for (std::size_t k = 0; k < nslots_; ++k, i = next_slot(i)) {
      auto& slot = slots_[i].conn;
      Conn* v = slot.load(std::memory_order_relaxed);
      for (;;) {
        if (is_conn(v)) {
          if (at != nullptr) *at = i;
          // acquire: the connection as its returner left it.
          if (slot.compare_exchange_weak(v, left, std::memory_order_acquire, std::memory_order_relaxed)) {
            home = i;
            return v;
          }
        } else if (mark && v == nullptr) {
          if (slot.compare_exchange_weak(v, left, std::memory_order_relaxed, std::memory_order_relaxed))
            break;
        } else {
          break;
        }
      }
    }
    return nullptr;
  }
  /// Puts an idle connection in a free slot (under mu_; there is always
  /// one), looking from `from` on.
  void place(std::unique_ptr<Conn> c) noexcept { place(std::move(c), hint()); }
  void place(std::unique_ptr<Conn> c, std::size_t from) noexcept {
    const std::size_t h = from;
    for (;;) {
      std::size_t i = h;
      for (std::size_t k = 0; k < nslots_; ++k, i = next_slot(i)) {
        auto& slot = slots_[i].conn;
        Conn* v = slot.load(std::memory_order_relaxed);
        while (v == nullptr || v == wait_mark()) {
          if (slot.compare_exchange_weak(v, c.get(), std::memory_order_release, std::memory_order_relaxed)) {
            (void)c.release();
            return;
          }
        }
      }
    }
  }
  /// One waiter fewer; the last one clears the marks (under mu_).
  void leave_waiting() noexcept {
    if (--waiting_ > 0) return;
    for (std::size_t i = 0; i < nslots_; ++i) {
      Conn* v = wait_mark();
      slots_[i].conn.compare_exchange_strong(v, nullptr, std::memory_order_relaxed,
                                             std::memory_order_relaxed);
    }
  }

  void record_wait(Clock::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    if (ns > longest_wait_) longest_wait_ = ns;
  }

  /// Creates `path` with exactly `mode` (not less the umask) unless it exists.
  static Result<void> create_private(const std::string& path, std::uint32_t mode) {
    const int fd =
        ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, static_cast<mode_t>(mode));
    if (fd < 0) {
      if (errno == EEXIST) return {};
      return fail(Errc::io, "creating {}: {}", path, std::strerror(errno));
    }
    const int rc = ::fchmod(fd, static_cast<mode_t>(mode));  // the umask took bits away at open
    const int err = errno;
    ::close(fd);
    if (rc != 0) return fail(Errc::io, "setting the mode of {}: {}", path, std::strerror(err));
    return {};
  }

  /// Opens and configures one connection (no lock held).
  Result<std::unique_ptr<Conn>> open_connection(bool first) {
    std::uint64_t id = 0;
    {
      const std::lock_guard lock(mu_);
      id = next_id_++;
    }
    std::string step = "opening";
    try {
      SQLite::Database db(name_, flags_, static_cast<int>(cfg_.busy_timeout.count()));
      auto c = std::make_unique<Conn>(std::move(db), id, cfg_.statement_cache_capacity);
      if (cfg_.check_schema) c->watch_shm();  // before any statement maps the WAL index
      c->pool = shared_from_this();
      c->reader = role_ == Role::reader;
      c->query_only = c->reader;
      auto& d = c->db;
      if (first) {
        // Reading the schema makes a file that is not a database fail here, at open.
        step = "reading the schema of";
        (void)d.execAndGet("SELECT count(*) FROM sqlite_master").getInt64();
        if (!cfg_.read_only && !cfg_.journal_mode.empty()) {
          step = "setting journal_mode on";
          const std::string mode = d.execAndGet("PRAGMA journal_mode = " + cfg_.journal_mode).getString();
          log_->debug("keel::sqlite: journal_mode is {} on {}", mode, cfg_.path);
        }
      }
      step = "setting pragmas on";
      std::string p;
      if (!cfg_.synchronous.empty()) p += "PRAGMA synchronous = " + cfg_.synchronous + ";";
      p += cfg_.foreign_keys ? "PRAGMA foreign_keys = ON;" : "PRAGMA foreign_keys = OFF;";
      p += fmt::format("PRAGMA cache_size = {};", cfg_.cache_size);
      if (!memory_) p += fmt::format("PRAGMA mmap_size = {};", cfg_.mmap_size);
      if (!memory_) p += fmt::format("PRAGMA journal_size_limit = {};", cfg_.journal_size_limit);
      for (const auto& extra : cfg_.pragmas) p += "PRAGMA " + extra + ";";
      d.exec(p);
      if (cfg_.on_connect) {
        step = "running on_connect for";
        auto r = cfg_.on_connect(d);
        if (!r) return std::move(r).error().context(fmt::format("{} {}", step, cfg_.path));
      }
      if (cfg_.check_schema) {
        if (c->check_schema(true) != SQLITE_OK) {
          return last_error(d.getHandle(), "PRAGMA schema_version")
              .context(fmt::format("reading the schema version of {}", cfg_.path));
        }
      }
      {
        const std::lock_guard lock(mu_);
        ++opened_;
      }
      log_->debug("keel::sqlite: opened connection {} to {}", id, cfg_.path);
      return c;
    } catch (const SQLite::Exception& ex) {
      log_->warn("keel::sqlite: {} {} failed: {}", step, cfg_.path, ex.what());
      return from_exception(ex).context(fmt::format("{} SQLite database {}", step, cfg_.path));
    } catch (const std::bad_alloc&) {
      return fail(Errc::resource_exhausted, "out of memory {} {}", step, cfg_.path);
    }
  }

  const PoolConfig cfg_;
  const Role role_;
  keel::Logger log_;
  std::string name_;
  int flags_ = 0;
  bool memory_ = false;
  std::unique_ptr<Conn> anchor_;  // keeps a :memory: database alive

  mutable std::mutex mu_;
  std::condition_variable cv_;  // a connection came back (or the pool closed)
  std::size_t waiting_ = 0;     // acquire() calls waiting on cv_
  struct alignas(64) Slot {
    std::atomic<Conn*> conn{nullptr};
    std::atomic<std::uint64_t> gets{0};  // checkouts that took no lock
  };
  std::unique_ptr<Slot[]> slots_;  // the idle connections (see claim_idle)
  std::size_t nslots_ = 0;
  std::size_t size_ = 0;     // open + being opened
  std::size_t opening_ = 0;  // of size_: being opened
  bool closed_ = false;
  alignas(64) std::uint64_t next_id_ = 1;
  std::uint64_t gets_ = 0;  // locked checkouts (fast ones count in their slot)
  std::uint64_t waits_ = 0;
  std::uint64_t timeouts_ = 0;
  std::uint64_t opened_ = 0;
  std::uint64_t closed_count_ = 0;
  std::chrono::nanoseconds longest_wait_{0};
  std::string wal_path_;  // empty: in memory or read-only
  std::uint64_t wal_bytes_ = 0;
  std::uint64_t checkpoint_lag_ = 0;
  std::uint64_t checkpoints_ = 0;
  std::uint64_t checkpoint_failures_ = 0;
  std::uint64_t consecutive_failures_ = 0;
  std::condition_variable maint_cv_;
  bool maint_wake_ = false;

  WriteLock writer_;  // the single in-process writer path (see transaction())
};

}  // namespace keel::sqlite::detail
