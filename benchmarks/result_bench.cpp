// The cost of keel::Result<int> on a 3-deep call chain, beside the ways a C++
// user would otherwise report errors: plain int returns (no error channel:
// the floor), std::error_code out-parameters, and exceptions. Success path
// and error path are measured separately; the calls are kept out of line so
// the chain is really three calls deep.
#include <keel/result.hpp>

#include <benchmark/benchmark.h>

#include <stdexcept>
#include <system_error>

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
BENCHMARK(BM_Success_ErrorCodeOut);
BENCHMARK(BM_Success_Exceptions);
BENCHMARK(BM_Error_KeelResultMessage);
BENCHMARK(BM_Error_KeelResultBareCode);
BENCHMARK(BM_Error_ErrorCodeOut);
BENCHMARK(BM_Error_Exceptions);

BENCHMARK_MAIN();
