#include <keel/vault/postgres.hpp>
// (the header under test comes first: it must compile on its own)

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
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
namespace kc = keel::crypto;
namespace kp = keel::pg;
namespace ks = keel::sqlite;
using keel::Errc;
using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kPw = "correct horse battery staple";

kc::StoreConfig fast_config() {
  kc::StoreConfig c;
  c.kdf = kc::KdfParams::pbkdf2(kc::kMinIterations);  // the minimum: keeps the tests quick
  return c;
}

using keel_test::pg_cluster_dir;
using keel_test::pg_conninfo;

/// A fresh schema per case, so cases never see each other's vaults.
std::string fresh_schema(std::string_view tag) {
  static std::atomic<int> n{0};
  const auto name = fmt::format("vault_{}_{}_{}", tag, static_cast<long>(::getpid()), n.fetch_add(1));
  kp::PoolConfig cfg;
  cfg.conninfo = pg_conninfo();
  cfg.min_idle = 1;
  cfg.max_size = 1;
  auto pool = kp::Pool::open(cfg);
  REQUIRE(pool);
  auto conn = pool->get();
  REQUIRE(conn);
  REQUIRE(conn->exec(fmt::format("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}", name)));
  return name;
}

/// A pool whose connections work in `schema`.
kp::Pool open_pool(const std::string& schema, std::size_t max_size = 4) {
  kp::PoolConfig cfg;
  cfg.conninfo = pg_conninfo();
  cfg.min_idle = 1;
  cfg.max_size = max_size;
  cfg.connection_timeout = 10s;
  cfg.on_connect = [schema](kp::Connection& c) -> keel::Result<void> {
    KEEL_TRY(c.exec(fmt::format("SET search_path TO {}", schema)));
    return {};
  };
  auto pool = kp::Pool::open(cfg);
  if (!pool) FAIL("Pool::open: " << pool.error().to_string());
  return std::move(*pool);
}

kc::CredentialStore must(keel::Result<kc::CredentialStore> r) {
  if (!r) FAIL("store: " << r.error().to_string());
  return std::move(*r);
}

std::string get_text(const kc::CredentialStore& s, std::string_view name) {
  auto v = s.get(name);
  if (!v) FAIL("get " << name << ": " << v.error().to_string());
  return std::string(v->view());
}

Bytes pg_bytes(const kp::Pool& pool, const std::string& sql) {
  auto c = pool.get();
  REQUIRE(c);
  auto r = c->exec(sql);
  REQUIRE(r);
  REQUIRE(r->size() == 1);
  return r->get<Bytes>(0, 0).value();
}

std::string temp_db(std::string_view tag) {
  static int counter = 0;
  const std::string path = fmt::format("{}/vault_pg_{}_{}_{}.db", KEEL_TEST_BINARY_DIR, tag,
                                       static_cast<long>(::getpid()), ++counter);
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  return path;
}

Bytes column_bytes(const SQLite::Column& c) {
  const auto* p = static_cast<const std::uint8_t*>(c.getBlob());
  return p == nullptr ? Bytes{} : Bytes(p, p + c.getBytes());
}

}  // namespace

TEST_CASE("vault over PostgreSQL: put/get/remove/list round trip", "[vault_postgres]") {
  const keel_test::Watchdog wd("pg vault round trip", 60s);
  const auto schema = fresh_schema("rt");
  auto pool = open_pool(schema);
  CHECK(kc::CredentialStore::exists(pool).value() == false);
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::not_found);

  auto store = must(kc::CredentialStore::open_or_create(pool, kPw, fast_config()));
  CHECK(kc::CredentialStore::exists(pool).value());
  REQUIRE(store.put("db/password", "s3cret"));
  REQUIRE(store.put("api/key", "k-123"));
  REQUIRE(store.put("Zeta", std::string(5000, 'z')));
  const Bytes binary{0, 1, 2, 255, 0, 7};
  REQUIRE(store.put("bin", std::span<const std::uint8_t>(binary)));
  CHECK(get_text(store, "db/password") == "s3cret");
  CHECK(get_text(store, "Zeta") == std::string(5000, 'z'));
  auto back = store.get("bin");
  REQUIRE(back);
  CHECK(Bytes(back->expose_secret().begin(), back->expose_secret().end()) == binary);
  // replace
  REQUIRE(store.put("db/password", "n3w"));
  CHECK(get_text(store, "db/password") == "n3w");
  // byte order, as over SQLite
  CHECK(store.list().value() == std::vector<std::string>{"Zeta", "api/key", "bin", "db/password"});
  CHECK(store.contains("api/key").value());
  REQUIRE(store.remove("api/key"));
  CHECK_FALSE(store.contains("api/key").value());
  CHECK(store.get("api/key").error().code() == Errc::not_found);
  CHECK(store.remove("api/key").error().code() == Errc::not_found);
  CHECK(store.put("", "x").error().code() == Errc::invalid_argument);
  CHECK(store.put("not utf-8 \xff", "x").error().code() == Errc::invalid_argument);  // UTF8 database
  CHECK(store.checkpoint());

  auto info = kc::CredentialStore::info(pool);
  REQUIRE(info);
  CHECK(info->records == 3);
  CHECK(info->key_epoch == 1);
  CHECK(info->seal_count == 6);  // the key check + five puts
  CHECK(info->kdf == fast_config().kdf);
  CHECK(info->created_at.size() == 24);
  CHECK(info->created_at.back() == 'Z');
  CHECK(info->rotated_at.empty());

  // Another pool (another machine's view) opens the same vault.
  auto pool2 = open_pool(schema);
  auto again = must(kc::CredentialStore::open_or_create(pool2, kPw, fast_config()));
  CHECK(std::equal(again.id().begin(), again.id().end(), store.id().begin()));
  CHECK(get_text(again, "db/password") == "n3w");
  CHECK(kc::CredentialStore::create(pool2, kPw, fast_config()).error().code() == Errc::already_exists);
}

