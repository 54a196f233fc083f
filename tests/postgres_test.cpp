#include <keel/postgres.hpp>

#include <rapidcheck/catch.h>
#include <catch2/catch.hpp>

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "pg_cluster.hpp"
#include "test_support.hpp"
#include "watchdog.hpp"

namespace fs = std::filesystem;
using keel::Errc;
using keel::Result;
using keel::pg::Pool;
using keel::pg::PoolConfig;
using keel::pg::PooledConnection;
using keel::pg::Rows;
using namespace std::chrono_literals;

namespace {

using keel_test::pg_cluster_dir;
using keel_test::pg_conninfo;
using keel_test::read_text_file;
using keel_test::Watchdog;

/// Runs the cluster script (restart, halt, resume).
void cluster(const std::string& cmd) {
  const std::string line =
      "bash '" KEEL_TEST_SOURCE_DIR "/postgres_cluster.sh' " + cmd + " '" + pg_cluster_dir().string() + "'";
  REQUIRE(std::system(line.c_str()) == 0);
}

/// Starts the server again if a case stopped it and failed before restarting it.
struct ResumeOnExit {
  bool halted = false;
  ~ResumeOnExit() {
    if (halted) {
      const std::string line =
          "bash '" KEEL_TEST_SOURCE_DIR "/postgres_cluster.sh' resume '" + pg_cluster_dir().string() + "'";
      (void)std::system(line.c_str());
    }
  }
};

PoolConfig config(std::size_t max_size = 4, std::size_t min_idle = 1) {
  PoolConfig cfg;
  cfg.conninfo = pg_conninfo();
  cfg.max_size = max_size;
  cfg.min_idle = min_idle;
  cfg.connection_timeout = 5s;
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

Rows exec_ok(keel::pg::Connection& c, std::string_view sql) {
  auto r = c.exec(sql);
  if (!r) FAIL("exec " << sql << ": " << r.error().to_string());
  return std::move(*r);
}

template <class T>
T scalar(keel::pg::Connection& c, std::string_view sql) {
  auto rows = exec_ok(c, sql);
  auto v = rows.scalar<T>();
  if (!v) FAIL(sql << ": " << v.error().to_string());
  return *v;
}

/// A fresh table name per case.
std::string table(std::string_view prefix) {
  static std::atomic<int> n{0};
  return std::string(prefix) + "_" + std::to_string(::getpid()) + "_" + std::to_string(n.fetch_add(1));
}

/// Another session kills the backend serving `pid`.
void terminate_backend(const Pool& pool, int pid) {
  auto killer = get(pool);
  auto r = killer.exec("SELECT pg_terminate_backend($1)", pid);
  REQUIRE(r);
  REQUIRE(r->scalar<bool>().value_or(false));
}

}  // namespace

// ------------------------------------------------------------ unit parts ---

TEST_CASE("SQLSTATEs map onto keel kinds", "[postgres]") {
  const Watchdog wd("sqlstate map", 30s);
  using keel::pg::errc_for_sqlstate;
  CHECK(errc_for_sqlstate("23505") == Errc::already_exists);
  CHECK(errc_for_sqlstate("23503") == Errc::database);
  CHECK(errc_for_sqlstate("40001") == Errc::busy);
  CHECK(errc_for_sqlstate("40P01") == Errc::busy);
  CHECK(keel::is_transient(errc_for_sqlstate("40001")));
  CHECK(errc_for_sqlstate("08006") == Errc::unavailable);
  CHECK(errc_for_sqlstate("57P01") == Errc::unavailable);
  CHECK(errc_for_sqlstate("28P01") == Errc::auth_failed);
  CHECK(errc_for_sqlstate("28000") == Errc::auth_failed);
  CHECK(errc_for_sqlstate("57014") == Errc::timeout);
  CHECK(errc_for_sqlstate("42601") == Errc::invalid_argument);
  CHECK(errc_for_sqlstate("42P01") == Errc::invalid_argument);
  CHECK(errc_for_sqlstate("42703") == Errc::invalid_argument);
  CHECK(errc_for_sqlstate("22012") == Errc::invalid_argument);
  CHECK(errc_for_sqlstate("3D000") == Errc::not_found);
  CHECK(errc_for_sqlstate("53300") == Errc::resource_exhausted);
  CHECK(errc_for_sqlstate("XX001") == Errc::data_loss);
  CHECK(errc_for_sqlstate("P0001") == Errc::database);
  CHECK(errc_for_sqlstate("") == Errc::database);
  CHECK(errc_for_sqlstate("4000") == Errc::database);
  auto e = keel::pg::make_error("23505", "duplicate key", "Key (id)=(1) already exists.", "",
                                "INSERT INTO t VALUES (1)");
  CHECK(keel::pg::sqlstate(e) == "23505");
  CHECK(e.to_string().find("Key (id)=(1) already exists.") != std::string::npos);
  CHECK(keel::pg::sqlstate(keel::Error(Errc::io, "x")).empty());
}

TEST_CASE("config validation rejects bad settings with Errc::config", "[postgres]") {
  const Watchdog wd("config validation", 30s);
  const auto bad = [](auto mutate) {
    PoolConfig cfg;
    cfg.conninfo = "host=127.0.0.1";
    mutate(cfg);
    auto v = cfg.validate();
    REQUIRE(!v);
    CHECK(v.error().code() == Errc::config);
    auto p = Pool::open(cfg);
    REQUIRE(!p);
    CHECK(p.error().code() == Errc::config);
  };
  bad([](PoolConfig& c) { c.max_size = 0; });
  bad([](PoolConfig& c) { c.min_idle = 9; });
  bad([](PoolConfig& c) { c.connection_timeout = -1ms; });
  bad([](PoolConfig& c) { c.connect_timeout = 0ms; });
  bad([](PoolConfig& c) { c.maintenance_interval = 0ms; });
  bad([](PoolConfig& c) { c.statement_cache_capacity = 0; });
  bad([](PoolConfig& c) { c.reconnect_backoff.factor = 0.5; });
  bad([](PoolConfig& c) { c.conninfo = "host=x nonsense_option=1"; });
  bad([](PoolConfig& c) { c.conninfo = "host='unterminated"; });
  PoolConfig ok;
  ok.conninfo = "host=127.0.0.1 port=1";
  CHECK(ok.validate());
  keel::pg::TxOptions tx;
  tx.max_attempts = 0;
  CHECK(tx.validate().error().code() == Errc::config);
  tx.max_attempts = 1;
  tx.backoff.factor = 0.5;
  CHECK(tx.validate().error().code() == Errc::config);
  CHECK(keel::pg::ListenOptions{.capacity = 0}.validate().error().code() == Errc::config);
  CHECK(keel::pg::ListenOptions{}.validate());
}

TEST_CASE("reset() returns a connection to the pool; release() is its deprecated name", "[postgres]") {
  const Watchdog wd("reset", 30s);
  auto pool = open_pool(config(2, 1));
  auto c = get(pool);
  CHECK(pool.stats().in_use == 1);
  c.reset();
  CHECK(!c);
  CHECK(pool.stats().in_use == 0);
  c.reset();  // twice is harmless
  auto d = get(pool);
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
  d.release();
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
  CHECK(!d);
  CHECK(pool.stats().in_use == 0);
  // Timeouts take any duration.
  auto e = pool.get_for(1500us);
  REQUIRE(e);
  auto f = pool.get_for(std::chrono::duration<double>(0.25));
  REQUIRE(f);
  CHECK(pool.get_for(0ns).error().code() == Errc::timeout);
  CHECK(pool.get_until(std::chrono::system_clock::now() + 1ms).error().code() == Errc::timeout);
}

TEST_CASE("timestamps format and parse in every ISO form the server writes", "[postgres]") {
  const Watchdog wd("timestamps", 30s);
  using keel::pg::Timestamp;
  using keel::pg::detail::parse_timestamp;
  using namespace std::chrono;
  const Timestamp t = sys_days{2024y / 2 / 29} + 13h + 5min + 9s + 123456us;
  CHECK(parse_timestamp("2024-02-29 13:05:09.123456+00") == t);
  CHECK(parse_timestamp("2024-02-29 15:05:09.123456+02") == t);
  CHECK(parse_timestamp("2024-02-29 07:35:09.123456-05:30") == t);
  CHECK(parse_timestamp("2024-02-29 13:05:09.1234567") == t);  // extra digits truncated
  CHECK(parse_timestamp("2024-02-29") == Timestamp{sys_days{2024y / 2 / 29}});
  CHECK(!parse_timestamp("infinity"));
  CHECK(!parse_timestamp("2024-02-30 00:00:00"));
  CHECK(!parse_timestamp("0044-03-15 00:00:00 BC"));
  CHECK(!parse_timestamp("2024-02-29 13:05"));
  std::array<char, 40> buf{};
  keel::pg::detail::format_timestamp(t, buf.data());
  CHECK(std::string(buf.data()) == "2024-02-29 13:05:09.123456+00");
}

// --------------------------------------------------------- with a server ---

TEST_CASE("exec binds typed parameters and reads typed columns, by index and by name", "[postgres]") {
  const Watchdog wd("typed parameters", 60s);
  auto pool = open_pool(config());
  auto c = get(pool);
  const std::vector<std::uint8_t> blob{0, 1, 2, 0xfe, 0xff, '\\', '\t'};
  const keel::pg::Timestamp when =
      std::chrono::sys_days{std::chrono::year{2031} / 7 / 4} + 1h + 2min + 3s + 456789us;
  auto r = c.exec(
      "SELECT $1::int2 AS a, $2::int4 AS b, $3::int8 AS c, $4::float8 AS d, $5::text AS e, $6::bytea AS f, "
      "$7::bool AS g, $8::int4 AS h, $9::timestamptz AS i, $10::numeric AS j, $11::text AS k, $12::float4 AS "
      "l",
      std::int16_t{-7}, 2'000'000'000, std::int64_t{-9'000'000'000'000}, 2.5, std::string_view("tab\there"),
      blob, true, std::optional<int>{}, when, std::numeric_limits<std::uint64_t>::max(), "literal", 0.25f);
  REQUIRE(r);
  CHECK(r->size() == 1);
  CHECK(r->columns() == 12);
  CHECK(r->get<std::int16_t>(0, 0).value() == -7);
  CHECK(r->get<int>(0, "b").value() == 2'000'000'000);
  CHECK(r->get<std::int64_t>(0, 2).value() == -9'000'000'000'000);
  CHECK(r->get<double>(0, "d").value() == 2.5);
  CHECK(r->get<std::string>(0, "e").value() == "tab\there");
  CHECK(r->get<std::vector<std::uint8_t>>(0, "f").value() == blob);
  CHECK(r->get<bool>(0, "g").value());
  CHECK(r->is_null(0, 7));
  CHECK(r->get<std::optional<int>>(0, "h").value() == std::nullopt);
  auto null_read = r->get<int>(0, "h");
  REQUIRE(!null_read);
  CHECK(null_read.error().code() == Errc::invalid_argument);
  CHECK(r->get<keel::pg::Timestamp>(0, "i").value() == when);
  CHECK(r->get<std::uint64_t>(0, "j").value() == std::numeric_limits<std::uint64_t>::max());
  CHECK(r->get<std::string_view>(0, "k").value() == "literal");
  CHECK(r->get<float>(0, "l").value() == 0.25f);
  // out of range, wrong type, no such column or row
  CHECK(r->get<std::int16_t>(0, "b").error().code() == Errc::invalid_argument);
  CHECK(r->get<int>(0, "e").error().code() == Errc::invalid_argument);
  CHECK(r->get<int>(0, "nope").error().code() == Errc::not_found);
  CHECK(r->get<int>(1, 0).error().code() == Errc::invalid_argument);
  CHECK(r->get<int>(0, 99).error().code() == Errc::invalid_argument);
  // NULL through std::nullopt and a null const char*, and a timestamp read in another zone
  auto n =
      c.exec("SELECT $1::text IS NULL, $2::text IS NULL", std::nullopt, static_cast<const char*>(nullptr));
  REQUIRE(n);
  CHECK(n->get<bool>(0, 0).value());
  CHECK(n->get<bool>(0, 1).value());
  REQUIRE(c.exec("SET TimeZone = 'Asia/Kolkata'"));
  CHECK(scalar<keel::pg::Timestamp>(c, "SELECT '2031-07-04 01:02:03.456789+00'::timestamptz") == when);
  REQUIRE(c.exec("RESET TimeZone"));
  // commands report affected rows
  const auto t = table("typed");
  exec_ok(c, "CREATE TABLE " + t + " (id int PRIMARY KEY, v text)");
  auto ins = c.exec("INSERT INTO " + t + " VALUES ($1, $2), ($3, $4)", 1, "a", 2, "b");
  REQUIRE(ins);
  CHECK(ins->affected() == 2);
  CHECK(ins->command() == "INSERT 0 2");
  exec_ok(c, "DROP TABLE " + t);
}

TEST_CASE("property: values survive a round trip through the server", "[postgres][property]") {
  const Watchdog wd("round trip property", 120s);
  auto pool = open_pool(config(2, 1));
  auto c = get(pool);
  rc::prop("int64, double, text and bytes round-trip",
           [&](std::int64_t i, double d, std::string s, std::vector<std::uint8_t> b) {
             // PostgreSQL text cannot hold NUL; everything else can (the database is UTF8: keep to ASCII).
             for (auto& ch : s) ch = static_cast<char>((static_cast<unsigned char>(ch) % 126) + 1);
             auto r = c.exec("SELECT $1::int8, $2::float8, $3::text, $4::bytea", i, d, s, b);
             RC_ASSERT(r.has_value());
             RC_ASSERT(r->get<std::int64_t>(0, 0).value() == i);
             const double back = r->get<double>(0, 1).value();
             RC_ASSERT((back == d || (std::isnan(back) && std::isnan(d))));
             RC_ASSERT(r->get<std::string>(0, 2).value() == s);
             RC_ASSERT(r->get<std::vector<std::uint8_t>>(0, 3).value() == b);
           });
}

TEST_CASE("server errors carry the kind, SQLSTATE, message, detail and hint", "[postgres]") {
  const Watchdog wd("errors", 60s);
  auto pool = open_pool(config());
  auto c = get(pool);
  const auto t = table("errs");
  exec_ok(c, "CREATE TABLE " + t + " (id int PRIMARY KEY)");
  REQUIRE(c.exec("INSERT INTO " + t + " VALUES ($1)", 1));
  auto dup = c.exec("INSERT INTO " + t + " VALUES ($1)", 1);
  REQUIRE(!dup);
  CHECK(dup.error().code() == Errc::already_exists);
  CHECK(keel::pg::sqlstate(dup.error()) == "23505");
  const auto text = dup.error().to_string();
  CHECK(text.find("duplicate key value violates unique constraint") != std::string::npos);
  CHECK(text.find("detail: Key (id)=(1) already exists.") != std::string::npos);
  CHECK(text.find("running `INSERT INTO " + t) != std::string::npos);

  auto syntax = c.exec("SELEC 1");
  CHECK(syntax.error().code() == Errc::invalid_argument);
  CHECK(keel::pg::sqlstate(syntax.error()) == "42601");
  auto undefined = c.exec("SELECT * FROM no_such_table_here");
  CHECK(undefined.error().code() == Errc::invalid_argument);
  CHECK(keel::pg::sqlstate(undefined.error()) == "42P01");
  auto column = c.exec("SELECT no_such_column FROM " + t);
  CHECK(keel::pg::sqlstate(column.error()) == "42703");
  auto fn = c.exec("SELECT no_such_function(1)");
  CHECK(keel::pg::sqlstate(fn.error()) == "42883");
  CHECK(fn.error().to_string().find("hint: ") != std::string::npos);
  auto div = c.exec("SELECT 1 / $1::int", 0);
  CHECK(div.error().code() == Errc::invalid_argument);
  // the connection is still usable after each
  CHECK(scalar<int>(c, "SELECT 1") == 1);
  exec_ok(c, "DROP TABLE " + t);
}

TEST_CASE("prepare_cached reuses statements, bounds the cache, and re-prepares a stale plan", "[postgres]") {
  const Watchdog wd("statement cache", 60s);
  auto cfg = config(1, 1);
  cfg.statement_cache_capacity = 2;
  auto pool = open_pool(cfg);
  auto c = get(pool);
  const auto t = table("stmts");
  exec_ok(c, "CREATE TABLE " + t + " (id int PRIMARY KEY, v text)");
  exec_ok(c, "INSERT INTO " + t + " VALUES (1, 'one')");
  const std::string q = "SELECT * FROM " + t + " WHERE id = $1";
  auto s1 = c.prepare_cached(q);
  REQUIRE(s1);
  auto s2 = c.prepare_cached(q);
  REQUIRE(s2);
  CHECK(s1->name() == s2->name());
  CHECK(c.cached_statements() == 1);
  auto r = s1->exec(1);
  REQUIRE(r);
  CHECK(r->get<std::string>(0, "v").value() == "one");
  // The server's view of this session's statements.
  CHECK(scalar<int>(c, "SELECT count(*)::int FROM pg_prepared_statements") == 1);
  // LRU bound: the third evicts the least recent, deallocated on the server.
  REQUIRE(c.prepare_cached("SELECT 2"));
  REQUIRE(c.prepare_cached("SELECT 3"));
  CHECK(c.cached_statements() == 2);
  CHECK(scalar<int>(c, "SELECT count(*)::int FROM pg_prepared_statements") == 2);
  // An evicted handle prepares itself again.
  auto again = s1->exec(1);
  REQUIRE(again);
  CHECK(again->size() == 1);
  // A result-type change makes the plan stale (0A000): prepared again, once.
  auto s3 = c.prepare_cached(q);
  REQUIRE(s3);
  REQUIRE(s3->exec(1));
  exec_ok(c, "ALTER TABLE " + t + " ADD COLUMN extra int DEFAULT 5");
  auto after = s3->exec(1);
  REQUIRE(after);
  CHECK(after->columns() == 3);
  CHECK(after->get<int>(0, "extra").value() == 5);
  // Inside a transaction() the stale plan fails the run, and the retry prepares it again.
  exec_ok(c, "ALTER TABLE " + t + " ADD COLUMN more int DEFAULT 6");
  int runs = 0;
  auto tx = keel::pg::transaction(c, [&](PooledConnection& cc) -> Result<int> {
    ++runs;
    KEEL_TRY_ASSIGN(auto st, cc.prepare_cached(q));
    KEEL_TRY_ASSIGN(Rows rows, st.exec(1));
    return static_cast<int>(rows.columns());
  });
  REQUIRE(tx);
  CHECK(*tx == 4);
  CHECK(runs == 2);
  exec_ok(c, "DROP TABLE " + t);
}

TEST_CASE("a connection comes back without its transaction", "[postgres]") {
  const Watchdog wd("returned clean", 60s);
  auto pool = open_pool(config(1, 1));
  const auto t = table("clean");
  {
    auto c = get(pool);
    exec_ok(c, "CREATE TABLE " + t + " (id int)");
    exec_ok(c, "BEGIN");
    exec_ok(c, "INSERT INTO " + t + " VALUES (1)");
    CHECK(c.in_transaction());
  }  // back to the pool with the transaction open
  auto c = get(pool);
  CHECK(!c.in_transaction());
  CHECK(scalar<std::int64_t>(c, "SELECT count(*) FROM " + t) == 0);
  {
    exec_ok(c, "BEGIN");
    CHECK(!c.exec("SELECT 1/0"));  // failed transaction
    c.reset();
  }
  auto c2 = get(pool);
  CHECK(!c2.in_transaction());
  CHECK(scalar<int>(c2, "SELECT 1") == 1);
  exec_ok(c2, "DROP TABLE " + t);
  CHECK(pool.stats().opened == 1);
}

TEST_CASE("transaction commits, rolls back on error and exception, nests as savepoints", "[postgres]") {
  const Watchdog wd("transactions", 60s);
  auto pool = open_pool(config(2, 1));
  auto c = get(pool);
  const auto t = table("tx");
  exec_ok(c, "CREATE TABLE " + t + " (id int PRIMARY KEY)");
  const auto ins = "INSERT INTO " + t + " VALUES ($1)";
  const auto count = [&] { return scalar<std::int64_t>(c, "SELECT count(*) FROM " + t); };

  auto ok = keel::pg::transaction(c, [&](PooledConnection& cc) -> Result<int> {
    KEEL_TRY(cc.exec(ins, 1));
    return 7;
  });
  REQUIRE(ok);
  CHECK(*ok == 7);
  CHECK(count() == 1);

  auto err = keel::pg::transaction(c, [&](PooledConnection& cc) -> Result<void> {
    KEEL_TRY(cc.exec(ins, 2));
    return keel::fail(Errc::invalid_argument, "changed my mind");
  });
  CHECK(err.error().code() == Errc::invalid_argument);
  CHECK(count() == 1);

  CHECK_THROWS_AS(keel::pg::transaction(c,
                                        [&](PooledConnection& cc) -> Result<void> {
                                          (void)cc.exec(ins, 3);
                                          throw std::runtime_error("boom");
                                        }),
                  std::runtime_error);
  CHECK(!c.in_transaction());
  CHECK(count() == 1);

  // a failed statement whose error fn ignored is not committed
  auto ignored = keel::pg::transaction(c, [&](PooledConnection& cc) -> Result<void> {
    (void)cc.exec(ins, 1);  // duplicate: the transaction is now failed
    return {};
  });
  REQUIRE(!ignored);
  CHECK(!c.in_transaction());

  // nested: the inner failure is undone, the outer commits
  auto nested = keel::pg::transaction(c, [&](PooledConnection& cc) -> Result<void> {
    KEEL_TRY(cc.exec(ins, 10));
    auto inner = keel::pg::transaction(cc, [&](PooledConnection& c3) -> Result<void> {
      KEEL_TRY(c3.exec(ins, 11));
      return keel::fail(Errc::cancelled, "inner gives up");
    });
    CHECK(inner.error().code() == Errc::cancelled);
    auto inner_ok = keel::pg::transaction(
        cc, [&](PooledConnection& c3) -> Result<void> { return c3.exec(ins, 12).transform([](auto&&) {}); });
    CHECK(inner_ok);
    auto inner_dup = keel::pg::transaction(cc, [&](PooledConnection& c3) -> Result<void> {
      return c3.exec(ins, 10).transform([](auto&&) {});  // fails; the savepoint keeps the outer alive
    });
    CHECK(inner_dup.error().code() == Errc::already_exists);
    return {};
  });
  REQUIRE(nested);
  CHECK(scalar<std::string>(c, "SELECT string_agg(id::text, ',' ORDER BY id) FROM " + t) == "1,10,12");

  // read only refuses writes; the options reach BEGIN
  auto ro = keel::pg::transaction(
      c, [&](PooledConnection& cc) -> Result<void> { return cc.exec(ins, 20).transform([](auto&&) {}); },
      {.isolation = keel::pg::Isolation::serializable, .read_only = true, .deferrable = true});
  REQUIRE(!ro);
  CHECK(keel::pg::sqlstate(ro.error()) == "25006");
  auto level = keel::pg::transaction(c,
                                     [&](PooledConnection& cc) -> Result<std::string> {
                                       KEEL_TRY_ASSIGN(Rows r, cc.exec("SHOW transaction_isolation"));
                                       return r.scalar<std::string>();
                                     },
                                     {.isolation = keel::pg::Isolation::repeatable_read});
  CHECK(level.value() == "repeatable read");
  // the Pool overload checks a connection out
  auto via_pool = keel::pg::transaction(pool, [&](PooledConnection& cc) -> Result<std::int64_t> {
    KEEL_TRY_ASSIGN(Rows r, cc.exec("SELECT count(*) FROM " + t));
    return r.scalar<std::int64_t>();
  });
  CHECK(via_pool.value() == 3);
  exec_ok(c, "DROP TABLE " + t);
}

TEST_CASE("4 threads x 250 serializable increments end at exactly 1000", "[postgres][stress]") {
  const Watchdog wd("serializable increments", 240s);
  constexpr int kThreads = 4;
  constexpr int kEach = 250;
  auto pool = open_pool(config(kThreads, kThreads));
  const auto t = table("counter");
  {
    auto c = get(pool);
    exec_ok(c, "CREATE TABLE " + t + " (id int PRIMARY KEY, n int NOT NULL)");
    exec_ok(c, "INSERT INTO " + t + " VALUES (1, 0)");
  }
  std::atomic<int> errors{0};
  std::atomic<int> runs{0};
  std::mutex mu;
  std::string first_error;
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&] {
      for (int k = 0; k < kEach; ++k) {
        auto c = pool.get();
        if (!c) {
          ++errors;
          continue;
        }
        auto r = keel::pg::transaction(*c,
                                       [&](PooledConnection& cc) -> Result<void> {
                                         runs.fetch_add(1, std::memory_order_relaxed);
                                         KEEL_TRY_ASSIGN(Rows cur,
                                                         cc.exec("SELECT n FROM " + t + " WHERE id = 1"));
                                         KEEL_TRY_ASSIGN(int n, cur.scalar<int>());
                                         KEEL_TRY(cc.exec("UPDATE " + t + " SET n = $1 WHERE id = 1", n + 1));
                                         return {};
                                       },
                                       {.isolation = keel::pg::Isolation::serializable, .max_attempts = 100});
        if (!r) {
          ++errors;
          const std::lock_guard lock(mu);
          if (first_error.empty()) first_error = r.error().to_string();
        }
      }
    });
  }
  for (auto& th : ts) th.join();
  INFO(first_error);
  CHECK(errors == 0);
  auto c = get(pool);
  CHECK(scalar<int>(c, "SELECT n FROM " + t + " WHERE id = 1") == kThreads * kEach);
  // read-modify-write under contention: some runs must have been retried
  CHECK(runs.load() > kThreads * kEach);
  UNSCOPED_INFO("runs: " << runs.load() << " for " << kThreads * kEach << " increments");
  exec_ok(c, "DROP TABLE " + t);
}

