#include <keel/logger.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Recorder final : keel::LogSink {
  keel::LogLevel min = keel::LogLevel::debug;
  mutable std::mutex mu;
  std::vector<std::pair<keel::LogLevel, std::string>> lines;
  [[nodiscard]] bool enabled(keel::LogLevel l) const noexcept override { return l >= min; }
  void write(keel::LogLevel l, std::string_view line) noexcept override {
    const std::lock_guard lock(mu);
    lines.emplace_back(l, std::string(line));
  }
  std::size_t count() const {
    const std::lock_guard lock(mu);
    return lines.size();
  }
};

// Counts how often it is formatted; throws when asked to.
struct Probe {
  int* formatted;
  bool throws = false;
};

}  // namespace

template <>
struct fmt::formatter<Probe> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const Probe& p, Ctx& ctx) const {
    ++*p.formatted;
    if (p.throws) throw std::runtime_error("formatter failed");
    return fmt::formatter<std::string_view>::format("probe", ctx);
  }
};

TEST_CASE("logger: a line reaches the sink formatted, at its level", "[logger]") {
  auto rec = std::make_shared<Recorder>();
  keel::Logger lg(rec);
  lg.warn("pool {} has {} connections", "main", 3);
  lg->debug("through operator-> too: {}", 1);
  REQUIRE(rec->lines.size() == 2);
  CHECK(rec->lines[0].first == keel::LogLevel::warn);
  CHECK(rec->lines[0].second == "pool main has 3 connections");
  CHECK(rec->lines[1].first == keel::LogLevel::debug);
  CHECK(rec->lines[1].second == "through operator-> too: 1");
}

TEST_CASE("logger: a disabled level formats nothing", "[logger]") {
  auto rec = std::make_shared<Recorder>();
  rec->min = keel::LogLevel::warn;
  keel::Logger lg(rec);
  int formatted = 0;
  lg.debug("{}", Probe{&formatted});
  lg.info("{}", Probe{&formatted});
  CHECK(formatted == 0);
  CHECK(rec->lines.empty());
  lg.error("{}", Probe{&formatted});
  CHECK(formatted == 1);
  CHECK(rec->lines.size() == 1);
}

TEST_CASE("logger: a formatter that throws drops the line, never the caller", "[logger]") {
  auto rec = std::make_shared<Recorder>();
  keel::Logger lg(rec);
  int formatted = 0;
  CHECK_NOTHROW(lg.warn("{}", Probe{&formatted, true}));
  CHECK(formatted == 1);
  CHECK(rec->lines.empty());
  keel::Logger empty;
  CHECK_NOTHROW(empty.warn("nothing to write to {}", 1));
  CHECK_FALSE(empty.enabled(keel::LogLevel::critical));
}

TEST_CASE("logger: the default is stderr at warn until one is set", "[logger]") {
  keel::set_default_logger({});
  keel::Logger d = keel::default_logger();
  REQUIRE(d);
  CHECK(d.enabled(keel::LogLevel::warn));
  CHECK_FALSE(d.enabled(keel::LogLevel::info));

  auto rec = std::make_shared<Recorder>();
  keel::set_default_logger(keel::Logger(rec));
  keel::resolve_logger({}).warn("to the default");
  auto own = std::make_shared<Recorder>();
  keel::resolve_logger(keel::Logger(own)).warn("to its own");
  CHECK(rec->count() == 1);
  CHECK(own->count() == 1);
  keel::set_default_logger({});
  CHECK(keel::default_logger().sink() != rec);
}

TEST_CASE("logger: threads log and swap the default at once, every line lands once", "[logger][stress]") {
  auto rec = std::make_shared<Recorder>();
  keel::Logger lg(rec);
  constexpr int kThreads = 4;
  constexpr int kLines = 2000;
  std::atomic<bool> stop{false};
  std::thread swapper([&] {
    auto other = std::make_shared<Recorder>();
    while (!stop.load(std::memory_order_relaxed)) {
      keel::set_default_logger(keel::Logger(other));
      (void)keel::default_logger();
      keel::set_default_logger({});
    }
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kLines; ++i) lg.info("{} {}", t, i);
    });
  }
  for (auto& t : ts) t.join();
  stop = true;
  swapper.join();
  REQUIRE(rec->count() == static_cast<std::size_t>(kThreads * kLines));
  std::vector<int> seen(kThreads * kLines, 0);
  for (const auto& [lvl, line] : rec->lines) {
    int t = 0;
    int i = 0;
    REQUIRE(std::sscanf(line.c_str(), "%d %d", &t, &i) == 2);
    ++seen[static_cast<std::size_t>(t * kLines + i)];
  }
  for (int n : seen) REQUIRE(n == 1);
}
