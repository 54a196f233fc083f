// keel-wscat URL [flags]: a WebSocket client for the shell, built on
// keel::ws::Client. Each stdin line is sent as a text message; every event is
// printed as one JSON line on stdout:
//
//   {"event":"connected"}
//   {"event":"message","data":"..."}            (binary messages add "binary":true)
//   {"event":"disconnected","reason":"...","code":1000}   ("code" when a close frame came)
//   {"event":"reconnecting","attempt":2,"delay_ms":400,"reason":"..."}
//   {"event":"gave_up","reason":"..."}          then exit status 1
//
// At end of stdin it sends what is queued, waits for the replies in flight
// (as many messages as lines sent, or --linger-ms of quiet), closes cleanly
// and exits 0. Logs go to stderr only (-v, -vv, or KEEL_LOG=debug).
#include <keel/json.hpp>
#include <keel/log.hpp>
#include <keel/websocket.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

void usage(std::FILE* to) {
  fmt::print(to,
             "usage: keel-wscat URL [--ping-interval-ms N] [--max-missed-pongs N] [--backoff-initial-ms N]\n"
             "                      [--backoff-max-ms N] [--max-retries N] [--linger-ms N] [-v]\n"
             "Sends each stdin line as a text message; prints each event as a JSON line.\n"
             "Exit status: 0 after stdin ends and replies arrive, 1 after gave_up, 2 on bad usage.\n");
}

bool parse_number(std::string_view text, std::int64_t& out) {
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && ptr == end && out >= 0;
}

void print_event(const keel::ws::Event& e) {
  nlohmann::ordered_json j;  // keys in the documented order: "event" first
  j["event"] = std::string(keel::ws::to_string(e.kind));
  switch (e.kind) {
    case keel::ws::EventKind::connected:
      break;
    case keel::ws::EventKind::message:
      j["data"] = e.data;
      if (e.binary) j["binary"] = true;
      break;
    case keel::ws::EventKind::disconnected:
      j["reason"] = e.reason;
      if (e.close_code != 0) j["code"] = e.close_code;
      break;
    case keel::ws::EventKind::reconnecting:
      j["attempt"] = e.attempt;
      j["delay_ms"] = e.delay.count();
      j["reason"] = e.reason;
      break;
    case keel::ws::EventKind::gave_up:
      j["reason"] = e.reason;
      break;
  }
  // Invalid UTF-8 (binary data) is replaced rather than thrown on.
  const auto line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  keel::ws::ClientConfig cfg;
  auto linger = std::chrono::milliseconds(1000);
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    }
    if (a == "--verbose" || (a.size() >= 2 && a[0] == '-' && a[1] == 'v')) continue;  // counted below
    if (a.rfind("--", 0) == 0) {
      if (i + 1 >= argc) {
        fmt::print(stderr, "keel-wscat: {} needs a value\n", a);
        return 2;
      }
      std::int64_t n = 0;
      if (!parse_number(argv[i + 1], n) || n > 86'400'000) {
        fmt::print(stderr, "keel-wscat: {} wants a non-negative number, got \"{}\"\n", a, argv[i + 1]);
        return 2;
      }
      ++i;
      if (a == "--ping-interval-ms") {
        cfg.ping_interval = std::chrono::milliseconds(n);
      } else if (a == "--max-missed-pongs") {
        cfg.max_missed_pongs = static_cast<std::uint32_t>(n);
      } else if (a == "--backoff-initial-ms") {
        cfg.backoff.initial = std::chrono::milliseconds(n);
      } else if (a == "--backoff-max-ms") {
        cfg.backoff.max = std::chrono::milliseconds(n);
      } else if (a == "--max-retries") {
        cfg.max_retries = static_cast<std::uint32_t>(n);
      } else if (a == "--linger-ms") {
        linger = std::chrono::milliseconds(n);
      } else {
        fmt::print(stderr, "keel-wscat: unknown flag {}\n", a);
        usage(stderr);
        return 2;
      }
      continue;
    }
    if (!cfg.url.empty()) {
      fmt::print(stderr, "keel-wscat: more than one URL given\n");
      return 2;
    }
    cfg.url = std::string(a);
  }
  if (cfg.url.empty()) {
    usage(stderr);
    return 2;
  }
  if (auto lg = keel::log::setup(keel::log::count_verbosity(argc, argv), "keel-wscat"); !lg) {
    fmt::print(stderr, "keel-wscat: {}\n", lg.error());
    return 2;
  }
  // A backoff max below the initial delay given on the command line follows it.
  if (cfg.backoff.max < cfg.backoff.initial) cfg.backoff.max = cfg.backoff.initial;

  auto client = keel::ws::Client::start(cfg);
  if (!client) {
    fmt::print(stderr, "keel-wscat: {}\n", client.error());
    return 2;
  }

  // stdin -> send (blocking send: backpressure all the way to the pipe).
  std::atomic<std::uint64_t> lines{0};
  std::atomic<bool> input_done{false};
  std::thread reader([&] {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!client->send(line)) break;  // closed: the client gave up
      lines.fetch_add(1, std::memory_order_relaxed);
    }
    (void)client->flush(std::chrono::hours(24));  // returns at once if the client ends
    input_done.store(true, std::memory_order_release);
  });
  reader.detach();  // may sit in getline after gave_up; the process exits under it

  std::uint64_t messages = 0;
  auto last_event = Clock::now();
  int status = 0;
  for (;;) {
    auto ev = client->next_event_for(50ms);
    if (ev) {
      last_event = Clock::now();
      print_event(*ev);
      if (ev->kind == keel::ws::EventKind::message) ++messages;
      if (ev->kind == keel::ws::EventKind::gave_up) {
        status = 1;
        break;
      }
      continue;
    }
    if (ev.error().code() == keel::Errc::closed) break;
    if (input_done.load(std::memory_order_acquire)) {
      const bool all_replied = messages >= lines.load(std::memory_order_relaxed);
      if (all_replied || Clock::now() - last_event >= linger) break;
    }
  }
  client->close();
  while (auto ev = client->next_event_for(1s)) print_event(*ev);
  std::fflush(stdout);
  std::_Exit(status);  // the stdin thread may still be blocked in getline
}
