#include <keel/sqlite.hpp>

#include <rapidcheck/catch.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <catch2/catch.hpp>

#include <keel/log/sink.hpp>
#include "watchdog.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "test_support.hpp"

extern char** environ;

namespace fs = std::filesystem;
using keel::Errc;
using keel::Result;
using keel::sqlite::Pool;
using keel::sqlite::PoolConfig;
using keel::sqlite::PooledConnection;
using namespace std::chrono_literals;

namespace {

/// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("keel-sqlite-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1)));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

PoolConfig config_for(const std::string& path) {
  PoolConfig cfg;
  cfg.path = path;
  return cfg;
}

Pool open_pool(PoolConfig cfg) {
  auto pool = Pool::open(std::move(cfg));
  if (!pool) FAIL("Pool::open: " << pool.error().to_string());
  return std::move(*pool);
}

PooledConnection get(const Pool& pool) {
  auto c = pool.get();
  if (!c) FAIL("get: " << c.error().to_string());
  return std::move(*c);
}

/// A pool of one connection over a new table t(id, v) holding v = 1, 2, 3.
Pool one_connection_pool_with_rows(const TempDir& dir, const std::string& file) {
  auto cfg = config_for(dir.file(file));
  cfg.min_idle = 1;
  cfg.max_size = 1;
  auto pool = open_pool(cfg);
  {
    auto c = get(pool);
    REQUIRE(c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"));
    REQUIRE(c.exec("INSERT INTO t(v) VALUES (1), (2), (3)"));
  }
  return pool;
}

/// Runs the sqlite3 shell on a database file; returns its stdout.
std::string sqlite3_shell(const std::string& db, const std::string& sql) {
  const std::string cmd = "sqlite3 '" + db + "' \"" + sql + "\" 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 256> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), p) != nullptr) out += buf.data();
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

/// The column swap the stale-cache tests make: table t (a, b) becomes t (b, a).
constexpr const char* kSwapColumns =
    "CREATE TABLE t2 (b TEXT, a TEXT); INSERT INTO t2 SELECT b, a FROM t; DROP TABLE t; "
    "ALTER TABLE t2 RENAME TO t";

/// Another process swaps t's columns; then the pool's next checkout reads
/// them by name through a cached `SELECT *` and must see the new layout.
void swap_columns_elsewhere_and_read(Pool& pool, const std::string& path) {
  REQUIRE(sqlite3_shell(path, kSwapColumns).empty());
  auto c = get(pool);
  auto& st = c.prepare_cached("SELECT * FROM t").value().get();
  REQUIRE(st.executeStep());
  CHECK(st.getColumn("b").getString() == "B");  // not "A" through the old map
  CHECK(st.getColumn("a").getString() == "A");
}

std::int64_t count_rows(PooledConnection& c, const std::string& table) {
  return c->execAndGet("SELECT count(*) FROM " + table).getInt64();
}

Result<void> insert_value(PooledConnection& c, std::int64_t v) {
  KEEL_TRY_ASSIGN(SQLite::Statement & st, c.prepare_cached("INSERT INTO t(v) VALUES (?)"));
  return keel::sqlite::try_sql([&] {
    st.bind(1, v);
    st.exec();
  });
}

}  // namespace

TEST_CASE("open creates the file read-write with the configured pragmas", "[sqlite]") {
  TempDir dir;
  const auto path = dir.file("app.db");
  auto pool = open_pool(config_for(path));
  CHECK(fs::exists(path));
  auto stats = pool.stats();
  CHECK(stats.size == 2);  // min_idle
  CHECK(stats.idle == 2);
  CHECK(stats.in_use == 0);
  CHECK(stats.max_size == 8);

  auto c = get(pool);
  CHECK(c);
  CHECK(c->execAndGet("PRAGMA journal_mode").getString() == "wal");
  CHECK(c->execAndGet("PRAGMA foreign_keys").getInt() == 1);
  CHECK(c->execAndGet("PRAGMA synchronous").getInt() == 1);  // NORMAL
  CHECK(c->execAndGet("PRAGMA busy_timeout").getInt() == 5000);
  CHECK(c->execAndGet("PRAGMA cache_size").getInt() == -20000);
  REQUIRE(c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"));
  REQUIRE(c.exec("INSERT INTO t(v) VALUES (7)"));
  CHECK(pool.stats().in_use == 1);
  CHECK(pool.stats().idle == 1);
  c.reset();
  CHECK_FALSE(c);
  CHECK(pool.stats().in_use == 0);
  pool.close();
  CHECK(sqlite3_shell(path, "SELECT v FROM t") == "7");
}

TEST_CASE("extra pragmas and on_connect run on every new connection", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("p.db"));
  cfg.pragmas = {"temp_store = MEMORY"};
  std::atomic<int> hooks{0};
  cfg.on_connect = [&](SQLite::Database& db) -> Result<void> {
    ++hooks;
    db.exec("PRAGMA recursive_triggers = ON");
    return {};
  };
  cfg.min_idle = 1;
  auto pool = open_pool(cfg);
  CHECK(hooks == 1);
  auto a = get(pool);
  auto b = get(pool);  // a second connection is opened
  CHECK(hooks == 2);
  CHECK(b->execAndGet("PRAGMA temp_store").getInt() == 2);
  CHECK(b->execAndGet("PRAGMA recursive_triggers").getInt() == 1);

  cfg.path = dir.file("q.db");
  cfg.on_connect = [](SQLite::Database&) -> Result<void> { return keel::fail(Errc::config, "hook says no"); };
  auto bad = Pool::open(cfg);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == Errc::config);
}

TEST_CASE("invalid configurations are rejected with Errc::config", "[sqlite]") {
  TempDir dir;
  auto check = [](PoolConfig cfg) {
    CHECK(cfg.validate().error().code() == Errc::config);
    auto p = Pool::open(std::move(cfg));
    REQUIRE_FALSE(p);
    CHECK(p.error().code() == Errc::config);
  };
  check(PoolConfig{});  // empty path
  auto cfg = config_for(dir.file("x.db"));
  cfg.max_size = 0;
  check(cfg);
  cfg = config_for(dir.file("x.db"));
  cfg.min_idle = 9;
  check(cfg);
  cfg = config_for(dir.file("x.db"));
  cfg.journal_mode = "WAL; DROP TABLE users";
  check(cfg);
  cfg = config_for(dir.file("x.db"));
  cfg.connection_timeout = -1ms;
  check(cfg);
  cfg = config_for(dir.file("x.db"));
  cfg.statement_cache_capacity = 0;
  check(cfg);
  cfg = config_for(dir.file("x.db"));
  cfg.file_mode = 01777;
  check(cfg);
  CHECK(config_for(dir.file("x.db")).validate());
}

TEST_CASE("file_mode creates the database, -wal and -shm with exactly that mode whatever the umask",
          "[sqlite]") {
  TempDir dir;
  const mode_t old_umask = ::umask(0);  // the most permissive umask: SQLite alone would make 0644
  auto cfg = config_for(dir.file("private.db"));
  cfg.file_mode = 0600;
  {
    auto pool = open_pool(cfg);
    auto c = get(pool);
    REQUIRE(c.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"));
    for (const char* suffix : {"", "-wal", "-shm"}) {
      struct stat st {};
      REQUIRE(::stat((cfg.path + suffix).c_str(), &st) == 0);
      CHECK((st.st_mode & 0777) == 0600);
    }
  }
  // Without file_mode SQLite's default applies (here 0644: the umask is 0).
  auto plain = config_for(dir.file("plain.db"));
  { auto pool = open_pool(plain); }
  struct stat st {};
  REQUIRE(::stat(plain.path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
  ::umask(old_umask);
}

TEST_CASE("bad paths and files that are not databases give clear errors", "[sqlite]") {
  TempDir dir;
  SECTION("a path in a missing directory") {
    auto p = Pool::open(config_for(dir.file("missing/dir/app.db")));
    REQUIRE_FALSE(p);
    CHECK(p.error().code() == Errc::io);
    CHECK_THAT(p.error().to_string(), Catch::Contains("SQLITE_CANTOPEN"));
    CHECK_THAT(p.error().to_string(), Catch::Contains("missing/dir/app.db"));
  }
  SECTION("a file that is not a database") {
    const auto path = dir.file("text.db");
    {
      std::ofstream f(path);
      for (int i = 0; i < 200; ++i) f << "this is not an SQLite database, just some text\n";
    }
    auto p = Pool::open(config_for(path));
    REQUIRE_FALSE(p);
    CHECK(p.error().code() == Errc::database);
    CHECK_THAT(p.error().to_string(), Catch::Contains("SQLITE_NOTADB"));
  }
  SECTION("a truncated database") {
    const auto path = dir.file("trunc.db");
    {
      auto cfg = config_for(path);
      cfg.journal_mode = "DELETE";  // everything in the main file
      auto pool = open_pool(cfg);
      auto c = get(pool);
      REQUIRE(c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"));
      REQUIRE(keel::sqlite::transaction(c, [](PooledConnection& cc) -> Result<void> {
        for (int i = 0; i < 2000; ++i) {
          KEEL_TRY(cc.exec("INSERT INTO t(v) VALUES (hex(randomblob(100)))"));
        }
        return {};
      }));
    }
    const auto full = fs::file_size(path);
    REQUIRE(full > 100'000);
    fs::resize_file(path, full / 3);
    auto cfg = config_for(path);
    cfg.journal_mode = "DELETE";
    auto p = Pool::open(cfg);
    if (p) {  // the header and schema may survive; reading the rows must not
      auto c = get(*p);
      auto r = keel::sqlite::try_sql([&] { return count_rows(c, "t"); });
      auto check = c.exec("SELECT sum(length(v)) FROM t");
      const bool any_failed = !r || !check || sqlite3_shell(path, "PRAGMA integrity_check") != "ok";
      CHECK(any_failed);
      if (!r) CHECK(r.error().code() == Errc::database);
    } else {
      CHECK(p.error().code() == Errc::database);
    }
  }
}

TEST_CASE("prepare_cached returns the same reset statement, bindings cleared, LRU bounded", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("c.db"));
  cfg.statement_cache_capacity = 3;
  auto pool = open_pool(cfg);
  auto c = get(pool);
  REQUIRE(c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"));
  REQUIRE(c.exec("INSERT INTO t(v) VALUES (10), (20), (30)"));

  auto s1 = c.prepare_cached("SELECT v FROM t WHERE id >= ? ORDER BY id");
  REQUIRE(s1);
  SQLite::Statement& st = *s1;
  st.bind(1, 1);
  REQUIRE(st.executeStep());  // left mid-step on purpose
  CHECK(st.getColumn(0).getInt() == 10);

  auto s2 = c.prepare_cached("SELECT v FROM t WHERE id >= ? ORDER BY id");
  REQUIRE(s2);
  CHECK(&s2->get() == &st);  // same object
  // reset and bindings cleared: NULL >= ... matches nothing
  CHECK_FALSE(st.executeStep());
  CHECK(c.cached_statements() == 1);

  REQUIRE(c.prepare_cached("SELECT 1"));
  REQUIRE(c.prepare_cached("SELECT 2"));
  REQUIRE(c.prepare_cached("SELECT 3"));  // evicts the first
  CHECK(c.cached_statements() == 3);
  auto again = c.prepare_cached("SELECT v FROM t WHERE id >= ? ORDER BY id");
  REQUIRE(again);
  CHECK(c.cached_statements() == 3);

  auto bad = c.prepare_cached("SELEC nonsense");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == Errc::database);
  CHECK_THAT(bad.error().to_string(), Catch::Contains("SELEC nonsense"));
  CHECK(c.cached_statements() == 3);
}

TEST_CASE("a connection comes back without its transaction or a statement mid-step", "[sqlite]") {
  TempDir dir;
  auto pool = one_connection_pool_with_rows(dir, "r.db");
  {
    auto c = get(pool);
    REQUIRE(c.exec("BEGIN IMMEDIATE"));
    REQUIRE(c.exec("INSERT INTO t(v) VALUES (4)"));
    auto s = c.prepare_cached("SELECT v FROM t");
    REQUIRE(s);
    REQUIRE(s->get().executeStep());
    CHECK(c.in_transaction());
  }  // returned mid-transaction, mid-step
  auto c = get(pool);
  CHECK_FALSE(c.in_transaction());
  CHECK(count_rows(c, "t") == 3);
  sqlite3* h = c.handle();
  for (sqlite3_stmt* s = sqlite3_next_stmt(h, nullptr); s != nullptr; s = sqlite3_next_stmt(h, s)) {
    CHECK(sqlite3_stmt_busy(s) == 0);
  }
}

TEST_CASE("a statement of the caller's left mid-step outside a transaction is reset at return", "[sqlite]") {
  TempDir dir;
  auto pool = one_connection_pool_with_rows(dir, "m.db");
  sqlite3_stmt* own = nullptr;
  sqlite3_stmt* none = nullptr;
  {
    auto c = get(pool);
    REQUIRE(sqlite3_prepare_v2(c.handle(), "SELECT v FROM t", -1, &own, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(own) == SQLITE_ROW);  // holds a read snapshot
    REQUIRE(sqlite3_prepare_v2(c.handle(), "SELECT 1", -1, &none, nullptr) == SQLITE_OK);
    CHECK(sqlite3_txn_state(c.handle(), nullptr) == SQLITE_TXN_READ);
    CHECK_FALSE(c.in_transaction());
  }  // returned with `own` mid-step
  auto c = get(pool);
  CHECK(sqlite3_stmt_busy(own) == 0);
  CHECK(sqlite3_txn_state(c.handle(), nullptr) == SQLITE_TXN_NONE);
  // A write transaction is not refused for a statement that was left behind.
  auto w = keel::sqlite::transaction(c, [](PooledConnection& cc) -> Result<void> {
    KEEL_TRY(cc.exec("INSERT INTO t(v) VALUES (4)"));
    return {};
  });
  CHECK(w);
  CHECK(count_rows(c, "t") == 4);
  sqlite3_finalize(own);
  sqlite3_finalize(none);
}

TEST_CASE("transaction commits on success and rolls back on error or exception", "[sqlite]") {
  TempDir dir;
  auto pool = open_pool(config_for(dir.file("tx.db")));
  auto c = get(pool);
  REQUIRE(c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER UNIQUE)"));

  SECTION("success commits and returns fn's value") {
    auto r = keel::sqlite::transaction(c, [](PooledConnection& cc) -> Result<std::int64_t> {
      KEEL_TRY(insert_value(cc, 1));
      return cc->getLastInsertRowid();
    });
    REQUIRE(r);
    CHECK(*r == 1);
    CHECK_FALSE(c.in_transaction());
    CHECK(sqlite3_shell(dir.file("tx.db"), "SELECT count(*) FROM t") == "1");
  }
  SECTION("an error rolls back and is returned") {
    auto r = keel::sqlite::transaction(c, [](PooledConnection& cc) -> Result<int> {
      KEEL_TRY(insert_value(cc, 1));
      return keel::fail(Errc::invalid_argument, "changed my mind");
    });
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::invalid_argument);
    CHECK(r.error().message() == "changed my mind");
    CHECK(count_rows(c, "t") == 0);
  }
  SECTION("an SQL error inside rolls back, a UNIQUE violation is already_exists") {
    auto r = keel::sqlite::transaction(c, [](PooledConnection& cc) -> Result<void> {
      KEEL_TRY(insert_value(cc, 1));
      return insert_value(cc, 1);
    });
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::already_exists);
    CHECK_THAT(r.error().to_string(), Catch::Contains("UNIQUE"));
    CHECK_THAT(r.error().to_string(), Catch::Contains("2067"));  // SQLITE_CONSTRAINT_UNIQUE
    CHECK(count_rows(c, "t") == 0);
  }
  SECTION("a SQLite::Exception thrown inside becomes an Error") {
    auto r = keel::sqlite::transaction(c, [](PooledConnection& cc) -> Result<void> {
      cc->exec("INSERT INTO t(v) VALUES (5)");
      cc->exec("INSERT INTO no_such_table VALUES (1)");
      return {};
    });
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::database);
    CHECK_THAT(r.error().to_string(), Catch::Contains("no_such_table"));
    CHECK(count_rows(c, "t") == 0);
  }
  SECTION("another exception rolls back and goes on") {
    CHECK_THROWS_AS(keel::sqlite::transaction(c,
                                              [](PooledConnection& cc) -> Result<void> {
                                                cc->exec("INSERT INTO t(v) VALUES (5)");
                                                throw std::runtime_error("boom");
                                              }),
                    std::runtime_error);
    CHECK_FALSE(c.in_transaction());
    CHECK(count_rows(c, "t") == 0);
  }
  SECTION("nested transactions are savepoints") {
    auto r = keel::sqlite::transaction(c, [](PooledConnection& cc) -> Result<void> {
      KEEL_TRY(insert_value(cc, 1));
      auto inner_fail = keel::sqlite::transaction(cc, [](PooledConnection& c2) -> Result<void> {
        KEEL_TRY(insert_value(c2, 2));
        return keel::fail(Errc::cancelled, "inner");
      });
      CHECK_FALSE(inner_fail);
      auto inner_ok = keel::sqlite::transaction(cc, [](PooledConnection& c2) { return insert_value(c2, 3); });
      CHECK(inner_ok);
      return {};
    });
    REQUIRE(r);
    CHECK(c->execAndGet("SELECT group_concat(v) FROM (SELECT v FROM t ORDER BY v)").getString() == "1,3");
  }
  SECTION("fn that ends the transaction itself is reported") {
    auto r = keel::sqlite::transaction(
        c, [](PooledConnection& cc) -> Result<void> { return cc.exec("COMMIT").transform([](int) {}); });
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::database);
    CHECK_FALSE(c.in_transaction());
  }
  SECTION("a transaction on an empty connection is invalid") {
    PooledConnection empty;
    auto r = keel::sqlite::transaction(empty, [](PooledConnection&) -> Result<void> { return {}; });
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::invalid_argument);
  }
  SECTION("the Pool overload checks a connection out") {
    auto r = keel::sqlite::transaction(pool, [](PooledConnection& cc) { return insert_value(cc, 9); });
    REQUIRE(r);
    CHECK(count_rows(c, "t") == 1);
  }
}

TEST_CASE("read-only transactions read a snapshot and refuse writes", "[sqlite]") {
  TempDir dir;
  auto pool = open_pool(config_for(dir.file("ro.db")));
  auto c = get(pool);
  REQUIRE(c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"));
  REQUIRE(c.exec("INSERT INTO t(v) VALUES (1)"));
  auto writer = get(pool);

  auto r = keel::sqlite::transaction(
      c,
      [&](PooledConnection& cc) -> Result<std::int64_t> {
        const auto before = count_rows(cc, "t");
        // a writer on another connection commits meanwhile (no lock is held by us)
        auto w = keel::sqlite::transaction(writer, [](PooledConnection& wc) { return insert_value(wc, 2); });
        CHECK(w);
        const auto after = count_rows(cc, "t");
        CHECK(before == after);  // one snapshot
        auto bad = cc.exec("INSERT INTO t(v) VALUES (3)");
        CHECK_FALSE(bad);
        return after;
      },
      keel::sqlite::read_only);
  REQUIRE(r);
  CHECK(*r == 1);
  CHECK(count_rows(c, "t") == 2);
  // query_only was switched off again
  CHECK(c.exec("INSERT INTO t(v) VALUES (4)"));
}

TEST_CASE("migrate applies each version once, in its own transaction", "[sqlite]") {
  TempDir dir;
  const auto path = dir.file("m.db");
  auto pool = open_pool(config_for(path));
  auto c = get(pool);
  constexpr std::string_view kMigrations[] = {
      "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
      "ALTER TABLE users ADD COLUMN email TEXT; CREATE INDEX users_email ON users(email)",
      "INSERT INTO users(name, email) VALUES ('ada', 'ada@example.com')",
  };
  CHECK(keel::sqlite::schema_version(c).value() == 0);
  auto v = keel::sqlite::migrate(c, std::span(kMigrations).first(2));
  REQUIRE(v);
  CHECK(*v == 2);
  auto v3 = keel::sqlite::migrate(c, kMigrations);
  REQUIRE(v3);
  CHECK(*v3 == 3);
  auto again = keel::sqlite::migrate(c, kMigrations);
  REQUIRE(again);
  CHECK(*again == 3);
  CHECK(count_rows(c, "users") == 1);  // not inserted twice
  CHECK(sqlite3_shell(path, "SELECT group_concat(version) FROM schema_version") == "1,2,3");

  SECTION("a database newer than the code is a config error") {
    auto r = keel::sqlite::migrate(c, std::span(kMigrations).first(1));
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::config);
  }
  SECTION("a failing migration names its version, earlier ones stay, nothing of it is applied") {
    constexpr std::string_view kMore[] = {
        kMigrations[0],
        kMigrations[1],
        kMigrations[2],
        "CREATE TABLE posts (id INTEGER PRIMARY KEY)",
        "CREATE TABLE tags (id INTEGER PRIMARY KEY); INSERT INTO nowhere VALUES (1)",
        "CREATE TABLE never (id INTEGER PRIMARY KEY)",
    };
    auto r = keel::sqlite::migrate(c, kMore);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::database);
    CHECK_THAT(r.error().to_string(), Catch::Contains("applying migration 5 of 6"));
    CHECK_THAT(r.error().to_string(), Catch::Contains("nowhere"));
    CHECK(keel::sqlite::schema_version(c).value() == 4);
    CHECK(c->tableExists("posts"));
    CHECK_FALSE(c->tableExists("tags"));
    CHECK_FALSE(c->tableExists("never"));
    CHECK(sqlite3_shell(path, "PRAGMA integrity_check") == "ok");
  }
}

