#include <keel/vault.hpp>
// (the header under test comes first: it must compile on its own)

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>
#include <keel/log/sink.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace kc = keel::crypto;
using keel::Errc;
using Bytes = std::vector<std::uint8_t>;

namespace {
constexpr int kScale = keel_test::sanitizer_scale(4);

Bytes unhex(std::string_view s) {
  Bytes out;
  auto nib = [](char c) -> std::uint8_t {
    if (c >= '0' && c <= '9') return static_cast<std::uint8_t>(c - '0');
    return static_cast<std::uint8_t>(c - 'a' + 10);
  };
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>((nib(s[i]) << 4U) | nib(s[i + 1])));
  }
  return out;
}
}  // namespace

namespace {

namespace ks = keel::sqlite;

constexpr std::string_view kPw = "correct horse battery staple";

kc::StoreConfig fast_config() {
  kc::StoreConfig c;
  c.kdf = kc::KdfParams::pbkdf2(kc::kMinIterations);  // the minimum: keeps the tests quick
  return c;
}

// The least Argon2id a new key may use: quicker than the default in tests.
constexpr kc::KdfParams kMinArgon2 =
    kc::KdfParams::argon2id(kc::kArgon2MinMemoryKib, kc::kArgon2MinPasses, 1);

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

bool contains_bytes(const std::string& hay, std::span<const std::uint8_t> needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                     [](char a, std::uint8_t b) { return static_cast<std::uint8_t>(a) == b; }) != hay.end();
}

// Every byte of the database and its -wal and -shm, as a copy taken now would hold.
std::string snapshot(const std::string& path);

// A fresh database path under the build tree.
std::string temp_db(std::string_view tag) {
  static int counter = 0;
  const std::string path = fmt::format("{}/vault_{}_{}_{}.db", KEEL_TEST_BINARY_DIR, tag,
                                       static_cast<long>(::getpid()), ++counter);
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  return path;
}

// A pool as CredentialStore::pool_config() makes it.
ks::Pool open_pool(const std::string& path) {
  return std::move(ks::Pool::open(kc::CredentialStore::pool_config(path)).value());
}

// A pool with keel::sqlite's defaults (files 0644 under the usual umask,
// synchronous=NORMAL, secure_delete off): what a user may hand the store.
ks::Pool plain_pool(const std::string& path) {
  ks::PoolConfig cfg;
  cfg.path = path;
  cfg.min_idle = 1;
  cfg.max_size = 4;
  return std::move(ks::Pool::open(cfg).value());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string snapshot(const std::string& path) {
  std::string all;
  for (const char* suffix : {"", "-wal", "-shm"}) all += read_file(path + suffix);
  return all;
}

Bytes envelope_of(ks::Pool& pool, std::string_view name) {
  auto conn = pool.get().value();
  SQLite::Statement q(*conn, "SELECT envelope FROM keel_vault_secrets WHERE name = ?");
  q.bind(1, std::string(name));
  REQUIRE(q.executeStep());
  const auto* p = static_cast<const std::uint8_t*>(q.getColumn(0).getBlob());
  return {p, p + q.getColumn(0).getBytes()};
}

// Sets the process umask for a scope.
struct UmaskScope {
  explicit UmaskScope(mode_t m) : old(::umask(m)) {}
  ~UmaskScope() { ::umask(old); }
  UmaskScope(const UmaskScope&) = delete;
  UmaskScope& operator=(const UmaskScope&) = delete;
  mode_t old;
};

}  // namespace

TEST_CASE("CredentialStore put/get/list/remove round trip") {
  auto pool = open_pool(temp_db("basic"));
  CHECK_FALSE(kc::CredentialStore::exists(pool).value());
  auto missing = kc::CredentialStore::open(pool, kPw, fast_config());
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code() == Errc::not_found);

  auto store = kc::CredentialStore::create(pool, kPw, fast_config());
  REQUIRE(store);
  CHECK(kc::CredentialStore::exists(pool).value());
  REQUIRE(store->put("db/password", "s3cret"));
  REQUIRE(store->put("api/token", kc::as_bytes(std::string_view("\0binary\xff", 8))));
  REQUIRE(store->put("empty", ""));
  auto got = store->get("db/password");
  REQUIRE(got);
  CHECK(got->view() == "s3cret");
  CHECK(store->get("api/token")->view() == std::string_view("\0binary\xff", 8));
  CHECK(store->get("empty")->empty());
  CHECK(store->list().value() == std::vector<std::string>{"api/token", "db/password", "empty"});
  CHECK(store->contains("api/token").value());

  REQUIRE(store->put("db/password", "n3w"));  // replace
  CHECK(store->get("db/password")->view() == "n3w");

  REQUIRE(store->remove("api/token"));
  CHECK_FALSE(store->contains("api/token").value());
  CHECK(store->get("api/token").error().code() == Errc::not_found);
  CHECK(store->remove("api/token").error().code() == Errc::not_found);
  CHECK(store->put("", "x").error().code() == Errc::invalid_argument);
  CHECK(store->put(std::string(kc::kMaxNameSize + 1, 'n'), "x").error().code() == Errc::invalid_argument);

  auto again = kc::CredentialStore::create(pool, kPw, fast_config());
  REQUIRE_FALSE(again);
  CHECK(again.error().code() == Errc::already_exists);

  // A second handle on the same database (same password) sees everything.
  auto other = kc::CredentialStore::open_or_create(pool, kPw, fast_config());
  REQUIRE(other);
  CHECK(other->get("db/password")->view() == "n3w");
  CHECK(std::equal(other->id().begin(), other->id().end(), store->id().begin()));

  // Weak KDF settings are refused for a new store.
  kc::StoreConfig weak;
  weak.kdf = kc::KdfParams::pbkdf2(1000);
  auto p2 = open_pool(temp_db("weak"));
  CHECK(kc::CredentialStore::create(p2, kPw, weak).error().code() == Errc::config);
  weak.kdf = kc::KdfParams::argon2id(1024, 3, 1);
  CHECK(kc::CredentialStore::create(p2, kPw, weak).error().code() == Errc::config);
}