TEST_CASE("vault over PostgreSQL: wrong and empty passwords", "[vault_postgres]") {
  const keel_test::Watchdog wd("pg vault passwords", 60s);
  const auto schema = fresh_schema("pw");
  auto pool = open_pool(schema);
  CHECK(kc::CredentialStore::create(pool, "", fast_config()).error().code() == Errc::invalid_argument);
  auto store = must(kc::CredentialStore::create(pool, kPw, fast_config()));
  REQUIRE(store.put("a", "1"));
  auto wrong = kc::CredentialStore::open(pool, "Correct horse battery staple", fast_config());
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code() == Errc::auth_failed);
  CHECK(kc::CredentialStore::open_or_create(pool, "nope", fast_config()).error().code() == Errc::auth_failed);
  CHECK(store.rotate("").error().code() == Errc::invalid_argument);
  CHECK(get_text(store, "a") == "1");
}

TEST_CASE("vault over PostgreSQL: a rotation is seen by another pool's store", "[vault_postgres]") {
  const keel_test::Watchdog wd("pg vault rotation visible", 60s);
  const auto schema = fresh_schema("rot");
  auto pool_a = open_pool(schema);
  auto pool_b = open_pool(schema);
  auto a = must(kc::CredentialStore::create(pool_a, kPw, fast_config()));
  for (int i = 0; i < 20; ++i) REQUIRE(a.put(fmt::format("s{:02}", i), fmt::format("value {}", i)));
  auto b = must(kc::CredentialStore::open(pool_b, kPw, fast_config()));
  const auto before = pg_bytes(pool_a, "SELECT envelope FROM keel_vault_secrets WHERE name = 's07'");

  std::vector<std::size_t> progress;
  auto cfg = fast_config();
  REQUIRE(a.rotate("new password", cfg.kdf));
  CHECK(get_text(a, "s07") == "value 7");
  CHECK(pg_bytes(pool_a, "SELECT envelope FROM keel_vault_secrets WHERE name = 's07'") != before);

  // b still holds the old key: refused clearly, never a "damaged record".
  auto stale = b.get("s07");
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code() == Errc::auth_failed);
  CHECK(stale.error().message().find("re-keyed") != std::string::npos);
  auto stale_put = b.put("s99", "written under the old key");
  REQUIRE_FALSE(stale_put);
  CHECK(stale_put.error().code() == Errc::auth_failed);
  CHECK(a.contains("s99").value() == false);

  CHECK(kc::CredentialStore::open(pool_b, kPw, fast_config()).error().code() == Errc::auth_failed);
  auto b2 = must(kc::CredentialStore::open(pool_b, "new password", fast_config()));
  for (int i = 0; i < 20; ++i) CHECK(get_text(b2, fmt::format("s{:02}", i)) == fmt::format("value {}", i));
  auto info = kc::CredentialStore::info(pool_b).value();
  CHECK(info.key_epoch == 2);
  CHECK(info.seal_count == 21);
  CHECK_FALSE(info.rotated_at.empty());
}