TEST_CASE("a deadlock (40P01) is retried until both transactions commit", "[postgres]") {
  const Watchdog wd("deadlock", 60s);
  auto pool = open_pool(config(3, 2));
  const auto t = table("dl");
  {
    auto c = get(pool);
    exec_ok(c, "CREATE TABLE " + t + " (id int PRIMARY KEY, n int)");
    exec_ok(c, "INSERT INTO " + t + " VALUES (1, 0), (2, 0)");
    exec_ok(c, "ALTER DATABASE postgres SET deadlock_timeout = '50ms'");
  }
  std::atomic<int> runs{0};
  std::atomic<int> ready{0};
  const auto worker = [&](int first, int second) {
    auto c = get(pool);
    return keel::pg::transaction(c, [&](PooledConnection& cc) -> Result<void> {
      const int run = runs.fetch_add(1);
      KEEL_TRY(cc.exec("UPDATE " + t + " SET n = n + 1 WHERE id = $1", first));
      if (run < 2) {  // the first two runs meet in the middle, so they deadlock
        ready.fetch_add(1);
        for (int i = 0; i < 200 && ready.load() < 2; ++i) std::this_thread::sleep_for(5ms);
      }
      KEEL_TRY(cc.exec("UPDATE " + t + " SET n = n + 1 WHERE id = $1", second));
      return {};
    });
  };
  Result<void> a;
  Result<void> b;
  std::thread ta([&] { a = worker(1, 2); });
  std::thread tb([&] { b = worker(2, 1); });
  ta.join();
  tb.join();
  CHECK(a);
  CHECK(b);
  CHECK(runs.load() >= 3);
  auto c = get(pool);
  CHECK(scalar<std::int64_t>(c, "SELECT sum(n) FROM " + t) == 4);
  exec_ok(c, "DROP TABLE " + t);
  exec_ok(c, "ALTER DATABASE postgres RESET deadlock_timeout");
}

