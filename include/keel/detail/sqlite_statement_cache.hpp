// keel/detail/sqlite_statement_cache.hpp: the per-connection LRU of
// prepared statements behind PooledConnection::prepare_cached. Not part of
// the API.
#pragma once

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace keel::sqlite::detail {

/// A per-connection LRU of prepared statements. The map's keys view the SQL
/// held by the list nodes, which never move.
class StatementCache {
 public:
  explicit StatementCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  /// The statement for sql, prepared on db if it is not cached, reset and with
  /// its bindings cleared. Throws SQLite::Exception.
  SQLite::Statement& get(SQLite::Database& db, std::string_view sql) {
    // The most recent statement first: a connection often runs the same one
    // again, and a comparison is cheaper than hashing the SQL.
    if (!lru_.empty() && lru_.front().sql == sql) [[likely]]
      return fresh(lru_.front());
    return find_or_prepare(db, sql);
  }
  /// Resets the statements handed out since the last call and clears their
  /// bindings, so the next get() of each needs neither (run when the
  /// connection goes back to the pool). get() moves what it hands out to the
  /// front, so they are the entries before the first clean one.
  void reset_used() noexcept {
    for (Entry& e : lru_) {
      if (e.clean) break;
      (void)e.stmt.tryReset();
      try {
        e.stmt.clearBindings();  // sqlite3_clear_bindings, which cannot fail
      } catch (...) {
        continue;  // left dirty: get() tries again
      }
      e.clean = true;
    }
  }
  [[nodiscard]] std::size_t size() const noexcept { return lru_.size(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint64_t misses() const noexcept { return misses_; }
  void clear() noexcept {
    index_.clear();
    lru_.clear();
  }

 private:
  struct Entry {
    Entry(SQLite::Database& db, std::string_view s) : sql(s), stmt(db, sql) {}
    std::string sql;
    SQLite::Statement stmt;
    bool clean = true;  // reset with no bindings since it was last handed out
  };

  // get() past the most recent statement; out of line, so that get() inlines
  // as little more than one comparison.
  [[gnu::noinline]] SQLite::Statement& find_or_prepare(SQLite::Database& db, std::string_view sql) {
    if (auto it = index_.find(sql); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);  // most recent first; iterators stay valid
      return fresh(*it->second);
    }
    ++misses_;
    lru_.emplace_front(db, sql);  // prepares (may throw; then nothing was added)
    try {
      index_.emplace(std::string_view(lru_.front().sql), lru_.begin());
    } catch (...) {
      lru_.pop_front();
      throw;
    }
    if (lru_.size() > capacity_) {
      index_.erase(std::string_view(lru_.back().sql));
      lru_.pop_back();
    }
    lru_.front().clean = false;
    return lru_.front().stmt;
  }

  static SQLite::Statement& fresh(Entry& e) {
    if (!e.clean) {
      // tryReset: reset() would rethrow the error of the statement's last
      // failed step, which is history here.
      (void)e.stmt.tryReset();
      e.stmt.clearBindings();
    }
    e.clean = false;
    return e.stmt;
  }
  std::list<Entry> lru_;
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
  std::size_t capacity_;
  std::uint64_t misses_ = 0;
};

}  // namespace keel::sqlite::detail