TEST_CASE("CredentialStore works over an in-memory pool (no file to secure)") {
  ks::PoolConfig pc;
  pc.path = ":memory:";
  auto pool = ks::Pool::open(pc);
  REQUIRE(pool);
  auto store = kc::CredentialStore::create(*pool, kPw, fast_config());
  REQUIRE(store);
  REQUIRE(store->put("a", "one"));
  auto back = store->get("a");
  REQUIRE(back);
  CHECK(back->view() == "one");
  CHECK(store->rotate("another password", fast_config().kdf));
}

TEST_CASE("CredentialStore refuses a wrong password at once, clearly") {
  auto pool = open_pool(temp_db("wrongpw"));
  REQUIRE(kc::CredentialStore::create(pool, kPw, fast_config()));
  auto bad = kc::CredentialStore::open(pool, "Correct horse battery staple", fast_config());
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == Errc::auth_failed);
  CHECK(bad.error().to_string().find("wrong password") != std::string::npos);
}

TEST_CASE("CredentialStore rows cannot be swapped, moved between stores or edited") {
  const auto path = temp_db("swap");
  auto pool = open_pool(path);
  auto store = kc::CredentialStore::create(pool, kPw, fast_config());
  REQUIRE(store);
  REQUIRE(store->put("alice", "alice-secret"));
  REQUIRE(store->put("bob", "bob-secret"));
  {
    auto conn = pool.get().value();
    REQUIRE(
        conn.exec("UPDATE keel_vault_secrets SET name = 'tmp' WHERE name = 'alice';"
                  "UPDATE keel_vault_secrets SET name = 'alice' WHERE name = 'bob';"
                  "UPDATE keel_vault_secrets SET name = 'bob' WHERE name = 'tmp';"));
  }
  CHECK(store->get("alice").error().code() == Errc::data_loss);
  CHECK(store->get("bob").error().code() == Errc::data_loss);

  // Same password, another store: its rows do not open here.
  auto pool2 = open_pool(temp_db("swap2"));
  auto store2 = kc::CredentialStore::create(pool2, kPw, fast_config());
  REQUIRE(store2);
  REQUIRE(store2->put("carol", "carol-secret"));
  std::vector<std::uint8_t> env;
  {
    auto c2 = pool2.get().value();
    SQLite::Statement q(*c2, "SELECT envelope FROM keel_vault_secrets WHERE name = 'carol'");
    REQUIRE(q.executeStep());
    const auto* p = static_cast<const std::uint8_t*>(q.getColumn(0).getBlob());
    env.assign(p, p + q.getColumn(0).getBytes());
  }
  {
    auto conn = pool.get().value();
    SQLite::Statement ins(*conn, "INSERT INTO keel_vault_secrets(name, envelope) VALUES ('carol', ?)");
    ins.bind(1, env.data(), static_cast<int>(env.size()));
    ins.exec();
  }
  CHECK(store->get("carol").error().code() == Errc::data_loss);

  // A byte edited on disk.
  REQUIRE(store->put("dave", "dave-secret"));
  {
    auto conn = pool.get().value();
    REQUIRE(
        conn.exec("UPDATE keel_vault_secrets SET envelope = "
                  "substr(envelope, 1, 20) || CASE WHEN substr(envelope, 21, 1) = x'00' THEN x'01' ELSE "
                  "x'00' END || substr(envelope, 22) WHERE name = 'dave'"));  // byte 21 always changes
    REQUIRE(conn.exec("UPDATE keel_vault_secrets SET envelope = x'01' WHERE name = 'alice'"));
  }
  auto dave = store->get("dave");
  REQUIRE_FALSE(dave);
  CHECK(dave.error().code() == Errc::data_loss);
  CHECK(store->get("alice").error().code() == Errc::data_loss);  // too short to be an envelope
  // The rotation refuses to carry damaged rows over, and changes nothing.
  auto rot = store->rotate("new password 123");
  REQUIRE_FALSE(rot);
  CHECK(rot.error().code() == Errc::data_loss);
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()));
}

