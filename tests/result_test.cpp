#include <keel/result.hpp>  // first: the header stands alone

#include <rapidcheck/catch.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

using keel::Errc;
using keel::Error;
using keel::Result;

namespace {

std::vector<Errc> all_kinds() {
  std::vector<Errc> out;
  for (int i = 1; i <= keel::kErrcCount; ++i) out.push_back(static_cast<Errc>(i));
  return out;
}

// A random Error: any kind, maybe a message, 0-3 context frames.
rc::Gen<Error> gen_error() {
  return rc::gen::apply(
      [](int kind, std::string msg, std::vector<std::string> ctx) {
        Error e = msg.empty() ? Error(static_cast<Errc>(kind)) : Error(static_cast<Errc>(kind), msg);
        for (auto& c : ctx) e.context(c);
        return e;
      },
      rc::gen::inRange(1, keel::kErrcCount + 1), rc::gen::arbitrary<std::string>(),
      rc::gen::container<std::vector<std::string>>(rc::gen::nonEmpty<std::string>()));
}

rc::Gen<Result<int>> gen_result() {
  return rc::gen::oneOf(rc::gen::map(rc::gen::arbitrary<int>(), [](int v) { return Result<int>(v); }),
                        rc::gen::map(gen_error(), [](Error e) { return Result<int>(std::move(e)); }));
}

}  // namespace

TEST_CASE("Errc codes, statuses and the error_code category", "[result]") {
  CHECK(keel::to_string(Errc::not_found) == "NOT_FOUND");
  CHECK(keel::to_string(Errc::resource_exhausted) == "RESOURCE_EXHAUSTED");
  CHECK(keel::to_string(Errc::auth_failed) == "AUTH_FAILED");
  CHECK(keel::http_status(Errc::invalid_argument) == 400);
  CHECK(keel::http_status(Errc::not_found) == 404);
  CHECK(keel::http_status(Errc::already_exists) == 409);
  CHECK(keel::http_status(Errc::timeout) == 504);
  CHECK(keel::http_status(Errc::unavailable) == 503);
  CHECK(keel::http_status(Errc::auth_failed) == 401);
  CHECK(keel::http_status(Errc::resource_exhausted) == 429);
  CHECK(keel::http_status(Errc::internal) == 500);

  std::vector<std::string_view> seen;
  for (Errc c : all_kinds()) {
    const auto s = keel::to_string(c);
    INFO(s);
    if (c != Errc::unknown) CHECK(s != "UNKNOWN");
    CHECK(s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == std::string_view::npos);
    CHECK(keel::errc_from_string(s) == c);
    CHECK(keel::http_status(c) >= 400);
    CHECK(keel::http_status(c) <= 599);
    seen.push_back(s);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
  CHECK_FALSE(keel::errc_from_string("not_found").has_value());
  CHECK_FALSE(keel::errc_from_string("").has_value());

  std::error_code ec = Errc::timeout;
  CHECK(std::string(ec.category().name()) == "keel");
  CHECK(ec.message() == "TIMEOUT");
  CHECK(ec == std::errc::timed_out);  // portable condition
  CHECK(static_cast<bool>(ec));
}

TEST_CASE("is_transient: timeout, busy, unavailable only", "[result]") {
  for (Errc c : all_kinds()) {
    const bool expect = c == Errc::timeout || c == Errc::busy || c == Errc::unavailable;
    CHECK(keel::is_transient(c) == expect);
    CHECK(Error(c).is_transient() == expect);
  }
}

TEST_CASE("Error is one word; Result<int> two", "[result]") {
  STATIC_REQUIRE(sizeof(Error) == sizeof(void*));
  STATIC_REQUIRE(sizeof(Result<int>) <= 16);
  STATIC_REQUIRE(sizeof(Result<void>) <= 16);
}

TEST_CASE("Error holds code, message, location and context", "[result]") {
  const Error bare = Errc::busy;
  CHECK(bare.code() == Errc::busy);
  CHECK(bare.message().empty());
  CHECK(bare.where().line() == 0);
  CHECK(bare.chain().empty());

  const int line = __LINE__ + 1;
  Error e(Errc::not_found, "no user 7");
  CHECK(e.code() == Errc::not_found);
  CHECK(e.message() == "no user 7");
  CHECK(e.where().line() == static_cast<unsigned>(line));
  CHECK(std::string_view(e.where().file_name()).find("result_test.cpp") != std::string_view::npos);

  e.context("loading profile").context("handling GET /users/7");
  CHECK(e.contexts() == std::vector<std::string_view>{"handling GET /users/7", "loading profile"});
  CHECK(e.chain() == std::vector<std::string_view>{"handling GET /users/7", "loading profile", "no user 7"});
  CHECK(fmt::format("{}", e) == "handling GET /users/7: loading profile: NOT_FOUND: no user 7");
  CHECK(e.to_string() == fmt::format("{}", e));
  CHECK(fmt::format("{:v}", e).find("result_test.cpp:" + std::to_string(line)) != std::string::npos);

  // Context on a bare code allocates then, and keeps the code.
  Error b = Errc::timeout;
  b.context("waiting for lock");
  CHECK(b.code() == Errc::timeout);
  CHECK(fmt::format("{}", b) == "waiting for lock: TIMEOUT");
  CHECK(b.http_status() == 504);
  const std::error_code ec = b;
  CHECK(ec == Errc::timeout);
}

TEST_CASE("formatting never repeats the cause's text", "[result]") {
  Error e(Errc::io, "disk full");
  e.context("disk full").context("saving").context("saving");
  CHECK(fmt::format("{}", e) == "saving: IO: disk full");
}

TEST_CASE("Error copies deeply and moves cheaply", "[result]") {
  Error a(Errc::config, "bad port");
  a.context("reading config");
  Error b = a;
  CHECK(b == a);
  b.context("starting");
  CHECK_FALSE(b == a);
  Error c = std::move(b);
  CHECK(c.contexts().size() == 2);
  CHECK(b.code() == Errc::internal);  // NOLINT(bugprone-use-after-move): moved-from is defined
  b = c;
  CHECK(b == c);
  b = Error(Errc::empty);
  CHECK(b.code() == Errc::empty);
  CHECK(b == Errc::empty);
}

TEST_CASE("Error::from maps std::error_code", "[result]") {
  CHECK(Error::from(Errc::lagged).code() == Errc::lagged);
  CHECK(Error::from(std::make_error_code(std::errc::timed_out)).code() == Errc::timeout);
  CHECK(Error::from(std::make_error_code(std::errc::no_such_file_or_directory)).code() == Errc::not_found);
  CHECK(Error::from(std::make_error_code(std::errc::connection_refused)).code() == Errc::unavailable);
  const Error other = Error::from(std::make_error_code(std::errc::broken_pipe));
  CHECK(other.code() == Errc::io);
  CHECK(other.message().find("generic") != std::string_view::npos);
}

TEST_CASE("Result basics", "[result]") {
  Result<int> ok = 5;
  REQUIRE(ok.has_value());
  CHECK(*ok == 5);
  CHECK(ok.value() == 5);
  CHECK(ok.value_or(9) == 5);

  Result<int> bad = keel::fail(Errc::not_found, "missing {}", "key");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == Errc::not_found);
  CHECK(bad.error().message() == "missing key");
  CHECK(bad.value_or(9) == 9);
  CHECK_THROWS_AS(bad.value(), keel::BadResultAccess);
  try {
    (void)bad.value();
  } catch (const keel::BadResultAccess& ex) {
    CHECK(std::string(ex.what()) == "NOT_FOUND: missing key");
    CHECK(ex.error().code() == Errc::not_found);
  }

  Result<int> from_code = Errc::timeout;
  CHECK(from_code.error() == Errc::timeout);
  Result<int> from_bare = keel::fail(Errc::busy);
  CHECK(from_bare.error().message().empty());

  ok = bad;
  CHECK_FALSE(ok);
  ok = 3;
  CHECK(*ok == 3);
  ok.emplace(4);
  CHECK(*ok == 4);

  Result<std::string> s = std::string("hi");
  CHECK(s->size() == 2);
  Result<void> v;
  CHECK(v);
  CHECK_NOTHROW(v.value());
  Result<void> vbad = keel::fail(Errc::closed);
  CHECK_FALSE(vbad);
  CHECK_THROWS_AS(vbad.value(), keel::BadResultAccess);
  vbad.emplace();
  CHECK(vbad);
}

