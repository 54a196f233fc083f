// keel-tour: keel::sqlite. A pool on a temporary file: migrations, writers on
// four threads, a keyset-paginated read, and FTS5 search when SQLite has it.
// SQLiteCpp's objects (statements, the database) throw: every call on them
// here sits inside transaction() or try_sql(), or goes through query_one.
#include <keel/sqlite.hpp>

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tour.hpp"

namespace {

constexpr std::string_view kMigrations[] = {
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, author INTEGER NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX notes_author ON notes(author, id)",
};

keel::Result<void> run(const std::string& path) {
  keel::sqlite::PoolConfig cfg;
  cfg.path = path;
  cfg.max_size = 4;
  KEEL_TRY_ASSIGN(auto pool, keel::sqlite::Pool::open(cfg));
  {
    KEEL_TRY_ASSIGN(auto conn, pool.get());
    KEEL_TRY_ASSIGN(int version, keel::sqlite::migrate(conn, kMigrations));
    KEEL_TRY_ASSIGN(int again, keel::sqlite::migrate(conn, kMigrations));
    fmt::print("  migrated to schema version {} (running it again: still {})\n", version, again);
  }

  // Four writer threads, one short transaction per note: no SQLITE_BUSY.
  constexpr int kThreads = 4;
  constexpr int kEach = 250;
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r =
            keel::sqlite::transaction(pool, [&](keel::sqlite::PooledConnection& c) -> keel::Result<void> {
              KEEL_TRY_ASSIGN(SQLite::Statement & ins,
                              c.prepare_cached("INSERT INTO notes(author, body) VALUES (?, ?)"));
              return keel::sqlite::try_sql([&] {
                ins.bind(1, t);
                ins.bind(2, fmt::format("note {} from writer {}: {}", i, t,
                                        i % 10 == 0 ? "remember the milk" : "ok"));
                ins.exec();
              });
            });
        if (!r) ++failures;
      }
    });
  }
  for (auto& w : writers) w.join();
  if (failures != 0) return keel::fail(keel::Errc::database, "{} write transactions failed", failures.load());
  const auto st = pool.stats();
  fmt::print("  {} threads wrote {} notes, 0 errors (pool: {} connections, {} waits)\n", kThreads,
             kThreads * kEach, st.size, st.waits);

  // Keyset pagination: "after the last id seen", never OFFSET.
  KEEL_TRY_ASSIGN(auto conn, pool.get());
  auto pages = keel::sqlite::transaction(
      conn,
      [&](keel::sqlite::PooledConnection& c) -> keel::Result<std::vector<std::int64_t>> {
        std::vector<std::int64_t> first_ids;
        std::int64_t after = 0;
        for (;;) {
          KEEL_TRY_ASSIGN(
              SQLite::Statement & page,
              c.prepare_cached("SELECT id FROM notes WHERE author = ? AND id > ? ORDER BY id LIMIT 100"));
          page.bind(1, 2);
          page.bind(2, after);
          int rows = 0;
          while (page.executeStep()) {
            const std::int64_t id = page.getColumn(0).getInt64();
            if (rows++ == 0) first_ids.push_back(id);
            after = id;
          }
          if (rows < 100) break;
        }
        return first_ids;
      },
      keel::sqlite::read_only);
  if (!pages) return std::move(pages).error();
  fmt::print("  writer 2's notes in {} keyset pages of 100 (read-only transaction)\n", pages->size());

  // Full-text search, if this SQLite was built with FTS5.
  auto fts = conn.exec(
      "CREATE VIRTUAL TABLE notes_fts USING fts5(body, content='notes', content_rowid='id');"
      "INSERT INTO notes_fts(notes_fts) VALUES ('rebuild')");
  if (fts) {
    KEEL_TRY_ASSIGN(std::int64_t hits,
                    keel::sqlite::query_one<std::int64_t>(
                        conn, "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH ?", "milk"));
    fmt::print("  FTS5: {} notes mention milk\n", hits);
  } else {
    fmt::print("  FTS5 not available here: {}\n", fts.error());
  }

  // Errors are values with the SQL and the SQLite code in their context.
  auto bad = conn.exec("INSERT INTO notes(author) VALUES (1)");
  if (bad) return keel::fail(keel::Errc::internal, "a NOT NULL violation was accepted");
  fmt::print("  a bad insert gives: {}\n", bad.error());
  return {};
}

}  // namespace

bool tour::sqlite() {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("keel-tour-sqlite-{}", ::getpid());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto r = run((dir / "notes.db").string());
  std::filesystem::remove_all(dir, ec);
  if (!r) {
    fmt::print("  sqlite failed: {}\n", r.error());
    return false;
  }
  return true;
}