// Run by the next case in a second process: opens the vault in the schema
// it is given, adds a record and rotates the key.
TEST_CASE("vault over PostgreSQL: the child process rotates", "[.vault_postgres_child]") {
  const char* schema = std::getenv("KEEL_VAULT_PG_CHILD_SCHEMA");
  REQUIRE(schema != nullptr);
  auto pool = open_pool(schema);
  auto store = must(kc::CredentialStore::open(pool, kPw, fast_config()));
  REQUIRE(store.put("from-child", "hello from another process"));
  REQUIRE(store.rotate("child password"));
}

TEST_CASE("vault over PostgreSQL: a rotation in another process", "[vault_postgres]") {
  const keel_test::Watchdog wd("pg vault rotation in another process", 120s);
  const auto schema = fresh_schema("proc");
  auto pool = open_pool(schema);
  auto store = must(kc::CredentialStore::create(pool, kPw, fast_config()));
  REQUIRE(store.put("mine", "parent's"));

  const auto exe = fs::read_symlink("/proc/self/exe");
  const std::string cmd =
      fmt::format("KEEL_VAULT_PG_CHILD_SCHEMA='{}' KEEL_PG_TEST_DIR='{}' '{}' '{}' >'{}.log' 2>&1", schema,
                  pg_cluster_dir().string(), exe.string(), "vault over PostgreSQL: the child process rotates",
                  (fs::path(KEEL_TEST_BINARY_DIR) / schema).string());
  const int rc = std::system(cmd.c_str());
  INFO("child log: " << (fs::path(KEEL_TEST_BINARY_DIR) / schema).string() << ".log");
  REQUIRE(rc == 0);

  CHECK(store.get("mine").error().code() == Errc::auth_failed);
  CHECK(store.put("late", "x").error().code() == Errc::auth_failed);
  auto reopened = must(kc::CredentialStore::open(pool, "child password", fast_config()));
  CHECK(get_text(reopened, "mine") == "parent's");
  CHECK(get_text(reopened, "from-child") == "hello from another process");
  CHECK(reopened.list().value() == std::vector<std::string>{"from-child", "mine"});
}

TEST_CASE("vault over PostgreSQL: rotations racing puts from another store lose nothing",
          "[vault_postgres]") {
  const keel_test::Watchdog wd("pg vault rotate vs put", 180s);
  const auto schema = fresh_schema("race");
  auto pool_a = open_pool(schema);
  auto pool_b = open_pool(schema);
  const std::vector<std::string> passwords{std::string(kPw), "second password", "third password",
                                           "fourth password"};
  auto a = must(kc::CredentialStore::create(pool_a, passwords[0], fast_config()));
  for (int i = 0; i < 10; ++i) REQUIRE(a.put(fmt::format("seed{}", i), fmt::format("seed value {}", i)));

  std::mutex mu;
  std::map<std::string, std::string> stored;  // what b was told it stored
  for (int i = 0; i < 10; ++i) stored[fmt::format("seed{}", i)] = fmt::format("seed value {}", i);
  std::atomic<bool> done{false};
  std::atomic<int> refused{0};
  std::atomic<int> failures{0};
  std::string failure;  // the writer's unexpected error, if any

  std::thread writer([&] {
    auto b = kc::CredentialStore::open(pool_b, passwords[0], fast_config());
    if (!b) {
      failure = b.error().to_string();
      ++failures;
      return;
    }
    int i = 0;
    while (!done.load() || i < 40) {
      const auto name = fmt::format("b{:03}", i);
      const auto value = fmt::format("written by b, {}", i);
      auto r = b->put(name, value);
      if (r) {
        const std::lock_guard lk(mu);
        stored[name] = value;
        ++i;
        continue;
      }
      if (r.error().code() != Errc::auth_failed) {
        failure = r.error().to_string();
        ++failures;
        return;
      }
      ++refused;
      // Re-keyed under us: open again with whichever password is current.
      // (Another rotation may commit while the passwords are tried: go round again.)
      bool reopened = false;
      for (int round = 0; round < 10 && !reopened; ++round) {
        for (auto it = passwords.rbegin(); it != passwords.rend() && !reopened; ++it) {
          auto again = kc::CredentialStore::open(pool_b, *it, fast_config());
          if (again) {
            b = std::move(again);
            reopened = true;
          } else if (again.error().code() != Errc::auth_failed) {
            failure = again.error().to_string();
            ++failures;
            return;
          }
        }
      }
      if (!reopened) {
        failure = "no password opens the vault";
        ++failures;
        return;
      }
    }
  });
  for (std::size_t k = 1; k < passwords.size(); ++k) {
    std::this_thread::sleep_for(30ms);
    REQUIRE(a.rotate(passwords[k]));
  }
  done = true;
  writer.join();
  INFO(failure);
  REQUIRE(failures.load() == 0);

  // Every record present opens with the newest key, and none b stored is lost.
  auto check = must(kc::CredentialStore::open(open_pool(schema), passwords.back(), fast_config()));
  auto names = check.list().value();
  const std::lock_guard lk(mu);
  CHECK(names.size() == stored.size());
  for (const auto& [name, value] : stored) CHECK(get_text(check, name) == value);
  for (const auto& name : names) CHECK(stored.count(name) == 1);
  auto info = kc::CredentialStore::info(pool_a).value();
  CHECK(info.key_epoch == static_cast<std::int64_t>(passwords.size()));
  WARN("puts refused as re-keyed and retried after reopening: " << refused.load());
}