TEST_CASE("Result holds move-only values", "[result]") {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  auto moved = std::move(r);
  REQUIRE(moved);
  CHECK(**moved == 7);
  auto doubled = std::move(moved).transform([](std::unique_ptr<int> p) { return *p * 2; });
  CHECK(*doubled == 14);
  auto chained = Result<std::unique_ptr<int>>(std::make_unique<int>(1))
                     .and_then([](std::unique_ptr<int>&& p) -> Result<int> { return *p + 1; });
  CHECK(*chained == 2);
}

TEST_CASE("Result combinators", "[result]") {
  auto half = [](int v) -> Result<int> {
    if (v % 2 != 0) return keel::fail(Errc::invalid_argument, "{} is odd", v);
    return v / 2;
  };
  CHECK(*Result<int>(8).and_then(half).and_then(half) == 2);
  CHECK(Result<int>(6).and_then(half).and_then(half).error().message() == "3 is odd");
  CHECK(*Result<int>(2).transform([](int v) { return std::to_string(v); }) == "2");
  Result<void> from_void_fn = Result<int>(2).transform([](int) {});
  CHECK(from_void_fn);
  const Result<int> err = Errc::timeout;
  CHECK(*err.or_else([](const Error&) -> Result<int> { return 0; }) == 0);
  CHECK(err.transform_error([](const Error& e) { return Error(Errc::unavailable, std::string(e.message())); })
            .error()
            .code() == Errc::unavailable);
  CHECK(*Result<int>(1).transform_error([](const Error&) { return Error(Errc::internal); }) == 1);

  Result<void> vv;
  CHECK(*vv.and_then([]() -> Result<int> { return 3; }) == 3);
  CHECK(*vv.transform([] { return 4; }) == 4);
  Result<void> verr = Errc::closed;
  CHECK(verr.and_then([]() -> Result<int> { return 3; }).error() == Errc::closed);
  CHECK(verr.or_else([](const Error&) -> Result<void> { return {}; }));

  auto with_ctx = Result<int>(Errc::not_found).context("looking up user");
  CHECK(fmt::format("{}", with_ctx.error()) == "looking up user: NOT_FOUND");
  int calls = 0;
  auto lazy_ok = Result<int>(1).with_context([&] {
    ++calls;
    return std::string("never built");
  });
  CHECK(calls == 0);
  CHECK(*lazy_ok == 1);
}

namespace {
Result<int> leaf(int v) {
  if (v < 0) return keel::fail(Errc::invalid_argument, "negative {}", v);
  return v + 1;
}
Result<int> middle_try(int v) {
  const int x = KEEL_TRY(leaf(v));
  return x * 2;
}
Result<int> middle_assign(int v) {
  KEEL_TRY_ASSIGN(const int x, leaf(v));
  return x * 2;
}
Result<int> middle_manual(int v) {
  auto r = leaf(v);
  if (!r) return std::move(r).error();
  return *r * 2;
}
Result<void> void_step(bool ok) {
  if (!ok) return keel::fail(Errc::closed, "closed");
  return {};
}
Result<int> uses_void(bool ok) {
  KEEL_TRY(void_step(ok));
  return 1;
}
template <class A, class B>
Result<int> sum(A a, B b) {
  return a + b;
}
Result<int> comma_in_expr() {
  const int s = KEEL_TRY(sum<int, int>(1, 2));
  KEEL_TRY_ASSIGN(auto t, sum<int, int>(s, 3));
  return t;
}
Result<std::unique_ptr<int>> make_ptr(bool ok) {
  if (!ok) return Errc::resource_exhausted;
  return std::make_unique<int>(9);
}
Result<int> move_only_try(bool ok) {
  auto p = KEEL_TRY(make_ptr(ok));
  KEEL_TRY_ASSIGN(auto q, make_ptr(ok));
  return *p + *q;
}
Result<int> lvalue_try() {
  Result<std::string> named = std::string("kept");
  auto copy = KEEL_TRY(named);
  return static_cast<int>(copy.size() + named->size());  // named still holds its value
}
}  // namespace

