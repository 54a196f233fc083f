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
// Which logger: set_logger()'s if one was given, else spdlog's default logger,
// else (after spdlog::shutdown() or drop_all() left none) keel's own stderr
// logger, so logger() is never null.
// Modules log routine events at debug and faults at warn through the
// keel::Logger hook (<keel/logger.hpp>); set_logger() and setup() make the
// spdlog logger that hook's default, and keel::log::adapt() makes one for a
// single pool or client. The core logs nothing.
//
// Thread-safety: every function here may be called from any thread;
// set_logger() takes effect for log calls made after it returns; concurrent
// setup() calls with the same name all succeed and return the same logger.
// Built with -fno-exceptions, define SPDLOG_NO_EXCEPTIONS as spdlog requires.
#pragma once

#include <keel/log/sink.hpp>
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
              ::keel::detail::excerpt(text));
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
  std::shared_ptr<spdlog::logger> logger;    // null: follow spdlog's default logger
  std::shared_ptr<spdlog::logger> fallback;  // keel's own, made on first need
  std::mutex setup_mu;                       // one setup() at a time
};
inline State& state() {
  static State s;
  return s;
}
}  // namespace detail

/// Hands keel your logger; null goes back to spdlog's default logger. It also
/// becomes keel::default_logger() (through keel::log::adapt), which the
/// modules created afterwards log through when their config names none.
inline void set_logger(std::shared_ptr<spdlog::logger> logger) {
  keel::set_default_logger(adapt(logger));
  auto& s = detail::state();
  const std::lock_guard lock(s.mu);
  s.logger = std::move(logger);
}

/// The logger keel's modules use when their config names none: set_logger()'s,
/// else spdlog's default, else keel's own stderr logger (not registered with
/// spdlog, so spdlog::shutdown() and drop_all() leave it alone). Never null.
[[nodiscard]] inline std::shared_ptr<spdlog::logger> logger() {
  auto& s = detail::state();
  {
    const std::lock_guard lock(s.mu);
    if (s.logger) return s.logger;
  }
  if (auto d = spdlog::default_logger()) return d;
  const std::lock_guard lock(s.mu);
  if (!s.fallback) {
    s.fallback =
        std::make_shared<spdlog::logger>("keel", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    s.fallback->set_level(spdlog::level::warn);
  }
  return s.fallback;
}

/// Sets the level of keel's logger from a verbosity count. KEEL_LOG wins when
/// set; an invalid KEEL_LOG is reported as a warning on that logger (and the
/// count is used), never silently ignored.
inline void set_verbosity(int verbosity) {
  auto level = level_for_verbosity(verbosity);
  const auto lg = logger();
  if (const char* env = std::getenv("KEEL_LOG"); env != nullptr && *env != '\0') {
    if (auto parsed = parse_level(env)) {
      level = *parsed;
    } else {
      lg->warn("ignoring KEEL_LOG: {}", parsed.error());
    }
  }
  lg->set_level(level);
}

/// Creates a colour stderr logger named `name`, at the level the verbosity
/// count gives or KEEL_LOG overrides, makes it keel's logger and spdlog's
/// default, and returns it. A logger of that name already registered with
/// spdlog is reused, so calling setup() again (from any thread, at the same
/// time too) is harmless. An invalid KEEL_LOG is Errc::config (nothing is
/// changed then), so a typo is reported instead of silently ignored.
[[nodiscard]] inline Result<std::shared_ptr<spdlog::logger>> setup(int verbosity, std::string name = "keel") {
  auto level = level_for_verbosity(verbosity);
  if (const char* env = std::getenv("KEEL_LOG"); env != nullptr && *env != '\0') {
    auto parsed = parse_level(env);
    if (!parsed) return std::move(parsed).error().context("reading KEEL_LOG");
    level = *parsed;
  }
  auto& s = detail::state();
  const std::lock_guard setup_lock(s.setup_mu);
  std::shared_ptr<spdlog::logger> lg = spdlog::get(name);
  if (!lg) {
#if KEEL_HAS_EXCEPTIONS
    try {
      lg = spdlog::stderr_color_mt(name);
    } catch (const spdlog::spdlog_ex& ex) {
      // Registered by someone else between get() and here: use theirs.
      lg = spdlog::get(name);
      if (!lg)
        return fail(Errc::config, "creating logger \"{}\": {}", ::keel::detail::excerpt(name), ex.what());
    }
#else
    lg = spdlog::stderr_color_mt(name);
#endif
  }
  lg->set_level(level);
  spdlog::set_default_logger(lg);
  set_logger(lg);
  return lg;
}

}  // namespace keel::log