TEST_CASE("vault over PostgreSQL: damaged records are data_loss, as over SQLite", "[vault_postgres]") {
  const keel_test::Watchdog wd("pg vault damage", 60s);
  const auto schema = fresh_schema("dmg");
  auto pool = open_pool(schema);
  auto store = must(kc::CredentialStore::create(pool, kPw, fast_config()));
  REQUIRE(store.put("one", "first"));
  REQUIRE(store.put("two", "second"));
  auto conn = pool.get();
  REQUIRE(conn);

  // An edited envelope (one bit of the ciphertext).
  REQUIRE(conn->exec(
      "UPDATE keel_vault_secrets SET envelope = set_byte(envelope, 20, get_byte(envelope, 20) # 1) "
      "WHERE name = 'one'"));
  auto edited = store.get("one");
  REQUIRE_FALSE(edited);
  CHECK(edited.error().code() == Errc::data_loss);
  // A rotation over a damaged record changes nothing.
  auto rot = store.rotate("other password");
  REQUIRE_FALSE(rot);
  CHECK(rot.error().code() == Errc::data_loss);
  CHECK(get_text(store, "two") == "second");
  CHECK(kc::CredentialStore::info(pool).value().key_epoch == 1);

  // A record moved to another name.
  REQUIRE(
      conn->exec("UPDATE keel_vault_secrets SET envelope = (SELECT envelope FROM keel_vault_secrets WHERE "
                 "name = 'two') WHERE name = 'one'"));
  CHECK(store.get("one").error().code() == Errc::data_loss);
  // A truncated record.
  REQUIRE(conn->exec("UPDATE keel_vault_secrets SET envelope = substr(envelope, 1, 10) WHERE name = 'two'"));
  CHECK(store.get("two").error().code() == Errc::data_loss);

  // Metadata gone, records left: refused as damaged, never a new vault over them.
  REQUIRE(conn->exec("DELETE FROM keel_vault_meta"));
  CHECK(kc::CredentialStore::open_or_create(pool, kPw, fast_config()).error().code() == Errc::data_loss);
  CHECK(kc::CredentialStore::exists(pool).error().code() == Errc::data_loss);
  CHECK(store.put("three", "x").error().code() == Errc::data_loss);
  // Metadata that does not parse.
  REQUIRE(conn->exec("DELETE FROM keel_vault_secrets"));
  auto fresh = must(kc::CredentialStore::create(pool, kPw, fast_config()));
  REQUIRE(conn->exec("UPDATE keel_vault_meta SET store_id = '\\x0102'::bytea"));
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::data_loss);
}