TEST_CASE("KEEL_TRY and KEEL_TRY_ASSIGN propagate like Rust's ?", "[result]") {
  CHECK(*middle_try(3) == 8);
  CHECK(*middle_assign(3) == 8);
  CHECK(middle_try(-1).error().message() == "negative -1");
  CHECK(*uses_void(true) == 1);
  CHECK(uses_void(false).error() == Errc::closed);
  CHECK(*comma_in_expr() == 6);
  CHECK(*move_only_try(true) == 18);
  CHECK(move_only_try(false).error() == Errc::resource_exhausted);
  CHECK(*lvalue_try() == 8);
}

TEST_CASE("properties", "[result][property]") {
  rc::prop("TRY propagation equals manual propagation", [] {
    const int v = *rc::gen::inRange(-1'000'000, 1'000'000);  // the chain computes (v + 1) * 2
    const auto a = middle_try(v);
    const auto b = middle_assign(v);
    const auto c = middle_manual(v);
    RC_ASSERT(a == c);
    RC_ASSERT(b == c);
  });

  rc::prop("monad law: left identity", [](int v) {
    const auto f = [](int x) -> Result<int> {
      if (x % 3 == 0) return keel::fail(Errc::invalid_argument, "{}", x);
      return x / 3;
    };
    RC_ASSERT(Result<int>(v).and_then(f) == f(v));
  });

  rc::prop("monad law: right identity", [] {
    const auto m = *gen_result();
    RC_ASSERT(m.and_then([](int x) { return Result<int>(x); }) == m);
  });

  rc::prop("monad law: associativity", [] {
    const auto m = *gen_result();
    const auto f = [](int x) -> Result<int> {
      if (x % 2 != 0) return Error(Errc::invalid_argument, "odd");
      return x / 2;
    };
    const auto g = [](int x) -> Result<int> {
      if (x > 1000) return Errc::full;
      return x - 1;
    };
    RC_ASSERT(m.and_then(f).and_then(g) == m.and_then([&](int x) { return f(x).and_then(g); }));
  });

  rc::prop("transform is and_then of a wrapped function", [] {
    const auto m = *gen_result();
    const auto h = [](int x) { return static_cast<long long>(x) * 3; };
    RC_ASSERT(m.transform(h) == m.and_then([&](int x) { return Result<long long>(h(x)); }));
  });

  rc::prop("formatting lists contexts outermost first, then code and message", [] {
    const auto kind = static_cast<Errc>(*rc::gen::inRange(1, keel::kErrcCount + 1));
    const auto msg = *rc::gen::nonEmpty<std::string>();
    const auto ctx = *rc::gen::container<std::vector<std::string>>(rc::gen::nonEmpty<std::string>());
    Error e(kind, msg);
    for (const auto& c : ctx) e.context(c);
    std::string expect;
    // Frames equal to their successor are written once.
    std::vector<std::string> outer_first(ctx.rbegin(), ctx.rend());
    for (std::size_t i = 0; i < outer_first.size(); ++i) {
      const std::string& next = i + 1 < outer_first.size() ? outer_first[i + 1] : msg;
      if (outer_first[i] != next) expect += outer_first[i] + ": ";
    }
    expect += std::string(keel::to_string(kind)) + ": " + msg;
    RC_ASSERT(fmt::format("{}", e) == expect);
    RC_ASSERT(e.chain().size() == ctx.size() + 1);
  });
}

// ---------------------------------------------------------------------------
// Exception safety: a type that throws when armed, and allocation failure.

namespace {

// Counts down the operations of Throwy (and, when alloc_armed, allocations);
// the one that reaches zero throws. -1: disarmed.
int g_throw_countdown = -1;
bool g_alloc_armed = false;

void tick() {
  if (g_throw_countdown < 0) return;
  if (g_throw_countdown-- == 0) {
    g_throw_countdown = -1;
    throw std::runtime_error("armed");
  }
}

// RAII: arm for the n-th (0-based) operation from now, disarm on scope exit.
struct Armed {
  explicit Armed(int n, bool allocations = false) {
    g_throw_countdown = n;
    g_alloc_armed = allocations;
  }
  Armed(const Armed&) = delete;
  Armed& operator=(const Armed&) = delete;
  ~Armed() {
    g_throw_countdown = -1;
    g_alloc_armed = false;
  }
};

// Owns heap memory, so a double destruction is a double free under ASan.
struct Throwy {
  std::vector<int> payload;
  explicit Throwy(int v) : payload(4, v) {}
  Throwy(const Throwy& o) : payload((tick(), o.payload)) {}
  Throwy(Throwy&& o) noexcept(false) : payload((tick(), std::move(o.payload))) {}
  Throwy& operator=(const Throwy& o) {
    tick();
    payload = o.payload;
    return *this;
  }
  Throwy& operator=(Throwy&& o) noexcept(false) {
    tick();
    payload = std::move(o.payload);
    return *this;
  }
  ~Throwy() = default;
  [[nodiscard]] int v() const { return payload.empty() ? -1 : payload.front(); }
};

// Throws when made from an int, but moves without throwing.
struct NothrowMove {
  std::vector<int> payload;
  explicit NothrowMove(int v) : payload((tick(), std::vector<int>(4, v))) {}
  NothrowMove(const NothrowMove&) = default;
  NothrowMove(NothrowMove&&) noexcept = default;
  NothrowMove& operator=(const NothrowMove&) = default;
  NothrowMove& operator=(NothrowMove&&) noexcept = default;
};

Result<Throwy> throwy_error() {
  return keel::fail(Errc::busy, "old error {}", 1);
}

}  // namespace