TEST_CASE("CredentialStore detects damaged metadata and files that are not vaults") {
  const auto path = temp_db("meta");
  auto pool = open_pool(path);
  REQUIRE(kc::CredentialStore::create(pool, kPw, fast_config()));
  auto edit = [&](const char* sql) {
    auto conn = pool.get().value();
    REQUIRE(conn.exec(sql));
  };
  edit("UPDATE keel_vault_meta SET iterations = iterations + 1");  // a different key
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::auth_failed);
  edit("UPDATE keel_vault_meta SET iterations = iterations - 1");
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()));
  edit("UPDATE keel_vault_meta SET iterations = 4000000000");
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::data_loss);
  edit("UPDATE keel_vault_meta SET iterations = 100000, kdf = 'scrypt'");
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::data_loss);
  edit("UPDATE keel_vault_meta SET kdf = 'argon2id$v=19$m=99999999,p=1'");  // 95 GiB: refused, not tried
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::data_loss);
  edit("UPDATE keel_vault_meta SET format = 3, kdf = 'pbkdf2-hmac-sha256'");  // a newer keel's
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::config);
  edit("UPDATE keel_vault_meta SET format = 1, store_id = x'00'");
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::data_loss);
  edit("UPDATE keel_vault_meta SET store_id = randomblob(16)");  // the key check is bound to the id
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::auth_failed);
  edit("UPDATE keel_vault_meta SET key_check = x''");
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::data_loss);
  edit("DELETE FROM keel_vault_meta");
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::not_found);

  // A file that is not a database at all.
  const auto junk = temp_db("junk");
  {
    std::ofstream f(junk, std::ios::binary);
    f << std::string(4096, 'x');
  }
  ks::PoolConfig cfg;
  cfg.path = junk;
  auto jp = ks::Pool::open(cfg);
  if (jp) {
    CHECK_FALSE(kc::CredentialStore::open(*jp, kPw, fast_config()));
  } else {
    CHECK(jp.error().code() != Errc::internal);
  }
}

TEST_CASE("CredentialStore rotate re-encrypts everything under the new password") {
  const auto path = temp_db("rotate");
  auto pool = open_pool(path);
  auto store = kc::CredentialStore::create(pool, kPw, fast_config());
  REQUIRE(store);
  for (int i = 0; i < 20; ++i) REQUIRE(store->put(fmt::format("k{}", i), fmt::format("v{}", i)));
  std::vector<std::vector<std::uint8_t>> before;
  auto envelopes = [&] {
    std::vector<std::vector<std::uint8_t>> out;
    auto conn = pool.get().value();
    SQLite::Statement q(*conn, "SELECT envelope FROM keel_vault_secrets ORDER BY name");
    while (q.executeStep()) {
      const auto* p = static_cast<const std::uint8_t*>(q.getColumn(0).getBlob());
      out.emplace_back(p, p + q.getColumn(0).getBytes());
    }
    return out;
  };
  before = envelopes();
  REQUIRE(store->rotate("second password!"));
  const auto after = envelopes();
  REQUIRE(after.size() == before.size());
  for (std::size_t i = 0; i < after.size(); ++i) CHECK(after[i] != before[i]);
  for (int i = 0; i < 20; ++i) CHECK(store->get(fmt::format("k{}", i))->view() == fmt::format("v{}", i));
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()).error().code() == Errc::auth_failed);
  auto reopened = kc::CredentialStore::open(pool, "second password!", fast_config());
  REQUIRE(reopened);
  CHECK(reopened->get("k7")->view() == "v7");
  // A handle still holding the old key may not write under it.
  auto stale = kc::CredentialStore::open(pool, "second password!", fast_config());
  REQUIRE(stale);
  REQUIRE(reopened->rotate("third password!!"));
  auto refused = stale->put("k1", "x");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code() == Errc::auth_failed);

  // A rotation that fails half-way (here: the progress callback throws)
  // rolls back entirely: the old password still opens everything.
  kc::StoreConfig cfg = fast_config();
  cfg.on_rotate_progress = [](std::size_t done, std::size_t /*total*/) {
    if (done == 10) throw std::runtime_error("interrupted");
  };
  auto s3 = kc::CredentialStore::open(pool, "third password!!", cfg);
  REQUIRE(s3);
  CHECK_THROWS_AS((void)s3->rotate("fourth password!"), std::runtime_error);
  CHECK(s3->get("k3")->view() == "v3");
  auto s4 = kc::CredentialStore::open(pool, "third password!!", fast_config());
  REQUIRE(s4);
  for (int i = 0; i < 20; ++i) CHECK(s4->get(fmt::format("k{}", i))->view() == fmt::format("v{}", i));
}

