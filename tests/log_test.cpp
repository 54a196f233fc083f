#include <keel/log.hpp>  // first: the header stands alone

#include <catch2/catch.hpp>

#include <spdlog/sinks/ostream_sink.h>

#include <atomic>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using keel::log::count_verbosity;
using keel::log::level_for_verbosity;
using keel::log::parse_level;

TEST_CASE("verbosity count maps to levels", "[log]") {
  CHECK(level_for_verbosity(-1) == spdlog::level::warn);
  CHECK(level_for_verbosity(0) == spdlog::level::warn);
  CHECK(level_for_verbosity(1) == spdlog::level::info);
  CHECK(level_for_verbosity(2) == spdlog::level::debug);
  CHECK(level_for_verbosity(3) == spdlog::level::trace);
  CHECK(level_for_verbosity(9) == spdlog::level::trace);

  const char* argv[] = {"tool", "-v", "file", "-vv", "--verbose", "-x", "-", "-vx"};
  CHECK(count_verbosity(8, argv) == 4);
  const char* none[] = {"tool"};
  CHECK(count_verbosity(1, none) == 0);
}

TEST_CASE("KEEL_LOG values parse; bad ones are config errors", "[log]") {
  CHECK(*parse_level("debug") == spdlog::level::debug);
  CHECK(*parse_level("off") == spdlog::level::off);
  CHECK(*parse_level("2") == spdlog::level::debug);
  CHECK(*parse_level("0") == spdlog::level::warn);
  for (const char* bad : {"", "loud", "DEBUG", "-1", "99999", "2x"}) {
    INFO(bad);
    auto r = parse_level(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == keel::Errc::config);
  }
}

TEST_CASE("setup honours KEEL_LOG and a user's logger is used", "[log]") {
  ::setenv("KEEL_LOG", "trace", 1);
  auto lg = keel::log::setup(0, "keel-test");
  REQUIRE(lg);
  CHECK((*lg)->level() == spdlog::level::trace);
  CHECK(keel::log::logger() == *lg);

  ::setenv("KEEL_LOG", "shouty", 1);
  auto bad = keel::log::setup(1, "keel-test");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == keel::Errc::config);
  CHECK(fmt::format("{}", bad.error()).find("KEEL_LOG") != std::string::npos);
  ::unsetenv("KEEL_LOG");

  std::ostringstream out;
  auto mine = std::make_shared<spdlog::logger>("mine", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  keel::log::set_logger(mine);
  keel::log::set_verbosity(2);
  CHECK(mine->level() == spdlog::level::debug);
  keel::log::logger()->debug("hello {}", 42);
  mine->flush();
  CHECK(out.str().find("hello 42") != std::string::npos);
  keel::log::set_logger(nullptr);
  CHECK(keel::log::logger() == spdlog::default_logger());
}

TEST_CASE("logger() is never null, even after spdlog::drop_all() or shutdown()", "[log]") {
  keel::log::set_logger(nullptr);
  spdlog::drop_all();
  auto a = keel::log::logger();
  REQUIRE(a != nullptr);
  a->debug("still usable");
  spdlog::shutdown();
  auto b = keel::log::logger();
  REQUIRE(b != nullptr);
  b->debug("still usable after shutdown");
  keel::log::set_verbosity(0);  // works on the fallback too
  // spdlog is usable again afterwards: setup() registers a fresh logger.
  ::unsetenv("KEEL_LOG");
  auto lg = keel::log::setup(0, "keel-after-shutdown");
  REQUIRE(lg);
  CHECK(keel::log::logger() == *lg);
  keel::log::set_logger(nullptr);
}

TEST_CASE("concurrent setup() calls all succeed with the same logger", "[log][stress]") {
  ::unsetenv("KEEL_LOG");
  for (int round = 0; round < 20; ++round) {
    const std::string name = "keel-race-" + std::to_string(round);
    constexpr int kThreads = 8;
    std::vector<std::shared_ptr<spdlog::logger>> got(kThreads);
    std::vector<std::string> errors(kThreads);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        auto r = keel::log::setup(1, name);
        if (r) {
          got[static_cast<std::size_t>(t)] = *r;
        } else {
          errors[static_cast<std::size_t>(t)] = r.error().to_string();
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) {
      INFO(errors[static_cast<std::size_t>(t)]);
      REQUIRE(got[static_cast<std::size_t>(t)] != nullptr);
      CHECK(got[static_cast<std::size_t>(t)] == got[0]);
    }
  }
  keel::log::set_logger(nullptr);
}

TEST_CASE("set_verbosity reports a bad KEEL_LOG instead of ignoring it", "[log]") {
  std::ostringstream out;
  auto mine =
      std::make_shared<spdlog::logger>("mine-bad", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  keel::log::set_logger(mine);
  ::setenv("KEEL_LOG", "verbose\x01please", 1);
  keel::log::set_verbosity(1);
  ::unsetenv("KEEL_LOG");
  mine->flush();
  CHECK(mine->level() == spdlog::level::info);  // the count still applies
  CHECK(out.str().find("KEEL_LOG") != std::string::npos);
  CHECK(out.str().find("verbose?please") != std::string::npos);  // control bytes not echoed
  keel::log::set_logger(nullptr);

  const std::string long_value(5000, 'x');
  auto r = keel::log::parse_level(long_value);
  REQUIRE_FALSE(r);
  CHECK(r.error().to_string().size() < 300);
}
