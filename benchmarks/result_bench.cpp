// The cost of keel::Result<int> on a 3-deep call chain, beside the ways a C++
// user would otherwise report errors: plain int returns (no error channel:
// the floor), std::error_code out-parameters, and exceptions; and two plain
// structs of Result<int>'s size that show what the calling convention costs. Success path
// and error path are measured separately; the calls are kept out of line so
// the chain is really three calls deep.
#include <keel/result.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <new>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace {

#define KEEL_BENCH_NOINLINE __attribute__((noinline))

// ---- plain int (the floor: no way to report an error at all)
KEEL_BENCH_NOINLINE int plain3(int v) {
  return v + 1;
}
KEEL_BENCH_NOINLINE int plain2(int v) {
  return plain3(v) * 2;
}
KEEL_BENCH_NOINLINE int plain1(int v) {
  return plain2(v) - 3;
}

// ---- keel::Result<int>
KEEL_BENCH_NOINLINE keel::Result<int> res3(int v) {
  if (v < 0) return keel::fail(keel::Errc::invalid_argument, "negative {}", v);
  return v + 1;
}
KEEL_BENCH_NOINLINE keel::Result<int> res2(int v) {
  KEEL_TRY_ASSIGN(int x, res3(v));
  return x * 2;
}
KEEL_BENCH_NOINLINE keel::Result<int> res1(int v) {
  KEEL_TRY_ASSIGN(int x, res2(v));
  return x - 3;
}
// Error path with a bare code (no message: no allocation).
KEEL_BENCH_NOINLINE keel::Result<int> bare3(int v) {
  if (v < 0) return keel::Errc::invalid_argument;
  return v + 1;
}
KEEL_BENCH_NOINLINE keel::Result<int> bare2(int v) {
  KEEL_TRY_ASSIGN(int x, bare3(v));
  return x * 2;
}
KEEL_BENCH_NOINLINE keel::Result<int> bare1(int v) {
  KEEL_TRY_ASSIGN(int x, bare2(v));
  return x - 3;
}

// ---- The calling convention's floor for a result type of Result<int>'s
// shape (an error word, an int, a flag: 16 bytes), measured beside it so the
// cost of returning through memory shows in every run. The x86-64 and AArch64
// ABIs return a trivially copyable 16-byte struct in two registers, but any
// type with a non-trivial destructor (one that owns its error, as
// keel::Result must) through a slot in the caller's frame: each level stores
// the value and the flag and the caller loads them back.
struct TrivialPair {
  std::uintptr_t err;
  int value;
  bool ok;
};
KEEL_BENCH_NOINLINE TrivialPair triv3(int v) {
  if (v < 0) return {3, 0, false};
  return {0, v + 1, true};
}
KEEL_BENCH_NOINLINE TrivialPair triv2(int v) {
  const TrivialPair r = triv3(v);
  if (!r.ok) return r;
  return {0, r.value * 2, true};
}
KEEL_BENCH_NOINLINE TrivialPair triv1(int v) {
  const TrivialPair r = triv2(v);
  if (!r.ok) return r;
  return {0, r.value - 3, true};
}
KEEL_BENCH_NOINLINE void release_error(std::uintptr_t err) {
  if ((err & 1U) == 0) ::operator delete(reinterpret_cast<void*>(err));
}
class OwningPair {
 public:
  OwningPair(std::uintptr_t err, int value, bool ok) : err_(err), value_(value), ok_(ok) {}
  OwningPair(const OwningPair&) = delete;
  OwningPair& operator=(const OwningPair&) = delete;
  ~OwningPair() {
    if (!ok_) release_error(err_);
  }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] int value() const { return value_; }
  [[nodiscard]] std::uintptr_t take() { return std::exchange(err_, std::uintptr_t{1}); }

 private:
  std::uintptr_t err_;
  int value_;
  bool ok_;
};
KEEL_BENCH_NOINLINE OwningPair own3(int v) {
  if (v < 0) return {3, 0, false};
  return {0, v + 1, true};
}
KEEL_BENCH_NOINLINE OwningPair own2(int v) {
  OwningPair r = own3(v);
  if (!r.ok()) return {r.take(), 0, false};
  return {0, r.value() * 2, true};
}
KEEL_BENCH_NOINLINE OwningPair own1(int v) {
  OwningPair r = own2(v);
  if (!r.ok()) return {r.take(), 0, false};
  return {0, r.value() - 3, true};
}

