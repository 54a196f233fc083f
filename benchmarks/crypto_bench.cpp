// keel::crypto seal/open beside hand-written OpenSSL EVP code, and
// derive_key beside PKCS5_PBKDF2_HMAC.
//
//   raw_fresh:  what code usually looks like: fetch the cipher and allocate a
//               context on every call (EVP_CIPHER_fetch + EVP_CIPHER_CTX_new).
//   raw_reused: the best hand-written form: one fetched cipher and one
//               context kept for the whole run, re-keyed per call, and one
//               output buffer reused (compare with keel_*_into).
// All variants make the same envelope (version | random nonce | ct | tag);
// bytes/second counts plaintext bytes.
#include <keel/crypto.hpp>

#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace kc = keel::crypto;
using Bytes = std::vector<std::uint8_t>;

namespace {

const std::uint8_t kAad[] = {'b', 'e', 'n', 'c', 'h'};

kc::SecretKey bench_key() {
  Bytes b(32, 0x42);
  return std::move(kc::SecretKey::from_bytes(b).value());
}

// Hand-written envelope seal/open on a given context (cipher bound already or
// given here).
bool raw_seal(EVP_CIPHER_CTX* ctx, const EVP_CIPHER* cipher, const std::uint8_t* key, const Bytes& pt,
              Bytes& out) {
  out.resize(pt.size() + 29);
  out[0] = 1;
  if (RAND_bytes(out.data() + 1, 12) != 1) return false;
  int n = 0;
  if (EVP_EncryptInit_ex2(ctx, cipher, key, out.data() + 1, nullptr) != 1) return false;
  if (EVP_EncryptUpdate(ctx, nullptr, &n, kAad, sizeof kAad) != 1) return false;
  if (EVP_EncryptUpdate(ctx, out.data() + 13, &n, pt.data(), static_cast<int>(pt.size())) != 1) return false;
  if (EVP_EncryptFinal_ex(ctx, out.data() + 13 + pt.size(), &n) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out.data() + 13 + pt.size()) == 1;
}

bool raw_open(EVP_CIPHER_CTX* ctx, const EVP_CIPHER* cipher, const std::uint8_t* key, const Bytes& env,
              Bytes& out) {
  const std::size_t len = env.size() - 29;
  out.resize(len);
  std::uint8_t tag[16];
  std::memcpy(tag, env.data() + 13 + len, 16);
  int n = 0;
  if (EVP_DecryptInit_ex2(ctx, cipher, key, env.data() + 1, nullptr) != 1) return false;
  if (EVP_DecryptUpdate(ctx, nullptr, &n, kAad, sizeof kAad) != 1) return false;
  if (EVP_DecryptUpdate(ctx, out.data(), &n, env.data() + 13, static_cast<int>(len)) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag) != 1) return false;
  std::uint8_t fin[16];
  return EVP_DecryptFinal_ex(ctx, fin, &n) == 1;
}