TEST_CASE("CredentialStore rotate killed mid-way leaves the old password working") {
  const auto path = temp_db("killed");
  {
    auto pool = open_pool(path);
    auto store = kc::CredentialStore::create(pool, kPw, fast_config());
    REQUIRE(store);
    for (int i = 0; i < 30; ++i) REQUIRE(store->put(fmt::format("k{}", i), fmt::format("v{}", i)));
  }
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ks::PoolConfig pc;
    pc.path = path;
    pc.min_idle = 1;
    auto pool = ks::Pool::open(pc);
    if (!pool) ::_exit(3);
    kc::StoreConfig cfg = fast_config();
    cfg.on_rotate_progress = [](std::size_t done, std::size_t /*total*/) {
      if (done == 15) ::kill(::getpid(), SIGKILL);  // no cleanup, no rollback: a crash
    };
    auto store = kc::CredentialStore::open(*pool, kPw, cfg);
    if (!store) ::_exit(4);
    (void)store->rotate("never committed");
    ::_exit(5);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  auto pool = open_pool(path);
  auto store = kc::CredentialStore::open(pool, kPw, fast_config());
  REQUIRE(store);
  for (int i = 0; i < 30; ++i) CHECK(store->get(fmt::format("k{}", i))->view() == fmt::format("v{}", i));
  CHECK(kc::CredentialStore::open(pool, "never committed", fast_config()).error().code() ==
        Errc::auth_failed);
}

TEST_CASE("CredentialStore: 1,000 seals never repeat a nonce, and no plaintext reaches the file") {
  const auto path = temp_db("nonces");
  std::set<std::vector<std::uint8_t>> nonces;
  {
    auto pool = open_pool(path);
    auto store = kc::CredentialStore::create(pool, kPw, fast_config());
    REQUIRE(store);
    for (int i = 0; i < 1000; ++i) {
      REQUIRE(store->put(fmt::format("name-{}", i % 100), fmt::format("PLAINTEXT-MARKER-{:04}", i)));
      auto conn = pool.get().value();
      SQLite::Statement q(*conn, "SELECT envelope FROM keel_vault_secrets WHERE name = ?");
      q.bind(1, fmt::format("name-{}", i % 100));
      REQUIRE(q.executeStep());
      const auto* p = static_cast<const std::uint8_t*>(q.getColumn(0).getBlob());
      nonces.emplace(p + 1, p + 13);
    }
    CHECK(store->seal_count().value() == 1001);  // 1000 records and the key check
  }
  CHECK(nonces.size() == 1000);
  std::string all;
  for (const char* suffix : {"", "-wal", "-shm"}) all += read_file(path + suffix);
  CHECK(all.size() > 0);
  CHECK(all.find("PLAINTEXT-MARKER") == std::string::npos);
  CHECK(all.find(std::string(kPw)) == std::string::npos);
}

TEST_CASE("CredentialStore warns when its key nears the seal limit") {
  std::ostringstream sink_out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(sink_out);
  auto logger = std::make_shared<spdlog::logger>("crypto-test", sink);
  kc::StoreConfig cfg = fast_config();
  cfg.logger = keel::log::adapt(logger);
  cfg.seal_warn_threshold = 3;
  auto pool = open_pool(temp_db("warn"));
  auto store = kc::CredentialStore::create(pool, kPw, cfg);
  REQUIRE(store);
  REQUIRE(store->put("a", "topsecret-1"));  // 2 seals (with the key check)
  CHECK(sink_out.str().find("rotate") == std::string::npos);
  REQUIRE(store->put("b", "topsecret-2"));  // 3: warn
  CHECK(sink_out.str().find("rotate") != std::string::npos);
  CHECK(sink_out.str().find("topsecret") == std::string::npos);
}

TEST_CASE("CredentialStore is safe to use from several threads while rotating") {
  auto pool = open_pool(temp_db("threads"));
  auto store = kc::CredentialStore::create(pool, kPw, fast_config());
  REQUIRE(store);
  constexpr int kThreads = 3;
  const int per = 60 / kScale;
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < per; ++i) {
          const auto name = fmt::format("t{}-{}", t, i);
          if (!store->put(name, name + "-value")) ++failures;
          auto got = store->get(name);
          if (!got || got->view() != name + "-value") ++failures;
        }
      });
    }
    threads.emplace_back([&] {
      if (!store->rotate("rotated during writes")) ++failures;
    });
  }
  CHECK(failures.load() == 0);
  auto reopened = kc::CredentialStore::open(pool, "rotated during writes", fast_config());
  REQUIRE(reopened);
  CHECK(reopened->list()->size() == static_cast<std::size_t>(kThreads * per));
  for (int t = 0; t < kThreads; ++t)
    CHECK(reopened->get(fmt::format("t{}-0", t))->view() == fmt::format("t{}-0-value", t));
}

TEST_CASE("a store whose key another pool rotated away is refused clearly, reading and writing") {
  const auto path = temp_db("stale");
  auto pool_a = open_pool(path);
  auto pool_b = open_pool(path);  // another process's view of the same file
  auto a = kc::CredentialStore::create(pool_a, kPw, fast_config());
  REQUIRE(a);
  REQUIRE(a->put("db/password", "s3cret"));
  auto b = kc::CredentialStore::open(pool_b, kPw, fast_config());
  REQUIRE(b);
  REQUIRE(a->rotate("a new password"));
  auto read = b->get("db/password");
  REQUIRE_FALSE(read);
  CHECK(read.error().code() == Errc::auth_failed);  // not data_loss: nothing is damaged
  CHECK(read.error().message().find("re-keyed") != std::string::npos);
  auto write = b->put("other", "x");
  REQUIRE_FALSE(write);
  CHECK(write.error().code() == Errc::auth_failed);
  CHECK_FALSE(a->contains("other").value());
  auto reopened = kc::CredentialStore::open(pool_b, "a new password", fast_config());
  REQUIRE(reopened);
  CHECK(reopened->get("db/password").value().view() == "s3cret");
}

