#include <keel/crypto.hpp>
// (the header under test comes first: it must compile on its own)

#include <fmt/format.h>
#include <rapidcheck/catch.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "test_support.hpp"

namespace kc = keel::crypto;
using keel::Errc;
using Bytes = std::vector<std::uint8_t>;

namespace {

Bytes unhex(std::string_view s) {
  Bytes out;
  out.reserve(s.size() / 2);
  auto nib = [](char c) -> std::uint8_t {
    if (c >= '0' && c <= '9') return static_cast<std::uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<std::uint8_t>(c - 'a' + 10);
    return static_cast<std::uint8_t>(c - 'A' + 10);
  };
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>((nib(s[i]) << 4U) | nib(s[i + 1])));
  }
  return out;
}

std::string hex(std::span<const std::uint8_t> b) {
  std::string out;
  for (auto x : b) out += fmt::format("{:02x}", x);
  return out;
}

kc::SecretKey test_key(std::uint8_t fill = 7) {
  Bytes b(kc::kKeySize, fill);
  return std::move(kc::SecretKey::from_bytes(b).value());
}

Bytes to_bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

// Scale loops down under sanitizers (they run on two busy cores).
constexpr int kScale = keel_test::sanitizer_scale(4);

}  // namespace

// ---------------------------------------------------------------- SecretKey

static_assert(!std::is_copy_constructible_v<kc::SecretKey>);
static_assert(!std::is_copy_assignable_v<kc::SecretKey>);
static_assert(std::is_nothrow_move_constructible_v<kc::SecretKey>);
static_assert(!std::is_copy_constructible_v<kc::SecretBytes>);

TEST_CASE("SecretKey from_bytes takes exactly 32 bytes") {
  for (std::size_t n : {0U, 1U, 16U, 31U, 33U, 64U}) {
    Bytes b(n, 1);
    auto k = kc::SecretKey::from_bytes(b);
    REQUIRE_FALSE(k);
    CHECK(k.error().code() == Errc::invalid_argument);
  }
  Bytes b(32);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i);
  auto k = kc::SecretKey::from_bytes(b);
  REQUIRE(k);
  CHECK(Bytes(k->expose_secret().begin(), k->expose_secret().end()) == b);
}

TEST_CASE("SecretKey random keys differ and compare in constant time") {
  auto a = kc::SecretKey::random();
  auto b = kc::SecretKey::random();
  REQUIRE(a);
  REQUIRE(b);
  CHECK_FALSE(*a == *b);
  CHECK(test_key(3) == test_key(3));
}

TEST_CASE("SecretKey is wiped when moved from") {
  auto a = test_key(0xAB);
  kc::SecretKey b = std::move(a);
  for (auto x : a.expose_secret()) CHECK(x == 0);  // NOLINT(bugprone-use-after-move): the point
  for (auto x : b.expose_secret()) CHECK(x == 0xAB);
  auto c = test_key(0x11);
  c = std::move(b);
  for (auto x : b.expose_secret()) CHECK(x == 0);  // NOLINT(bugprone-use-after-move)
  for (auto x : c.expose_secret()) CHECK(x == 0xAB);
}

TEST_CASE("SecretKey and SecretBytes print only redacted forms") {
  auto k = test_key(0x41);  // 'A'
  const std::string f = fmt::format("{}", k);
  CHECK(f == "SecretKey(***)");
  std::ostringstream os;
  os << k;
  CHECK(os.str() == "SecretKey(***)");
  nlohmann::json j = k;
  CHECK(j.dump() == "\"SecretKey(***)\"");

  kc::SecretBytes s(to_bytes("hunter2"));
  CHECK(fmt::format("{}", s) == "SecretBytes(7 bytes, ***)");
  std::ostringstream os2;
  os2 << s;
  CHECK(os2.str().find("hunter2") == std::string::npos);
  nlohmann::json j2 = s;
  CHECK(j2.dump().find("hunter2") == std::string::npos);
  CHECK(s.view() == "hunter2");
  kc::SecretBytes t = std::move(s);
  CHECK(s.empty());  // NOLINT(bugprone-use-after-move)
  CHECK(t.view() == "hunter2");
}