TEST_CASE("exhaustion: get_for times out on time, waiters get returned connections", "[postgres]") {
  const Watchdog wd("exhaustion", 60s);
  auto pool = open_pool(config(2, 2));
  auto a = get(pool);
  auto b = get(pool);
  const auto t0 = std::chrono::steady_clock::now();
  auto c = pool.get_for(300ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(!c);
  CHECK(c.error().code() == Errc::timeout);
  CHECK(took >= 290ms);
  CHECK(took < 1500ms);
  CHECK(pool.stats().timeouts == 1);
  std::thread giver([&] {
    std::this_thread::sleep_for(100ms);
    a.reset();
  });
  auto d = pool.get_for(5s);
  giver.join();
  CHECK(d);
  CHECK(pool.stats().in_use == 2);
  pool.close();
  CHECK(pool.get_for(0s).error().code() == Errc::closed);
}

TEST_CASE("on_connect runs on every new connection and min_idle is kept", "[postgres]") {
  const Watchdog wd("on_connect", 60s);
  std::atomic<int> calls{0};
  auto cfg = config(3, 2);
  cfg.on_connect = [&](keel::pg::Connection& c) -> Result<void> {
    ++calls;
    return c.exec("SET application_name = 'keel-test'").transform([](auto&&) {});
  };
  auto pool = open_pool(cfg);
  CHECK(calls.load() == 2);
  CHECK(pool.stats().idle == 2);
  auto a = get(pool);
  auto b = get(pool);
  auto c = get(pool);
  CHECK(calls.load() == 3);
  CHECK(scalar<std::string>(c, "SHOW application_name") == "keel-test");
  CHECK(scalar<std::string>(c, "SHOW DateStyle").substr(0, 3) == "ISO");
  auto failing = config(1, 1);
  failing.on_connect = [](keel::pg::Connection&) -> Result<void> { return keel::fail(Errc::config, "no"); };
  auto p = Pool::open(failing);
  REQUIRE(!p);
  CHECK(p.error().code() == Errc::config);
}

TEST_CASE("migrate applies each version once, checks checksums, refuses a newer database", "[postgres]") {
  const Watchdog wd("migrate", 60s);
  const auto schema = table("mig");
  auto cfg = config(2, 1);
  cfg.on_connect = [&](keel::pg::Connection& c) -> Result<void> {
    KEEL_TRY(c.exec("CREATE SCHEMA IF NOT EXISTS " + schema));
    return c.exec("SET search_path TO " + schema).transform([](auto&&) {});
  };
  auto pool = open_pool(cfg);
  auto c = get(pool);
  constexpr std::string_view v1[] = {"CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL)"};
  constexpr std::string_view v3[] = {
      "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL)",
      "ALTER TABLE users ADD COLUMN email text",
      "CREATE INDEX users_email ON users(email); INSERT INTO users(name) VALUES ('ada')"};
  CHECK(keel::pg::schema_version(c).value() == 0);
  CHECK(keel::pg::migrate(c, v1).value() == 1);
  CHECK(keel::pg::migrate(c, v3).value() == 3);
  CHECK(keel::pg::migrate(c, v3).value() == 3);  // again: nothing changes
  CHECK(keel::pg::schema_version(c).value() == 3);
  CHECK(scalar<std::int64_t>(c, "SELECT count(*) FROM users") == 1);
  // newer database than the code
  auto older = keel::pg::migrate(c, v1);
  REQUIRE(!older);
  CHECK(older.error().code() == Errc::config);
  // an applied migration edited afterwards
  constexpr std::string_view edited[] = {
      "CREATE TABLE users (id bigserial PRIMARY KEY, name text)", "ALTER TABLE users ADD COLUMN email text",
      "CREATE INDEX users_email ON users(email); INSERT INTO users(name) VALUES ('ada')"};
  auto changed = keel::pg::migrate(c, edited);
  REQUIRE(!changed);
  CHECK(changed.error().code() == Errc::config);
  CHECK(changed.error().to_string().find("migration 1 changed") != std::string::npos);
  // a failing migration leaves nothing of itself; earlier ones stay
  constexpr std::string_view broken[] = {
      "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL)",
      "ALTER TABLE users ADD COLUMN email text",
      "CREATE INDEX users_email ON users(email); INSERT INTO users(name) VALUES ('ada')",
      "CREATE TABLE half (id int); SELECT no_such_column FROM users"};
  auto failed = keel::pg::migrate(c, broken);
  REQUIRE(!failed);
  CHECK(failed.error().to_string().find("applying migration 4 of 4") != std::string::npos);
  CHECK(keel::pg::schema_version(c).value() == 3);
  CHECK(scalar<bool>(c, "SELECT to_regclass('half') IS NULL"));
  CHECK(!c.in_transaction());
  exec_ok(c, "DROP SCHEMA " + schema + " CASCADE");
}

TEST_CASE("several connections migrating at once apply each version once", "[postgres]") {
  const Watchdog wd("concurrent migrate", 120s);
  const auto schema = table("migc");
  auto cfg = config(4, 4);
  cfg.on_connect = [&](keel::pg::Connection& c) -> Result<void> {
    return c.exec("SET search_path TO " + schema).transform([](auto&&) {});
  };
  {
    auto setup = open_pool(config(1, 1));
    auto c = get(setup);
    exec_ok(c, "CREATE SCHEMA " + schema);
  }
  auto pool = open_pool(cfg);
  std::vector<std::string> ms;
  ms.emplace_back("CREATE TABLE log (version int NOT NULL)");
  for (int v = 2; v <= 20; ++v) ms.push_back("INSERT INTO log VALUES (" + std::to_string(v) + ")");
  const std::vector<std::string_view> views(ms.begin(), ms.end());
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&] {
      auto c = pool.get();
      if (!c || keel::pg::migrate(*c, views).value_or(-1) != 20) ++errors;
    });
  }
  for (auto& th : ts) th.join();
  CHECK(errors == 0);
  auto c = get(pool);
  CHECK(scalar<std::int64_t>(c, "SELECT count(*) FROM log") == 19);
  CHECK(scalar<std::int64_t>(c, "SELECT count(DISTINCT version) FROM log") == 19);
  exec_ok(c, "DROP SCHEMA " + schema + " CASCADE");
}