TEST_CASE("exhaustion: a third get on a pool of two times out on time", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("x.db"));
  cfg.max_size = 2;
  cfg.connection_timeout = 300ms;
  cfg.busy_timeout = 100ms;
  auto pool = open_pool(cfg);
  auto a = get(pool);
  auto b = get(pool);
  const auto start = std::chrono::steady_clock::now();
  auto third = pool.get();
  const auto took = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(third);
  CHECK(third.error().code() == Errc::timeout);
  CHECK(took >= 300ms);
  // The bound: within 20% + 50 ms (sanitizers on a busy machine get more slack).
  CHECK(took <= 300ms * 1.2 + (KEEL_TEST_SANITIZED ? 500ms : 50ms));
  auto st = pool.stats();
  CHECK(st.timeouts == 1);
  CHECK(st.waits == 1);
  CHECK(st.in_use == 2);
  CHECK(st.longest_wait >= 300ms);

  // a connection given back wakes a waiter
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    a.reset();
  });
  auto fourth = pool.get_for(5s);
  t.join();
  REQUIRE(fourth);
  CHECK(pool.stats().waits == 2);

  auto now = pool.get_for(0ms);
  REQUIRE_FALSE(now);
  CHECK(now.error().code() == Errc::timeout);
}

TEST_CASE("close fails waiters and later gets, checked-out connections close on return", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("close.db"));
  cfg.max_size = 1;
  cfg.min_idle = 1;
  auto pool = open_pool(cfg);
  auto c = get(pool);
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    pool.close();
  });
  auto waiter = pool.get_for(10s);
  t.join();
  REQUIRE_FALSE(waiter);
  CHECK(waiter.error().code() == Errc::closed);
  CHECK(c.exec("SELECT 1"));  // still usable
  c.reset();
  CHECK(pool.stats().size == 0);
  auto later = pool.get();
  REQUIRE_FALSE(later);
  CHECK(later.error().code() == Errc::closed);

  Pool moved = std::move(pool);
  auto from_moved = pool.get();  // NOLINT(bugprone-use-after-move): documented behaviour
  REQUIRE_FALSE(from_moved);
  CHECK(from_moved.error().code() == Errc::closed);
}