TEST_CASE("random_bytes gives the requested number of distinct bytes") {
  auto a = kc::random_bytes(32);
  auto b = kc::random_bytes(32);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->size() == 32);
  CHECK(*a != *b);
  auto z = kc::random_bytes(0);
  REQUIRE(z);
  CHECK(z->empty());
}

// ---------------------------------------------------------------- PBKDF2

TEST_CASE("PBKDF2-HMAC-SHA256 known answers (RFC 7914 section 11 and others)") {
  struct Kat {
    std::string_view password, salt;
    std::uint32_t iterations;
    std::string_view dk;
  };
  const Kat kats[] = {
      // RFC 7914 section 11.
      {"passwd", "salt", 1,
       "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
       "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"},
      {"Password", "NaCl", 80000,
       "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
       "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"},
      // The RFC 6070 inputs with SHA-256 (widely published answers).
      {"password", "salt", 1, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"},
      {"password", "salt", 2, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"},
      {"password", "salt", 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"},
      {"passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096,
       "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9"},
  };
  for (const auto& k : kats) {
    INFO(k.password << " / " << k.salt << " / " << k.iterations);
    const Bytes want = unhex(k.dk);
    Bytes got(want.size());
    REQUIRE(kc::pbkdf2_hmac_sha256(k.password, kc::as_bytes(k.salt), k.iterations, got));
    CHECK(hex(got) == k.dk);
    // derive_key is the first 32 bytes (PBKDF2's first block), given the
    // stored (weak) parameters explicitly.
    auto key = kc::derive_key(k.password, kc::as_bytes(k.salt), k.iterations, kc::KdfPolicy::existing_data);
    REQUIRE(key);
    CHECK(hex(key->expose_secret()) == k.dk.substr(0, 64));
  }
}

TEST_CASE("derive_key refuses weak parameters for new keys with a clear error") {
  const Bytes salt16(16, 9);
  const Bytes salt8(8, 9);
  auto short_salt = kc::derive_key("pw", salt8, kc::kDefaultIterations);
  REQUIRE_FALSE(short_salt);
  CHECK(short_salt.error().code() == Errc::invalid_argument);
  CHECK(short_salt.error().message().find("salt") != std::string_view::npos);

  auto few = kc::derive_key("pw", salt16, 99'999);
  REQUIRE_FALSE(few);
  CHECK(few.error().code() == Errc::invalid_argument);
  CHECK(few.error().message().find("iterations") != std::string_view::npos);

  auto ok = kc::derive_key("pw", salt16, kc::kMinIterations);
  REQUIRE(ok);
  auto again = kc::derive_key("pw", salt16, kc::kMinIterations);
  REQUIRE(again);
  CHECK(*ok == *again);
  auto other = kc::derive_key("pw2", salt16, kc::kMinIterations);
  REQUIRE(other);
  CHECK_FALSE(*ok == *other);

  // Stored lower parameters still open old data when asked for explicitly.
  CHECK(kc::derive_key("pw", salt8, 1000, kc::KdfPolicy::existing_data));
  // ...but never absurd counts or zero.
  CHECK(kc::derive_key("pw", salt16, 0, kc::KdfPolicy::existing_data).error().code() ==
        Errc::invalid_argument);
  CHECK(kc::derive_key("pw", salt16, kc::kMaxIterations + 1, kc::KdfPolicy::existing_data).error().code() ==
        Errc::invalid_argument);
}

// ---------------------------------------------------------------- seal/open

TEST_CASE("seal writes the documented envelope and open reverses it") {
  auto key = test_key();
  const Bytes msg = to_bytes("attack at dawn");
  auto env = kc::seal(key, msg, kc::as_bytes("ctx"));
  REQUIRE(env);
  REQUIRE(env->size() == 1 + 12 + msg.size() + 16);
  CHECK((*env)[0] == 0x01);
  CHECK(!std::equal(msg.begin(), msg.end(), env->begin() + 13));  // not plaintext
  auto back = kc::open(key, *env, kc::as_bytes("ctx"));
  REQUIRE(back);
  CHECK(*back == msg);

  // Empty plaintext and empty aad work too.
  auto e2 = kc::seal(key, {});
  REQUIRE(e2);
  CHECK(e2->size() == kc::kEnvelopeOverhead);
  auto b2 = kc::open(key, *e2);
  REQUIRE(b2);
  CHECK(b2->empty());
}

TEST_CASE("seal_into/open_into reuse the caller's buffer and leave nothing on failure") {
  auto key = test_key(9);
  Bytes env;
  Bytes plain;
  for (std::size_t len : {100U, 10U, 0U, 50U}) {
    const Bytes msg(len, 0x77);
    REQUIRE(kc::seal_into(key, msg, kc::as_bytes("x"), env));
    CHECK(env.size() == len + kc::kEnvelopeOverhead);
    REQUIRE(kc::open_into(key, env, kc::as_bytes("x"), plain));
    CHECK(plain == msg);
  }
  plain.assign(64, 0x55);
  env.back() ^= 1U;
  auto bad = kc::open_into(key, env, kc::as_bytes("x"), plain);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == Errc::auth_failed);
  CHECK(plain.empty());
  plain.assign(8, 1);
  CHECK_FALSE(kc::open_into(key, Bytes(5, 1), {}, plain));
  CHECK(plain.empty());
}

TEST_CASE("seal/open round trip any plaintext and aad (property)") {
  rc::prop("open(seal(p, aad), aad) == p", [](const Bytes& plaintext, const Bytes& aad) {
    auto key = test_key(0x5A);
    auto env = kc::seal(key, plaintext, aad);
    RC_ASSERT(env.has_value());
    RC_ASSERT(env->size() == plaintext.size() + kc::kEnvelopeOverhead);
    auto back = kc::open(key, *env, aad);
    RC_ASSERT(back.has_value());
    RC_ASSERT(*back == plaintext);
    // A different aad is refused.
    Bytes other = aad;
    other.push_back(0);
    auto bad = kc::open(key, *env, other);
    RC_ASSERT(!bad.has_value());
    RC_ASSERT(bad.error().code() == Errc::auth_failed);
  });
}

TEST_CASE("wrong key, wrong aad and unknown version are refused") {
  auto key = test_key(1);
  auto other = test_key(2);
  auto env = kc::seal(key, kc::as_bytes("secret"), kc::as_bytes("a"));
  REQUIRE(env);
  auto wk = kc::open(other, *env, kc::as_bytes("a"));
  REQUIRE_FALSE(wk);
  CHECK(wk.error().code() == Errc::auth_failed);
  auto wa = kc::open(key, *env, kc::as_bytes("b"));
  REQUIRE_FALSE(wa);
  CHECK(wa.error().code() == Errc::auth_failed);
  auto na = kc::open(key, *env);
  REQUIRE_FALSE(na);
  CHECK(na.error().code() == Errc::auth_failed);
  for (int v : {0x00, 0x02, 0x80, 0xFF}) {
    Bytes e = *env;
    e[0] = static_cast<std::uint8_t>(v);
    auto r = kc::open(key, e, kc::as_bytes("a"));
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::invalid_argument);
  }
}

TEST_CASE("every single-bit flip of an envelope is refused") {
  auto key = test_key(3);
  for (std::size_t len : {0U, 1U, 17U, 64U}) {
    const Bytes msg(len, 0x33);
    auto env = kc::seal(key, msg, kc::as_bytes("aad"));
    REQUIRE(env);
    for (std::size_t byte = 0; byte < env->size(); ++byte) {
      for (unsigned bit = 0; bit < 8; ++bit) {
        Bytes e = *env;
        e[byte] = static_cast<std::uint8_t>(e[byte] ^ (1U << bit));
        auto r = kc::open(key, e, kc::as_bytes("aad"));
        INFO("len " << len << " byte " << byte << " bit " << bit);
        REQUIRE_FALSE(r);
        CHECK((r.error().code() == Errc::auth_failed || r.error().code() == Errc::invalid_argument));
      }
    }
  }
}

TEST_CASE("every truncation and extension of an envelope is refused") {
  auto key = test_key(4);
  auto env = kc::seal(key, Bytes(40, 0x44), kc::as_bytes("aad"));
  REQUIRE(env);
  for (std::size_t n = 0; n < env->size(); ++n) {
    const std::span<const std::uint8_t> prefix(env->data(), n);
    auto r = kc::open(key, prefix, kc::as_bytes("aad"));
    INFO("prefix " << n);
    REQUIRE_FALSE(r);
    if (n < kc::kEnvelopeOverhead) {
      CHECK(r.error().code() == Errc::invalid_argument);
    } else {
      CHECK(r.error().code() == Errc::auth_failed);
    }
  }
  // Dropping bytes from the front (keeping the version byte) is refused too.
  for (std::size_t cut = 1; cut <= 28; ++cut) {
    Bytes e(env->begin() + static_cast<std::ptrdiff_t>(cut), env->end());
    e[0] = 0x01;
    CHECK_FALSE(kc::open(key, e, kc::as_bytes("aad")));
  }
  Bytes longer = *env;
  longer.push_back(0);
  CHECK(kc::open(key, longer, kc::as_bytes("aad")).error().code() == Errc::auth_failed);
}

TEST_CASE("Wycheproof AES-GCM vectors (256-bit key, 96-bit nonce) through open") {
  std::ifstream in(std::string(KEEL_TEST_DATA_DIR) + "/aes_gcm_test.json");
  REQUIRE(in);
  const auto doc = nlohmann::json::parse(in);
  int valid = 0;
  int invalid = 0;
  for (const auto& group : doc.at("testGroups")) {
    if (group.at("keySize").get<int>() != 256 || group.at("ivSize").get<int>() != 96) continue;
    REQUIRE(group.at("tagSize").get<int>() == 128);
    for (const auto& t : group.at("tests")) {
      INFO("tcId " << t.at("tcId").get<int>() << ": " << t.at("comment").get<std::string>());
      const Bytes key_bytes = unhex(t.at("key").get<std::string>());
      auto key = kc::SecretKey::from_bytes(key_bytes);
      REQUIRE(key);
      Bytes env{0x01};
      for (const char* field : {"iv", "ct", "tag"}) {
        const Bytes part = unhex(t.at(field).get<std::string>());
        env.insert(env.end(), part.begin(), part.end());
      }
      const Bytes aad = unhex(t.at("aad").get<std::string>());
      auto r = kc::open(*key, env, aad);
      if (t.at("result").get<std::string>() == "valid") {
        ++valid;
        REQUIRE(r);
        CHECK(hex(*r) == t.at("msg").get<std::string>());
      } else {
        ++invalid;
        REQUIRE_FALSE(r);
        CHECK((r.error().code() == Errc::auth_failed || r.error().code() == Errc::invalid_argument));
      }
    }
  }
  CHECK(valid + invalid == 66);
  CHECK(invalid > 0);
}

TEST_CASE("nonces never repeat, across threads too") {
  auto key = test_key(5);
  std::set<Bytes> nonces;
  const int n = 10'000 / kScale;
  for (int i = 0; i < n; ++i) {
    auto env = kc::seal(key, {});
    REQUIRE(env);
    nonces.insert(Bytes(env->begin() + 1, env->begin() + 13));
  }
  CHECK(nonces.size() == static_cast<std::size_t>(n));

  // Four threads sealing and opening at once with one key.
  constexpr int kThreads = 4;
  const int per = 2'000 / kScale;
  std::vector<std::vector<Bytes>> seen(kThreads);
  std::vector<int> failures(kThreads, 0);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const Bytes msg(static_cast<std::size_t>(t + 1) * 10, static_cast<std::uint8_t>(t));
        for (int i = 0; i < per; ++i) {
          auto env = kc::seal(key, msg, kc::as_bytes("thread"));
          if (!env) {
            ++failures[static_cast<std::size_t>(t)];
            continue;
          }
          auto back = kc::open(key, *env, kc::as_bytes("thread"));
          if (!back || *back != msg) ++failures[static_cast<std::size_t>(t)];
          seen[static_cast<std::size_t>(t)].emplace_back(env->begin() + 1, env->begin() + 13);
        }
      });
    }
  }
  for (int t = 0; t < kThreads; ++t) {
    CHECK(failures[static_cast<std::size_t>(t)] == 0);
    for (auto& nonce : seen[static_cast<std::size_t>(t)]) nonces.insert(std::move(nonce));
  }
  CHECK(nonces.size() == static_cast<std::size_t>(n + kThreads * per));
  CHECK(key.seal_count() == static_cast<std::uint64_t>(n + kThreads * per));
}