// Allocation failure on demand: every (unaligned) allocation of the test
// program goes through these; when armed, the counted one fails.
namespace {
void* allocate(std::size_t n, bool may_throw) {
  if (g_alloc_armed && g_throw_countdown >= 0 && g_throw_countdown-- == 0) {
    g_throw_countdown = -1;
    if (may_throw) throw std::bad_alloc();
    return nullptr;
  }
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr && may_throw) throw std::bad_alloc();
  return p;
}
}  // namespace
// g++ pairs an inlined `new` with the free() below and warns: these are the
// replacement functions themselves, so the pairing is right.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
[[gnu::noinline]] void* operator new(std::size_t n) {
  return allocate(n, true);
}
[[gnu::noinline]] void* operator new[](std::size_t n) {
  return allocate(n, true);
}
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t& /*unused*/) noexcept {
  return allocate(n, false);
}
[[gnu::noinline]] void* operator new[](std::size_t n, const std::nothrow_t& /*unused*/) noexcept {
  return allocate(n, false);
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t /*n*/) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t /*n*/) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t& /*unused*/) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t& /*unused*/) noexcept {
  std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

TEST_CASE("assignment over each state pair keeps the old contents when a copy throws",
          "[result][exception]") {
  const Result<Throwy> val(std::in_place, 7);
  const Result<Throwy> err = throwy_error();

  SECTION("value = value: T's copy assignment throws") {
    Result<Throwy> r(std::in_place, 1);
    {
      const Armed a(0);
      CHECK_THROWS_AS(r = val, std::runtime_error);
    }
    REQUIRE(r.has_value());
    CHECK(r->v() == 1);
  }
  SECTION("error = value: T's copy constructor throws") {
    Result<Throwy> r = throwy_error();
    {
      const Armed a(0);
      CHECK_THROWS_AS(r = val, std::runtime_error);
    }
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code() == Errc::busy);
    CHECK(r.error().message() == "old error 1");
  }
  SECTION("value = error: copying the Error runs out of memory") {
    Result<Throwy> r(std::in_place, 1);
    {
      const Armed a(0, true);
      CHECK_THROWS_AS(r = err, std::bad_alloc);
    }
    REQUIRE(r.has_value());
    CHECK(r->v() == 1);
  }
  SECTION("error = error: copying the Error runs out of memory") {
    Result<Throwy> r = keel::fail(Errc::closed, "mine");
    {
      const Armed a(0, true);
      CHECK_THROWS_AS(r = err, std::bad_alloc);
    }
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message() == "mine");
  }
  SECTION("error = value by move: T's move constructor throws") {
    Result<Throwy> r = throwy_error();
    Result<Throwy> src(std::in_place, 3);
    {
      const Armed a(0);
      CHECK_THROWS_AS(r = std::move(src), std::runtime_error);
    }
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message() == "old error 1");
  }
  SECTION("value = value by move: T's move assignment throws") {
    Result<Throwy> r(std::in_place, 1);
    Result<Throwy> src(std::in_place, 3);
    {
      const Armed a(0);
      CHECK_THROWS_AS(r = std::move(src), std::runtime_error);
    }
    REQUIRE(r.has_value());
    CHECK(r->v() == 1);
  }
  // Every case above leaves r destructible exactly once (ASan checks).
}

TEST_CASE("emplace gives the strong guarantee where it can, never a double destruction",
          "[result][exception]") {
  SECTION("over an error: the error comes back") {
    Result<Throwy> r = throwy_error();
    const Throwy src(5);
    {
      const Armed a(0);
      CHECK_THROWS_AS(r.emplace(src), std::runtime_error);
    }
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message() == "old error 1");
    r.emplace(src);
    CHECK(r->v() == 5);
  }
  SECTION("over a value, T moves without throwing: the value stays") {
    Result<NothrowMove> r(std::in_place, 2);
    {
      const Armed a(0);
      CHECK_THROWS_AS(r.emplace(9), std::runtime_error);
    }
    REQUIRE(r.has_value());
    CHECK(r->payload.front() == 2);
  }
  SECTION("over a value, T's move may throw: a defined error state") {
    Result<Throwy> r(std::in_place, 2);
    const Throwy src(5);
    {
      const Armed a(0);
      CHECK_THROWS_AS(r.emplace(src), std::runtime_error);
    }
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code() == Errc::internal);
  }
}

TEST_CASE("allocation failure through Result operations leaves defined states", "[result][exception]") {
  Result<std::string> r = keel::fail(Errc::io, "disk {}", "gone");
  const Result<std::string> copy_src = keel::fail(Errc::io, "other");
  for (int n = 0; n < 4; ++n) {
    INFO(n);
    {
      const Armed a(n, true);
      try {
        Result<std::string> c = copy_src;  // copies the record
        c = r;
        r = Result<std::string>(std::string(100, 'x'));
        r = copy_src;
        auto t = std::move(r).context("ctx");
        r = std::move(t);
      } catch (const std::bad_alloc&) {
      }
    }
    // Whatever happened, r is usable and destructible.
    if (r) {
      CHECK(r->size() == 100);
    } else {
      CHECK(r.error().code() == Errc::io);
    }
  }
}

TEST_CASE("noexcept specifications are true", "[result]") {
  // Copying may copy an Error's record: it allocates.
  STATIC_REQUIRE_FALSE(std::is_nothrow_copy_constructible_v<Result<int>>);
  STATIC_REQUIRE_FALSE(std::is_nothrow_copy_assignable_v<Result<int>>);
  STATIC_REQUIRE_FALSE(std::is_nothrow_copy_constructible_v<Result<void>>);
  STATIC_REQUIRE_FALSE(std::is_nothrow_copy_constructible_v<Error>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<Result<int>>);
  STATIC_REQUIRE(std::is_nothrow_move_assignable_v<Result<int>>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<Result<void>>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<Error>);
  STATIC_REQUIRE(std::is_nothrow_move_assignable_v<Error>);
  STATIC_REQUIRE_FALSE(std::is_nothrow_move_constructible_v<Result<Throwy>>);
  // A move constructor that cannot throw with a move assignment that can.
  struct MoveAssignThrows {
    MoveAssignThrows() = default;
    MoveAssignThrows(MoveAssignThrows&&) noexcept = default;
    MoveAssignThrows& operator=(MoveAssignThrows&&) noexcept(false) { return *this; }
  };
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<Result<MoveAssignThrows>>);
  STATIC_REQUIRE_FALSE(std::is_nothrow_move_assignable_v<Result<MoveAssignThrows>>);
  STATIC_REQUIRE(std::is_nothrow_constructible_v<Result<int>, Errc>);
  STATIC_REQUIRE(std::is_nothrow_constructible_v<Result<int>, Error>);
}