TEST_CASE("a connection outlives its pool handle", "[sqlite]") {
  TempDir dir;
  PooledConnection c;
  {
    auto pool = open_pool(config_for(dir.file("o.db")));
    c = get(pool);
  }
  REQUIRE(c);
  CHECK(c.exec("CREATE TABLE t(x)"));
  c.reset();
}

TEST_CASE("a split pool's writer and readers, and a :memory: pool's connections, outlive the pool handle",
          "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("split-outlive.db"));
  cfg.readers = 2;
  PooledConnection w;
  PooledConnection r;
  PooledConnection m;
  {
    auto pool = open_pool(cfg);
    auto memory = open_pool(config_for(":memory:"));
    auto wc = pool.get_writer();
    REQUIRE(wc);
    w = std::move(*wc);
    auto rc = pool.get_reader();
    REQUIRE(rc);
    r = std::move(*rc);
    m = get(memory);
  }
  REQUIRE(w.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)"));
  CHECK(r->execAndGet("SELECT count(*) FROM t").getInt() == 1);
  CHECK(m.exec("CREATE TABLE t(x)"));
  r.reset();
  m.reset();
  w.reset();  // the last one out: the writer, which unlocks the write lock as it goes
}

TEST_CASE(":memory: pools share one database between their connections", "[sqlite]") {
  auto cfg = config_for(":memory:");
  cfg.max_size = 4;
  auto pool = open_pool(cfg);
  auto other = open_pool({.path = ":memory:", .max_size = 2});  // a different database
  {
    auto a = get(pool);
    REQUIRE(a.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"));
    REQUIRE(keel::sqlite::transaction(a, [](PooledConnection& cc) { return insert_value(cc, 1); }));
  }
  std::vector<PooledConnection> held;
  for (int i = 0; i < 4; ++i) held.push_back(get(pool));
  for (auto& h : held) CHECK(count_rows(h, "t") == 1);
  held.clear();
  auto o = get(other);
  CHECK_FALSE(o->tableExists("t"));

  // writers from threads on the shared in-memory database
  constexpr int kThreads = 4;
  constexpr int kEach = 100;
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto c = pool.get();
        if (!c) {
          ++errors;
          continue;
        }
        auto r = keel::sqlite::transaction(
            *c, [&](PooledConnection& cc) { return insert_value(cc, 1000 + t * kEach + i); });
        if (!r) ++errors;
      }
    });
  }
  for (auto& th : ts) th.join();
  CHECK(errors == 0);
  auto c = get(pool);
  CHECK(count_rows(c, "t") == 1 + kThreads * kEach);
}

namespace {
void concurrent_writers(int threads, int per_thread) {
  TempDir dir;
  const auto path = dir.file("conc.db");
  auto cfg = config_for(path);
  cfg.max_size = static_cast<std::size_t>(threads);
  auto pool = open_pool(cfg);
  {
    auto c = get(pool);
    REQUIRE(c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, thread INTEGER)"));
  }
  std::atomic<int> errors{0};
  std::vector<std::string> messages(static_cast<std::size_t>(threads));
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto c = pool.get();
        Result<void> r =
            c ? keel::sqlite::transaction(*c,
                                          [&](PooledConnection& cc) -> Result<void> {
                                            KEEL_TRY_ASSIGN(
                                                SQLite::Statement & st,
                                                cc.prepare_cached("INSERT INTO t(v, thread) VALUES (?, ?)"));
                                            return keel::sqlite::try_sql([&] {
                                              st.bind(1, i);
                                              st.bind(2, t);
                                              st.exec();
                                            });
                                          })
              : Result<void>(c.error());
        if (!r) {
          if (errors.fetch_add(1) == 0) messages[static_cast<std::size_t>(t)] = r.error().to_string();
        }
        if (c) c->reset();  // (holding one while asking for another can exhaust the pool)
        // readers in between, without the write lock
        if (i % 50 == 0) {
          auto n = keel::sqlite::transaction(
              pool,
              [](PooledConnection& cc) { return keel::sqlite::try_sql([&] { return count_rows(cc, "t"); }); },
              keel::sqlite::read_only);
          if (!n) ++errors;
        }
      }
    });
  }
  for (auto& th : ts) th.join();
  for (const auto& m : messages) {
    if (!m.empty()) UNSCOPED_INFO(m);
  }
  CHECK(errors == 0);
  auto c = get(pool);
  CHECK(count_rows(c, "t") == threads * per_thread);
  CHECK(c->execAndGet("SELECT count(DISTINCT thread || '-' || v) FROM t").getInt() == threads * per_thread);
  pool.close();
  CHECK(sqlite3_shell(path, "PRAGMA integrity_check") == "ok");
  CHECK(sqlite3_shell(path, "SELECT count(*) FROM t") == std::to_string(threads * per_thread));
}
}  // namespace

TEST_CASE("4 writer threads x 2500 single-row transactions: every row, no error", "[sqlite][stress]") {
  concurrent_writers(4, 2500);
}

TEST_CASE("8 writer threads: no SQLITE_BUSY reaches the caller", "[sqlite][stress]") {
  concurrent_writers(8, 500);
}

