// keel::sqlite beside what a user would otherwise write, on the same file and
// with the same pragmas (WAL, synchronous=NORMAL, busy_timeout=5000,
// cache_size=-20000, mmap_size=256 MiB):
//   Raw      the sqlite3 C API, one connection per thread, statements prepared once
//   Mutex    one shared SQLite::Database behind a std::mutex
//   OpenPerOp  a SQLite::Database opened for every operation (no pool)
//   Keel     keel::sqlite::Pool: get(), prepare_cached, transaction()
#include <keel/sqlite.hpp>

#include <SQLiteCpp/Transaction.h>

#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>

namespace fs = std::filesystem;
using keel::Result;
using keel::sqlite::PooledConnection;

namespace {

constexpr int kRows = 100'000;
constexpr int kBatch = 1'000;
constexpr const char* kPragmas =
    "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -20000; "
    "PRAGMA mmap_size = 268435456;";

struct Env {
  fs::path dir;
  std::string db;
  Env() {
    dir = fs::temp_directory_path() / ("keel-sqlite-bench-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    db = (dir / "bench.db").string();
    sqlite3* h = nullptr;
    sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    sqlite3_exec(h,
                 "PRAGMA journal_mode = WAL;"
                 "CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
                 "CREATE TABLE w (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);"
                 "BEGIN;"
                 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) "
                 "INSERT INTO kv SELECT i, 'value-' || i FROM n;"
                 "COMMIT;",
                 nullptr, nullptr, nullptr);
    sqlite3_close(h);
  }
  ~Env() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
Env& env() {
  static Env e;
  return e;
}

keel::sqlite::Pool open_bench_pool(bool check_schema) {
  keel::sqlite::PoolConfig cfg;
  cfg.path = env().db;
  cfg.max_size = 8;
  cfg.min_idle = 4;
  cfg.check_schema = check_schema;
  auto r = keel::sqlite::Pool::open(cfg);
  if (!r) {
    std::fprintf(stderr, "pool: %s\n", r.error().to_string().c_str());
    std::abort();
  }
  return std::move(*r);
}

keel::sqlite::Pool& pool() {
  static keel::sqlite::Pool p = open_bench_pool(true);
  return p;
}

// The same pool without the schema check at checkout (PoolConfig::check_schema).
keel::sqlite::Pool& pool_unchecked() {
  static keel::sqlite::Pool p = open_bench_pool(false);
  return p;
}

sqlite3* raw_open() {
  sqlite3* h = nullptr;
  sqlite3_open_v2(env().db.c_str(), &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                  nullptr);
  sqlite3_busy_timeout(h, 5000);
  sqlite3_exec(h, kPragmas, nullptr, nullptr, nullptr);
  return h;
}

/// Small per-thread PRNG for keys.
struct Rng {
  std::uint64_t s;
  explicit Rng(int seed) : s(0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(seed + 1)) {}
  int key() {
    s ^= s << 13U;
    s ^= s >> 7U;
    s ^= s << 17U;
    return static_cast<int>(s % kRows) + 1;
  }
};

std::atomic<std::int64_t> g_errors{0};

// --- checkout ---------------------------------------------------------------

void BM_Checkout_Keel(benchmark::State& state) {
  auto& p = pool();
  for (auto _ : state) {
    auto c = p.get();
    benchmark::DoNotOptimize(c);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Checkout_Keel)->Threads(1)->Threads(4)->UseRealTime();

// --- point reads by primary key -----------------------------------------------

void BM_PointRead_Raw(benchmark::State& state) {
  sqlite3* h = raw_open();
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(h, "SELECT v FROM kv WHERE id = ?", -1, &st, nullptr);
  Rng rng(state.thread_index());
  for (auto _ : state) {
    sqlite3_bind_int(st, 1, rng.key());
    if (sqlite3_step(st) != SQLITE_ROW) ++g_errors;
    benchmark::DoNotOptimize(sqlite3_column_text(st, 0));
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PointRead_Raw)->Threads(1)->Threads(4)->UseRealTime();

// A request: check a connection out, read through the statement cache, give it back.
void BM_PointRead_Keel(benchmark::State& state) {
  auto& p = pool();
  Rng rng(state.thread_index());
  for (auto _ : state) {
    auto c = p.get();
    auto st = c->prepare_cached("SELECT v FROM kv WHERE id = ?");
    SQLite::Statement& s = *st;
    s.bind(1, rng.key());
    if (!s.executeStep()) ++g_errors;
    benchmark::DoNotOptimize(s.getColumn(0).getText());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PointRead_Keel)->Threads(1)->Threads(4)->UseRealTime();

// The same with check_schema off: what the schema check at checkout costs.
void BM_PointRead_KeelNoSchemaCheck(benchmark::State& state) {
  auto& p = pool_unchecked();
  Rng rng(state.thread_index());
  for (auto _ : state) {
    auto c = p.get();
    auto st = c->prepare_cached("SELECT v FROM kv WHERE id = ?");
    SQLite::Statement& s = *st;
    s.bind(1, rng.key());
    if (!s.executeStep()) ++g_errors;
    benchmark::DoNotOptimize(s.getColumn(0).getText());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PointRead_KeelNoSchemaCheck)->Threads(1)->UseRealTime();

// The same with the connection held for the whole run (only the cache lookup added).
void BM_PointRead_KeelHeld(benchmark::State& state) {
  auto c = pool().get();
  Rng rng(state.thread_index());
  for (auto _ : state) {
    auto st = c->prepare_cached("SELECT v FROM kv WHERE id = ?");
    SQLite::Statement& s = *st;
    s.bind(1, rng.key());
    if (!s.executeStep()) ++g_errors;
    benchmark::DoNotOptimize(s.getColumn(0).getText());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PointRead_KeelHeld)->Threads(1)->Threads(4)->UseRealTime();

struct Shared {
  std::mutex mu;
  SQLite::Database db;
  SQLite::Statement read;
  SQLite::Statement write;
  Shared()
      : db(env().db, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, 5000),
        read(db, "SELECT v FROM kv WHERE id = ?"),
        write(db, "INSERT INTO w(v) VALUES (?)") {
    db.exec(kPragmas);
  }
};
Shared& shared() {
  static Shared s;
  return s;
}

void BM_PointRead_Mutex(benchmark::State& state) {
  auto& sh = shared();
  Rng rng(state.thread_index());
  for (auto _ : state) {
    const std::lock_guard lock(sh.mu);
    sh.read.reset();
    sh.read.bind(1, rng.key());
    if (!sh.read.executeStep()) ++g_errors;
    benchmark::DoNotOptimize(sh.read.getColumn(0).getText());
    sh.read.reset();  // a statement left mid-step would pin an old snapshot (keel resets on return)
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PointRead_Mutex)->Threads(1)->Threads(4)->UseRealTime();

void BM_PointRead_OpenPerOp(benchmark::State& state) {
  (void)env();
  Rng rng(state.thread_index());
  for (auto _ : state) {
    SQLite::Database db(env().db, SQLite::OPEN_READWRITE, 5000);
    SQLite::Statement s(db, "SELECT v FROM kv WHERE id = ?");
    s.bind(1, rng.key());
    if (!s.executeStep()) ++g_errors;
    benchmark::DoNotOptimize(s.getColumn(0).getText());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PointRead_OpenPerOp)->Threads(1)->Threads(4)->UseRealTime();

// --- single-row write transactions -------------------------------------------

void BM_InsertTx_Raw(benchmark::State& state) {
  sqlite3* h = raw_open();
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(h, "INSERT INTO w(v) VALUES (?)", -1, &ins, nullptr);
  int i = 0;
  for (auto _ : state) {
    // What one writes without keel: BEGIN IMMEDIATE and trust busy_timeout.
    if (sqlite3_exec(h, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      ++g_errors;
      continue;
    }
    sqlite3_bind_int(ins, 1, ++i);
    if (sqlite3_step(ins) != SQLITE_DONE) ++g_errors;
    sqlite3_reset(ins);
    if (sqlite3_exec(h, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      ++g_errors;
      sqlite3_exec(h, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  sqlite3_finalize(ins);
  sqlite3_close(h);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InsertTx_Raw)->Threads(1)->Threads(4)->UseRealTime();

void BM_InsertTx_Keel(benchmark::State& state) {
  auto& p = pool();
  int i = 0;
  for (auto _ : state) {
    auto c = p.get();
    ++i;
    auto r = keel::sqlite::transaction(*c, [&](PooledConnection& cc) -> Result<void> {
      KEEL_TRY_ASSIGN(SQLite::Statement & s, cc.prepare_cached("INSERT INTO w(v) VALUES (?)"));
      return keel::sqlite::try_sql([&] {
        s.bind(1, i);
        s.exec();
      });
    });
    if (!r) ++g_errors;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InsertTx_Keel)->Threads(1)->Threads(4)->UseRealTime();

void BM_InsertTx_Mutex(benchmark::State& state) {
  auto& sh = shared();
  int i = 0;
  for (auto _ : state) {
    const std::lock_guard lock(sh.mu);
    SQLite::Transaction tx(sh.db);
    sh.write.reset();
    sh.write.bind(1, ++i);
    sh.write.exec();
    tx.commit();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InsertTx_Mutex)->Threads(1)->Threads(4)->UseRealTime();

void BM_InsertTx_OpenPerOp(benchmark::State& state) {
  (void)env();
  int i = 0;
  for (auto _ : state) {
    SQLite::Database db(env().db, SQLite::OPEN_READWRITE, 5000);
    db.exec("PRAGMA synchronous = NORMAL");
    SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement s(db, "INSERT INTO w(v) VALUES (?)");
    s.bind(1, ++i);
    s.exec();
    tx.commit();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InsertTx_OpenPerOp)->Threads(1)->Threads(4)->UseRealTime();

// --- batched inserts: 1000 rows in one transaction --------------------------

void BM_BatchInsert_Raw(benchmark::State& state) {
  sqlite3* h = raw_open();
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(h, "INSERT INTO w(v) VALUES (?)", -1, &ins, nullptr);
  for (auto _ : state) {
    sqlite3_exec(h, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (int i = 0; i < kBatch; ++i) {
      sqlite3_bind_int(ins, 1, i);
      if (sqlite3_step(ins) != SQLITE_DONE) ++g_errors;
      sqlite3_reset(ins);
    }
    sqlite3_exec(h, "COMMIT", nullptr, nullptr, nullptr);
  }
  sqlite3_finalize(ins);
  sqlite3_close(h);
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_BatchInsert_Raw)->UseRealTime();

void BM_BatchInsert_Keel(benchmark::State& state) {
  auto& p = pool();
  for (auto _ : state) {
    auto c = p.get();
    auto r = keel::sqlite::transaction(*c, [&](PooledConnection& cc) -> Result<void> {
      KEEL_TRY_ASSIGN(SQLite::Statement & s, cc.prepare_cached("INSERT INTO w(v) VALUES (?)"));
      return keel::sqlite::try_sql([&] {
        for (int i = 0; i < kBatch; ++i) {
          s.bind(1, i);
          s.exec();
          s.reset();
        }
      });
    });
    if (!r) ++g_errors;
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_BatchInsert_Keel)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  (void)env();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (g_errors.load() != 0) {
    std::fprintf(stderr, "sqlite_bench: %lld operations failed\n", static_cast<long long>(g_errors.load()));
    return 1;
  }
  return 0;
}
