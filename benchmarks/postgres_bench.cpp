// keel::pg beside what a user would otherwise write, against one server:
//   RawPrepared  libpq on one connection, the statement prepared once (PQexecPrepared)
//   Pqxx         libpqxx 6 on one connection, a prepared statement through a nontransaction
//   Keel         keel::pg::Pool: get() per operation, prepare_cached, exec, get<T>
//   KeelHeld     one keel connection held for the whole run
// and, for 1000-row batches: row-by-row inserts in one transaction, the same
// in pipeline mode, and COPY FROM STDIN.
//
// The server: KEEL_PG (a conninfo) when set; otherwise a throwaway cluster is
// started with tests/postgres_cluster.sh (PostgreSQL 15 from Debian) and
// stopped at the end; when neither works the run is skipped with a message.
#include <keel/postgres.hpp>

#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <unistd.h>
#include <pqxx/pqxx>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

namespace fs = std::filesystem;
using keel::Result;
using keel::pg::PooledConnection;

namespace {

constexpr int kRows = 100'000;
constexpr int kBatch = 1'000;
constexpr const char* kPointRead = "SELECT v FROM kv WHERE id = $1";
std::atomic<bool> g_failed{false};

void failed(const char* what, const std::string& why) {
  if (!g_failed.exchange(true)) std::fprintf(stderr, "postgres_bench: %s: %s\n", what, why.c_str());
}

/// The server the benchmarks run against.
struct Server {
  std::string conninfo;
  fs::path dir;  // set when this process started the cluster

  Server() {
    if (const char* c = std::getenv("KEEL_PG")) {
      conninfo = c;
      return;
    }
    dir = fs::temp_directory_path() / ("keel-pg-bench-" + std::to_string(::getpid()));
    const std::string cmd = std::string("bash '") + KEEL_PG_CLUSTER_SCRIPT + "' start '" + dir.string() + "'";
    if (std::system(cmd.c_str()) != 0) {
      dir.clear();
      return;
    }
    std::ifstream in(dir / "conninfo");
    std::getline(in, conninfo);
  }
  ~Server() {
    if (!dir.empty()) {
      const std::string cmd =
          std::string("bash '") + KEEL_PG_CLUSTER_SCRIPT + "' stop '" + dir.string() + "'";
      (void)std::system(cmd.c_str());
    }
  }
};
Server& server() {
  static Server s;
  return s;
}

void setup_schema() {
  PGconn* c = PQconnectdb(server().conninfo.c_str());
  PGresult* r = PQexec(c,
                       "DROP TABLE IF EXISTS kv, w;"
                       "CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL);"
                       "INSERT INTO kv SELECT i, 'value-' || i FROM generate_series(1, 100000) i;"
                       "CREATE TABLE w (id bigint NOT NULL, v text NOT NULL, n int NOT NULL);");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) failed("setup", PQerrorMessage(c));
  PQclear(r);
  r = PQexec(c, "VACUUM ANALYZE kv");  // not inside the implicit transaction above
  if (PQresultStatus(r) != PGRES_COMMAND_OK) failed("vacuum", PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
}

keel::pg::Pool& pool() {
  static keel::pg::Pool p = [] {
    keel::pg::PoolConfig cfg;
    cfg.conninfo = server().conninfo;
    cfg.max_size = 8;
    cfg.min_idle = 4;
    auto r = keel::pg::Pool::open(cfg);
    if (!r) {
      std::fprintf(stderr, "pool: %s\n", r.error().to_string().c_str());
      std::abort();
    }
    return std::move(*r);
  }();
  return p;
}

int next_id(int& i) {
  i = i % kRows + 1;
  return i;
}

// ----------------------------------------------------------- point reads ---

void BM_PointRead_RawPrepared(benchmark::State& state) {
  PGconn* c = PQconnectdb(server().conninfo.c_str());
  PQclear(PQprepare(c, "pr", kPointRead, 0, nullptr));
  int i = static_cast<int>(state.thread_index()) * 7919;
  char buf[16];
  std::size_t bytes = 0;
  for (auto _ : state) {
    std::snprintf(buf, sizeof buf, "%d", next_id(i));
    const char* vals[1] = {buf};
    PGresult* r = PQexecPrepared(c, "pr", 1, vals, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
      failed("raw read", PQerrorMessage(c));
    } else {
      const std::string v(PQgetvalue(r, 0, 0), static_cast<std::size_t>(PQgetlength(r, 0, 0)));
      bytes += v.size();
    }
    PQclear(r);
  }
  benchmark::DoNotOptimize(bytes);
  PQfinish(c);
}

void BM_PointRead_Pqxx(benchmark::State& state) {
  try {
    pqxx::connection c(server().conninfo);
    c.prepare("pr", kPointRead);
    int i = static_cast<int>(state.thread_index()) * 7919;
    std::size_t bytes = 0;
    for (auto _ : state) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_prepared("pr", next_id(i));
      bytes += r[0][0].as<std::string>().size();
    }
    benchmark::DoNotOptimize(bytes);
  } catch (const std::exception& e) {
    failed("pqxx read", e.what());
    state.SkipWithError("pqxx failed");
  }
}

