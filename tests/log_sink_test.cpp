#include <keel/log/sink.hpp>

#include <spdlog/sinks/ostream_sink.h>
#include <catch2/catch.hpp>

#include <sstream>
#include <string>

TEST_CASE("log sink: keel lines reach the spdlog logger at its level", "[log]") {
  std::ostringstream out;
  auto ostream_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto lg = std::make_shared<spdlog::logger>("sink-test", ostream_sink);
  lg->set_pattern("%l|%v");
  lg->set_level(spdlog::level::info);

  keel::Logger k = keel::log::adapt(lg);
  REQUIRE(k);
  k.debug("hidden {}", 1);
  k.warn("pool {} is {}", "main", "slow");
  CHECK(out.str() == "warning|pool main is slow\n");

  lg->set_level(spdlog::level::debug);  // the spdlog logger's level is the one that counts
  CHECK(k.enabled(keel::LogLevel::debug));
  k.debug("shown {}", 2);
  CHECK(out.str() == "warning|pool main is slow\ndebug|shown 2\n");
}

TEST_CASE("log sink: a null spdlog logger adapts to an empty Logger", "[log]") {
  keel::Logger k = keel::log::adapt(nullptr);
  CHECK_FALSE(k);
  CHECK_NOTHROW(k.warn("to nowhere"));
  CHECK(keel::resolve_logger(k));  // the process default takes over
}

TEST_CASE("log sink: every keel level maps onto spdlog's", "[log]") {
  CHECK(keel::log::to_spdlog(keel::LogLevel::trace) == spdlog::level::trace);
  CHECK(keel::log::to_spdlog(keel::LogLevel::error) == spdlog::level::err);
  CHECK(keel::log::to_spdlog(keel::LogLevel::critical) == spdlog::level::critical);
  CHECK(keel::log::to_spdlog(keel::LogLevel::off) == spdlog::level::off);
}