TEST_CASE("listen delivers notifications in order and stops with the pool", "[postgres]") {
  const Watchdog wd("listen", 60s);
  auto pool = open_pool(config(2, 1));
  auto rx = keel::pg::listen(pool, "keel test \"channel\"");
  REQUIRE(rx);
  auto c = get(pool);
  constexpr int kCount = 200;
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(c.exec("SELECT pg_notify($1, $2)", "keel test \"channel\"", std::to_string(i)));
  }
  REQUIRE(c.exec("NOTIFY other_channel, 'not for us'"));
  for (int i = 0; i < kCount; ++i) {
    auto n = rx->recv_for(5s);
    REQUIRE(n);
    CHECK(n->channel == "keel test \"channel\"");
    CHECK(n->payload == std::to_string(i));
    CHECK(!n->gap);
    CHECK(n->backend_pid == c.backend_pid());
  }
  CHECK(rx->recv_for(100ms).error().code() == Errc::timeout);
  // a notification in a rolled-back transaction is never delivered
  REQUIRE(keel::pg::transaction(c, [](PooledConnection& cc) -> Result<void> {
            KEEL_TRY(cc.exec("NOTIFY \"keel test \"\"channel\"\"\", 'rolled back'"));
            return keel::fail(Errc::cancelled);
          }).error() == Errc::cancelled);
  CHECK(rx->recv_for(200ms).error().code() == Errc::timeout);
  c.reset();
  pool.close();
  CHECK(rx->recv_for(5s).error().code() == Errc::closed);
}