TEST_CASE("vault files are 0600 whatever the umask, -wal and -shm included") {
  const UmaskScope open_umask(0);  // SQLite alone would make 0644 files
  const auto path = temp_db("modes");
  {
    auto pool = ks::Pool::open(kc::CredentialStore::pool_config(path)).value();
    auto store = kc::CredentialStore::create(pool, kPw, fast_config());
    REQUIRE(store);
    REQUIRE(store->put("a", "secret-a"));
    auto conn = pool.get().value();  // the log stays while a connection is open
    for (const char* suffix : {"", "-wal", "-shm"}) {
      INFO(suffix);
      CHECK(mode_of(path + suffix) == 0600);
    }
  }
  // A pool made without pool_config(): the file SQLite made (0644 here) is
  // closed to group and others before the vault writes anything into it.
  const auto plain = temp_db("modes_plain");
  {
    auto pool = plain_pool(plain);
    CHECK(mode_of(plain) == 0644);
    REQUIRE(kc::CredentialStore::create(pool, kPw, fast_config()));
    auto conn = pool.get().value();
    for (const char* suffix : {"", "-wal", "-shm"}) CHECK(mode_of(plain + suffix) == 0600);
  }
}

TEST_CASE("a vault file that others may write is refused; one others may read is closed to them") {
  const auto path = temp_db("writable");
  {
    auto pool = ks::Pool::open(kc::CredentialStore::pool_config(path)).value();
    REQUIRE(kc::CredentialStore::create(pool, kPw, fast_config()));
  }
  for (const mode_t bad : {0666U, 0620U, 0602U}) {
    REQUIRE(::chmod(path.c_str(), bad) == 0);
    auto pool = plain_pool(path);
    auto opened = kc::CredentialStore::open(pool, kPw, fast_config());
    REQUIRE_FALSE(opened);
    CHECK(opened.error().code() == Errc::config);
    CHECK_THAT(opened.error().to_string(), Catch::Contains("written by group or others"));
  }
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  auto pool = plain_pool(path);
  REQUIRE(kc::CredentialStore::open(pool, kPw, fast_config()));
  CHECK(mode_of(path) == 0600);
}

TEST_CASE("remove, replace and rotate leave no old envelope in a copy of the files") {
  const auto path = temp_db("scrub");
  auto pool = plain_pool(path);  // the store sets its own pragmas
  auto store = kc::CredentialStore::create(pool, kPw, fast_config());
  REQUIRE(store);
  // Many records, so that the ones removed share pages with ones that stay.
  for (int i = 0; i < 50; ++i) REQUIRE(store->put(fmt::format("k{:02}", i), fmt::format("value-{:02}", i)));
  REQUIRE(store->checkpoint());
  const Bytes removed = envelope_of(pool, "k10");
  const Bytes replaced = envelope_of(pool, "k20");
  const Bytes rotated = envelope_of(pool, "k30");
  CHECK(contains_bytes(snapshot(path), removed));  // the search itself works

  REQUIRE(store->remove("k10"));
  CHECK_FALSE(contains_bytes(snapshot(path), removed));
  REQUIRE(store->put("k20", "value-20-new"));
  CHECK_FALSE(contains_bytes(snapshot(path), replaced));
  REQUIRE(store->rotate("second password!"));
  const auto after = snapshot(path);
  CHECK_FALSE(contains_bytes(after, rotated));
  CHECK(read_file(path + "-wal").empty());
  // The old key check went too: the old password opens nothing in this copy.
  CHECK_FALSE(contains_bytes(after, removed));
  CHECK(store->get("k30")->view() == "value-30");
}

TEST_CASE("the store's connections run with secure_delete and synchronous=FULL") {
  ks::PoolConfig cfg;
  cfg.path = temp_db("pragmas");
  cfg.min_idle = 1;
  cfg.max_size = 1;  // one connection: the one the store used
  auto pool = ks::Pool::open(cfg).value();
  auto store = kc::CredentialStore::create(pool, kPw, fast_config());
  REQUIRE(store);
  REQUIRE(store->put("a", "b"));
  auto conn = pool.get().value();
  CHECK(conn->execAndGet("PRAGMA secure_delete").getInt() == 1);
  CHECK(conn->execAndGet("PRAGMA synchronous").getInt() == 2);  // FULL
  const auto pc = kc::CredentialStore::pool_config("x.db");
  CHECK(pc.file_mode == 0600);
  CHECK(pc.synchronous == "FULL");
}