TEST_CASE("a forked child never reuses the parent's nonce batch") {
  auto key = test_key(6);
  auto first = kc::seal(key, {});  // fills this thread's batch
  REQUIRE(first);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto env = kc::seal(key, {});
    int rc = 1;
    if (env && ::write(fds[1], env->data() + 1, 12) == 12) rc = 0;
    ::_exit(rc);
  }
  ::close(fds[1]);
  std::uint8_t child_nonce[12] = {};
  const auto got = ::read(fds[0], child_nonce, sizeof child_nonce);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(got == 12);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto parent = kc::seal(key, {});
  REQUIRE(parent);
  CHECK(!std::equal(parent->begin() + 1, parent->begin() + 13, child_nonce));
}

TEST_CASE("Node's crypto opens keel's envelopes and keel opens Node's") {
  if (::access("/usr/bin/node", X_OK) != 0) {
    WARN("node not installed; interop test skipped");
    return;
  }
  auto key = test_key(0x6B);
  const std::string key_hex = hex(key.expose_secret());
  struct Case {
    Bytes plaintext, aad;
  };
  std::vector<Case> cases;
  for (std::size_t len : {0U, 1U, 15U, 16U, 17U, 100U, 4096U}) {
    Bytes p(len);
    for (std::size_t i = 0; i < len; ++i) p[i] = static_cast<std::uint8_t>(i * 31 + 7);
    cases.push_back({p, len % 2 == 0 ? Bytes{} : to_bytes("name:" + std::to_string(len))});
  }
  const std::string script_in = std::string(KEEL_TEST_BINARY_DIR) + "/crypto_interop_in.txt";
  std::vector<Bytes> envelopes;
  {
    std::ofstream f(script_in);
    for (const auto& c : cases) {
      auto env = kc::seal(key, c.plaintext, c.aad);
      REQUIRE(env);
      envelopes.push_back(*env);
      const auto h = [](const Bytes& b) { return b.empty() ? std::string("-") : hex(b); };
      f << "open " << key_hex << ' ' << h(c.aad) << ' ' << hex(*env) << '\n';
      f << "seal " << key_hex << ' ' << h(c.aad) << ' ' << h(c.plaintext) << '\n';
    }
    // A tampered envelope must fail in Node too.
    Bytes bad = envelopes.back();
    bad[20] ^= 1U;
    f << "open " << key_hex << " - " << hex(bad) << '\n';
  }
  const std::string cmd =
      fmt::format("/usr/bin/node {}/crypto_interop.js {} 2>&1", KEEL_TEST_SOURCE_DIR, script_in);
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string output;
  char buf[4096];
  while (const std::size_t n = std::fread(buf, 1, sizeof buf, p)) output.append(buf, n);
  REQUIRE(::pclose(p) == 0);
  std::istringstream lines(output);
  std::string line;
  for (const auto& c : cases) {
    REQUIRE(std::getline(lines, line));
    CHECK(line == (c.plaintext.empty() ? std::string("-") : hex(c.plaintext)));  // Node opened keel's
    REQUIRE(std::getline(lines, line));
    auto node_env = unhex(line);
    auto back = kc::open(key, node_env, c.aad);  // keel opens Node's
    REQUIRE(back);
    CHECK(*back == c.plaintext);
  }
  REQUIRE(std::getline(lines, line));
  CHECK(line == "FAIL");
}