// ---------------------------------------------------------------------------
// Lifetimes: views from a temporary Error.

namespace {
Result<int> failing_with_context() {
  return Result<int>(keel::fail(Errc::not_found, "no row {}", 42)).context("loading").context("serving");
}
}  // namespace

TEST_CASE("message, contexts and chain on a temporary own their text", "[result][lifetime]") {
  std::vector<std::string> seen;
  for (auto s : failing_with_context().error().chain()) seen.emplace_back(s);
  CHECK(seen == std::vector<std::string>{"serving", "loading", "no row 42"});

  seen.clear();
  for (const auto& s : failing_with_context().error().contexts()) seen.emplace_back(s);
  CHECK(seen == std::vector<std::string>{"serving", "loading"});

  const std::string m = failing_with_context().error().message();
  CHECK(m == "no row 42");

  STATIC_REQUIRE(std::is_same_v<decltype(std::declval<Error>().message()), std::string>);
  STATIC_REQUIRE(std::is_same_v<decltype(std::declval<const Error&&>().message()), std::string>);
  STATIC_REQUIRE(std::is_same_v<decltype(std::declval<Error&>().message()), std::string_view>);
  STATIC_REQUIRE(
      std::is_same_v<decltype(std::declval<const Error&>().chain()), std::vector<std::string_view>>);
  STATIC_REQUIRE(std::is_same_v<decltype(std::declval<Error>().chain()), std::vector<std::string>>);
  STATIC_REQUIRE(std::is_same_v<decltype(std::declval<Error>().contexts()), std::vector<std::string>>);
}

TEST_CASE("fail records the caller's location", "[result]") {
  const unsigned line = __LINE__ + 1;
  const Result<int> r = keel::fail(Errc::config, "bad {}", 1);
  CHECK(r.error().where().line() == line);
  CHECK(std::string_view(r.error().where().file_name()).find("result_test.cpp") != std::string_view::npos);
  CHECK_FALSE(std::string_view(r.error().where().function_name()).empty());
  const unsigned ctor_line = __LINE__ + 1;
  const Error via_ctor(Errc::io, "x");
  CHECK(via_ctor.where().line() == ctor_line);
}

// ---------------------------------------------------------------------------
// std::error_code interop.

TEST_CASE("errno table, whole", "[result][errno]") {
  const std::vector<std::pair<int, Errc>> table = {
      {EINVAL, Errc::invalid_argument},
      {EDOM, Errc::invalid_argument},
      {ERANGE, Errc::invalid_argument},
      {ENAMETOOLONG, Errc::invalid_argument},
      {ENOENT, Errc::not_found},
      {ESRCH, Errc::not_found},
      {EEXIST, Errc::already_exists},
      {ETIMEDOUT, Errc::timeout},
      {ETIME, Errc::timeout},
      {ECANCELED, Errc::cancelled},
      {EBUSY, Errc::busy},
      {ETXTBSY, Errc::busy},
      {EAGAIN, Errc::busy},
      {EWOULDBLOCK, Errc::busy},
      {EINTR, Errc::busy},
      {EACCES, Errc::auth_failed},
      {EPERM, Errc::auth_failed},
      {EPROTO, Errc::protocol},
      {EBADMSG, Errc::protocol},
      {ENOMEM, Errc::resource_exhausted},
      {ENOBUFS, Errc::resource_exhausted},
      {EMFILE, Errc::resource_exhausted},
      {ENFILE, Errc::resource_exhausted},
      {ENOSPC, Errc::resource_exhausted},
      {EDQUOT, Errc::resource_exhausted},
      {ECONNREFUSED, Errc::unavailable},
      {ECONNRESET, Errc::unavailable},
      {ECONNABORTED, Errc::unavailable},
      {EHOSTUNREACH, Errc::unavailable},
      {ENETUNREACH, Errc::unavailable},
      {ENETDOWN, Errc::unavailable},
      {ENETRESET, Errc::unavailable},
  };
  // Every errno value Linux defines (1..133), each checked: the listed ones
  // get their kind, every other one Errc::io.
  for (int e = 1; e <= 133; ++e) {
    INFO("errno " << e << " (" << std::strerror(e) << ")");
    Errc expect = Errc::io;
    for (const auto& [v, kind] : table) {
      if (v == e) expect = kind;
    }
    CHECK(keel::errc_from_errno(e) == expect);
    const std::error_code generic(e, std::generic_category());
    const std::error_code system(e, std::system_category());
    CHECK(keel::errc_from(generic) == expect);
    CHECK(keel::errc_from(system) == expect);
    const Error err = Error::from(system);
    CHECK(err.code() == expect);
    CHECK(err.message().find(std::strerror(e)) != std::string_view::npos);
    CHECK(generic == expect);
    CHECK(system == expect);
  }
  // The transient ones a retry loop must see as such.
  for (int e : {EAGAIN, EWOULDBLOCK, EINTR, ETIMEDOUT, EBUSY, ECONNREFUSED}) {
    CHECK(Error::from(std::error_code(e, std::generic_category())).is_transient());
  }
}

TEST_CASE("a success error_code is not turned into an error silently", "[result][errno]") {
  const Error e = Error::from(std::error_code{});
  CHECK(e.code() == Errc::internal);
  CHECK(e.message().find("success") != std::string_view::npos);
  CHECK(keel::errc_from(std::error_code{}) == Errc::internal);
  CHECK_FALSE(std::error_code{} == Errc::internal);
  CHECK(keel::errc_from_errno(0) == Errc::internal);
}