TEST_CASE("listen reconnects after pg_terminate_backend and reports the gap", "[postgres][fault]") {
  const Watchdog wd("listen reconnect", 60s);
  auto pool = open_pool(config(2, 1));
  auto rx = keel::pg::listen(pool, "jobs");
  REQUIRE(rx);
  auto c = get(pool);
  REQUIRE(c.exec("NOTIFY jobs, 'before'"));
  auto first = rx->recv_for(5s);
  REQUIRE(first);
  CHECK(first->payload == "before");
  // kill the listener's backend: the one LISTENing that is not us
  auto pid =
      c.exec("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()");
  REQUIRE(pid);
  REQUIRE(pid->size() == 1);
  terminate_backend(pool, pid->get<int>(0, 0).value());
  auto gap = rx->recv_for(10s);
  REQUIRE(gap);
  CHECK(gap->gap);
  CHECK(gap->channel == "jobs");
  REQUIRE(c.exec("NOTIFY jobs, 'after'"));
  auto after = rx->recv_for(5s);
  REQUIRE(after);
  CHECK(after->payload == "after");
  CHECK(!after->gap);
  // dropping the receiver stops the listener and closes its connection
  rx->close();
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    std::this_thread::sleep_for(50ms);
    gone = scalar<std::int64_t>(c,
                                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> "
                                "pg_backend_pid()") == 0;
  }
  CHECK(gone);
}