TEST_CASE("seal and open leave the caller's OpenSSL error queue as they found it") {
  ERR_clear_error();
  ERR_raise(ERR_LIB_USER, 77);  // the caller's own, older error
  const unsigned long theirs = ERR_peek_last_error();
  REQUIRE(theirs != 0);
  auto key = test_key();
  auto env = kc::seal(key, to_bytes("hello"), {});
  REQUIRE(env);
  (*env)[20] ^= 1U;
  auto bad = kc::open(key, *env, {});  // fails inside OpenSSL
  CHECK(bad.error().code() == Errc::auth_failed);
  CHECK(ERR_peek_error() == theirs);  // still there, and nothing of keel's after it
  CHECK(ERR_peek_last_error() == theirs);
  auto salt = kc::random_bytes(16);
  REQUIRE(salt);
  CHECK(ERR_peek_last_error() == theirs);
  ERR_clear_error();
}

TEST_CASE("ErrorMark reports keel's newest error, not the caller's, and pops only keel's") {
  ERR_clear_error();
  ERR_raise(ERR_LIB_USER, 77);
  const unsigned long theirs = ERR_peek_last_error();
  {
    const kc::detail::ErrorMark mark;
    CHECK(mark.message() == "no OpenSSL error detail");  // the caller's error is not ours
    ERR_raise(ERR_LIB_EVP, EVP_R_BAD_DECRYPT);
    CHECK_THAT(mark.message(), Catch::Contains("bad decrypt"));
  }
  CHECK(ERR_peek_error() == theirs);
  CHECK(ERR_peek_last_error() == theirs);
  ERR_clear_error();
  {
    const kc::detail::ErrorMark mark;  // an empty queue: cleared again at the end
    ERR_raise(ERR_LIB_EVP, EVP_R_BAD_DECRYPT);
    CHECK_THAT(mark.message(), Catch::Contains("bad decrypt"));
  }
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("open_into wipes the caller's old plaintext before reusing or freeing the buffer") {
  auto key = test_key();
  auto env = kc::seal(key, to_bytes("short"), {}).value();
  Bytes out(100, 'A');  // an earlier, longer plaintext
  const std::uint8_t* p = out.data();
  REQUIRE(kc::open_into(key, env, {}, out));
  REQUIRE(out.data() == p);  // reused
  CHECK(std::string_view(reinterpret_cast<const char*>(p), 5) == "short");
  // The tail the shorter plaintext no longer covers holds no old bytes.
  CHECK(std::all_of(p + 5, p + 100, [](std::uint8_t b) { return b == 0; }));
  // A failed open leaves nothing either.
  std::fill(out.begin(), out.end(), std::uint8_t{'B'});
  env[20] ^= 1U;
  REQUIRE_FALSE(kc::open_into(key, env, {}, out));
  CHECK(out.empty());
  CHECK(std::all_of(p, p + 5, [](std::uint8_t b) { return b == 0; }));
}

TEST_CASE("SecretBytes::with_capacity never reallocates") {
  auto s = kc::SecretBytes::with_capacity(8);
  REQUIRE(s);
  const auto* p = s->expose_secret().data();
  CHECK(s->try_append(to_bytes("secret")));
  CHECK(s->try_push_back('!'));
  CHECK(s->try_push_back('?'));
  CHECK_FALSE(s->try_push_back('x'));  // full: refused, not grown
  CHECK_FALSE(s->try_append(to_bytes("more")));
  CHECK(s->view() == "secret!?");
  CHECK(s->expose_secret().data() == p);
  s->pop_back();
  CHECK(s->view() == "secret!");
  s->clear();
  CHECK(s->empty());
  CHECK(s->capacity() == 8);
}
