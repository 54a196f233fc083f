// keel-pipeline: producers -> a bounded keel::channel -> consumers.
//
// Producers make jobs as fast as they can; the bounded channel pushes back
// on them when consumers fall behind (watch "sends that waited"). Ctrl-C (or
// --items reached) stops the producers; dropping their Senders closes the
// channel, the consumers drain what is buffered, and a throughput line is
// printed. Nothing accepted by the channel is lost on shutdown.
//
//   keel-pipeline [--producers N] [--consumers N] [--capacity N]
//                 [--items N (0: until Ctrl-C)] [--work-ns N]
#include <keel/channel.hpp>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "used from a signal handler");

extern "C" void on_signal(int /*sig*/) {
  g_stop.store(true, std::memory_order_relaxed);
}

struct Options {
  int producers = 4;
  int consumers = 2;
  std::size_t capacity = 256;
  std::uint64_t items = 1'000'000;  // in total; 0 = until Ctrl-C
  std::uint64_t work_ns = 0;        // simulated work per job in the consumer
};

keel::Result<std::uint64_t> parse_number(std::string_view flag, const char* text) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0')
    return keel::fail(keel::Errc::invalid_argument, "{}: not a number: {}", flag, text);
  return static_cast<std::uint64_t>(v);
}

keel::Result<Options> parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      return keel::fail(keel::Errc::invalid_argument,
                        "usage: keel-pipeline [--producers N] [--consumers N] [--capacity N] [--items N] "
                        "[--work-ns N]");
    }
    if (i + 1 >= argc) return keel::fail(keel::Errc::invalid_argument, "{} needs a value", flag);
    KEEL_TRY_ASSIGN(const std::uint64_t v, parse_number(flag, argv[++i]));
    if (flag == "--producers") {
      o.producers = static_cast<int>(v);
    } else if (flag == "--consumers") {
      o.consumers = static_cast<int>(v);
    } else if (flag == "--capacity") {
      o.capacity = static_cast<std::size_t>(v);
    } else if (flag == "--items") {
      o.items = v;
    } else if (flag == "--work-ns") {
      o.work_ns = v;
    } else {
      return keel::fail(keel::Errc::invalid_argument, "unknown flag {}", flag);
    }
  }
  if (o.producers < 1 || o.consumers < 1 || o.producers > 256 || o.consumers > 256) {
    return keel::fail(keel::Errc::invalid_argument, "--producers and --consumers must be in 1..256");
  }
  return o;
}

struct Job {
  std::uint64_t id;
  std::uint64_t payload;
};

// A little deterministic CPU work per job (plus optional busy time).
std::uint64_t process(const Job& j, std::uint64_t work_ns) {
  std::uint64_t h = j.payload ^ 0x9e3779b97f4a7c15ULL;
  for (int k = 0; k < 8; ++k) h = (h ^ (h >> 31U)) * 0xbf58476d1ce4e5b9ULL;
  if (work_ns != 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(work_ns);
    while (std::chrono::steady_clock::now() < until) {
    }
  }
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  auto opts = parse(argc, argv);
  if (!opts) {
    fmt::print(stderr, "keel-pipeline: {}\n", opts.error());
    return 2;
  }
  const Options o = *opts;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  auto made = keel::make_channel<Job>(o.capacity);
  if (!made) {
    fmt::print(stderr, "keel-pipeline: {}\n", made.error());
    return 2;
  }
  auto [tx, rx] = std::move(*made);

  std::atomic<std::uint64_t> next_id{0};
  std::atomic<std::uint64_t> consumed{0};
  std::atomic<std::uint64_t> checksum{0};
  const auto t0 = std::chrono::steady_clock::now();

  std::vector<std::thread> consumers;
  for (int c = 0; c < o.consumers; ++c) {
    consumers.emplace_back([&, rx = rx]() mutable {
      std::uint64_t n = 0;
      std::uint64_t sum = 0;
      std::vector<Job> batch;
      batch.reserve(64);
      for (;;) {
        batch.clear();
        auto got = rx.recv_many(batch, 64);
        if (!got) break;  // Errc::closed: producers are done and the buffer is drained
        for (const Job& j : batch) sum += process(j, o.work_ns);
        n += batch.size();
      }
      consumed += n;
      checksum += sum;
    });
  }
  // main keeps its Receiver only to read the stats at the end (an idle
  // receiver does not hold anything up).

  std::vector<std::thread> producers;
  for (int p = 0; p < o.producers; ++p) {
    producers.emplace_back([&, tx = tx]() mutable {
      for (;;) {
        if (g_stop.load(std::memory_order_relaxed)) break;
        const std::uint64_t id = next_id.fetch_add(1, std::memory_order_relaxed);
        if (o.items != 0 && id >= o.items) break;
        // send waits while the channel is full: backpressure. A timeout lets
        // the producer notice Ctrl-C even when consumers are stuck.
        Job job{id, id * 2654435761ULL};
        for (;;) {
          auto r = tx.send_for(std::move(job), std::chrono::milliseconds(100));
          if (r) break;
          if (r.error() != keel::Errc::timeout) return;  // closed
          job = std::move(r).error().into_inner();       // the value comes back
          if (g_stop.load(std::memory_order_relaxed)) break;
        }
      }
    });
  }
  tx.reset();  // only the producers' copies remain: the channel closes when they finish
  for (auto& t : producers) t.join();
  const auto t_produced = std::chrono::steady_clock::now();
  for (auto& t : consumers) t.join();
  const auto t1 = std::chrono::steady_clock::now();

  const auto st = rx.stats();
  const double secs = std::chrono::duration<double>(t1 - t0).count();
  const std::uint64_t n = consumed.load();
  fmt::print("pipeline: {} items in {:.3f} s ({:.0f} items/s) with {} producers, {} consumers, capacity {}\n",
             n, secs, secs > 0 ? static_cast<double>(n) / secs : 0.0, o.producers, o.consumers, o.capacity);
  fmt::print("channel: sent {}, high water {}/{}, sends that waited {}, receives that waited {}\n", st.sends,
             st.high_water, st.capacity, st.send_waits, st.recv_waits);
  fmt::print("shutdown: {}, drained in {:.1f} ms after the producers stopped, checksum {:016x}\n",
             g_stop.load() ? "interrupted" : "all items produced",
             std::chrono::duration<double, std::milli>(t1 - t_produced).count(), checksum.load());
  if (st.sends != n) {
    fmt::print(stderr, "keel-pipeline: {} sent but {} consumed\n", st.sends, n);
    return 1;
  }
  return 0;
}
