#include <keel/backoff.hpp>  // first: the header stands alone

#include <rapidcheck/catch.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using keel::Backoff;
using keel::BackoffPolicy;

TEST_CASE("ceilings grow by factor up to max", "[backoff]") {
  Backoff b({.initial = 100ms, .factor = 2.0, .max = 1000ms, .jitter = false}, 1);
  std::vector<long long> got;
  for (int i = 0; i < 7; ++i) got.push_back(b.next().count());
  CHECK(got == std::vector<long long>{100, 200, 400, 800, 1000, 1000, 1000});
  CHECK(b.attempt() == 7);
  b.reset();
  CHECK(b.attempt() == 0);
  CHECK(b.next() == 100ms);
}

TEST_CASE("never overflows however many attempts", "[backoff]") {
  Backoff b({.initial = 1ms, .factor = 10.0, .max = 30'000ms, .jitter = false}, 1);
  for (int i = 0; i < 100'000; ++i) {
    const auto d = b.next();
    REQUIRE(d >= 0ms);
    REQUIRE(d <= 30'000ms);
  }
}

TEST_CASE("invalid policies are reported, and clamped if used anyway", "[backoff]") {
  CHECK(BackoffPolicy{}.validate());
  // Bad configuration is Errc::config, naming the field.
  const auto zero = BackoffPolicy{.initial = 0ms}.validate();
  REQUIRE_FALSE(zero);
  CHECK(zero.error().code() == keel::Errc::config);
  CHECK(zero.error().message().find("initial") != std::string_view::npos);
  const auto shrink = BackoffPolicy{.factor = 0.5}.validate();
  REQUIRE_FALSE(shrink);
  CHECK(shrink.error().code() == keel::Errc::config);
  CHECK(shrink.error().message().find("factor") != std::string_view::npos);
  const auto nan = BackoffPolicy{.factor = std::numeric_limits<double>::quiet_NaN()}.validate();
  REQUIRE_FALSE(nan);
  CHECK(nan.error().code() == keel::Errc::config);
  const auto below = BackoffPolicy{.initial = 10ms, .max = 5ms}.validate();
  REQUIRE_FALSE(below);
  CHECK(below.error().code() == keel::Errc::config);
  CHECK(below.error().message().find("max") != std::string_view::npos);
  Backoff b({.initial = 0ms, .factor = 0.5, .max = 0ms, .jitter = false}, 1);
  CHECK(b.next() == 1ms);
  CHECK(b.next() == 1ms);
}

TEST_CASE("full jitter stays within [0, ceiling] and varies", "[backoff][property]") {
  rc::prop("every delay is within [0, min(max, initial*factor^n)]", [](std::uint64_t seed) {
    const auto initial = *rc::gen::inRange(1, 1000);
    const auto max = initial + *rc::gen::inRange(0, 100000);
    const double factor = 1.0 + *rc::gen::inRange(0, 40) / 10.0;
    const BackoffPolicy p{.initial = std::chrono::milliseconds(initial),
                          .factor = factor,
                          .max = std::chrono::milliseconds(max)};
    Backoff b(p, seed);
    double ceiling = initial;
    for (int n = 0; n < 40; ++n) {
      const auto d = b.next().count();
      RC_ASSERT(d >= 0);
      RC_ASSERT(d <= static_cast<long long>(std::min<double>(ceiling, max)));
      ceiling *= factor;
    }
  });
  Backoff b({.initial = 1000ms, .max = 1000ms}, 42);
  std::set<long long> seen;
  for (int i = 0; i < 50; ++i) seen.insert(b.next().count());
  CHECK(seen.size() > 10);
}

TEST_CASE("retry stops at success, at a permanent error, or after max attempts", "[backoff]") {
  const BackoffPolicy fast{.initial = 1ms, .max = 2ms};
  int calls = 0;
  auto ok = keel::retry(fast, 5, [&]() -> keel::Result<int> {
    if (++calls < 3) return keel::Errc::busy;
    return 7;
  });
  CHECK(*ok == 7);
  CHECK(calls == 3);

  calls = 0;
  auto permanent = keel::retry(fast, 5, [&]() -> keel::Result<int> {
    ++calls;
    return keel::Errc::invalid_argument;
  });
  CHECK(permanent.error().code() == keel::Errc::invalid_argument);
  CHECK(calls == 1);

  calls = 0;
  auto exhausted = keel::retry(fast, 4, [&]() -> keel::Result<void> {
    ++calls;
    return keel::fail(keel::Errc::unavailable, "down");
  });
  CHECK(calls == 4);
  CHECK(fmt::format("{}", exhausted.error()) == "gave up after 4 attempts: UNAVAILABLE: down");
}

TEST_CASE("no cap: milliseconds::max() saturates exactly, attempt 70 included", "[backoff]") {
  const auto no_cap = std::chrono::milliseconds::max();
  Backoff fixed({.initial = 1ms, .factor = 2.0, .max = no_cap, .jitter = false}, 1);
  for (int i = 0; i < 70; ++i) {
    const auto d = fixed.next();
    INFO("attempt " << i);
    REQUIRE(d >= 0ms);
    if (i < 62) REQUIRE(d.count() == (std::int64_t{1} << i));  // exact powers of two
  }
  CHECK(fixed.attempt() == 70);
  CHECK(fixed.ceiling() == no_cap);
  CHECK(fixed.next() == no_cap);

  Backoff jittered({.initial = 1ms, .factor = 2.0, .max = no_cap}, 7);
  for (int i = 0; i < 200; ++i) {
    const auto d = jittered.next();
    REQUIRE(d >= 0ms);
    REQUIRE(d <= no_cap);
  }
  // A huge factor reaches the cap at once, and a huge initial is the cap.
  Backoff steep({.initial = 1ms, .factor = 1e300, .max = no_cap, .jitter = false}, 1);
  CHECK(steep.next() == 1ms);
  CHECK(steep.next() == no_cap);
  Backoff big({.initial = no_cap, .factor = 2.0, .max = no_cap, .jitter = false}, 1);
  CHECK(big.next() == no_cap);
  CHECK(big.next() == no_cap);
}

namespace {
// A clock that moves only when the sleeper is called: retry without waiting.
struct FakeTime {
  std::chrono::steady_clock::time_point t{};
  std::vector<std::chrono::milliseconds> sleeps;
  keel::RetryOptions wire(keel::RetryOptions o) {
    o.now = [this] { return t; };
    o.sleep = [this](std::chrono::milliseconds d) {
      sleeps.push_back(d);
      t += d;
    };
    return o;
  }
};
}  // namespace

TEST_CASE("retry with an injected clock and sleeper never sleeps for real", "[backoff]") {
  FakeTime ft;
  int calls = 0;
  const auto began = std::chrono::steady_clock::now();
  auto r =
      keel::retry(ft.wire({.backoff = {.initial = 1000ms, .factor = 2.0, .max = 60'000ms, .jitter = false},
                           .max_attempts = 5}),
                  [&]() -> keel::Result<int> {
                    ++calls;
                    return keel::Errc::timeout;
                  });
  CHECK(std::chrono::steady_clock::now() - began < 5s);  // 15 s of pauses, none real
  CHECK(calls == 5);
  CHECK(ft.sleeps == std::vector<std::chrono::milliseconds>{1000ms, 2000ms, 4000ms, 8000ms});
  CHECK(fmt::format("{}", r.error()) == "gave up after 5 attempts: TIMEOUT");
}

TEST_CASE("retry stops before a pause would pass the deadline", "[backoff]") {
  FakeTime ft;
  int calls = 0;
  auto r = keel::retry(ft.wire({.backoff = {.initial = 40ms, .factor = 2.0, .max = 10'000ms, .jitter = false},
                                .max_attempts = 100,
                                .deadline = 100ms}),
                       [&]() -> keel::Result<void> {
                         ++calls;
                         return keel::fail(keel::Errc::busy, "locked");
                       });
  CHECK(calls == 2);  // t=0 call, pause 40, t=40 call, a pause of 80 would end at 120 > 100
  CHECK(ft.sleeps == std::vector<std::chrono::milliseconds>{40ms});
  CHECK(r.error().code() == keel::Errc::busy);
  CHECK(fmt::format("{}", r.error()).find("deadline") != std::string::npos);
}

TEST_CASE("retry: cancellation, a predicate, and bad options", "[backoff]") {
  FakeTime ft;
  int calls = 0;
  auto cancelled = keel::retry(ft.wire({.backoff = {.initial = 1ms, .jitter = false},
                                        .max_attempts = 10,
                                        .cancelled = [&] { return calls >= 2; }}),
                               [&]() -> keel::Result<int> {
                                 ++calls;
                                 return keel::fail(keel::Errc::unavailable, "down");
                               });
  CHECK(calls == 2);
  CHECK(cancelled.error().code() == keel::Errc::cancelled);
  CHECK(cancelled.error().message().find("UNAVAILABLE: down") != std::string_view::npos);

  // A predicate decides: here not_found is worth retrying, timeout is not.
  calls = 0;
  auto custom =
      keel::retry(ft.wire({.backoff = {.initial = 1ms},
                           .max_attempts = 10,
                           .retry_if = [](const keel::Error& e) { return e == keel::Errc::not_found; }}),
                  [&]() -> keel::Result<int> {
                    if (++calls < 3) return keel::Errc::not_found;
                    return keel::Errc::timeout;
                  });
  CHECK(calls == 3);
  CHECK(custom.error() == keel::Errc::timeout);

  calls = 0;
  auto invalid = keel::retry(keel::RetryOptions{.max_attempts = 0}, [&]() -> keel::Result<int> {
    ++calls;
    return 1;
  });
  CHECK(calls == 0);
  CHECK(invalid.error().code() == keel::Errc::config);
  CHECK(keel::RetryOptions{.backoff = {.factor = 0.1}}.validate().error().code() == keel::Errc::config);
  CHECK(keel::RetryOptions{.deadline = -1ms}.validate().error().code() == keel::Errc::config);
  CHECK(keel::RetryOptions{}.validate());
}

TEST_CASE("default seeds differ without opening the entropy device per Backoff", "[backoff]") {
  std::set<std::uint64_t> seeds;
  for (int i = 0; i < 1000; ++i) seeds.insert(keel::detail::next_seed());
  CHECK(seeds.size() == 1000);
}
