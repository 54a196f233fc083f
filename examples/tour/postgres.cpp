// keel-tour: keel::pg. Runs against the server named by KEEL_PG (a libpq
// conninfo, e.g. "host=127.0.0.1 port=5432 dbname=postgres user=postgres");
// without it the section says it was skipped. Migrations in a private
// schema, serializable increments from four threads (retried on conflicts),
// a COPY batch, a notification through LISTEN, and (with keel::vault_postgres)
// a credential store two pools share.
#include <fmt/format.h>

#include "tour.hpp"

// libpq's headers are on the include path only when keel::postgres is built.
#if __has_include(<libpq-fe.h>)
#include <unistd.h>
#include <keel/postgres.hpp>
#if KEEL_TOUR_VAULT_POSTGRES
#include <keel/vault/postgres.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr std::string_view kMigrations[] = {
    "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)",
    "INSERT INTO counters VALUES (1, 0)",
    "CREATE TABLE events (id bigint PRIMARY KEY, body text NOT NULL)",
};

keel::Result<void> run(const std::string& conninfo) {
  const std::string schema = fmt::format("keel_tour_{}", ::getpid());
  keel::pg::PoolConfig cfg;
  cfg.conninfo = conninfo;
  cfg.max_size = 4;
  cfg.connection_timeout = std::chrono::seconds(5);
  cfg.on_connect = [&](keel::pg::Connection& c) -> keel::Result<void> {
    KEEL_TRY(c.exec("CREATE SCHEMA IF NOT EXISTS " + schema));
    return c.exec("SET search_path TO " + schema).transform([](auto&&) {});
  };
  KEEL_TRY_ASSIGN(auto pool, keel::pg::Pool::open(cfg));
  {
    KEEL_TRY_ASSIGN(auto conn, pool.get());
    KEEL_TRY_ASSIGN(int version, keel::pg::migrate(conn, kMigrations));
    fmt::print("  migrated schema {} to version {}\n", schema, version);
  }

  // Four threads, read-modify-write under SERIALIZABLE: conflicts are retried.
  std::atomic<int> failures{0};
  std::atomic<int> runs{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto r = keel::pg::transaction(
            pool,
            [&](keel::pg::PooledConnection& c) -> keel::Result<void> {
              ++runs;
              KEEL_TRY_ASSIGN(auto rows, c.exec("SELECT n FROM counters WHERE id = 1"));
              KEEL_TRY_ASSIGN(std::int64_t n, rows.scalar<std::int64_t>());
              return c.exec("UPDATE counters SET n = $1 WHERE id = 1", n + 1).transform([](auto&&) {});
            },
            {.isolation = keel::pg::Isolation::serializable, .max_attempts = 100});
        if (!r) ++failures;
      }
    });
  }
  for (auto& t : ts) t.join();
  KEEL_TRY_ASSIGN(auto conn, pool.get());
  KEEL_TRY_ASSIGN(auto total, conn.exec("SELECT n FROM counters WHERE id = 1"));
  fmt::print("  4 threads x 50 serializable increments: counter = {} ({} runs, {} failed)\n",
             total.scalar<std::int64_t>().value_or(-1), runs.load(), failures.load());

  // A batch through COPY.
  KEEL_TRY_ASSIGN(std::uint64_t copied, keel::pg::copy_in(conn, "COPY events (id, body) FROM STDIN",
                                                          [](keel::pg::CopyWriter& w) -> keel::Result<void> {
                                                            for (int i = 0; i < 10'000; ++i)
                                                              KEEL_TRY(w.row(i, fmt::format("event {}", i)));
                                                            return {};
                                                          }));
  fmt::print("  COPY stored {} rows in one statement\n", copied);

  // LISTEN/NOTIFY as a keel channel.
  KEEL_TRY_ASSIGN(auto rx, keel::pg::listen(pool, schema));
  KEEL_TRY(conn.exec("SELECT pg_notify($1, $2)", schema, "hello from NOTIFY"));
  KEEL_TRY_ASSIGN(auto note, rx.recv_for(std::chrono::seconds(5)));
  fmt::print("  LISTEN {} received \"{}\"\n", note.channel, note.payload);

#if KEEL_TOUR_VAULT_POSTGRES
  // The credential store in PostgreSQL: one vault for every machine. (PBKDF2
  // at its minimum cost keeps the tour quick; new vaults default to Argon2id.)
  {
    keel::crypto::StoreConfig vc;
    vc.kdf = keel::crypto::KdfParams::pbkdf2(keel::crypto::kMinIterations);
    KEEL_TRY_ASSIGN(auto here, keel::crypto::CredentialStore::open_or_create(pool, "tour password", vc));
    KEEL_TRY(here.put("db/password", "s3cret"));
    KEEL_TRY_ASSIGN(auto elsewhere_pool, keel::pg::Pool::open(cfg));  // another machine's pool
    KEEL_TRY_ASSIGN(auto elsewhere, keel::crypto::CredentialStore::open(elsewhere_pool, "tour password", vc));
    KEEL_TRY_ASSIGN(auto secret, elsewhere.get("db/password"));
    fmt::print("  vault: a secret put through one pool read through another: \"{}\"\n", secret.view());
    KEEL_TRY(here.rotate("new tour password"));
    auto stale = elsewhere.get("db/password");
    if (stale) return keel::fail(keel::Errc::internal, "a store holding the old key read a rotated record");
    fmt::print("  vault: after a rotation elsewhere, the old key gets {} ({})\n",
               keel::to_string(stale.error().code()), stale.error().message());
    KEEL_TRY_ASSIGN(auto reopened,
                    keel::crypto::CredentialStore::open(elsewhere_pool, "new tour password", vc));
    KEEL_TRY_ASSIGN(auto again, reopened.get("db/password"));
    fmt::print("  vault: reopened with the new password: \"{}\"\n", again.view());
  }
#endif

  // Errors keep the SQLSTATE and the server's words.
  auto dup = conn.exec("INSERT INTO events VALUES ($1, $2)", 1, "again");
  fmt::print("  duplicate insert: {} (SQLSTATE {})\n", keel::to_string(dup.error().code()),
             keel::pg::sqlstate(dup.error()));
  KEEL_TRY(conn.exec("DROP SCHEMA " + schema + " CASCADE"));
  if (failures != 0) return keel::fail(keel::Errc::database, "{} transactions failed", failures.load());
  return {};
}

}  // namespace

namespace tour {

bool postgres() {
  const char* conninfo = std::getenv("KEEL_PG");
  if (conninfo == nullptr || *conninfo == '\0') {
    fmt::print("  skipped: set KEEL_PG to a PostgreSQL conninfo to run this section\n");
    return true;
  }
  auto r = run(conninfo);
  if (!r) fmt::print("  error: {}\n", r.error().to_string());
  return r.has_value();
}

}  // namespace tour

#else

namespace tour {
bool postgres() {
  fmt::print("  skipped: keel::postgres was not built (KEEL_WITH_POSTGRES=OFF)\n");
  return true;
}
}  // namespace tour

#endif