void BM_PointRead_Keel(benchmark::State& state) {
  auto& p = pool();
  int i = static_cast<int>(state.thread_index()) * 7919;
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto v = [&]() -> Result<std::string> {
      KEEL_TRY_ASSIGN(auto conn, p.get());
      KEEL_TRY_ASSIGN(auto st, conn.prepare_cached(kPointRead));
      KEEL_TRY_ASSIGN(keel::pg::Rows rows, st.exec(next_id(i)));
      return rows.get<std::string>(0, 0);
    }();
    if (!v) failed("keel read", v.error().to_string());
    bytes += v ? v->size() : 0;
  }
  benchmark::DoNotOptimize(bytes);
}

void BM_PointRead_KeelHeld(benchmark::State& state) {
  auto conn = pool().get();
  if (!conn) {
    failed("keel held", conn.error().to_string());
    state.SkipWithError("no connection");
    return;
  }
  int i = static_cast<int>(state.thread_index()) * 7919;
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto v = [&]() -> Result<std::string> {
      KEEL_TRY_ASSIGN(auto st, conn->prepare_cached(kPointRead));
      KEEL_TRY_ASSIGN(keel::pg::Rows rows, st.exec(next_id(i)));
      return rows.get<std::string>(0, 0);
    }();
    if (!v) failed("keel held read", v.error().to_string());
    bytes += v ? v->size() : 0;
  }
  benchmark::DoNotOptimize(bytes);
}

void BM_Checkout_Keel(benchmark::State& state) {
  auto& p = pool();
  for (auto _ : state) {
    auto c = p.get();
    if (!c) failed("checkout", c.error().to_string());
    benchmark::DoNotOptimize(c);
  }
}

// ------------------------------------------------------ 1000-row batches ---

std::int64_t g_next_row = 0;

void BM_Batch_RowByRow(benchmark::State& state) {
  auto conn = pool().get();
  if (!conn) {
    failed("row by row", conn.error().to_string());
    state.SkipWithError("no connection");
    return;
  }
  for (auto _ : state) {
    auto r = keel::pg::transaction(*conn, [&](PooledConnection& c) -> Result<void> {
      KEEL_TRY_ASSIGN(auto st, c.prepare_cached("INSERT INTO w VALUES ($1, $2, $3)"));
      for (int k = 0; k < kBatch; ++k) KEEL_TRY(st.exec(++g_next_row, "row", k));
      return {};
    });
    if (!r) failed("row by row", r.error().to_string());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_Batch_Pipeline(benchmark::State& state) {
  auto conn = pool().get();
  if (!conn) {
    failed("pipeline", conn.error().to_string());
    state.SkipWithError("no connection");
    return;
  }
  for (auto _ : state) {
    auto r = keel::pg::transaction(*conn, [&](PooledConnection& c) -> Result<std::uint64_t> {
      return keel::pg::pipeline(c, [&](keel::pg::Pipeline& p) -> Result<void> {
        for (int k = 0; k < kBatch; ++k)
          KEEL_TRY(p.exec("INSERT INTO w VALUES ($1, $2, $3)", ++g_next_row, "row", k));
        return {};
      });
    });
    if (!r || *r != kBatch) failed("pipeline", r ? "short" : r.error().to_string());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_Batch_Copy(benchmark::State& state) {
  auto conn = pool().get();
  if (!conn) {
    failed("copy", conn.error().to_string());
    state.SkipWithError("no connection");
    return;
  }
  for (auto _ : state) {
    auto r = keel::pg::copy_in(*conn, "COPY w (id, v, n) FROM STDIN",
                               [&](keel::pg::CopyWriter& w) -> Result<void> {
                                 for (int k = 0; k < kBatch; ++k) KEEL_TRY(w.row(++g_next_row, "row", k));
                                 return {};
                               });
    if (!r || *r != kBatch) failed("copy", r ? "short" : r.error().to_string());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

}  // namespace

BENCHMARK(BM_Checkout_Keel);
BENCHMARK(BM_PointRead_RawPrepared);
BENCHMARK(BM_PointRead_Pqxx);
BENCHMARK(BM_PointRead_Keel);
BENCHMARK(BM_PointRead_KeelHeld);
BENCHMARK(BM_PointRead_RawPrepared)->Threads(4)->UseRealTime();
BENCHMARK(BM_PointRead_Keel)->Threads(4)->UseRealTime();
BENCHMARK(BM_Batch_RowByRow)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Batch_Pipeline)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Batch_Copy)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (server().conninfo.empty()) {
    std::fprintf(
        stderr,
        "postgres_bench: skipped: no server (set KEEL_PG to a conninfo, or install postgresql-15 so a "
        "throwaway cluster can be started)\n");
    return 0;
  }
  setup_schema();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
}