TEST_CASE("keel codes are recognised by category name, not only by address", "[result][errno]") {
  // Another copy of the category, as a second shared library holding its own
  // instance of the header-only category would have.
  static const keel::detail::KeelCategory other_copy;
  REQUIRE(&other_copy != &keel::keel_category());
  const std::error_code ec(static_cast<int>(Errc::lagged), other_copy);
  CHECK(keel::is_keel_category(other_copy));
  CHECK(Error::from(ec).code() == Errc::lagged);
  CHECK(Error::from(ec).message().empty());  // a bare kind, as for our own copy
  CHECK(ec == Errc::lagged);
  const std::error_code future(200, keel::keel_category());
  CHECK(Error::from(future).code() == Errc::unknown);
  CHECK(Error::from(Errc::lagged).code() == Errc::lagged);
}

TEST_CASE("an error_code compares with a kind like a condition", "[result][errno]") {
  const std::error_code timed_out = std::make_error_code(std::errc::timed_out);
  CHECK(timed_out == Errc::timeout);
  CHECK(Errc::timeout == timed_out);
  CHECK(timed_out != Errc::busy);
  CHECK(std::error_code(ETIMEDOUT, std::system_category()) == Errc::timeout);
  const std::error_code keel_code = Errc::timeout;
  CHECK(keel_code == Errc::timeout);
  CHECK(keel_code != Errc::busy);
  CHECK(keel_code == std::errc::timed_out);  // and the portable condition still works
  // A category with no portable condition equals no kind.
  struct Foreign final : std::error_category {
    [[nodiscard]] const char* name() const noexcept override { return "foreign"; }
    [[nodiscard]] std::string message(int) const override { return "foreign"; }
  };
  static const Foreign foreign;
  const std::error_code f(5, foreign);
  for (Errc c : all_kinds()) CHECK(f != c);
  CHECK(keel::errc_from(f) == Errc::io);
}

// ---------------------------------------------------------------------------
// Which of value and error an Errc initialises.

TEST_CASE("Result<Errc> and Result<std::error_code> hold a kind as their value", "[result]") {
  // As std::expected<T, Error> would: where T is made from the Errc, the Errc
  // is the value; failures are spelled keel::fail / keel::unexpected.
  Result<Errc> kind = Errc::timeout;
  REQUIRE(kind.has_value());
  CHECK(*kind == Errc::timeout);
  Result<Errc> failed = keel::fail(Errc::io, "read");
  REQUIRE_FALSE(failed.has_value());
  CHECK(failed.error().code() == Errc::io);
  Result<Errc> failed_bare = keel::fail(Errc::io);
  CHECK_FALSE(failed_bare.has_value());
  Result<Errc> from_error = Error(Errc::busy);  // an Error is not an Errc: still an error
  CHECK_FALSE(from_error.has_value());

  Result<std::error_code> ec = Errc::closed;
  REQUIRE(ec.has_value());
  CHECK(*ec == Errc::closed);
  Result<std::error_code> ec_from_error = Error(Errc::busy, "held");
  REQUIRE(ec_from_error.has_value());
  CHECK(*ec_from_error == Errc::busy);
  Result<std::error_code> ec_failed = keel::fail(Errc::busy);
  CHECK_FALSE(ec_failed.has_value());

  Result<Error> err_value = Errc::busy;
  CHECK(err_value.has_value());

  // Everywhere else the keel extension holds: an Errc is an error.
  Result<int> i = Errc::timeout;
  CHECK_FALSE(i.has_value());
  Result<std::optional<int>> o = Errc::timeout;
  CHECK_FALSE(o.has_value());
}

// ---------------------------------------------------------------------------
// Interop: conversions, comparisons, errno, exceptions.

TEST_CASE("Result<U> converts to Result<T>", "[result][interop]") {
  const Result<int> i = 5;
  const Result<long long> l = i;
  CHECK(*l == 5);
  Result<std::string> s = Result<const char*>("text");
  CHECK(*s == "text");
  const Result<int> bad = keel::fail(Errc::busy, "held");
  const Result<double> d = bad;
  REQUIRE_FALSE(d);
  CHECK(d.error() == bad.error());
  Result<std::unique_ptr<const int>> moved = Result<std::unique_ptr<int>>(std::make_unique<int>(3));
  CHECK(**moved == 3);
  // Explicit where the value conversion is.
  STATIC_REQUIRE(std::is_constructible_v<Result<std::vector<int>>, Result<std::size_t>>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<Result<std::size_t>, Result<std::vector<int>>>);
}

TEST_CASE("a Result compares with a value, an Error and a kind", "[result][interop]") {
  const Result<int> five = 5;
  CHECK(five == 5);
  CHECK(5 == five);
  CHECK(five != 6);
  CHECK(five != Errc::busy);
  const Result<int> busy = keel::fail(Errc::busy, "held");
  CHECK(busy == Errc::busy);
  CHECK(busy != Errc::timeout);
  CHECK(busy == Error(Errc::busy, "held"));
  CHECK(busy != Error(Errc::busy));  // the message differs
  CHECK(busy == keel::unexpected<Error>(Error(Errc::busy, "held")));
  CHECK(busy != 0);
  const Result<std::string> text = std::string("a");
  CHECK(text == "a");
  const Result<void> ok;
  const Result<void> closed = Errc::closed;
  CHECK(closed == Errc::closed);
  CHECK(ok != Errc::closed);
  // In Result<Errc> an Errc is the value, so == compares values.
  const Result<Errc> kind = Errc::timeout;
  CHECK(kind == Errc::timeout);
  CHECK(kind != Errc::busy);
}

TEST_CASE("from_errno", "[result][interop]") {
  errno = ENOENT;
  const unsigned line = __LINE__ + 1;
  const Error e = keel::from_errno();
  CHECK(e.code() == Errc::not_found);
  CHECK(e.message().find(std::strerror(ENOENT)) != std::string_view::npos);
  CHECK(e.where().line() == line);
  CHECK(keel::from_errno(EMFILE).code() == Errc::resource_exhausted);
  CHECK(keel::from_errno(EINTR).is_transient());
  CHECK(keel::from_errno(0).code() == Errc::internal);
}