void keel_seal(benchmark::State& state) {
  const auto key = bench_key();
  const Bytes pt(static_cast<std::size_t>(state.range(0)), 0x61);
  for (auto _ : state) {
    auto env = kc::seal(key, pt, kAad);
    if (!env) state.SkipWithError("seal failed");
    benchmark::DoNotOptimize(env->data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void keel_open(benchmark::State& state) {
  const auto key = bench_key();
  const Bytes pt(static_cast<std::size_t>(state.range(0)), 0x61);
  const auto env = kc::seal(key, pt, kAad).value();
  for (auto _ : state) {
    auto back = kc::open(key, env, kAad);
    if (!back) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(back->data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void keel_seal_into(benchmark::State& state) {
  const auto key = bench_key();
  const Bytes pt(static_cast<std::size_t>(state.range(0)), 0x61);
  Bytes out;
  for (auto _ : state) {
    if (!kc::seal_into(key, pt, kAad, out)) state.SkipWithError("seal_into failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void keel_open_into(benchmark::State& state) {
  const auto key = bench_key();
  const Bytes pt(static_cast<std::size_t>(state.range(0)), 0x61);
  const auto env = kc::seal(key, pt, kAad).value();
  Bytes out;
  for (auto _ : state) {
    if (!kc::open_into(key, env, kAad, out)) state.SkipWithError("open_into failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void raw_fresh_seal(benchmark::State& state) {
  const auto key = bench_key();
  const Bytes pt(static_cast<std::size_t>(state.range(0)), 0x61);
  Bytes out;
  for (auto _ : state) {
    EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    if (!raw_seal(ctx, cipher, key.expose_secret().data(), pt, out)) state.SkipWithError("raw seal failed");
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void raw_fresh_open(benchmark::State& state) {
  const auto key = bench_key();
  const Bytes pt(static_cast<std::size_t>(state.range(0)), 0x61);
  const auto env = kc::seal(key, pt, kAad).value();
  Bytes out;
  for (auto _ : state) {
    EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    if (!raw_open(ctx, cipher, key.expose_secret().data(), env, out)) state.SkipWithError("raw open failed");
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void raw_reused_seal(benchmark::State& state) {
  const auto key = bench_key();
  const Bytes pt(static_cast<std::size_t>(state.range(0)), 0x61);
  Bytes out;
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  // Bind the cipher once; per call pass only key and nonce (passing the
  // cipher again would reset the context and reallocate its provider state).
  EVP_EncryptInit_ex2(ctx, cipher, nullptr, nullptr, nullptr);
  for (auto _ : state) {
    if (!raw_seal(ctx, nullptr, key.expose_secret().data(), pt, out)) state.SkipWithError("raw seal failed");
    benchmark::DoNotOptimize(out.data());
  }
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(cipher);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void raw_reused_open(benchmark::State& state) {
  const auto key = bench_key();
  const Bytes pt(static_cast<std::size_t>(state.range(0)), 0x61);
  const auto env = kc::seal(key, pt, kAad).value();
  Bytes out;
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_DecryptInit_ex2(ctx, cipher, nullptr, nullptr, nullptr);  // bound once, as above
  for (auto _ : state) {
    if (!raw_open(ctx, nullptr, key.expose_secret().data(), env, out)) state.SkipWithError("raw open failed");
    benchmark::DoNotOptimize(out.data());
  }
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(cipher);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void keel_derive_key(benchmark::State& state) {
  const Bytes salt(16, 0x73);
  const auto iters = static_cast<std::uint32_t>(state.range(0));
  for (auto _ : state) {
    auto k = kc::derive_key("correct horse battery staple", salt, iters);
    if (!k) state.SkipWithError("derive_key failed");
    benchmark::DoNotOptimize(k->expose_secret().data());
  }
}

void raw_pkcs5_pbkdf2(benchmark::State& state) {
  const Bytes salt(16, 0x73);
  const char pw[] = "correct horse battery staple";
  std::uint8_t out[32];
  for (auto _ : state) {
    if (PKCS5_PBKDF2_HMAC(pw, sizeof pw - 1, salt.data(), static_cast<int>(salt.size()),
                          static_cast<int>(state.range(0)), EVP_sha256(), 32, out) != 1) {
      state.SkipWithError("PKCS5_PBKDF2_HMAC failed");
    }
    benchmark::DoNotOptimize(out);
  }
}

}  // namespace

#define KEEL_SIZES Arg(64)->Arg(1024)->Arg(16 * 1024)->Arg(64 * 1024)
BENCHMARK(keel_seal)->KEEL_SIZES;
BENCHMARK(keel_seal_into)->KEEL_SIZES;
BENCHMARK(raw_fresh_seal)->KEEL_SIZES;
BENCHMARK(raw_reused_seal)->KEEL_SIZES;
BENCHMARK(keel_open)->KEEL_SIZES;
BENCHMARK(keel_open_into)->KEEL_SIZES;
BENCHMARK(raw_fresh_open)->KEEL_SIZES;
BENCHMARK(raw_reused_open)->KEEL_SIZES;
BENCHMARK(keel_derive_key)->Arg(600'000)->Unit(benchmark::kMillisecond)->Iterations(4);
BENCHMARK(raw_pkcs5_pbkdf2)->Arg(600'000)->Unit(benchmark::kMillisecond)->Iterations(4);

BENCHMARK_MAIN();