TEST_CASE("vault over PostgreSQL: the same bytes open over SQLite and PostgreSQL", "[vault_postgres]") {
  const keel_test::Watchdog wd("pg vault cross backend", 60s);
  // A vault made over SQLite...
  const auto path = temp_db("cross");
  auto spool = ks::Pool::open(kc::CredentialStore::pool_config(path)).value();
  auto lite = must(kc::CredentialStore::create(spool, kPw, fast_config()));
  REQUIRE(lite.put("db/password", "s3cret"));
  REQUIRE(lite.put("api/key", "k-123"));

  // ...its rows copied byte for byte into PostgreSQL...
  const auto schema = fresh_schema("cross");
  auto pool = open_pool(schema);
  {
    auto pc = pool.get();
    REQUIRE(pc);
    REQUIRE(pc->exec(kc::pg_detail::kPgVaultSchema));
    auto sc = spool.get().value();
    SQLite::Statement m(*sc,
                        "SELECT format, store_id, kdf, salt, iterations, key_check, key_epoch, seal_count "
                        "FROM keel_vault_meta");
    REQUIRE(m.executeStep());
    REQUIRE(
        pc->exec("INSERT INTO keel_vault_meta (id, format, store_id, kdf, salt, iterations, key_check, "
                 "key_epoch, seal_count) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)",
                 m.getColumn(0).getInt64(), column_bytes(m.getColumn(1)), m.getColumn(2).getString(),
                 column_bytes(m.getColumn(3)), m.getColumn(4).getInt64(), column_bytes(m.getColumn(5)),
                 m.getColumn(6).getInt64(), m.getColumn(7).getInt64()));
    SQLite::Statement s(*sc, "SELECT name, envelope FROM keel_vault_secrets");
    while (s.executeStep()) {
      REQUIRE(pc->exec("INSERT INTO keel_vault_secrets (name, envelope) VALUES ($1, $2)",
                       s.getColumn(0).getString(), column_bytes(s.getColumn(1))));
    }
  }
  // ...open there with the same password.
  auto pgs = must(kc::CredentialStore::open(pool, kPw, fast_config()));
  CHECK(std::equal(pgs.id().begin(), pgs.id().end(), lite.id().begin()));
  CHECK(get_text(pgs, "db/password") == "s3cret");
  CHECK(get_text(pgs, "api/key") == "k-123");

  // Rotated and written over PostgreSQL, copied back into a new SQLite file,
  // it opens there with the new password.
  REQUIRE(pgs.rotate("rotated on postgres"));
  REQUIRE(pgs.put("added/on/pg", "pg value"));
  const auto back = temp_db("back");
  {
    auto bpool = ks::Pool::open(kc::CredentialStore::pool_config(back)).value();
    auto seed = must(kc::CredentialStore::create(bpool, "placeholder", fast_config()));  // makes the tables
    auto bc = bpool.get().value();
    REQUIRE(ks::execute(bc, "DELETE FROM keel_vault_meta"));
    auto pc = pool.get();
    REQUIRE(pc);
    auto meta = pc->exec(
        "SELECT format, store_id, kdf, salt, iterations, key_check, key_epoch, seal_count FROM "
        "keel_vault_meta");
    REQUIRE(meta);
    REQUIRE(
        ks::execute(bc,
                    "INSERT INTO keel_vault_meta (id, format, store_id, kdf, salt, iterations, key_check, "
                    "key_epoch, seal_count) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                    meta->get<std::int64_t>(0, 0).value(), meta->get<Bytes>(0, 1).value(),
                    meta->get<std::string>(0, 2).value(), meta->get<Bytes>(0, 3).value(),
                    meta->get<std::int64_t>(0, 4).value(), meta->get<Bytes>(0, 5).value(),
                    meta->get<std::int64_t>(0, 6).value(), meta->get<std::int64_t>(0, 7).value()));
    auto rows = pc->exec("SELECT name, envelope FROM keel_vault_secrets");
    REQUIRE(rows);
    for (std::size_t i = 0; i < rows->size(); ++i) {
      REQUIRE(ks::execute(bc, "INSERT INTO keel_vault_secrets (name, envelope) VALUES (?, ?)",
                          rows->get<std::string>(i, 0).value(), rows->get<Bytes>(i, 1).value()));
    }
  }
  auto bpool = ks::Pool::open(kc::CredentialStore::pool_config(back)).value();
  CHECK(kc::CredentialStore::open(bpool, kPw, fast_config()).error().code() == Errc::auth_failed);
  auto lite2 = must(kc::CredentialStore::open(bpool, "rotated on postgres", fast_config()));
  CHECK(get_text(lite2, "db/password") == "s3cret");
  CHECK(get_text(lite2, "added/on/pg") == "pg value");
  for (const auto& p : {path, back}) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((p + suffix).c_str());
  }
}

TEST_CASE("vault over PostgreSQL: two machines creating at once end with one vault", "[vault_postgres]") {
  const keel_test::Watchdog wd("pg vault concurrent create", 60s);
  const auto schema = fresh_schema("create");
  auto p1 = open_pool(schema);
  auto p2 = open_pool(schema);
  keel::Result<kc::CredentialStore> s1 = keel::fail(Errc::internal, "not run");
  keel::Result<kc::CredentialStore> s2 = keel::fail(Errc::internal, "not run");
  std::thread t1([&] { s1 = kc::CredentialStore::open_or_create(p1, kPw, fast_config()); });
  std::thread t2([&] { s2 = kc::CredentialStore::open_or_create(p2, kPw, fast_config()); });
  t1.join();
  t2.join();
  REQUIRE(s1);
  REQUIRE(s2);
  CHECK(std::equal(s1->id().begin(), s1->id().end(), s2->id().begin()));
  REQUIRE(s1->put("x", "from one"));
  CHECK(get_text(*s2, "x") == "from one");
}