TEST_CASE("a vault whose metadata is gone but whose records remain is refused as damaged") {
  for (const char* damage : {"DELETE FROM keel_vault_meta", "DROP TABLE keel_vault_meta"}) {
    INFO(damage);
    const auto path = temp_db("nometa");
    auto pool = open_pool(path);
    {
      auto store = kc::CredentialStore::create(pool, kPw, fast_config());
      REQUIRE(store);
      REQUIRE(store->put("a", "secret-a"));
      auto conn = pool.get().value();
      REQUIRE(conn.exec(damage));
    }
    auto check = [](const keel::Result<kc::CredentialStore>& r) {
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == Errc::data_loss);
      CHECK_THAT(r.error().to_string(), Catch::Contains("damaged vault"));
    };
    check(kc::CredentialStore::open(pool, kPw, fast_config()));
    check(kc::CredentialStore::open_or_create(pool, kPw, fast_config()));
    check(kc::CredentialStore::create(pool, kPw, fast_config()));
    CHECK(kc::CredentialStore::exists(pool).error().code() == Errc::data_loss);
    auto conn = pool.get().value();
    CHECK(conn->execAndGet("SELECT COUNT(*) FROM keel_vault_secrets").getInt() == 1);  // untouched
  }
}

TEST_CASE("empty passwords are refused for new vaults and rotations") {
  auto pool = open_pool(temp_db("emptypw"));
  auto none = kc::CredentialStore::create(pool, "", fast_config());
  REQUIRE_FALSE(none);
  CHECK(none.error().code() == Errc::invalid_argument);
  CHECK(kc::CredentialStore::open_or_create(pool, "", fast_config()).error().code() ==
        Errc::invalid_argument);
  auto store = kc::CredentialStore::create(pool, kPw, fast_config());
  REQUIRE(store);
  CHECK(store->rotate("").error().code() == Errc::invalid_argument);
  CHECK(kc::CredentialStore::open(pool, kPw, fast_config()));
}

TEST_CASE("Argon2id known answers (checked against Python's cryptography)") {
  auto hex_of = [](const kc::SecretKey& k) {
    std::string out;
    for (auto b : k.expose_secret()) out += fmt::format("{:02x}", b);
    return out;
  };
  const std::string_view salt1 = "somesalt";
  auto k1 = kc::derive_vault_key("password", kc::as_bytes(salt1), kc::KdfParams::argon2id(65536, 2, 1),
                                 kc::KdfPolicy::existing_data);
  REQUIRE(k1);
  CHECK(hex_of(*k1) == "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7");
  const std::string_view salt2 = "0123456789abcdef";
  auto k2 = kc::derive_vault_key("correct horse", kc::as_bytes(salt2), kc::KdfParams::argon2id(20480, 3, 2));
  REQUIRE(k2);
  CHECK(hex_of(*k2) == "07a5593aec067a8021eadc3afae27fda1b99bc1e488d522c22926f3610e596af");
  // New keys meet the minimums; stored parameters are bounded.
  CHECK(kc::derive_vault_key("pw", kc::as_bytes(salt2), kc::KdfParams::argon2id(1024, 3, 1)).error().code() ==
        Errc::config);
  CHECK(kc::derive_vault_key("pw", kc::as_bytes(salt2),
                             kc::KdfParams::argon2id(kc::kArgon2MaxMemoryKib + 1, 1, 1),
                             kc::KdfPolicy::existing_data)
            .error()
            .code() == Errc::invalid_argument);
  CHECK(unhex("00").size() == 1);
}

TEST_CASE("KDF columns parse strictly") {
  using kc::detail::parse_kdf_column;
  auto p = parse_kdf_column("argon2id$v=19$m=65536,p=1", 3);
  REQUIRE(p);
  CHECK(*p == kc::KdfParams::argon2id(65536, 3, 1));
  CHECK(kc::detail::kdf_column(*p) == "argon2id$v=19$m=65536,p=1");
  CHECK(parse_kdf_column("pbkdf2-hmac-sha256", 600000).value() == kc::KdfParams::pbkdf2(600000));
  for (const char* bad :
       {"argon2id$v=19$m=65536,p=1,", "argon2id$v=19$m=065536,p=1", "argon2id$v=19$m=,p=1",
        "argon2id$v=18$m=65536,p=1", "argon2id$v=19$p=1,m=65536", "argon2id$v=19$m=65536,p=0",
        "argon2id$v=19$m=4,p=1", "argon2id$v=19$m=99999999999,p=1", "argon2i", ""}) {
    INFO(bad);
    CHECK(parse_kdf_column(bad, 3).error().code() == Errc::data_loss);
  }
  CHECK(parse_kdf_column("argon2id$v=19$m=65536,p=1", 0).error().code() == Errc::data_loss);
  CHECK(parse_kdf_column("argon2id$v=19$m=65536,p=1", 1001).error().code() == Errc::data_loss);
}