TEST_CASE("two pools on one file (like two processes) never surface SQLITE_BUSY", "[sqlite][stress]") {
  TempDir dir;
  const auto path = dir.file("two.db");
  auto p1 = open_pool(config_for(path));
  auto p2 = open_pool(config_for(path));
  {
    auto c = get(p1);
    REQUIRE(c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"));
  }
  constexpr int kEach = KEEL_TEST_SANITIZED ? 100 : 300;
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      const Pool& p = (t % 2 == 0) ? p1 : p2;
      for (int i = 0; i < kEach; ++i) {
        auto r = keel::sqlite::transaction(p, [&](PooledConnection& cc) { return insert_value(cc, i); });
        if (!r) ++errors;
      }
    });
  }
  for (auto& th : ts) th.join();
  CHECK(errors == 0);
  auto c = get(p1);
  CHECK(count_rows(c, "t") == 4 * kEach);
}

TEST_CASE("idle_timeout and max_lifetime retire connections, min_idle is kept", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("life.db"));
  cfg.max_size = 4;
  cfg.min_idle = 1;
  cfg.idle_timeout = 100ms;
  cfg.max_lifetime = 0ms;
  cfg.maintenance_interval = 20ms;
  auto pool = open_pool(cfg);
  {
    std::vector<PooledConnection> held;
    for (int i = 0; i < 4; ++i) held.push_back(get(pool));
    CHECK(pool.stats().size == 4);
  }
  CHECK(pool.stats().idle == 4);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (pool.stats().size > 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  auto st = pool.stats();
  CHECK(st.size == 1);
  CHECK(st.idle == 1);
  CHECK(st.closed >= 3);

  SECTION("max_lifetime retires old connections; min_idle is refilled") {
    auto cfg2 = config_for(dir.file("life2.db"));
    cfg2.max_size = 2;
    cfg2.min_idle = 2;
    cfg2.idle_timeout = 0ms;
    cfg2.max_lifetime = 100ms;
    cfg2.maintenance_interval = 20ms;
    auto p2 = open_pool(cfg2);
    std::uint64_t first_id = 0;
    {
      auto c = get(p2);
      first_id = c.id();
    }
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (p2.stats().opened < 4 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(10ms);
    auto s2 = p2.stats();
    CHECK(s2.opened >= 4);
    CHECK(s2.idle == 2);
    auto c = get(p2);
    CHECK(c.id() != first_id);
  }
}

TEST_CASE("discard closes the connection instead of returning it", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("d.db"));
  cfg.min_idle = 0;
  cfg.max_size = 2;
  auto pool = open_pool(cfg);
  auto c = get(pool);
  const auto id = c.id();
  c.discard();
  CHECK_FALSE(c);
  CHECK(pool.stats().closed == 1);
  auto d = get(pool);
  CHECK(d.id() != id);
}

// --- properties -----------------------------------------------------------

TEST_CASE("property: random get/return/transaction sequences match a model of the counts",
          "[sqlite][property]") {
  TempDir dir;
  int run = 0;
  rc::prop("pool counts follow the model", [&] {
    const auto max_size = *rc::gen::inRange<std::size_t>(1, 5);
    const auto min_idle = *rc::gen::inRange<std::size_t>(0, max_size + 1);
    auto cfg = config_for(dir.file("prop" + std::to_string(run++) + ".db"));
    cfg.max_size = max_size;
    cfg.min_idle = min_idle;
    cfg.connection_timeout = 0ms;
    cfg.busy_timeout = 0ms;
    cfg.maintenance_interval = 1h;  // no background changes during the run
    auto pool = Pool::open(cfg);
    RC_ASSERT(pool.has_value());
    {
      auto c = pool->get();
      RC_ASSERT(c.has_value());
      RC_ASSERT(c->exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)").has_value());
    }
    // model
    std::size_t size = std::max<std::size_t>(min_idle, 1);
    std::size_t in_use = 0;
    std::int64_t rows = 0;
    std::uint64_t timeouts = 0;
    std::vector<PooledConnection> held;
    const auto ops = *rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 4));
    for (int op : ops) {
      if (op == 0) {  // get
        auto c = pool->get();
        if (in_use == max_size) {
          RC_ASSERT(!c.has_value());
          RC_ASSERT(c.error().code() == Errc::timeout);
          ++timeouts;
        } else {
          RC_ASSERT(c.has_value());
          if (in_use == size) ++size;
          ++in_use;
          held.push_back(std::move(*c));
        }
      } else if (op == 1 && !held.empty()) {  // return
        held.pop_back();
        --in_use;
      } else if (op == 2 && !held.empty()) {  // committed transaction
        auto r =
            keel::sqlite::transaction(held.front(), [](PooledConnection& c) { return insert_value(c, 1); });
        RC_ASSERT(r.has_value());
        ++rows;
      } else if (op == 3 && !held.empty()) {  // rolled back transaction
        auto r = keel::sqlite::transaction(held.back(), [](PooledConnection& c) -> Result<void> {
          KEEL_TRY(insert_value(c, 2));
          return keel::fail(Errc::cancelled);
        });
        RC_ASSERT(!r.has_value());
      }
      const auto st = pool->stats();
      RC_ASSERT(st.size == size);
      RC_ASSERT(st.in_use == in_use);
      RC_ASSERT(st.idle == size - in_use);
      RC_ASSERT(st.timeouts == timeouts);
    }
    held.clear();
    auto c = pool->get();
    RC_ASSERT(c.has_value());
    RC_ASSERT(count_rows(*c, "t") == rows);
  });
}

TEST_CASE("property: migrations applied in random prefixes end at the same schema", "[sqlite][property]") {
  static constexpr std::string_view kMigrations[] = {
      "CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT)",
      "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id))",
      "ALTER TABLE a ADD COLUMN y INTEGER DEFAULT 0",
      "CREATE INDEX b_a ON b(a_id)",
      "INSERT INTO a(x) VALUES ('seed')",
      "CREATE VIEW ab AS SELECT a.x, b.id FROM a JOIN b ON b.a_id = a.id",
      "DROP INDEX b_a; CREATE INDEX b_a2 ON b(a_id, id)",
  };
  auto schema_of = [](PooledConnection& c) {
    std::string s;
    SQLite::Statement q(*c, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name");
    while (q.executeStep())
      s += q.getColumn(0).getString() + q.getColumn(1).getString() + q.getColumn(2).getString() + ";";
    s += c->execAndGet("SELECT group_concat(x) FROM a").getString();
    return s;
  };
  std::string reference;
  {
    auto pool = open_pool(config_for(":memory:"));
    auto c = get(pool);
    REQUIRE(keel::sqlite::migrate(c, kMigrations).value() == 7);
    reference = schema_of(c);
  }
  rc::prop("any sequence of prefixes reaches the same schema", [&] {
    auto steps = *rc::gen::container<std::vector<std::size_t>>(rc::gen::inRange<std::size_t>(0, 8));
    auto cfg = config_for(":memory:");
    cfg.min_idle = 1;
    auto pool = Pool::open(cfg);
    RC_ASSERT(pool.has_value());
    auto c = pool->get();
    RC_ASSERT(c.has_value());
    std::size_t reached = 0;
    for (std::size_t n : steps) {
      auto r = keel::sqlite::migrate(*c, std::span(kMigrations).first(n));
      if (n < reached) {
        RC_ASSERT(!r.has_value());  // older code against a newer database
        RC_ASSERT(r.error().code() == Errc::config);
      } else {
        RC_ASSERT(r.has_value());
        RC_ASSERT(*r == static_cast<int>(n));
        reached = n;
      }
    }
    auto done = keel::sqlite::migrate(*c, kMigrations);
    RC_ASSERT(done.has_value());
    RC_ASSERT(schema_of(*c) == reference);
  });
}

// --- crash safety -----------------------------------------------------------

// Run by the test below in a child process (hidden from ordinary runs): commits
// rows one transaction at a time, reporting each on a pipe, then starts a big
// write transaction and waits to be killed in the middle of it.
TEST_CASE("crash child", "[.sqlite-crash-child]") {
  const char* db = std::getenv("KEEL_SQLITE_CRASH_DB");
  const char* fd_text = std::getenv("KEEL_SQLITE_CRASH_FD");
  if (db == nullptr || fd_text == nullptr) return;
  const int fd = std::atoi(fd_text);
  auto pool = open_pool(config_for(db));
  auto c = get(pool);
  REQUIRE(c.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v INTEGER)"));
  for (int i = 0; i < 200; ++i) {
    REQUIRE(keel::sqlite::transaction(c, [&](PooledConnection& cc) { return insert_value(cc, i); }));
    const std::string line = std::to_string(i + 1) + "\n";
    REQUIRE(::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  }
  auto r = keel::sqlite::transaction(c, [&](PooledConnection& cc) -> Result<void> {
    for (int i = 0; i < 20'000; ++i) KEEL_TRY(insert_value(cc, -1));
    const std::string line = "mid\n";
    (void)::write(fd, line.data(), line.size());
    for (;;) std::this_thread::sleep_for(1s);  // killed here
  });
  (void)r;
}

TEST_CASE("a writer killed mid-transaction loses no committed row", "[sqlite][crash]") {
  TempDir dir;
  const auto path = dir.file("crash.db");
  std::array<int, 2> fds{};
  REQUIRE(::pipe(fds.data()) == 0);
  const std::string env_db = "KEEL_SQLITE_CRASH_DB=" + path;
  const std::string env_fd = "KEEL_SQLITE_CRASH_FD=" + std::to_string(fds[1]);
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) env_store.emplace_back(*e);
  env_store.push_back(env_db);
  env_store.push_back(env_fd);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = fs::read_symlink("/proc/self/exe").string();
  std::string spec = "crash child";
  std::string quiet = "--out=/dev/null";
  std::vector<char*> argv = {self.data(), spec.data(), quiet.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(::posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), envp.data()) == 0);
  ::close(fds[1]);

  int committed = 0;
  bool mid = false;
  std::string buf;
  std::array<char, 256> chunk{};
  while (!mid) {
    const auto n = ::read(fds[0], chunk.data(), chunk.size());
    if (n <= 0) break;
    buf.append(chunk.data(), static_cast<std::size_t>(n));
    std::size_t nl = 0;
    while ((nl = buf.find('\n')) != std::string::npos) {
      const std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line == "mid") {
        mid = true;
      } else {
        committed = std::stoi(line);
      }
    }
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  REQUIRE(mid);
  CHECK(WIFSIGNALED(status));
  CHECK(committed == 200);

  CHECK(sqlite3_shell(path, "PRAGMA integrity_check") == "ok");
  CHECK(sqlite3_shell(path, "SELECT count(*) FROM t") == std::to_string(committed));
  CHECK(sqlite3_shell(path, "SELECT count(*) FROM t WHERE v = -1") == "0");
  auto pool = open_pool(config_for(path));
  auto c = get(pool);
  CHECK(count_rows(c, "t") == committed);
}

// --- query helpers, logging ---------------------------------------------------

TEST_CASE("execute, query_one and query_optional bind parameters and convert columns", "[sqlite]") {
  auto pool = open_pool(config_for(":memory:"));
  auto c = get(pool);
  REQUIRE(c.exec("CREATE TABLE u(id INTEGER PRIMARY KEY, name TEXT, score REAL, ok INTEGER, data BLOB)"));
  const std::vector<std::uint8_t> blob = {0, 1, 2, 255};
  const std::string_view name = "ada";
  auto n = keel::sqlite::execute(c, "INSERT INTO u VALUES (?, ?, ?, ?, ?)", 1, name, 2.5, true, blob);
  REQUIRE(n);
  CHECK(*n == 1);
  REQUIRE(keel::sqlite::execute(c, "INSERT INTO u VALUES (?, ?, ?, ?, ?)", std::int64_t{2}, std::nullopt,
                                0.0f, false, std::optional<std::vector<std::uint8_t>>{}));
  CHECK(keel::sqlite::query_one<std::string>(c, "SELECT name FROM u WHERE id = ?", 1).value() == "ada");
  CHECK(keel::sqlite::query_one<double>(c, "SELECT score FROM u WHERE id = ?", 1).value() == 2.5);
  CHECK(keel::sqlite::query_one<bool>(c, "SELECT ok FROM u WHERE id = ?", 1).value());
  CHECK(keel::sqlite::query_one<std::vector<std::uint8_t>>(c, "SELECT data FROM u WHERE id = ?", 1).value() ==
        blob);
  CHECK_FALSE(keel::sqlite::query_one<std::optional<std::string>>(c, "SELECT name FROM u WHERE id = ?", 2)
                  .value()
                  .has_value());
  CHECK(keel::sqlite::query_one<int>(c, "SELECT count(*) FROM u").value() == 2);

  auto missing = keel::sqlite::query_one<std::string>(c, "SELECT name FROM u WHERE id = ?", 99);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code() == Errc::not_found);
  auto opt = keel::sqlite::query_optional<std::string>(c, "SELECT name FROM u WHERE id = ?", 99);
  REQUIRE(opt);
  CHECK_FALSE(opt->has_value());

  auto dup = keel::sqlite::execute(c, "INSERT INTO u(id) VALUES (?)", 1);
  REQUIRE_FALSE(dup);
  CHECK(dup.error().code() == Errc::already_exists);
  auto bad = keel::sqlite::query_one<int>(c, "SELECT nope FROM u");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == Errc::database);
  auto range = keel::sqlite::execute(c, "INSERT INTO u(id) VALUES (?)", 5, 6);  // one parameter too many
  REQUIRE_FALSE(range);
  CHECK(range.error().code() == Errc::invalid_argument);
  // the statement that failed before is usable again
  CHECK(keel::sqlite::execute(c, "INSERT INTO u(id) VALUES (?)", 3).value() == 1);
}