TEST_CASE("catch_result turns exceptions into errors", "[result][interop]") {
  CHECK(*keel::catch_result([] { return std::stoi("42"); }) == 42);
  const auto bad_arg = keel::catch_result([] { return std::stoi("forty-two"); });
  REQUIRE_FALSE(bad_arg);
  CHECK(bad_arg.error().code() == Errc::invalid_argument);
  CHECK(keel::catch_result([] { return std::stoi("99999999999999999999"); }).error().code() ==
        Errc::invalid_argument);  // std::out_of_range
  CHECK(keel::catch_result([] { return std::vector<int>().at(1); }).error().code() == Errc::invalid_argument);
  const auto sys = keel::catch_result(
      [] { throw std::system_error(std::make_error_code(std::errc::connection_refused), "connecting"); });
  STATIC_REQUIRE(std::is_same_v<decltype(sys), const Result<void>>);
  REQUIRE_FALSE(sys);
  CHECK(sys.error().code() == Errc::unavailable);
  CHECK(sys.error().message().find("connecting") != std::string_view::npos);
  CHECK(keel::catch_result([]() -> int { throw std::bad_alloc(); }).error() ==
        Error(Errc::resource_exhausted));
  CHECK(keel::catch_result([]() -> int { throw std::runtime_error("boom"); }).error() ==
        Error(Errc::internal, "boom"));
  CHECK(keel::catch_result([]() -> int { throw 7; }).error().code() == Errc::unknown);
  // A Result-returning fn is returned as is; value() inside gives its Error back.
  const auto inner = keel::catch_result([]() -> Result<int> {
    const Result<int> r = keel::fail(Errc::not_found, "no row");
    return r.value() + 1;
  });
  STATIC_REQUIRE(std::is_same_v<decltype(inner), const Result<int>>);
  CHECK(inner.error() == Error(Errc::not_found, "no row"));
  const unsigned line = __LINE__ + 1;
  const auto located = keel::catch_result([]() -> int { throw std::logic_error("x"); });
  CHECK(located.error().where().line() == line);
}

// ---------------------------------------------------------------------------
// Coroutines and declarations with commas.