TEST_CASE("new vaults use Argon2id; PBKDF2 vaults keep opening; rotate moves between KDFs") {
  CHECK(kc::StoreConfig{}.kdf == kc::KdfParams::argon2id(64 * 1024, 3, 1));
  const auto path = temp_db("kdf");
  auto pool = open_pool(path);
  {
    // A vault as keel wrote them before Argon2id: format 1, PBKDF2.
    auto old = kc::CredentialStore::create(pool, kPw, fast_config());
    REQUIRE(old);
    REQUIRE(old->put("a", "secret-a"));
    auto info = kc::CredentialStore::info(pool);
    REQUIRE(info);
    CHECK(info->format == 1);
    CHECK(info->kdf == kc::KdfParams::pbkdf2(kc::kMinIterations));
    CHECK(info->records == 1);
    CHECK(info->seal_count == 2);
    CHECK(info->rotated_at.empty());
    auto conn = pool.get().value();
    CHECK(conn->execAndGet("SELECT kdf FROM keel_vault_meta").getString() == "pbkdf2-hmac-sha256");
  }
  kc::StoreConfig argon = fast_config();
  argon.kdf = kMinArgon2;
  auto store = kc::CredentialStore::open(pool, kPw, argon);  // opens with what is stored
  REQUIRE(store);
  REQUIRE(store->rotate("second password!"));  // to config.kdf: Argon2id
  auto info = kc::CredentialStore::info(pool).value();
  CHECK(info.format == 2);
  CHECK(info.kdf == kMinArgon2);
  CHECK(info.key_epoch == 2);
  CHECK_FALSE(info.rotated_at.empty());
  {
    auto conn = pool.get().value();
    CHECK(conn->execAndGet("SELECT kdf FROM keel_vault_meta").getString() ==
          fmt::format("argon2id$v=19$m={},p=1", kc::kArgon2MinMemoryKib));
  }
  auto again = kc::CredentialStore::open(pool, "second password!", fast_config());
  REQUIRE(again);
  CHECK(again->get("a")->view() == "secret-a");
  // And back to PBKDF2 (FIPS), then to a costlier Argon2id.
  REQUIRE(again->rotate("third password!!", kc::KdfParams::pbkdf2(kc::kMinIterations)));
  CHECK(kc::CredentialStore::info(pool)->format == 1);
  REQUIRE(again->rotate("fourth password!", kc::KdfParams::argon2id(kc::kArgon2MinMemoryKib, 3, 2)));
  CHECK(kc::CredentialStore::info(pool)->kdf == kc::KdfParams::argon2id(kc::kArgon2MinMemoryKib, 3, 2));
  CHECK(again->rotate("fifth", kc::KdfParams::argon2id(1024, 1, 1)).error().code() == Errc::config);
  auto last = kc::CredentialStore::open(pool, "fourth password!", fast_config());
  REQUIRE(last);
  CHECK(last->get("a")->view() == "secret-a");
  // A new vault with the Argon2id config records it from the start.
  auto p2 = open_pool(temp_db("kdf2"));
  REQUIRE(kc::CredentialStore::create(p2, kPw, argon));
  CHECK(kc::CredentialStore::info(p2)->format == 2);
  CHECK(kc::CredentialStore::open(p2, "nope", argon).error().code() == Errc::auth_failed);
}

// A user's own storage through the public seam (<keel/vault/backend.hpp>):
// rows in memory, reachable from every backend made from one MemVault.
namespace memvault {

struct Rows {
  std::mutex mu;
  std::optional<kc::VaultBackend::MetaRow> meta;
  std::map<std::string, Bytes> records;
};
struct MemVault {
  std::shared_ptr<Rows> rows = std::make_shared<Rows>();
};

class MemBackend final : public kc::VaultBackend {
 public:
  explicit MemBackend(std::shared_ptr<Rows> r) : r_(std::move(r)) {}
  keel::Result<void> prepare(const keel::Logger&) override { return {}; }
  keel::Result<MetaRow> read_meta() override {
    std::lock_guard lock(r_->mu);
    if (!r_->meta) return keel::fail(Errc::not_found, "no vault");
    return *r_->meta;
  }
  keel::Result<Extra> read_extra() override {
    std::lock_guard lock(r_->mu);
    Extra e;
    e.records = r_->records.size();
    e.created_at = "then";
    return e;
  }
  keel::Result<void> create(std::span<const std::uint8_t> id, const KeyRow& row) override {
    std::lock_guard lock(r_->mu);
    if (r_->meta) return keel::fail(Errc::already_exists, "a vault is here");
    r_->meta.emplace();
    r_->meta->store_id.assign(id.begin(), id.end());
    set_key(row, 1, 1);
    return {};
  }
  keel::Result<std::int64_t> put(std::string_view name, std::span<const std::uint8_t> env,
                                 std::int64_t epoch) override {
    std::lock_guard lock(r_->mu);
    KEEL_TRY(check_epoch(epoch));
    r_->records[std::string(name)].assign(env.begin(), env.end());
    return ++r_->meta->seal_count;
  }
  keel::Result<StoredRecord> get(std::string_view name) override {
    std::lock_guard lock(r_->mu);
    auto it = r_->records.find(std::string(name));
    if (it == r_->records.end()) return keel::fail(Errc::not_found, "no record");
    return StoredRecord{it->second, r_->meta ? std::optional(r_->meta->key_epoch) : std::nullopt};
  }
  keel::Result<bool> contains(std::string_view name) override {
    std::lock_guard lock(r_->mu);
    return r_->records.count(std::string(name)) != 0;
  }
  keel::Result<void> remove(std::string_view name) override {
    std::lock_guard lock(r_->mu);
    if (r_->records.erase(std::string(name)) == 0) return keel::fail(Errc::not_found, "no record");
    return {};
  }
  keel::Result<std::vector<std::string>> list() override {
    std::lock_guard lock(r_->mu);
    std::vector<std::string> out;
    for (const auto& kv : r_->records) out.push_back(kv.first);
    return out;
  }
  keel::Result<std::size_t> rotate(std::int64_t epoch, const KeyRow& row, const Reseal& reseal,
                                   const Progress& progress) override {
    std::lock_guard lock(r_->mu);
    KEEL_TRY(check_epoch(epoch));
    auto fresh = r_->records;
    std::size_t done = 0;
    for (auto& [name, env] : fresh) {
      KEEL_TRY_ASSIGN(env, reseal(name, env));
      if (progress) progress(++done, fresh.size());
    }
    r_->records = std::move(fresh);
    set_key(row, r_->meta->key_epoch + 1, static_cast<std::int64_t>(r_->records.size()) + 1);
    return r_->records.size();
  }
  keel::Result<void> checkpoint() override { return {}; }

