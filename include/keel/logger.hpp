// keel/logger.hpp: the one hook through which keel's optional modules log
// (target keel::core; needs fmt only).
//
//     struct MySink final : keel::LogSink {
//       bool enabled(keel::LogLevel l) const noexcept override { return l >= keel::LogLevel::info; }
//       void write(keel::LogLevel, std::string_view line) noexcept override { my_log(line); }
//     };
//     keel::set_default_logger(keel::Logger(std::make_shared<MySink>()));  // every module
//     cfg.logger = keel::Logger(std::make_shared<MySink>());               // or one pool/client
//
// The SQLite pool, the vault, the crypto warnings and the WebSocket client
// take a keel::Logger in their config; an empty one means the process
// default. With no default set, warnings and errors go to stderr and
// everything below is dropped. keel::log (<keel/log.hpp>, spdlog) adapts an
// spdlog logger into a keel::Logger and makes it the default; nothing here
// needs spdlog. The core modules (result, channel, lockfree, simd) never log.
//
// Thread-safety: a Logger is an immutable handle and may be copied and used
// from any thread; a LogSink must accept write() from several threads at
// once. set_default_logger() may race with logging: a module resolves its
// logger when it is created (a pool when opened, a client when started), so
// the default only reaches modules created after it is set.
//
// Guarantees: a format error or an allocation failure while formatting drops
// that line; logging never throws into keel's callers.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace keel {

/// Severity of a log line, lowest first.
enum class LogLevel : std::uint8_t { trace, debug, info, warn, error, critical, off };

/// The name of a level ("trace" ... "critical", "off").
[[nodiscard]] constexpr std::string_view to_string(LogLevel l) noexcept {
  switch (l) {
    case LogLevel::trace:
      return "trace";
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
    case LogLevel::critical:
      return "critical";
    case LogLevel::off:
      return "off";
  }
  return "off";
}

/// Where log lines go. Implement it to route keel's lines to your logger.
class LogSink {
 public:
  LogSink() = default;
  LogSink(const LogSink&) = delete;
  LogSink& operator=(const LogSink&) = delete;
  virtual ~LogSink() = default;
  /// Whether lines of this level are wanted (checked before formatting).
  [[nodiscard]] virtual bool enabled(LogLevel level) const noexcept = 0;
  /// One formatted line, without a trailing newline. Called from any thread.
  virtual void write(LogLevel level, std::string_view line) noexcept = 0;
};

/// A sink that writes "keel: <level>: <line>" to stderr from `min` upward.
class StderrSink final : public LogSink {
 public:
  explicit StderrSink(LogLevel min = LogLevel::warn) noexcept : min_(min) {}
  [[nodiscard]] bool enabled(LogLevel level) const noexcept override {
    return level >= min_ && level != LogLevel::off;
  }
  void write(LogLevel level, std::string_view line) noexcept override {
    std::fprintf(stderr, "keel: %.*s: %.*s\n", static_cast<int>(to_string(level).size()),
                 to_string(level).data(), static_cast<int>(line.size()), line.data());
  }

 private:
  LogLevel min_;
};

/// A cheap, copyable handle to a LogSink; empty means "the process default".
class Logger {
 public:
  /// Empty: the module that receives it uses default_logger().
  Logger() noexcept = default;
  explicit Logger(std::shared_ptr<LogSink> sink) noexcept : sink_(std::move(sink)) {}

  /// True when it names a sink.
  [[nodiscard]] explicit operator bool() const noexcept { return sink_ != nullptr; }
  [[nodiscard]] const std::shared_ptr<LogSink>& sink() const noexcept { return sink_; }

  [[nodiscard]] bool enabled(LogLevel level) const noexcept { return sink_ && sink_->enabled(level); }

  /// Formats and writes one line when the level is enabled.
  template <class... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const noexcept {
    if (!enabled(level)) return;
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
    try {
      sink_->write(level, fmt::vformat(format, fmt::make_format_args(args...)));
    } catch (...) {  // NOLINT(bugprone-empty-catch): a line that cannot be formatted is dropped
    }
#else
    sink_->write(level, fmt::vformat(format, fmt::make_format_args(args...)));
#endif
  }
  template <class... Args>
  void trace(fmt::format_string<Args...> format, Args&&... args) const noexcept {
    log(LogLevel::trace, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const noexcept {
    log(LogLevel::debug, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const noexcept {
    log(LogLevel::info, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const noexcept {
    log(LogLevel::warn, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) const noexcept {
    log(LogLevel::error, format, std::forward<Args>(args)...);
  }

  /// So a member `Logger log_;` reads `log_->warn(...)`, like a logger pointer.
  const Logger* operator->() const noexcept {
    return this;
  }

 private:
  std::shared_ptr<LogSink> sink_;
};

namespace detail {
struct DefaultLogger {
  std::mutex mu;
  Logger logger;
};
inline DefaultLogger& default_logger_state() {
  // Never destroyed, so a module logging from a static destructor still works.
  static auto* s = new DefaultLogger;  // NOLINT(cppcoreguidelines-owning-memory)
  return *s;
}
}  // namespace detail

/// Makes `logger` the default of every module created afterwards; an empty
/// Logger goes back to warnings on stderr.
inline void set_default_logger(Logger logger) {
  auto& s = detail::default_logger_state();
  const std::lock_guard lock(s.mu);
  s.logger = std::move(logger);
}

/// The process default (never empty): set_default_logger()'s, else a
/// StderrSink at warn.
[[nodiscard]] inline Logger default_logger() {
  auto& s = detail::default_logger_state();
  {
    const std::lock_guard lock(s.mu);
    if (s.logger) return s.logger;
  }
  static const auto* fallback = new Logger(std::make_shared<StderrSink>(LogLevel::warn));  // never destroyed
  return *fallback;
}

/// `logger` when it names a sink, else default_logger().
[[nodiscard]] inline Logger resolve_logger(const Logger& logger) {
  return logger ? logger : default_logger();
}

}  // namespace keel
