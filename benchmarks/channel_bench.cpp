// keel::channel beside the queues a user would otherwise pick, same binary:
//   mutex_deque  a std::mutex + two condition_variables around a std::deque
//                (what people write by hand; bounded, blocking)
//   moodycamel   moodycamel::BlockingConcurrentQueue (lock-free, blocking
//                dequeue; enqueue is unbounded: it allocates instead of waiting)
//   atomic_queue atomic_queue::AtomicQueueB (lock-free, bounded; push/pop
//                busy-spin, no blocking wait)
//
// Workloads: 1P1C throughput, ping-pong round trip, 2P2C and 4P2C throughput
// (more threads than the 2 cores of the reference machine), and the CPU time
// a consumer burns while it waits on a slow producer. Each multi-consumer run
// ends with one sentinel (-1) per consumer, so every queue is driven the same
// way (moodycamel and atomic_queue cannot be closed).
#include <keel/channel.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#if __has_include(<concurrentqueue/blockingconcurrentqueue.h>)
#include <concurrentqueue/blockingconcurrentqueue.h>
#define KEEL_BENCH_MOODYCAMEL 1
#endif
#if __has_include(<atomic_queue/atomic_queue.h>)
#include <atomic_queue/atomic_queue.h>
#define KEEL_BENCH_ATOMIC_QUEUE 1
#endif

namespace {

constexpr std::size_t kCapacity = 1024;
constexpr int kItems = 200000;

// ---------------------------------------------------------------- adapters

class KeelQ {
 public:
  explicit KeelQ(std::size_t cap) : pair_(keel::channel<int>(cap)) {}
  void push(int v) { (void)pair_.first.send(v); }
  int pop() { return pair_.second.recv().value_or(-1); }

 private:
  std::pair<keel::Sender<int>, keel::Receiver<int>> pair_;
};

class MutexDeque {
 public:
  explicit MutexDeque(std::size_t cap) : cap_(cap) {}
  void push(int v) {
    std::unique_lock lk(m_);
    not_full_.wait(lk, [&] { return q_.size() < cap_; });
    q_.push_back(v);
    lk.unlock();
    not_empty_.notify_one();
  }
  int pop() {
    std::unique_lock lk(m_);
    not_empty_.wait(lk, [&] { return !q_.empty(); });
    const int v = q_.front();
    q_.pop_front();
    lk.unlock();
    not_full_.notify_one();
    return v;
  }

 private:
  std::mutex m_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<int> q_;
  std::size_t cap_;
};

#ifdef KEEL_BENCH_MOODYCAMEL
class Moody {
 public:
  explicit Moody(std::size_t cap) : q_(cap) {}
  void push(int v) { q_.enqueue(v); }
  int pop() {
    int v = 0;
    q_.wait_dequeue(v);
    return v;
  }

 private:
  moodycamel::BlockingConcurrentQueue<int> q_;
};
#endif

#ifdef KEEL_BENCH_ATOMIC_QUEUE
class AtomicQ {
 public:
  // NIL (the empty marker) is 0: values sent are never 0.
  explicit AtomicQ(std::size_t cap) : q_(static_cast<unsigned>(cap)) {}
  void push(int v) { q_.push(v); }
  int pop() { return q_.pop(); }