// ---- std::error_code out-parameter
KEEL_BENCH_NOINLINE int ec3(int v, std::error_code& ec) {
  if (v < 0) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return 0;
  }
  return v + 1;
}
KEEL_BENCH_NOINLINE int ec2(int v, std::error_code& ec) {
  const int x = ec3(v, ec);
  if (ec) return 0;
  return x * 2;
}
KEEL_BENCH_NOINLINE int ec1(int v, std::error_code& ec) {
  const int x = ec2(v, ec);
  if (ec) return 0;
  return x - 3;
}

// ---- exceptions
KEEL_BENCH_NOINLINE int ex3(int v) {
  if (v < 0) throw std::invalid_argument("negative");
  return v + 1;
}
KEEL_BENCH_NOINLINE int ex2(int v) {
  return ex3(v) * 2;
}
KEEL_BENCH_NOINLINE int ex1(int v) {
  return ex2(v) - 3;
}

void BM_Success_PlainInt(benchmark::State& state) {
  int v = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    benchmark::DoNotOptimize(plain1(v));
  }
}
void BM_Success_KeelResult(benchmark::State& state) {
  int v = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    auto r = res1(v);
    benchmark::DoNotOptimize(*r);
  }
}
void BM_Success_TrivialPair(benchmark::State& state) {
  int v = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    const TrivialPair r = triv1(v);
    benchmark::DoNotOptimize(r.value);
  }
}
void BM_Success_OwningPair(benchmark::State& state) {
  int v = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    const OwningPair r = own1(v);
    benchmark::DoNotOptimize(r.value());
  }
}
void BM_Success_ErrorCodeOut(benchmark::State& state) {
  int v = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    std::error_code ec;
    benchmark::DoNotOptimize(ec1(v, ec));
    benchmark::DoNotOptimize(ec);
  }
}
void BM_Success_Exceptions(benchmark::State& state) {
  int v = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    try {
      benchmark::DoNotOptimize(ex1(v));
    } catch (const std::exception&) {
      state.SkipWithError("unexpected throw");
    }
  }
}

void BM_Error_KeelResultMessage(benchmark::State& state) {
  int v = -1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    auto r = res1(v);
    benchmark::DoNotOptimize(r.error().code());
  }
}
void BM_Error_KeelResultBareCode(benchmark::State& state) {
  int v = -1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    auto r = bare1(v);
    benchmark::DoNotOptimize(r.error().code());
  }
}
void BM_Error_ErrorCodeOut(benchmark::State& state) {
  int v = -1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    std::error_code ec;
    benchmark::DoNotOptimize(ec1(v, ec));
    benchmark::DoNotOptimize(ec);
  }
}
void BM_Error_Exceptions(benchmark::State& state) {
  int v = -1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v);
    try {
      benchmark::DoNotOptimize(ex1(v));
    } catch (const std::invalid_argument& e) {
      benchmark::DoNotOptimize(e.what());
    }
  }
}

}  // namespace

BENCHMARK(BM_Success_PlainInt);
BENCHMARK(BM_Success_KeelResult);
BENCHMARK(BM_Success_TrivialPair);
BENCHMARK(BM_Success_OwningPair);
BENCHMARK(BM_Success_ErrorCodeOut);
BENCHMARK(BM_Success_Exceptions);
BENCHMARK(BM_Error_KeelResultMessage);
BENCHMARK(BM_Error_KeelResultBareCode);
BENCHMARK(BM_Error_ErrorCodeOut);
BENCHMARK(BM_Error_Exceptions);

BENCHMARK_MAIN();