 private:
  keel::Result<void> check_epoch(std::int64_t expected) const {
    if (!r_->meta) return keel::fail(Errc::data_loss, "the metadata row is gone");
    if (r_->meta->key_epoch != expected) return keel::fail(Errc::auth_failed, "{}", kRekeyed);
    return {};
  }
  void set_key(const KeyRow& row, std::int64_t epoch, std::int64_t seals) {
    auto& m = *r_->meta;
    m.format = row.format;
    m.kdf = row.kdf;
    m.salt.assign(row.salt.begin(), row.salt.end());
    m.iterations = row.iterations;
    m.key_check.assign(row.key_check.begin(), row.key_check.end());
    m.key_epoch = epoch;
    m.seal_count = seals;
  }
  std::shared_ptr<Rows> r_;
};

std::unique_ptr<kc::VaultBackend> make_vault_backend(const MemVault& v) {
  return std::make_unique<MemBackend>(v.rows);
}

}  // namespace memvault

TEST_CASE("a user's backend through make_vault_backend: round trip, validation and re-keying by the store") {
  memvault::MemVault v;
  CHECK(*kc::CredentialStore::exists(v) == false);
  auto s = kc::CredentialStore::open_or_create(v, "pw", fast_config());
  REQUIRE(s);
  REQUIRE(s->put("b", "two"));
  REQUIRE(s->put("a", "one"));
  CHECK(*s->list() == std::vector<std::string>{"a", "b"});
  CHECK(kc::CredentialStore::create(v, "pw", fast_config()).error().code() == Errc::already_exists);
  CHECK(kc::CredentialStore::open(v, "wrong", fast_config()).error().code() == Errc::auth_failed);
  std::size_t progress_calls = 0;
  kc::StoreConfig cfg = fast_config();
  cfg.on_rotate_progress = [&](std::size_t, std::size_t) { ++progress_calls; };
  auto r = kc::CredentialStore::open(v, "pw", cfg);
  REQUIRE(r);
  REQUIRE(r->rotate("pw2"));
  CHECK(progress_calls == 2);
  // The first store still holds the old key: refused on write and on read.
  auto stale = s->put("c", "three");
  REQUIRE(!stale);
  CHECK(stale.error().code() == Errc::auth_failed);
  CHECK(stale.error().message().find(kc::VaultBackend::kRekeyed) != std::string::npos);
  CHECK(s->get("a").error().code() == Errc::auth_failed);
  auto again = kc::CredentialStore::open(v, "pw2", fast_config());
  REQUIRE(again);
  CHECK(again->get("b")->view() == "two");
  auto info = kc::CredentialStore::info(v);
  REQUIRE(info);
  CHECK(info->key_epoch == 2);
  CHECK(info->records == 2);
  CHECK(info->seal_count == 3);
  CHECK(*again->seal_count() == 3);

  // The backend hands the metadata back unchanged; the store validates it.
  const std::uint8_t last = v.rows->meta->store_id.back();
  v.rows->meta->store_id.pop_back();
  CHECK(kc::CredentialStore::exists(v).error().code() == Errc::data_loss);
  CHECK(kc::CredentialStore::info(v).error().code() == Errc::data_loss);
  CHECK(kc::CredentialStore::open(v, "pw2", fast_config()).error().code() == Errc::data_loss);
  v.rows->meta->store_id.push_back(static_cast<std::uint8_t>(last ^ 0xffU));  // another store's id
  CHECK(kc::CredentialStore::open(v, "pw2", fast_config()).error().code() == Errc::auth_failed);  // AAD moved
  // A record moved to another name does not open.
  {
    std::lock_guard lock(v.rows->mu);
    v.rows->records["a"] = v.rows->records["b"];
  }
  CHECK(again->get("a").error().code() == Errc::data_loss);
}