 private:
  atomic_queue::AtomicQueueB<int> q_;
};
#endif

// --------------------------------------------------------------- workloads

template <class Q>
void throughput(benchmark::State& state, int producers, int consumers) {
  const int per = kItems / producers;
  for (auto _ : state) {
    Q q(kCapacity);
    std::vector<std::thread> ts;
    std::atomic<long long> sum{0};
    for (int c = 0; c < consumers; ++c) {
      ts.emplace_back([&] {
        long long s = 0;
        for (;;) {
          const int v = q.pop();
          if (v < 0) break;
          s += v;
        }
        sum += s;
      });
    }
    std::vector<std::thread> ps;
    for (int p = 0; p < producers; ++p) {
      ps.emplace_back([&] {
        for (int i = 1; i <= per; ++i) q.push(i);
      });
    }
    for (auto& t : ps) t.join();
    for (int c = 0; c < consumers; ++c) q.push(-1);
    for (auto& t : ts) t.join();
    benchmark::DoNotOptimize(sum.load());
  }
  state.SetItemsProcessed(state.iterations() * per * producers);
}

template <class Q>
void BM_1P1C(benchmark::State& s) {
  throughput<Q>(s, 1, 1);
}
template <class Q>
void BM_2P2C(benchmark::State& s) {
  throughput<Q>(s, 2, 2);
}
template <class Q>
void BM_4P2C(benchmark::State& s) {
  throughput<Q>(s, 4, 2);
}

// One message there and back per item: latency of a wakeup.
template <class Q>
void BM_PingPong(benchmark::State& state) {
  constexpr int kRounds = 20000;
  for (auto _ : state) {
    Q ping(16);
    Q pong(16);
    std::thread echo([&] {
      for (;;) {
        const int v = ping.pop();
        pong.push(v);
        if (v < 0) break;
      }
    });
    for (int i = 1; i <= kRounds; ++i) {
      ping.push(i);
      benchmark::DoNotOptimize(pong.pop());
    }
    ping.push(-1);
    (void)pong.pop();
    echo.join();
  }
  state.SetItemsProcessed(state.iterations() * kRounds);
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// A producer sends one item every 2 ms; how much CPU does the waiting
// consumer use? (Reported as consumer_cpu_ms per 100 ms of waiting.)
template <class Q>
void BM_IdleConsumerCpu(benchmark::State& state) {
  constexpr int kSlowItems = 50;
  double cpu = 0;
  for (auto _ : state) {
    Q q(16);
    std::atomic<double> consumer_cpu{0};
    std::thread consumer([&] {
      const double t0 = thread_cpu_seconds();
      for (;;) {
        if (q.pop() < 0) break;
      }
      consumer_cpu = thread_cpu_seconds() - t0;
    });
    for (int i = 1; i <= kSlowItems; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      q.push(i);
    }
    q.push(-1);
    consumer.join();
    cpu += consumer_cpu.load();
  }
  state.counters["consumer_cpu_ms"] =
      benchmark::Counter(cpu * 1000.0 / static_cast<double>(state.iterations()));
}

// keel's batch receive, 1P1C.
void BM_1P1C_recv_many_keel(benchmark::State& state) {
  for (auto _ : state) {
    auto [tx, rx] = keel::channel<int>(kCapacity);
    long long sum = 0;
    std::thread consumer([&, rx = std::move(rx)]() mutable {
      std::vector<int> batch;
      batch.reserve(256);
      for (;;) {
        batch.clear();
        if (!rx.recv_many(batch, 256)) break;
        for (int v : batch) sum += v;
      }
    });
    for (int i = 1; i <= kItems; ++i) (void)tx.send(i);
    tx.reset();
    consumer.join();
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * kItems);
}

#define KEEL_CHANNEL_BENCH(fn, ...) \
  BENCHMARK_TEMPLATE(fn, __VA_ARGS__)->UseRealTime()->Unit(benchmark::kMillisecond)

KEEL_CHANNEL_BENCH(BM_1P1C, KeelQ);
KEEL_CHANNEL_BENCH(BM_1P1C, MutexDeque);
KEEL_CHANNEL_BENCH(BM_2P2C, KeelQ);
KEEL_CHANNEL_BENCH(BM_2P2C, MutexDeque);
KEEL_CHANNEL_BENCH(BM_4P2C, KeelQ);
KEEL_CHANNEL_BENCH(BM_4P2C, MutexDeque);
KEEL_CHANNEL_BENCH(BM_PingPong, KeelQ);
KEEL_CHANNEL_BENCH(BM_PingPong, MutexDeque);
KEEL_CHANNEL_BENCH(BM_IdleConsumerCpu, KeelQ)->Iterations(3);
KEEL_CHANNEL_BENCH(BM_IdleConsumerCpu, MutexDeque)->Iterations(3);
BENCHMARK(BM_1P1C_recv_many_keel)->UseRealTime()->Unit(benchmark::kMillisecond);
#ifdef KEEL_BENCH_MOODYCAMEL
KEEL_CHANNEL_BENCH(BM_1P1C, Moody);
KEEL_CHANNEL_BENCH(BM_2P2C, Moody);
KEEL_CHANNEL_BENCH(BM_4P2C, Moody);
KEEL_CHANNEL_BENCH(BM_PingPong, Moody);
KEEL_CHANNEL_BENCH(BM_IdleConsumerCpu, Moody)->Iterations(3);
#endif
#ifdef KEEL_BENCH_ATOMIC_QUEUE
KEEL_CHANNEL_BENCH(BM_1P1C, AtomicQ);
KEEL_CHANNEL_BENCH(BM_2P2C, AtomicQ);
KEEL_CHANNEL_BENCH(BM_4P2C, AtomicQ);
KEEL_CHANNEL_BENCH(BM_PingPong, AtomicQ);
KEEL_CHANNEL_BENCH(BM_IdleConsumerCpu, AtomicQ)->Iterations(3);
#endif

}  // namespace

BENCHMARK_MAIN();
