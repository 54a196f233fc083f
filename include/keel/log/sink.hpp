// keel/log/sink.hpp: an spdlog logger as a keel::Logger (target keel::log).
//
//     auto lg = spdlog::stderr_color_mt("app");
//     cfg.logger = keel::log::adapt(lg);          // one pool or client
//     keel::set_default_logger(keel::log::adapt(lg));  // every module created afterwards
//
// keel::log::set_logger() and keel::log::setup() do the second line for you.
// Thread-safety: as spdlog's logger (the _mt ones are safe from any thread).
#pragma once

#include <keel/logger.hpp>

#include <spdlog/logger.h>

#include <memory>
#include <string_view>
#include <utility>

namespace keel::log {

/// spdlog's level for a keel::LogLevel.
[[nodiscard]] constexpr spdlog::level::level_enum to_spdlog(LogLevel l) noexcept {
  switch (l) {
    case LogLevel::trace:
      return spdlog::level::trace;
    case LogLevel::debug:
      return spdlog::level::debug;
    case LogLevel::info:
      return spdlog::level::info;
    case LogLevel::warn:
      return spdlog::level::warn;
    case LogLevel::error:
      return spdlog::level::err;
    case LogLevel::critical:
      return spdlog::level::critical;
    case LogLevel::off:
      return spdlog::level::off;
  }
  return spdlog::level::off;
}

/// A LogSink writing to one spdlog logger; its level is the logger's.
class SpdlogSink final : public LogSink {
 public:
  explicit SpdlogSink(std::shared_ptr<spdlog::logger> logger) noexcept : logger_(std::move(logger)) {}
  [[nodiscard]] bool enabled(LogLevel level) const noexcept override {
    return logger_ && logger_->should_log(to_spdlog(level));
  }
  void write(LogLevel level, std::string_view line) noexcept override {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
    try {
      logger_->log(to_spdlog(level), "{}", line);
    } catch (...) {  // NOLINT(bugprone-empty-catch): spdlog's own failure drops the line
    }
#else
    logger_->log(to_spdlog(level), "{}", line);
#endif
  }
  [[nodiscard]] const std::shared_ptr<spdlog::logger>& logger() const noexcept {
    return logger_;
  }

 private:
  std::shared_ptr<spdlog::logger> logger_;
};

/// A keel::Logger that writes to `logger`; an empty Logger for a null one.
[[nodiscard]] inline Logger adapt(std::shared_ptr<spdlog::logger> logger) {
  if (!logger) return Logger{};
  return Logger(std::make_shared<SpdlogSink>(std::move(logger)));
}

}  // namespace keel::log