TEST_CASE("the pool logs through an injected logger", "[sqlite]") {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  auto logger = std::make_shared<spdlog::logger>("sqlite-test", sink);
  logger->set_level(spdlog::level::debug);
  auto cfg = config_for(":memory:");
  cfg.logger = keel::log::adapt(logger);
  cfg.max_size = 1;
  cfg.min_idle = 1;
  auto pool = open_pool(cfg);
  {
    auto c = get(pool);
    REQUIRE(c.exec("CREATE TABLE t(x); BEGIN; INSERT INTO t VALUES (1)"));
  }  // returned with a transaction open: warn
  (void)pool.get_for(0ms);
  auto c = get(pool);
  auto timeout = pool.get_for(10ms);
  CHECK_FALSE(timeout);
  std::string all;
  for (const auto& line : sink->last_formatted()) all += line;
  CHECK_THAT(all, Catch::Contains("pool opened"));
  CHECK_THAT(all, Catch::Contains("returned with an open transaction"));
  CHECK_THAT(all, Catch::Contains("no connection to :memory: free"));
}

TEST_CASE("a table-rebuild migration keeps the child rows ON DELETE CASCADE would delete", "[sqlite]") {
  TempDir dir;
  auto pool = open_pool(config_for(dir.file("fk.db")));  // foreign_keys = ON by default
  auto c = get(pool);
  constexpr std::string_view kMigrations[] = {
      "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);"
      "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL "
      "  REFERENCES parent(id) ON DELETE CASCADE);"
      "INSERT INTO parent VALUES (1, 'a'), (2, 'b');"
      "INSERT INTO child VALUES (10, 1), (11, 1), (12, 2);",
      // SQLite's 12-step rebuild: new table, copy, drop the old, rename.
      "CREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '');"
      "INSERT INTO parent_new SELECT id, name FROM parent;"
      "DROP TABLE parent;"
      "ALTER TABLE parent_new RENAME TO parent;",
  };
  REQUIRE(keel::sqlite::migrate(c, kMigrations).value() == 2);
  CHECK(count_rows(c, "child") == 3);
  CHECK(c->execAndGet("PRAGMA foreign_keys").getInt() == 1);  // back on
  // Enforcement is back: a cascade still cascades.
  REQUIRE(c.exec("DELETE FROM parent WHERE id = 2"));
  CHECK(count_rows(c, "child") == 2);

  // A migration that leaves a dangling reference fails, rolled back, naming the table.
  constexpr std::string_view kBreaking[] = {kMigrations[0], kMigrations[1],
                                            "DELETE FROM parent WHERE id = 1; CREATE TABLE marker (x)"};
  auto broken = keel::sqlite::migrate(c, kBreaking);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code() == Errc::database);
  CHECK_THAT(broken.error().to_string(), Catch::Contains("\"child\""));
  CHECK_THAT(broken.error().to_string(), Catch::Contains("applying migration 3"));
  CHECK_FALSE(c->tableExists("marker"));
  CHECK(count_rows(c, "parent") == 1);
  CHECK(keel::sqlite::schema_version(c).value() == 2);
  CHECK(c->execAndGet("PRAGMA foreign_keys").getInt() == 1);
}

TEST_CASE("an applied migration whose text changed is refused; down-migrations and migrate_to", "[sqlite]") {
  TempDir dir;
  auto pool = open_pool(config_for(dir.file("sums.db")));
  auto c = get(pool);
  constexpr std::string_view kV1[] = {"CREATE TABLE t (x)", "CREATE TABLE u (y)"};
  REQUIRE(keel::sqlite::migrate(c, kV1).value() == 2);
  CHECK(c->execAndGet("SELECT checksum FROM schema_version WHERE version = 1").getString() ==
        keel::sqlite::detail::migration_checksum(kV1[0]));
  constexpr std::string_view kEdited[] = {"CREATE TABLE t (x, extra)", "CREATE TABLE u (y)",
                                          "CREATE TABLE v (z)"};
  auto edited = keel::sqlite::migrate(c, kEdited);
  REQUIRE_FALSE(edited);
  CHECK(edited.error().code() == Errc::config);
  CHECK_THAT(edited.error().to_string(), Catch::Contains("migration 1 was changed"));
  CHECK_FALSE(c->tableExists("v"));  // nothing applied
  // Newer database than the code: still an error.
  constexpr std::string_view kOlder[] = {"CREATE TABLE t (x)"};
  CHECK(keel::sqlite::migrate(c, kOlder).error().code() == Errc::config);

  // Down and up again.
  const keel::sqlite::Migration kBoth[] = {
      {.up = "CREATE TABLE t (x)", .down = "DROP TABLE t"},
      {.up = "CREATE TABLE u (y)", .down = "DROP TABLE u"},
      {.up = "CREATE TABLE w (z); INSERT INTO w VALUES (1)", .down = "DROP TABLE w"},
  };
  REQUIRE(keel::sqlite::migrate(c, kBoth).value() == 3);  // same texts: checksums match
  CHECK(c->tableExists("w"));
  REQUIRE(keel::sqlite::migrate_to(c, kBoth, 1).value() == 1);
  CHECK_FALSE(c->tableExists("w"));
  CHECK_FALSE(c->tableExists("u"));
  CHECK(c->tableExists("t"));
  CHECK(keel::sqlite::schema_version(c).value() == 1);
  REQUIRE(keel::sqlite::migrate_to(c, kBoth, 3).value() == 3);
  CHECK(count_rows(c, "w") == 1);
  REQUIRE(keel::sqlite::migrate_to(c, kBoth, 0).value() == 0);
  CHECK_FALSE(c->tableExists("t"));
  CHECK(keel::sqlite::migrate_to(c, kBoth, 4).error().code() == Errc::invalid_argument);
  // No way down without a down migration.
  const keel::sqlite::Migration kOneWay[] = {{.up = "CREATE TABLE t (x)"}};
  REQUIRE(keel::sqlite::migrate(c, kOneWay).value() == 1);
  auto stuck = keel::sqlite::migrate_to(c, kOneWay, 0);
  REQUIRE_FALSE(stuck);
  CHECK(stuck.error().code() == Errc::config);
  CHECK(c->tableExists("t"));

  // A schema_version table from before checksums: the column is added, then filled.
  auto p2 = open_pool(config_for(dir.file("legacy.db")));
  auto l = get(p2);
  REQUIRE(
      l.exec("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL "
             "DEFAULT 'x'); CREATE TABLE t (x); INSERT INTO schema_version(version) VALUES (1)"));
  REQUIRE(keel::sqlite::migrate(l, kV1).value() == 2);
  CHECK(l->execAndGet("SELECT checksum FROM schema_version WHERE version = 1").getString() ==
        keel::sqlite::detail::migration_checksum(kV1[0]));
}

