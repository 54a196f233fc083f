// keel-wscat URL [flags]: a WebSocket client for the shell, built on
// keel::ws::Client. Each stdin line is sent as a text message; every event is
// printed as one JSON line on stdout:
//
//   {"event":"connected"}
//   {"event":"message","data":"..."}            (binary: base64 data and "binary":true)
//   {"event":"disconnected","reason":"...","code":1000}   ("code" when a close frame came)
//   {"event":"reconnecting","attempt":2,"delay_ms":400,"reason":"..."}
//   {"event":"gave_up","reason":"..."}          then exit status 1
//
// At end of stdin it sends what is queued, waits for the replies in flight
// (as many messages as lines sent, or --linger-ms of quiet), closes cleanly
// and exits 0 if it connected and delivered every line, else 1 (2: bad
// usage). Logs go to stderr only (-v, -vv, or KEEL_LOG=debug).
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
             "                      [--backoff-max-ms N] [--max-retries N] [--linger-ms N]\n"
             "                      [-H 'Name: value']... [--subprotocol NAME]... [--proxy URL] [--ca FILE]\n"
             "                      [--insecure]"
             " [--binary] [-v | -vv]\n"
             "Sends each stdin line as a text message (--binary: stdin bytes as binary messages of up to\n"
             "64 KiB each); prints each event as a JSON line (binary payloads in base64).\n"
             "--max-retries 0: never reconnect. Exit status: 0 when it connected and delivered every\n"
             "line; 1 when it never connected, gave up, or could not deliver every line; 2 on bad usage.\n");
}

bool parse_number(std::string_view text, std::int64_t& out) {
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && ptr == end && out >= 0;
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const auto n = (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
                   (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
                   static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 2]));
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (const auto rest = in.size() - i; rest != 0) {
    std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3Fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += len;
  }
  return true;
}