namespace {

// The smallest coroutine type returning a Result: runs eagerly to co_return.
template <class R>
struct Eager {
  struct promise_type {
    std::optional<R> result;
    Eager get_return_object() { return Eager{std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_value(R r) { result.emplace(std::move(r)); }
    void unhandled_exception() { std::terminate(); }
  };
  explicit Eager(std::coroutine_handle<promise_type> handle) : h(handle) {}
  Eager(const Eager&) = delete;
  Eager& operator=(const Eager&) = delete;
  ~Eager() { h.destroy(); }
  R get() { return std::move(*h.promise().result); }
  std::coroutine_handle<promise_type> h;
};

Eager<Result<int>> co_middle(int v) {
  KEEL_CO_TRY(void_step(v != 0));
  KEEL_CO_TRY_ASSIGN(const int x, leaf(v));
  KEEL_CO_TRY_ASSIGN((auto [a, b]), Result<std::pair<int, int>>(std::pair<int, int>(x, 2)));
  co_return a* b;
}

Result<std::pair<std::string, int>> split(std::string_view line) {
  const auto eq = line.find('=');
  if (eq == std::string_view::npos) return keel::fail(Errc::invalid_argument, "no '=' in {}", line);
  return std::pair<std::string, int>(std::string(line.substr(0, eq)), static_cast<int>(line.size() - eq - 1));
}

Result<int> uses_binding(std::string_view line) {
  KEEL_TRY_ASSIGN((auto [key, len]), split(line));
  KEEL_TRY_ASSIGN((std::pair<int, int> p), Result<std::pair<int, int>>(std::pair<int, int>(1, 2)));
  return static_cast<int>(key.size()) + len + p.first + p.second;
}

}  // namespace

TEST_CASE("KEEL_CO_TRY and KEEL_CO_TRY_ASSIGN co_return the error", "[result]") {
  CHECK(co_middle(3).get() == 8);
  CHECK(co_middle(0).get() == Errc::closed);
  CHECK(co_middle(-1).get().error().message() == "negative -1");
}

TEST_CASE("KEEL_TRY_ASSIGN takes a parenthesised declaration with commas", "[result]") {
  CHECK(uses_binding("ab=xyz") == 2 + 3 + 3);
  CHECK(uses_binding("abxyz") == Errc::invalid_argument);
  // In a lambda the macros return from the lambda: give it a Result return type.
  const auto lambda = [](int v) -> Result<int> {
    const int x = KEEL_TRY(leaf(v));
    return x;
  };
  CHECK(lambda(1) == 2);
  CHECK(lambda(-1) == Errc::invalid_argument);
}

// ---------------------------------------------------------------------------
// Causes, root kinds and the logical stack.

namespace {
Result<int> find_row(int id) {
  return keel::fail(Errc::not_found, "no row {}", id);
}
Result<int> load_user(int id) {
  return find_row(id).context("reading users").wrap(Errc::internal, "user table out of sync");
}
}  // namespace

TEST_CASE("wrap re-kinds an error and keeps the root", "[result][cause]") {
  const auto r = load_user(7).context("handling GET /users/7");
  REQUIRE_FALSE(r);
  const Error& e = r.error();
  CHECK(e.code() == Errc::internal);
  CHECK(e.root_code() == Errc::not_found);
  CHECK(e.has(Errc::not_found));
  CHECK(e.has(Errc::internal));
  CHECK_FALSE(e.has(Errc::timeout));
  REQUIRE(e.cause() != nullptr);
  CHECK(e.cause()->message() == "no row 7");
  CHECK(e.cause()->cause() == nullptr);
  CHECK(e.http_status() == 500);
  CHECK(fmt::format("{}", e) ==
        "handling GET /users/7: INTERNAL: user table out of sync: reading users: NOT_FOUND: no row 7");
  CHECK(e.chain() == std::vector<std::string_view>{"handling GET /users/7", "user table out of sync",
                                                   "reading users", "no row 7"});
  // Copies are deep and compare equal, causes included.
  const Error copy = e;
  CHECK(copy == e);
  CHECK_FALSE(copy == Error(Errc::internal, "user table out of sync"));
  CHECK(Error(Errc::busy).root_code() == Errc::busy);
  CHECK(Error(Errc::busy).wrap(Errc::unavailable).to_string() == "UNAVAILABLE: BUSY");
}

TEST_CASE("{:v} prints the logical stack with every location, anyhow's way", "[result][cause]") {
  const unsigned made = __LINE__ + 1;
  Error e(Errc::not_found, "no row 7");
  const unsigned ctx1 = __LINE__ + 1;
  e.context("reading users");
  const unsigned wrapped = __LINE__ + 1;
  Error w = std::move(e).wrap(Errc::internal, "user table out of sync");
  const unsigned ctx2 = __LINE__ + 1;
  w.context("handling GET /users/7");
  const std::string f = __FILE__;
  const auto at = [&](unsigned line) { return fmt::format(" [at {}:{}]", f, line); };
  CHECK(fmt::format("{:v}", w) == "handling GET /users/7" + at(ctx2) +
                                      "\n\nCaused by:"
                                      "\n    0: INTERNAL: user table out of sync" +
                                      at(wrapped) + "\n    1: reading users" + at(ctx1) +
                                      "\n    2: NOT_FOUND: no row 7" + at(made));
  // No context, no cause: one line.
  const unsigned one = __LINE__ + 1;
  const Error single(Errc::io, "disk gone");
  CHECK(fmt::format("{:v}", single) == "IO: disk gone" + at(one));
  CHECK(fmt::format("{:v}", Error(Errc::busy)) == "BUSY");
  // Result::context records its caller too.
  const unsigned rctx = __LINE__ + 1;
  const auto r = Result<int>(Errc::timeout).context("waiting");
  CHECK(r.error().context_locations().at(0).line() == rctx);
  CHECK(fmt::format("{:v}", r.error()) == "waiting" + at(rctx) + "\n\nCaused by:\n    0: TIMEOUT");
}

TEST_CASE("formatting against fixed examples", "[result]") {
  struct Example {
    Error e;
    std::string one_line;
  };
  const std::vector<Example> examples = {
      {Error(Errc::busy), "BUSY"},
      {Error(Errc::not_found, "no user 7"), "NOT_FOUND: no user 7"},
      {Error(Errc::not_found, "no user 7").context("loading"), "loading: NOT_FOUND: no user 7"},
      {Error(Errc::io, "disk full").context("disk full").context("saving"), "saving: IO: disk full"},
      {Error(Errc::io, "x").context("a").context("a").context("b"), "b: a: IO: x"},
      {Error(Errc::timeout).context("waiting for lock"), "waiting for lock: TIMEOUT"},
      {Error(Errc::io, "").context(""), "IO"},
      {Error(Errc::unknown, "from a newer peer"), "UNKNOWN: from a newer peer"},
      {Error(Errc::not_found, "row").wrap(Errc::internal), "INTERNAL: NOT_FOUND: row"},
  };
  for (const auto& [e, one_line] : examples) {
    CHECK(fmt::format("{}", e) == one_line);
    CHECK(e.to_string() == one_line);
  }
}

// ---------------------------------------------------------------------------
// Typed payloads.

namespace {
struct RetryAfter {
  std::chrono::milliseconds delay;
};
struct SqliteCode {
  int extended;
};
}  // namespace

TEST_CASE("typed payloads: attach, read back by type, kept through context and wrap", "[result][payload]") {
  Error e(Errc::busy, "database is locked");
  CHECK(e.payload<RetryAfter>() == nullptr);
  e.attach(RetryAfter{std::chrono::milliseconds(250)}).attach(SqliteCode{517});
  REQUIRE(e.payload<RetryAfter>() != nullptr);
  CHECK(e.payload<RetryAfter>()->delay == std::chrono::milliseconds(250));
  CHECK(e.payload<SqliteCode>()->extended == 517);
  e.attach(RetryAfter{std::chrono::milliseconds(500)});  // replaces
  CHECK(e.payload<RetryAfter>()->delay == std::chrono::milliseconds(500));
  int count = 0;
  e.for_each_payload([&](const void*, const void*) { ++count; });
  CHECK(count == 2);

  e.context("saving order");
  CHECK(e.payload<SqliteCode>()->extended == 517);
  const Error copy = e;  // deep: the copy has its own payloads
  CHECK(copy.payload<SqliteCode>() != e.payload<SqliteCode>());
  CHECK(copy.payload<SqliteCode>()->extended == 517);
  CHECK(copy == e);  // payloads are not compared

  Error wrapped = Error(e).wrap(Errc::unavailable, "orders offline");
  CHECK(wrapped.payload<RetryAfter>()->delay == std::chrono::milliseconds(500));  // found on the cause
  wrapped.attach(RetryAfter{std::chrono::milliseconds(1)});
  CHECK(wrapped.payload<RetryAfter>()->delay == std::chrono::milliseconds(1));  // the outer one wins

  // A bare kind gets a record when a payload arrives.
  Error bare = Errc::timeout;
  bare.attach(RetryAfter{std::chrono::milliseconds(3)});
  CHECK(bare.code() == Errc::timeout);
  CHECK(bare.payload<RetryAfter>()->delay == std::chrono::milliseconds(3));

  const auto r = Result<int>(Errc::busy).attach(SqliteCode{5});
  CHECK(r.error().payload<SqliteCode>()->extended == 5);
  CHECK(Result<int>(1).attach(SqliteCode{5}) == 1);
}

#if KEEL_HAS_STD_FORMAT
TEST_CASE("std::format gives what fmt gives", "[result]") {
  keel::Error e(keel::Errc::not_found, "no user 7");
  e.context("loading profile");
  CHECK(std::format("{}", e) == "loading profile: NOT_FOUND: no user 7");
  CHECK(std::format("{:v}", e) == fmt::format("{:v}", e));
  CHECK(std::format("[{:>6}]", keel::Errc::busy) == "[  BUSY]");
}
#else
TEST_CASE("without <format> only fmt formats keel errors", "[result]") {
  STATIC_REQUIRE(KEEL_HAS_STD_FORMAT == 0);
  CHECK(fmt::format("{}", keel::Error(keel::Errc::busy)) == "BUSY");
}
#endif