TEST_CASE("a schema change from another connection never leaves a cached statement reading the wrong column",
          "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("stale.db"));
  cfg.min_idle = 1;
  cfg.max_size = 2;
  auto pool = open_pool(cfg);
  {
    auto c = get(pool);
    REQUIRE(c.exec("CREATE TABLE t (a TEXT, b TEXT); INSERT INTO t VALUES ('A', 'B')"));
    auto& st = c.prepare_cached("SELECT * FROM t").value().get();
    REQUIRE(st.executeStep());
    CHECK(st.getColumn("b").getString() == "B");  // SQLiteCpp builds its name map here
    st.reset();
  }
  for (int round = 0; round < 2; ++round) {  // checkouts that find nothing changed keep the cache
    auto c = get(pool);
    auto& st = c.prepare_cached("SELECT * FROM t").value().get();
    REQUIRE(st.executeStep());
    CHECK(st.getColumn("b").getString() == "B");
    st.reset();
    if (round == 1) CHECK(c.cached_statements() == 1);
  }
  const auto misses = [&] {
    auto c = get(pool);
    return keel::sqlite::detail::ConnAccess::conn(c)->cache.misses();
  }();
  {
    // Another process rebuilds the table with the columns in another order.
    SQLite::Database other(cfg.path, SQLite::OPEN_READWRITE);
    other.exec(
        "CREATE TABLE t2 (b TEXT, a TEXT); INSERT INTO t2 SELECT b, a FROM t; DROP TABLE t;"
        "ALTER TABLE t2 RENAME TO t");
  }
  auto c = get(pool);
  auto& st = c.prepare_cached("SELECT * FROM t").value().get();
  REQUIRE(st.executeStep());
  CHECK(st.getColumn("b").getString() == "B");  // not "A" through the old map
  CHECK(st.getColumn("a").getString() == "A");
  CHECK(keel::sqlite::detail::ConnAccess::conn(c)->cache.misses() == misses + 1);  // prepared afresh
}

TEST_CASE("PooledConnection::release() still returns the connection (the deprecated name of reset())",
          "[sqlite]") {
  TempDir dir;
  auto pool = open_pool(config_for(dir.file("release.db")));
  auto c = get(pool);
  CHECK(pool.stats().in_use == 1);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  c.release();
#pragma GCC diagnostic pop
  CHECK_FALSE(c);
  CHECK(pool.stats().in_use == 0);
  c.reset();  // on an empty handle: nothing
  CHECK(pool.stats().in_use == 0);
}

namespace {
// How many times a connection has read PRAGMA schema_version (the slow path of the check).
int schema_reads(const PooledConnection& c) {
  sqlite3_stmt* s = keel::sqlite::detail::ConnAccess::conn(c)->schema_stmt;
  return s == nullptr ? 0 : sqlite3_stmt_status(s, SQLITE_STMTSTATUS_RUN, 0);
}
}  // namespace

TEST_CASE("in WAL mode the schema check reads the schema only after something was committed", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("walcheck.db"));
  cfg.min_idle = 1;
  cfg.max_size = 1;  // every checkout gets the same connection
  auto pool = open_pool(cfg);
  REQUIRE(get(pool).exec("CREATE TABLE t (a TEXT, b TEXT); INSERT INTO t VALUES ('A', 'B')"));
  // The statement was cached after the CREATE, but the first look cannot
  // know that and may drop it once; from then on it stays.
  int reads = 0;
  for (int i = 0; i < 3; ++i) {
    auto c = get(pool);
    reads = schema_reads(c);
    if (c.cached_statements() == 1) break;
    auto& st = c.prepare_cached("SELECT * FROM t").value().get();
    REQUIRE(st.executeStep());
    CHECK(st.getColumn("b").getString() == "B");
    st.reset();
  }
  CHECK(reads >= 1);
  for (int i = 0; i < 3; ++i) {  // nothing committed since: no read transaction at checkout
    auto c = get(pool);
    CHECK(schema_reads(c) == reads);
    CHECK(c.cached_statements() == 1);
  }
  // Another process commits rows (not the schema): read once, cache kept.
  REQUIRE(sqlite3_shell(cfg.path, "INSERT INTO t VALUES ('C', 'D')").empty());
  {
    auto c = get(pool);
    CHECK(schema_reads(c) == reads + 1);
    CHECK(c.cached_statements() == 1);
  }
  {
    auto c = get(pool);
    CHECK(schema_reads(c) == reads + 1);
  }
  // Another process swaps the columns: the next checkout drops the cache.
  REQUIRE(sqlite3_shell(cfg.path, kSwapColumns).empty());
  auto c = get(pool);
  CHECK(schema_reads(c) == reads + 2);
  CHECK(c.cached_statements() == 0);
  auto& st = c.prepare_cached("SELECT * FROM t WHERE a = 'A'").value().get();
  REQUIRE(st.executeStep());
  CHECK(st.getColumn("b").getString() == "B");
  CHECK(st.getColumn("a").getString() == "A");
}

TEST_CASE("a split pool's reader sees the writer's schema change at its next checkout", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("split-schema.db"));
  cfg.readers = 1;  // every get_reader() gets the same connection
  auto pool = open_pool(cfg);
  {
    auto w = pool.get_writer();
    REQUIRE(w);
    REQUIRE(w->exec("CREATE TABLE t (a TEXT, b TEXT); INSERT INTO t VALUES ('A', 'B')"));
  }
  for (int i = 0; i < 3; ++i) {  // cached, and kept once the reader has looked
    auto r = pool.get_reader();
    REQUIRE(r);
    auto& st = r->prepare_cached("SELECT * FROM t").value().get();
    REQUIRE(st.executeStep());
    CHECK(st.getColumn("b").getString() == "B");
    st.reset();
  }
  {
    auto w = pool.get_writer();
    REQUIRE(w);
    REQUIRE(
        w->exec("CREATE TABLE t2 (b TEXT, a TEXT); INSERT INTO t2 SELECT b, a FROM t; DROP TABLE t; "
                "ALTER TABLE t2 RENAME TO t"));
  }
  auto r = pool.get_reader();
  REQUIRE(r);
  auto& st = r->prepare_cached("SELECT * FROM t").value().get();
  REQUIRE(st.executeStep());
  CHECK(st.getColumn("b").getString() == "B");  // not "A" through the old map
  CHECK(st.getColumn("a").getString() == "A");
}

TEST_CASE("a connection that leaves WAL mode keeps checking the schema and makes no -shm file", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("leave-wal.db"));
  cfg.min_idle = 1;
  cfg.max_size = 1;  // the only connection, so it may leave WAL mode
  auto pool = open_pool(cfg);
  {
    auto c = get(pool);
    REQUIRE(c->execAndGet("PRAGMA journal_mode = DELETE").getString() == "delete");
    REQUIRE(c.exec("CREATE TABLE t (a TEXT, b TEXT); INSERT INTO t VALUES ('A', 'B')"));
    auto& st = c.prepare_cached("SELECT * FROM t").value().get();
    REQUIRE(st.executeStep());
    CHECK(st.getColumn("b").getString() == "B");
    st.reset();
  }
  int reads = 0;
  for (int i = 0; i < 4; ++i) {  // no WAL index to compare: every checkout with statements cached reads
    auto c = get(pool);
    if (i > 1) CHECK(schema_reads(c) > reads);  // (the first look may drop the statement once)
    reads = schema_reads(c);
    auto& st = c.prepare_cached("SELECT * FROM t").value().get();
    REQUIRE(st.executeStep());
    st.reset();
  }
  CHECK_FALSE(fs::exists(cfg.path + "-shm"));
  CHECK_FALSE(fs::exists(cfg.path + "-wal"));
  swap_columns_elsewhere_and_read(pool, cfg.path);
  CHECK_FALSE(fs::exists(cfg.path + "-shm"));
}

TEST_CASE("a connection that leaves WAL mode and comes back within one checkout still sees schema changes",
          "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("rewal.db"));
  cfg.min_idle = 1;
  cfg.max_size = 1;  // the only connection: its WAL index is unmapped when it leaves WAL mode
  auto pool = open_pool(cfg);
  const auto mapped = [](const PooledConnection& c) {
    const auto* shm = keel::sqlite::detail::ConnAccess::conn(c)->shm.get();
    return shm != nullptr && shm->region0 != nullptr;
  };
  {
    auto c = get(pool);
    REQUIRE(c.exec("CREATE TABLE t (a TEXT, b TEXT); INSERT INTO t VALUES ('A', 'B')"));
    CHECK(mapped(c));
    REQUIRE(c->execAndGet("PRAGMA journal_mode = DELETE").getString() == "delete");
    CHECK_FALSE(mapped(c));  // xShmUnmap was seen
    REQUIRE(c->execAndGet("PRAGMA journal_mode = WAL").getString() == "wal");
    auto& st = c.prepare_cached("SELECT * FROM t").value().get();
    REQUIRE(st.executeStep());
    CHECK(st.getColumn("b").getString() == "B");
    st.reset();
    CHECK(mapped(c));  // mapped again by SQLite's own read
  }
  for (int i = 0; i < 3; ++i) {
    auto c = get(pool);
    auto& st = c.prepare_cached("SELECT * FROM t").value().get();
    REQUIRE(st.executeStep());
    CHECK(st.getColumn("b").getString() == "B");
    st.reset();
  }
  const int reads = schema_reads(get(pool));
  {
    auto c = get(pool);
    CHECK(schema_reads(c) == reads);  // the header comparison is in use again
    CHECK(c.cached_statements() == 1);
  }
  swap_columns_elsewhere_and_read(pool, cfg.path);
}