void print_event(const keel::ws::Event& e) {
  nlohmann::ordered_json j;  // keys in the documented order: "event" first
  j["event"] = std::string(keel::ws::to_string(e.kind));
  switch (e.kind) {
    case keel::ws::EventKind::connected:
      if (!e.subprotocol.empty()) j["subprotocol"] = e.subprotocol;
      break;
    case keel::ws::EventKind::message:
      if (e.binary) {
        j["data"] = base64(e.data);  // recoverable: base64 -d gives the bytes back
        j["binary"] = true;
      } else {
        j["data"] = e.data;
      }
      break;
    case keel::ws::EventKind::disconnected:
      j["reason"] = e.reason;
      if (e.close_code != 0) j["code"] = e.close_code;
      break;
    case keel::ws::EventKind::reconnecting:
      j["attempt"] = e.attempt;
      j["delay_ms"] = e.delay.count();
      j["reason"] = e.reason;
      if (e.http_status != 0) j["http_status"] = e.http_status;
      break;
    case keel::ws::EventKind::gave_up:
      j["reason"] = e.reason;
      if (e.http_status != 0) j["http_status"] = e.http_status;
      break;
  }
  if (e.kind != keel::ws::EventKind::connected && e.kind != keel::ws::EventKind::message)
    j["error"] = std::string(keel::to_string(e.error));
  // Text messages are valid UTF-8 (the client checks); replace, never throw.
  const auto line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  keel::ws::ClientConfig cfg;
  auto linger = std::chrono::milliseconds(1000);
  bool binary = false;
  int verbosity = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    }
    if (a == "-v" || a == "-vv" || a == "--verbose") {
      verbosity += a == "-vv" ? 2 : 1;
      continue;
    }
    if (a == "--insecure") {
      cfg.tls.verify_peer = false;
      continue;
    }
    if (a == "--binary") {
      binary = true;
      continue;
    }
    const bool takes_text = a == "-H" || a == "--subprotocol" || a == "--ca" || a == "--proxy";
    const bool takes_number = a == "--ping-interval-ms" || a == "--max-missed-pongs" ||
                              a == "--backoff-initial-ms" || a == "--backoff-max-ms" ||
                              a == "--max-retries" || a == "--linger-ms";
    if (takes_text || takes_number) {
      if (i + 1 >= argc) {
        fmt::print(stderr, "keel-wscat: {} needs a value\n", a);
        return 2;
      }
      const std::string_view v = argv[++i];
      if (a == "-H") {
        const auto colon = v.find(':');
        if (colon == std::string_view::npos || colon == 0) {
          fmt::print(stderr, "keel-wscat: -H wants 'Name: value', got \"{}\"\n", v);
          return 2;
        }
        auto value = v.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        cfg.headers.emplace_back(std::string(v.substr(0, colon)), std::string(value));
      } else if (a == "--subprotocol") {
        cfg.subprotocols.emplace_back(v);
      } else if (a == "--ca") {
        cfg.tls.ca_file = std::string(v);
      } else if (a == "--proxy") {
        cfg.proxy.url = std::string(v);  // http://[user[:password]@]host[:port]; overrides the environment
      } else {
        std::int64_t n = 0;
        if (!parse_number(v, n) || n > 86'400'000) {
          fmt::print(stderr, "keel-wscat: {} wants a non-negative number, got \"{}\"\n", a, v);
          return 2;
        }
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
        } else {
          linger = std::chrono::milliseconds(n);
        }
      }
      continue;
    }
    if (!a.empty() && a.front() == '-') {
      fmt::print(stderr, "keel-wscat: unknown flag {}\n", a);
      usage(stderr);
      return 2;
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
  if (auto lg = keel::log::setup(verbosity, "keel-wscat"); !lg) {
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
  std::atomic<bool> undelivered{false};
  std::thread reader([&] {
    bool ok = true;
    if (binary) {
      std::string chunk(64 * 1024, '\0');
      for (;;) {
        const auto n = std::fread(chunk.data(), 1, chunk.size(), stdin);
        if (n == 0) break;
        if (!client->send(keel::ws::Message{chunk.substr(0, n), true})) {
          ok = false;
          break;
        }
        lines.fetch_add(1, std::memory_order_relaxed);
      }
    } else {
      std::string line;
      std::uint64_t number = 0;
      while (std::getline(std::cin, line)) {
        ++number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!valid_utf8(line)) {
          fmt::print(stderr, "keel-wscat: stdin line {} is not valid UTF-8: not sent (use --binary)\n",
                     number);
          ok = false;
          continue;
        }
        if (!client->send(line)) {  // closed: the client gave up
          ok = false;
          break;
        }
        lines.fetch_add(1, std::memory_order_relaxed);
      }
    }
    // Every line written to the socket, or not: a client that cannot connect
    // gets connect_timeout after the end of stdin, then counts as failed.
    if (!client->flush(cfg.connect_timeout + std::chrono::seconds(1))) ok = false;
    if (!ok) undelivered.store(true, std::memory_order_relaxed);
    input_done.store(true, std::memory_order_release);
  });
  reader.detach();  // may sit in getline after gave_up; the process exits under it

  std::uint64_t messages = 0;
  bool connected = false;
  auto last_event = Clock::now();
  int status = 0;
  for (;;) {
    auto ev = client->next_event_for(50ms);
    if (ev) {
      last_event = Clock::now();
      print_event(*ev);
      if (ev->kind == keel::ws::EventKind::connected) connected = true;
      if (ev->kind == keel::ws::EventKind::message) ++messages;
      if (ev->kind == keel::ws::EventKind::gave_up) {
        status = 1;
        break;
      }
      continue;
    }
    if (ev.error().code() == keel::Errc::closed) break;
    if (input_done.load(std::memory_order_acquire)) {
      if (undelivered.load(std::memory_order_relaxed)) break;
      const bool all_replied = messages >= lines.load(std::memory_order_relaxed);
      if (all_replied || Clock::now() - last_event >= linger) break;
    }
  }
  client->close();
  while (auto ev = client->next_event_for(1s)) print_event(*ev);
  std::fflush(stdout);
  if (!connected ||
      (input_done.load(std::memory_order_acquire) && undelivered.load(std::memory_order_relaxed)))
    status = 1;
  if (!input_done.load(std::memory_order_acquire) && client->stats().queued != 0) status = 1;
  std::_Exit(status);  // the stdin thread may still be blocked in getline
}