TEST_CASE("pg_terminate_backend: the killed connection errors with unavailable and is replaced",
          "[postgres][fault]") {
  const Watchdog wd("terminate backend", 60s);
  auto cfg = config(2, 1);
  cfg.maintenance_interval = 50ms;
  auto pool = open_pool(cfg);
  int victim_pid = 0;
  {
    auto victim = get(pool);
    victim_pid = victim.backend_pid();
    terminate_backend(pool, victim_pid);
    auto r = victim.exec("SELECT 1");
    REQUIRE(!r);
    CHECK(r.error().code() == Errc::unavailable);
    CHECK(!victim.healthy());
  }  // closed, not returned
  CHECK(pool.stats().broken >= 1);
  // an idle connection killed behind the pool's back is noticed at checkout
  int idle_pid = 0;
  {
    auto a = get(pool);
    auto killer = get(pool);
    idle_pid = a.backend_pid();
    a.reset();
    auto r = killer.exec("SELECT pg_terminate_backend($1)", idle_pid);
    REQUIRE(r);
    CHECK(r->scalar<bool>().value());
  }
  std::this_thread::sleep_for(100ms);
  {
    auto c1 = get(pool);
    auto c2 = get(pool);
    for (auto* c : {&c1, &c2}) {
      CHECK(c->backend_pid() != idle_pid);
      CHECK(c->backend_pid() != victim_pid);
      CHECK(scalar<int>(*c, "SELECT 1") == 1);
    }
  }
}