TEST_CASE("a statement handed out again is reset and unbound, whatever it was left doing", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("fresh.db"));
  cfg.min_idle = 1;
  cfg.max_size = 1;
  auto pool = open_pool(cfg);
  REQUIRE(get(pool).exec("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)"));
  const char* sql = "SELECT count(*) FROM t WHERE x >= ?";
  {
    auto c = get(pool);
    auto& st = c.prepare_cached(sql).value().get();
    st.bind(1, 2);
    REQUIRE(st.executeStep());  // left with a row
    CHECK(st.getColumn(0).getInt() == 2);
  }
  {
    auto c = get(pool);
    auto& st = c.prepare_cached(sql).value().get();
    CHECK_FALSE(st.hasRow());
    REQUIRE(st.executeStep());  // the binding was cleared: x >= NULL matches nothing
    CHECK(st.getColumn(0).getInt() == 0);
    CHECK_FALSE(st.executeStep());  // run to the end
    CHECK(st.isDone());
    auto& again = c.prepare_cached(sql).value().get();  // within the same checkout
    CHECK_FALSE(again.isDone());
    again.bind(1, 3);
    REQUIRE(again.executeStep());
    CHECK(again.getColumn(0).getInt() == 1);
  }
  auto c = get(pool);
  auto& st = c.prepare_cached(sql).value().get();
  CHECK_FALSE(st.isDone());
  CHECK_FALSE(st.hasRow());
  st.bind(1, 1);
  REQUIRE(st.executeStep());
  CHECK(st.getColumn(0).getInt() == 3);
}

TEST_CASE("a write transaction on a connection with a statement mid-step is refused at once", "[sqlite]") {
  TempDir dir;
  auto cfg = config_for(dir.file("snapshot.db"));
  cfg.connection_timeout = 3s;
  cfg.busy_timeout = 1s;
  auto pool = open_pool(cfg);
  auto a = get(pool);
  REQUIRE(a.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)"));
  auto& reading = a.prepare_cached("SELECT x FROM t").value().get();
  REQUIRE(reading.executeStep());  // mid-step: holds a read snapshot
  {
    auto b = get(pool);  // someone else commits after that snapshot
    REQUIRE(keel::sqlite::transaction(b, [](PooledConnection& c) -> Result<void> {
      return c.exec("INSERT INTO t VALUES (3)").transform([](int) {});
    }));
  }
  auto r = keel::sqlite::transaction(a, [](PooledConnection& c) -> Result<void> {
    return c.exec("INSERT INTO t VALUES (4)").transform([](int) {});
  });
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == Errc::invalid_argument);  // not Errc::busy after connection_timeout
  CHECK_THAT(r.error().to_string(), Catch::Contains("SELECT x FROM t"));
  // The write lock was never held: another writer goes straight through.
  {
    auto b = get(pool);
    REQUIRE(keel::sqlite::transaction(b, [](PooledConnection& c) -> Result<void> {
      return c.exec("INSERT INTO t VALUES (5)").transform([](int) {});
    }));
  }
  reading.reset();
  REQUIRE(keel::sqlite::transaction(a, [](PooledConnection& c) -> Result<void> {
    return c.exec("INSERT INTO t VALUES (6)").transform([](int) {});
  }));
  CHECK(count_rows(a, "t") == 5);
  CHECK_FALSE(keel::sqlite::detail::is_busy(SQLITE_BUSY_SNAPSHOT));
  CHECK(keel::sqlite::detail::is_busy(SQLITE_BUSY));
}

TEST_CASE("a read-only transaction nested in a write transaction cannot write", "[sqlite]") {
  TempDir dir;
  auto pool = open_pool(config_for(dir.file("nested.db")));
  auto c = get(pool);
  REQUIRE(c.exec("CREATE TABLE t (x)"));
  auto r = keel::sqlite::transaction(c, [](PooledConnection& outer) -> Result<int> {
    KEEL_TRY(outer.exec("INSERT INTO t VALUES (1)"));
    auto inner = keel::sqlite::transaction(
        outer,
        [](PooledConnection& in) -> Result<void> {
          return in.exec("INSERT INTO t VALUES (2)").transform([](int) {});
        },
        keel::sqlite::read_only);
    if (inner) return keel::fail(Errc::internal, "the nested read-only transaction wrote");
    KEEL_TRY(keel::sqlite::transaction(
        outer, [](PooledConnection& in) -> Result<std::int64_t> { return count_rows(in, "t"); },
        keel::sqlite::read_only));
    // Writable again after it.
    return outer.exec("INSERT INTO t VALUES (3)");
  });
  REQUIRE(r);
  CHECK(c->execAndGet("SELECT group_concat(x) FROM t").getString() == "1,3");
  CHECK(c->execAndGet("PRAGMA query_only").getInt() == 0);
}

TEST_CASE("the write-ahead log stays bounded while readers overlap continuously", "[sqlite][stress]") {
  const keel_test::Watchdog watchdog("the WAL size test", std::chrono::seconds(240));
  TempDir dir;
  auto cfg = config_for(dir.file("wal.db"));
  cfg.max_size = 6;
  cfg.min_idle = 4;
  cfg.maintenance_interval = 10ms;
  cfg.wal_checkpoint_bytes = 256 * 1024;
  cfg.journal_size_limit = 256 * 1024;
  auto pool = open_pool(cfg);
  {
    auto c = get(pool);
    REQUIRE(c.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)"));
  }
  const std::string wal = cfg.path + "-wal";
  auto wal_size = [&]() -> std::uintmax_t {
    std::error_code ec;
    const auto n = fs::file_size(wal, ec);
    return ec ? 0 : n;
  };
  std::atomic<bool> stop{false};
  std::atomic<int> reader_errors{0};
  // Two readers whose read transactions overlap: at almost every moment one
  // of them holds a snapshot, so SQLite's own checkpoints never reset the log.
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      std::this_thread::sleep_for(std::chrono::milliseconds(r * 2));
      while (!stop.load()) {
        auto n = keel::sqlite::transaction(
            pool,
            [](PooledConnection& c) -> Result<std::int64_t> {
              auto rows = keel::sqlite::try_sql([&] { return count_rows(c, "t"); });
              std::this_thread::sleep_for(4ms);
              return rows;
            },
            keel::sqlite::read_only);
        if (!n) ++reader_errors;
      }
    });
  }
  // The writer pauses whenever the log is past twice the threshold until the
  // maintenance thread has checkpointed it: with the checkpoints the run
  // finishes with the log bounded; without them it would stall at the first
  // pause (and fail below, or at the watchdog).
  const std::uintmax_t threshold = static_cast<std::uintmax_t>(cfg.wal_checkpoint_bytes);
  const int rows = 3000 / keel_test::sanitizer_scale(3);
  std::uintmax_t peak = 0;
  int write_errors = 0;
  int pauses = 0;
  bool stalled = false;
  for (int i = 0; i < rows && !stalled; ++i) {
    auto w = keel::sqlite::transaction(pool, [](PooledConnection& c) -> Result<int> {
      return keel::sqlite::execute(c, "INSERT INTO t (payload) VALUES (randomblob(2048))");
    });
    if (!w) ++write_errors;
    const auto size = wal_size();
    peak = std::max(peak, size);
    if (size > 2 * threshold) {
      ++pauses;
      const auto before = pool.stats().checkpoints;
      int waited_ms = 0;
      while (pool.stats().checkpoints == before && waited_ms < 60'000) {
        std::this_thread::sleep_for(1ms);
        ++waited_ms;
      }
      stalled = pool.stats().checkpoints == before;
    }
  }
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(write_errors == 0);
  CHECK(reader_errors == 0);
  const auto s = pool.stats();
  INFO("peak WAL " << peak << " bytes; pauses " << pauses << "; checkpoints " << s.checkpoints << ", failed "
                   << s.checkpoint_failures << ", wal_bytes " << s.wal_bytes << ", lag "
                   << s.checkpoint_lag_frames);
  CHECK_FALSE(stalled);  // every time the log passed 2x the threshold, a checkpoint followed
  CHECK(pauses > 0);     // (the run did reach the threshold: the readers overlapped)
  CHECK(s.checkpoints > 0);
  // One transaction past the pause point at most: a few pages.
  CHECK(peak < 2 * threshold + 256 * 1024);
}

