#include <keel/log.hpp>  // first: the header stands alone

#include <catch2/catch.hpp>

#include <spdlog/sinks/ostream_sink.h>

#include <cstdlib>
#include <sstream>

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
