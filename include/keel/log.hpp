// keel/log.hpp: spdlog set up the way command-line tools and daemons want it
// (target keel::log). The logger keel's modules log through, and how to
// hand them your own.
//
//     int main(int argc, char** argv) {
//       auto logger = keel::log::setup(keel::log::count_verbosity(argc, argv));
//       if (!logger) { fmt::print(stderr, "{}\n", logger.error()); return 2; }
//       (*logger)->info("started");           // -v shows it, KEEL_LOG=debug more
//     }
//     keel::log::set_logger(my_spdlog_logger);  // or: keel logs through yours
//
// Verbosity: 0 warn, 1 info, 2 debug, 3+ trace. The KEEL_LOG environment
// variable overrides it: a level name (trace, debug, info, warn, error,
// critical, off) or a number (the verbosity count).
// Which logger: set_logger()'s if one was given, else spdlog's default logger.
// Modules log routine events at debug and faults at warn; the core logs nothing.
//
// Thread-safety: every function here may be called from any thread;
// set_logger() takes effect for log calls made after it returns.
#pragma once

#include <keel/result.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace keel::log {

/// 0 warn, 1 info, 2 debug, 3+ trace (negative counts as 0).
[[nodiscard]] inline spdlog::level::level_enum level_for_verbosity(int verbosity) noexcept {
  if (verbosity <= 0) return spdlog::level::warn;
  if (verbosity == 1) return spdlog::level::info;
  if (verbosity == 2) return spdlog::level::debug;
  return spdlog::level::trace;
}

/// Parses a KEEL_LOG value: a level name or a verbosity number.
[[nodiscard]] inline Result<spdlog::level::level_enum> parse_level(std::string_view text) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kNames[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},       {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},   {"warning", spdlog::level::warn},      {"error", spdlog::level::err},
      {"err", spdlog::level::err},     {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  for (const auto& [name, level] : kNames) {
    if (text == name) return level;
  }
  if (!text.empty() && text.size() <= 3 && text.find_first_not_of("0123456789") == std::string_view::npos) {
    int n = 0;
    for (char c : text) n = n * 10 + (c - '0');
    return level_for_verbosity(n);
  }
  return fail(Errc::config,
              "unknown log level \"{}\" (want trace, debug, info, warn, error, critical, off or a number)",
              text);
}

/// Counts -v flags: "-v" is 1, "-vv" 2, "--verbose" 1; other arguments are ignored.
[[nodiscard]] inline int count_verbosity(int argc, const char* const* argv) noexcept {
  int n = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--verbose") {
      ++n;
    } else if (a.size() >= 2 && a[0] == '-' && a[1] == 'v' &&
               a.find_first_not_of('v', 1) == std::string_view::npos) {
      n += static_cast<int>(a.size() - 1);
    }
  }
  return n;
}

namespace detail {
struct State {
  std::mutex mu;
  std::shared_ptr<spdlog::logger> logger;  // null: follow spdlog's default logger
};
inline State& state() {
  static State s;
  return s;
}
}  // namespace detail

/// Hands keel your logger; null goes back to spdlog's default logger.
inline void set_logger(std::shared_ptr<spdlog::logger> logger) {
  auto& s = detail::state();
  const std::lock_guard lock(s.mu);
  s.logger = std::move(logger);
}

/// The logger keel's modules use when their config names none. Never null.
[[nodiscard]] inline std::shared_ptr<spdlog::logger> logger() {
  auto& s = detail::state();
  {
    const std::lock_guard lock(s.mu);
    if (s.logger) return s.logger;
  }
  return spdlog::default_logger();
}

/// Sets the level of keel's logger from a verbosity count (KEEL_LOG wins when set
/// and valid).
inline void set_verbosity(int verbosity) {
  auto level = level_for_verbosity(verbosity);
  if (const char* env = std::getenv("KEEL_LOG"); env != nullptr) {
    if (auto parsed = parse_level(env)) level = *parsed;
  }
  logger()->set_level(level);
}

/// Creates a colour stderr logger named `name`, at the level the verbosity
/// count gives or KEEL_LOG overrides, makes it keel's logger and spdlog's
/// default, and returns it. An invalid KEEL_LOG is Errc::config (nothing is
/// changed then), so a typo is reported instead of silently ignored.
[[nodiscard]] inline Result<std::shared_ptr<spdlog::logger>> setup(int verbosity, std::string name = "keel") {
  auto level = level_for_verbosity(verbosity);
  if (const char* env = std::getenv("KEEL_LOG"); env != nullptr && *env != '\0') {
    auto parsed = parse_level(env);
    if (!parsed) return std::move(parsed).error().context("reading KEEL_LOG");
    level = *parsed;
  }
  std::shared_ptr<spdlog::logger> lg;
  try {
    lg = spdlog::get(name);
    if (!lg) lg = spdlog::stderr_color_mt(name);
  } catch (const spdlog::spdlog_ex& ex) {
    return fail(Errc::config, "creating logger \"{}\": {}", name, ex.what());
  }
  lg->set_level(level);
  spdlog::set_default_logger(lg);
  set_logger(lg);
  return lg;
}

}  // namespace keel::log