TEST_CASE("a statement timeout gives Errc::timeout and the connection stays usable", "[postgres][fault]") {
  const Watchdog wd("statement timeout", 60s);
  auto cfg = config(1, 1);
  cfg.on_connect = [](keel::pg::Connection& c) -> Result<void> {
    return c.exec("SET statement_timeout = '150ms'").transform([](auto&&) {});
  };
  auto pool = open_pool(cfg);
  auto c = get(pool);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c.exec("SELECT pg_sleep(10)");
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(!r);
  CHECK(r.error().code() == Errc::timeout);
  CHECK(keel::pg::sqlstate(r.error()) == "57014");
  CHECK(took < 5s);
  CHECK(scalar<int>(c, "SELECT 1") == 1);
  // SET LOCAL scopes it to one transaction
  auto tx = keel::pg::transaction(c, [](PooledConnection& cc) -> Result<void> {
    KEEL_TRY(cc.exec("SET LOCAL statement_timeout = '50ms'"));
    return cc.exec("SELECT pg_sleep(2)").transform([](auto&&) {});
  });
  CHECK(tx.error().code() == Errc::timeout);
}

TEST_CASE("authentication failure: a clear error at once, and no retry storm", "[postgres][fault]") {
  const Watchdog wd("auth failure", 60s);
  const auto dir = pg_cluster_dir();
  const auto log_count = [&] {
    const auto log = read_text_file(dir / "server.log");
    std::size_t n = 0;
    for (auto p = log.find("password authentication failed"); p != std::string::npos;
         p = log.find("password authentication failed", p + 1)) {
      ++n;
    }
    return n;
  };
  const auto before = log_count();
  PoolConfig cfg;
  cfg.conninfo = read_text_file(dir / "conninfo_password") + " password=wrong-password";
  cfg.min_idle = 2;
  const auto t0 = std::chrono::steady_clock::now();
  auto p = Pool::open(cfg);
  REQUIRE(!p);
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(p.error().code() == Errc::auth_failed);
  CHECK(p.error().to_string().find("password authentication failed for user \"keel_pw\"") !=
        std::string::npos);
  CHECK(p.error().to_string().find("wrong-password") == std::string::npos);  // never the password
  // A password changed under a running pool: get() fails at once, clearly,
  // and attempts follow the backoff instead of one per call.
  auto admin = open_pool(config(1, 1));
  auto a = get(admin);
  exec_ok(a, "ALTER ROLE keel_pw PASSWORD 'keel-right-password'");
  PoolConfig good;
  good.conninfo = read_text_file(dir / "conninfo_password") + " password=keel-right-password";
  good.min_idle = 1;
  good.max_size = 4;
  good.maintenance_interval = 20ms;
  good.reconnect_backoff = {.initial = 200ms, .factor = 2.0, .max = 2s, .jitter = false};
  auto pool = open_pool(good);
  exec_ok(a, "ALTER ROLE keel_pw PASSWORD 'a-new-password'");
  {
    auto held = get(pool);  // the one open connection stays usable
    const auto start = log_count();
    int auth_errors = 0;
    const auto until = std::chrono::steady_clock::now() + 1500ms;
    int calls = 0;
    while (std::chrono::steady_clock::now() < until) {
      auto c = pool.get_for(1s);  // needs a new connection: max_size 4, one held
      ++calls;
      if (!c && c.error().code() == Errc::auth_failed) ++auth_errors;
      std::this_thread::sleep_for(5ms);
    }
    CHECK(auth_errors == calls);
    const auto attempts = log_count() - start;
    UNSCOPED_INFO(calls << " get() calls made " << attempts << " connection attempts");
    CHECK(calls > 50);
    CHECK(attempts >= 1);
    CHECK(attempts <= 5);  // at 0, 200, 600, 1400 ms: one at a time, on the backoff
    CHECK(scalar<int>(held, "SELECT 1") == 1);
  }
  exec_ok(a, "ALTER ROLE keel_pw PASSWORD 'keel-right-password'");
  CHECK(log_count() > before);
}

TEST_CASE("server down: get_for fails with unavailable within its timeout", "[postgres][fault]") {
  const Watchdog wd("server down", 60s);
  // nothing listens on this port: open fails at once with unavailable
  {
    PoolConfig cfg;
    cfg.conninfo = "host=127.0.0.1 port=1 dbname=postgres user=postgres";
    const auto t0 = std::chrono::steady_clock::now();
    auto p = Pool::open(cfg);
    REQUIRE(!p);
    CHECK(p.error().code() == Errc::unavailable);
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  }
  auto cfg = config(2, 1);
  cfg.health_check_after = 0ms;
  auto pool = open_pool(cfg);
  {
    auto c = get(pool);
    CHECK(scalar<int>(c, "SELECT 1") == 1);
  }
  ResumeOnExit resume;
  cluster("halt");
  resume.halted = true;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto c = pool.get_for(700ms);
    const auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(!c);
    CHECK(c.error().code() == Errc::unavailable);
    CHECK(took < 700ms + 500ms);
  }
  cluster("resume");
  resume.halted = false;
  auto back = pool.get_for(10s);
  REQUIRE(back);
  CHECK(scalar<int>(*back, "SELECT 1") == 1);
}