TEST_CASE("read/write split: readers never wait behind the writer and cannot write", "[sqlite]") {
  TempDir dir;
  for (const bool memory : {false, true}) {
    INFO("memory " << memory);
    auto cfg = config_for(memory ? std::string(":memory:") : dir.file("split.db"));
    cfg.readers = 2;
    auto pool = open_pool(cfg);
    CHECK(pool.split());
    CHECK(pool.reader_stats().size == 2);
    auto w = pool.get_writer();
    REQUIRE(w);
    REQUIRE(w->exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"));
    // The writer is checked out: a second writer waits (here: not at all),
    // readers do not.
    CHECK(pool.get_writer_for(0ms).error().code() == Errc::timeout);
    CHECK(pool.get_for(std::chrono::microseconds(0)).error().code() == Errc::timeout);
    auto r = pool.get_reader_for(0ms);
    REQUIRE(r);
    CHECK(count_rows(*r, "t") == 1);
    CHECK(sqlite3_db_readonly(r->handle(), "main") == 1);
    CHECK((*r)->execAndGet("PRAGMA query_only").getInt() == 1);
    CHECK_FALSE(r->exec("INSERT INTO t VALUES (2)"));
    auto refused =
        keel::sqlite::transaction(*r, [](PooledConnection& c) -> Result<int> { return c.exec("SELECT 1"); });
    CHECK(refused.error().code() == Errc::invalid_argument);
    // A write transaction on the checked-out writer does not wait for the
    // write lock it already holds.
    REQUIRE(keel::sqlite::transaction(
        *w, [](PooledConnection& c) -> Result<int> { return c.exec("INSERT INTO t VALUES (2)"); }));
    // Read-only transactions through the pool take a reader even now.
    auto n = keel::sqlite::transaction(
        pool, [](PooledConnection& c) -> Result<std::int64_t> { return count_rows(c, "t"); },
        keel::sqlite::read_only);
    REQUIRE(n);
    CHECK(*n == 2);
    CHECK((*r)->execAndGet("PRAGMA query_only").getInt() == 1);  // still on after a read transaction
    w->reset();
    auto again = pool.get_writer_until(std::chrono::system_clock::now() + 1s);  // any clock
    REQUIRE(again);
    again->reset();
    REQUIRE(keel::sqlite::transaction(
        pool, [](PooledConnection& c) -> Result<int> { return c.exec("INSERT INTO t VALUES (3)"); }));
  }
}

TEST_CASE("read/write split: writers queue in order, every write lands once, readers keep reading",
          "[sqlite][stress]") {
  const keel_test::Watchdog watchdog("the split-pool stress test", std::chrono::seconds(240));
  TempDir dir;
  auto cfg = config_for(dir.file("split_stress.db"));
  cfg.readers = 2;
  auto pool = open_pool(cfg);
  REQUIRE(keel::sqlite::transaction(pool, [](PooledConnection& c) -> Result<int> {
    return c.exec("CREATE TABLE t (thread INTEGER, i INTEGER, PRIMARY KEY (thread, i))");
  }));
  const int per = 300 / keel_test::sanitizer_scale(3);
  constexpr int kWriters = 4;
  std::atomic<int> errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {  // more readers than reader connections: they share
    readers.emplace_back([&] {
      std::int64_t last = 0;
      while (!stop.load()) {
        auto n = keel::sqlite::transaction(
            pool, [](PooledConnection& c) -> Result<std::int64_t> { return count_rows(c, "t"); },
            keel::sqlite::read_only);
        if (!n || *n < last) ++errors;  // never an error, never going back in time
        if (n) last = *n;
      }
    });
  }
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < per; ++i) {
        auto w = keel::sqlite::transaction(pool, [&](PooledConnection& c) -> Result<int> {
          return keel::sqlite::execute(c, "INSERT INTO t VALUES (?, ?)", t, i);
        });
        if (!w) ++errors;
      }
    });
  }
  for (auto& w : writers) w.join();
  stop = true;
  for (auto& r : readers) r.join();
  CHECK(errors == 0);
  auto c = pool.get_reader().value();
  CHECK(count_rows(c, "t") == kWriters * per);
  CHECK(c->execAndGet("SELECT count(DISTINCT thread || '-' || i) FROM t").getInt() == kWriters * per);
}

TEST_CASE("the write lock is handed out in arrival order, and a waiter that gives up is skipped",
          "[sqlite]") {
  const keel_test::Watchdog watchdog("the write lock order test", std::chrono::seconds(60));
  keel::sqlite::detail::WriteLock lock;
  const auto far = keel::sqlite::detail::Clock::now() + 30s;
  REQUIRE(lock.try_lock_until(far));
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i) {
    const auto before = lock.queued();
    if (i == 2) {
      // This one gives up before its turn: its ticket must not block the others.
      waiters.emplace_back(
          [&] { CHECK_FALSE(lock.try_lock_until(keel::sqlite::detail::Clock::now() + 50ms)); });
      waiters.back().join();
      waiters.pop_back();
      continue;
    }
    waiters.emplace_back([&, i] {
      REQUIRE(lock.try_lock_until(far));
      {
        const std::lock_guard g(mu);
        order.push_back(i);
      }
      lock.unlock();
    });
    while (lock.queued() == before) std::this_thread::yield();  // queued behind the previous ones
  }
  lock.unlock();
  for (auto& t : waiters) t.join();
  CHECK(order == std::vector<int>{0, 1, 3});
  CHECK(lock.queued() == 0);
}

namespace {
/// Marks each connection as held while a test thread has it: a connection
/// handed to two threads at once is counted in `twice`.
class Owners {
 public:
  void take(sqlite3* h) {
    if (flag(h).exchange(true)) ++twice;
  }
  void give(sqlite3* h) { flag(h).store(false); }
  std::atomic<int> twice{0};

 private:
  std::atomic<bool>& flag(sqlite3* h) {
    const std::lock_guard lock(mu_);
    return flags_[h];  // nodes stay put
  }
  std::mutex mu_;
  std::map<sqlite3*, std::atomic<bool>> flags_;
};

/// `threads` threads each check a connection out and return it `rounds`
/// times; the counters say what went wrong.
struct Churn {
  std::atomic<int> errors{0};
  std::atomic<int> most{0};  // most connections out at once
  std::atomic<int> out{0};
  Owners owners;
  bool yield = false;  // let go of the CPU while holding a connection (so others wait)
  void run(const Pool& pool, int threads, int rounds) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        for (int i = 0; i < rounds; ++i) {
          auto c = pool.get();
          if (!c) {
            ++errors;
            continue;
          }
          const int now = ++out;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          owners.take(c->handle());
          if ((i + t) % 64 == 0 && (*c)->execAndGet("SELECT 1").getInt() != 1) ++errors;
          if (yield) std::this_thread::yield();
          owners.give(c->handle());
          --out;
        }
      });
    }
    for (auto& th : ts) th.join();
  }
};
}  // namespace

TEST_CASE("checkout and return race on one connection: never shared, no wake-up lost", "[sqlite][stress]") {
  const keel_test::Watchdog watchdog("the one-connection churn test", std::chrono::seconds(120));
  auto cfg = config_for(":memory:");
  cfg.max_size = 1;
  cfg.min_idle = 1;
  cfg.connection_timeout = std::chrono::minutes(10);
  cfg.maintenance_interval = std::chrono::hours(1);  // no pass that would wake a waiter by chance
  auto pool = open_pool(cfg);
  const int rounds = 20'000 / keel_test::sanitizer_scale(10);
  Churn churn;
  churn.yield = true;          // the others wait while it is held
  churn.run(pool, 4, rounds);  // a lost wake-up leaves a thread waiting for ten minutes
  CHECK(churn.errors == 0);
  CHECK(churn.owners.twice == 0);
  CHECK(churn.most == 1);
  const auto s = pool.stats();
  CHECK(s.waits > 0);  // the locked path was taken too
  CHECK(s.size == 1);
  CHECK(s.idle == 1);
  CHECK(s.in_use == 0);
  CHECK(s.gets == static_cast<std::uint64_t>(4 * rounds));
}

TEST_CASE("checkout and return race with retirement and top-up: max_size holds, never shared",
          "[sqlite][stress]") {
  const keel_test::Watchdog watchdog("the retiring churn test", std::chrono::seconds(120));
  TempDir dir;
  auto cfg = config_for(dir.file("churn.db"));
  cfg.max_size = 3;
  cfg.min_idle = 2;
  cfg.connection_timeout = std::chrono::minutes(10);
  cfg.max_lifetime =
      std::chrono::milliseconds(5);  // retired all the time, on return, checkout and by maintenance
  cfg.idle_timeout = std::chrono::milliseconds(1);
  cfg.maintenance_interval = std::chrono::milliseconds(1);
  auto pool = open_pool(cfg);
  const int rounds = 3'000 / keel_test::sanitizer_scale(5);
  Churn churn;
  std::atomic<bool> stop{false};
  std::size_t biggest = 0;
  std::thread watcher([&] {
    while (!stop.load()) biggest = std::max(biggest, pool.stats().size);
  });
  churn.run(pool, 6, rounds);
  stop = true;
  watcher.join();
  CHECK(churn.errors == 0);
  CHECK(churn.owners.twice == 0);
  CHECK(churn.most <= 3);
  CHECK(biggest <= 3);
  const auto s = pool.stats();
  CHECK(s.in_use == 0);
  CHECK(s.size <= 3);
  CHECK(s.gets >= static_cast<std::uint64_t>(6 * rounds));
}

TEST_CASE("close() while connections churn: later checkouts fail, returned ones close", "[sqlite][stress]") {
  const keel_test::Watchdog watchdog("the close churn test", std::chrono::seconds(120));
  for (int round = 0; round < 20 / keel_test::sanitizer_scale(4); ++round) {
    auto pool = open_pool(
        {.path = ":memory:", .max_size = 2, .min_idle = 1, .connection_timeout = std::chrono::minutes(10)});
    std::atomic<int> closed_errors{0};
    std::atomic<int> other_errors{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t) {
      ts.emplace_back([&] {
        for (int i = 0; i < 2'000; ++i) {
          auto c = pool.get();
          if (!c) {
            (c.error().code() == Errc::closed ? closed_errors : other_errors)++;
            break;
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 * round));
    pool.close();
    for (auto& th : ts) th.join();
    CHECK(other_errors == 0);
    const auto s = pool.stats();
    CHECK(s.size == 0);
    CHECK(s.idle == 0);
    CHECK(s.in_use == 0);
    CHECK(!pool.get());
  }
}