TEST_CASE("server restarted under a busy pool: errors, no hang, connections replaced", "[postgres][fault]") {
  const Watchdog wd("restart under load", 120s);
  auto cfg = config(4, 2);
  cfg.maintenance_interval = 50ms;
  auto pool = open_pool(cfg);
  const auto t = table("busy");
  {
    auto c = get(pool);
    exec_ok(c, "CREATE TABLE " + t + " (id bigserial PRIMARY KEY, worker int)");
  }
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::atomic<int> unexpected_kind{0};
  std::mutex mu;
  std::string odd;
  std::vector<std::thread> ts;
  for (int w = 0; w < 4; ++w) {
    ts.emplace_back([&, w] {
      while (!stop.load()) {
        auto r = keel::pg::transaction(pool, [&](PooledConnection& c) -> Result<void> {
          KEEL_TRY(c.exec("INSERT INTO " + t + "(worker) VALUES ($1)", w));
          return c.exec("SELECT pg_sleep(0.01)").transform([](auto&&) {});
        });
        if (r) {
          ++ok;
        } else {
          ++failed;
          const auto k = r.error().code();
          if (k != Errc::unavailable && k != Errc::timeout) {
            ++unexpected_kind;
            const std::lock_guard lock(mu);
            odd = r.error().to_string();
          }
          std::this_thread::sleep_for(10ms);
        }
      }
    });
  }
  auto rx = keel::pg::listen(pool, "restarts");
  REQUIRE(rx);
  std::this_thread::sleep_for(300ms);
  const int before = ok.load();
  ResumeOnExit resume;
  resume.halted = true;
  cluster("restart");
  resume.halted = false;
  // the listener comes back by itself and says it may have missed some
  auto gap = rx->recv_for(20s);
  REQUIRE(gap);
  CHECK(gap->gap);
  // after the restart, work goes on through fresh connections
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  const int at_restart = ok.load();
  while (ok.load() < at_restart + 50 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  stop = true;
  for (auto& th : ts) th.join();
  INFO(odd);
  CHECK(before > 0);
  CHECK(ok.load() >= at_restart + 50);
  CHECK(failed.load() >= 1);  // the in-flight transactions got an error
  CHECK(unexpected_kind.load() == 0);
  const auto s = pool.stats();
  CHECK(s.broken >= 1);
  CHECK(s.opened > 2);
  auto c = get(pool);
  CHECK(scalar<std::int64_t>(c, "SELECT count(*) FROM " + t) >= ok.load() - failed.load());
  REQUIRE(c.exec("NOTIFY restarts, 'after the restart'"));
  auto note = rx->recv_for(5s);
  REQUIRE(note);
  CHECK(note->payload == "after the restart");
  exec_ok(c, "DROP TABLE " + t);
}

TEST_CASE("copy_in stores every row and escapes text, NULL and bytes, and an error stores none",
          "[postgres]") {
  const Watchdog wd("copy", 60s);
  auto pool = open_pool(config(1, 1));
  auto c = get(pool);
  const auto t = table("copy");
  exec_ok(c, "CREATE TABLE " + t + " (id int PRIMARY KEY, s text, b bytea, n int)");
  const std::vector<std::uint8_t> bytes{0, '\\', '\t', '\n', 0xff};
  auto n = keel::pg::copy_in(
      c, "COPY " + t + " (id, s, b, n) FROM STDIN", [&](keel::pg::CopyWriter& w) -> Result<void> {
        KEEL_TRY(w.row(0, "tab\tnew\nline\\back\rcr", bytes, std::nullopt));
        for (int i = 1; i < 20'000; ++i)
          KEEL_TRY(w.row(i, "row " + std::to_string(i), std::vector<std::uint8_t>{}, i));
        return {};
      });
  REQUIRE(n);
  CHECK(*n == 20'000);
  CHECK(scalar<std::int64_t>(c, "SELECT count(*) FROM " + t) == 20'000);
  auto r = c.exec("SELECT s, b, n FROM " + t + " WHERE id = 0");
  REQUIRE(r);
  CHECK(r->get<std::string>(0, 0).value() == "tab\tnew\nline\\back\rcr");
  CHECK(r->get<std::vector<std::uint8_t>>(0, 1).value() == bytes);
  CHECK(r->is_null(0, 2));
  // the fill function fails: nothing stored, connection fine
  auto aborted =
      keel::pg::copy_in(c, "COPY " + t + " (id) FROM STDIN", [&](keel::pg::CopyWriter& w) -> Result<void> {
        KEEL_TRY(w.row(100'000));
        return keel::fail(Errc::cancelled, "stop");
      });
  CHECK(aborted.error().code() == Errc::cancelled);
  // the server refuses a row: nothing stored
  auto dup = keel::pg::copy_in(c, "COPY " + t + " (id) FROM STDIN", [&](keel::pg::CopyWriter& w) {
    (void)w.row(200'000);
    (void)w.row(0);  // duplicate key
  });
  CHECK(dup.error().code() == Errc::already_exists);
  CHECK(scalar<std::int64_t>(c, "SELECT count(*) FROM " + t) == 20'000);
  CHECK(!keel::pg::copy_in(c, "SELECT 1", [](keel::pg::CopyWriter&) {}));
  CHECK(scalar<int>(c, "SELECT 1") == 1);
  exec_ok(c, "DROP TABLE " + t);
}

TEST_CASE("pipeline runs many statements, reports the first error, and composes with transaction",
          "[postgres]") {
  const Watchdog wd("pipeline", 60s);
  auto pool = open_pool(config(1, 1));
  auto c = get(pool);
  const auto t = table("pipe");
  exec_ok(c, "CREATE TABLE " + t + " (id int PRIMARY KEY, v text)");
  const auto ins = "INSERT INTO " + t + " VALUES ($1, $2)";
  auto n = keel::pg::pipeline(c, [&](keel::pg::Pipeline& p) -> Result<void> {
    for (int i = 0; i < 1000; ++i) KEEL_TRY(p.exec(ins, i, "v" + std::to_string(i)));
    return {};
  });
  REQUIRE(n);
  CHECK(*n == 1000);
  CHECK(scalar<std::int64_t>(c, "SELECT count(*) FROM " + t) == 1000);
  // inside a transaction a failure undoes the whole batch
  auto tx = keel::pg::transaction(c, [&](PooledConnection& cc) -> Result<std::uint64_t> {
    return keel::pg::pipeline(cc, [&](keel::pg::Pipeline& p) -> Result<void> {
      for (int i = 1000; i < 1300; ++i) KEEL_TRY(p.exec(ins, i, "x"));
      KEEL_TRY(p.exec(ins, 5, "duplicate"));
      for (int i = 2000; i < 2010; ++i) KEEL_TRY(p.exec(ins, i, "y"));
      return {};
    });
  });
  REQUIRE(!tx);
  CHECK(tx.error().code() == Errc::already_exists);
  CHECK(!c.in_transaction());
  CHECK(scalar<std::int64_t>(c, "SELECT count(*) FROM " + t) == 1000);
  CHECK(scalar<int>(c, "SELECT 1") == 1);
  exec_ok(c, "DROP TABLE " + t);
}

TEST_CASE("idle_timeout and max_lifetime retire connections and min_idle is kept", "[postgres]") {
  const Watchdog wd("retirement", 60s);
  auto cfg = config(3, 1);
  cfg.idle_timeout = 150ms;
  cfg.maintenance_interval = 20ms;
  auto pool = open_pool(cfg);
  {
    auto a = get(pool);
    auto b = get(pool);
    auto c = get(pool);
  }
  CHECK(pool.stats().idle == 3);
  bool shrunk = false;
  for (int i = 0; i < 100 && !shrunk; ++i) {
    std::this_thread::sleep_for(20ms);
    shrunk = pool.stats().idle == 1;
  }
  CHECK(shrunk);
  CHECK(pool.stats().size == 1);

  auto cfg2 = config(2, 1);
  cfg2.max_lifetime = 200ms;
  cfg2.maintenance_interval = 20ms;
  cfg2.health_check_after = 1ms;  // every checkout after 1 ms idle pings first
  auto old = open_pool(cfg2);
  int first_pid = 0;
  {
    auto c = get(old);
    first_pid = c.backend_pid();
  }
  std::this_thread::sleep_for(400ms);
  auto c = get(old);
  CHECK(c.backend_pid() != first_pid);
  CHECK(scalar<int>(c, "SELECT 1") == 1);
  CHECK(old.stats().closed >= 1);
}
