// keel's lock-free primitives beside the peers a user would otherwise pick, in
// the same binary and run:
//   SPSC:   keel::SpscRing vs atomic_queue (AtomicQueueB, SPSC mode), Boost.Lockfree
//           spsc_queue, moodycamel::ReaderWriterQueue, a mutex-protected std::deque.
//   MPMC:   keel::MpmcQueue vs atomic_queue (AtomicQueueB), Boost.Lockfree queue,
//           a mutex-protected std::deque (2 producers x 2 consumers).
//   Stack:  keel::Stack (frees its nodes) vs Boost.Lockfree stack (keeps a
//           free list) and a mutex-protected std::vector.
//   Rate:   keel::RateLimiter vs a mutex-protected token bucket.
//   Map:    keel::ConcurrentMap vs std::unordered_map under one std::shared_mutex.
// Throughput figures are items (or operations) per second of wall time; every
// queue holds 1024 slots. A side that finds the queue full/empty retries with a
// pause and yields every 64 misses, the same policy for every peer.
#include <keel/lockfree.hpp>

#include <atomic_queue/atomic_queue.h>
#include <benchmark/benchmark.h>
#include <readerwriterqueue/readerwriterqueue.h>
#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <boost/lockfree/stack.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::size_t kCapacity = 1024;
constexpr std::uint64_t kItems = 1 << 18;  // per benchmark iteration

// Retry policy shared by every peer: pause, and yield every 64 misses (the
// machine may have fewer cores than threads).
struct Retry {
  unsigned misses = 0;
  void operator()() {
    if (++misses % 64 == 0) {
      std::this_thread::yield();
    } else {
      keel::detail::cpu_relax();
    }
  }
};

// ---- mutex baselines --------------------------------------------------------

template <class T>
class MutexQueue {
 public:
  explicit MutexQueue(std::size_t cap) : cap_(cap) {}
  bool try_push(T v) {
    std::lock_guard lock(mu_);
    if (q_.size() == cap_) return false;
    q_.push_back(v);
    return true;
  }
  bool try_pop(T& out) {
    std::lock_guard lock(mu_);
    if (q_.empty()) return false;
    out = q_.front();
    q_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::deque<T> q_;
  std::size_t cap_;
};

template <class T>
class MutexStack {
 public:
  void push(T v) {
    std::lock_guard lock(mu_);
    v_.push_back(v);
  }
  bool pop(T& out) {
    std::lock_guard lock(mu_);
    if (v_.empty()) return false;
    out = v_.back();
    v_.pop_back();
    return true;
  }

 private:
  std::mutex mu_;
  std::vector<T> v_;
};

// The textbook token bucket: tokens and last refill time under one mutex.
template <class Clock = std::chrono::steady_clock>
class MutexBucket {
 public:
  MutexBucket(double capacity, double rate)
      : capacity_(capacity), rate_(rate), tokens_(capacity), last_(Clock::now()) {}
  bool try_acquire(double n = 1) {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    tokens_ = std::min(capacity_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
    last_ = now;
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }

 private:
  std::mutex mu_;
  double capacity_;
  double rate_;
  double tokens_;
  typename Clock::time_point last_;
};

// CLOCK_MONOTONIC_COARSE (a few ms resolution, no TSC read): isolates the cost
// of the limiters' own synchronisation from the cost of reading a fine clock.
struct CoarseClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<CoarseClock>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
};

// ---- uniform push/pop adapters ------------------------------------------------

using Item = std::uint64_t;  // values pushed are 1..kItems (atomic_queue reserves 0)

bool push(keel::SpscRing<Item>& q, Item v) {
  return q.try_push(v);
}
bool pop(keel::SpscRing<Item>& q, Item& v) {
  return q.try_pop(v);
}
bool push(keel::MpmcQueue<Item>& q, Item v) {
  return q.try_push(v);
}
bool pop(keel::MpmcQueue<Item>& q, Item& v) {
  auto got = q.try_pop();
  if (!got) return false;
  v = *got;
  return true;
}
using AqSpsc = atomic_queue::AtomicQueueB<Item, std::allocator<Item>, Item{0}, true, false, true>;
using AqMpmc = atomic_queue::AtomicQueueB<Item, std::allocator<Item>, Item{0}, true, false, false>;
bool push(AqSpsc& q, Item v) {
  return q.try_push(std::move(v));
}
bool pop(AqSpsc& q, Item& v) {
  return q.try_pop(v);
}
bool push(AqMpmc& q, Item v) {
  return q.try_push(std::move(v));
}
bool pop(AqMpmc& q, Item& v) {
  return q.try_pop(v);
}
using BoostSpsc = boost::lockfree::spsc_queue<Item>;
bool push(BoostSpsc& q, Item v) {
  return q.push(v);
}
bool pop(BoostSpsc& q, Item& v) {
  return q.pop(v);
}
using BoostQueue = boost::lockfree::queue<Item>;
bool push(BoostQueue& q, Item v) {
  return q.bounded_push(v);
}
bool pop(BoostQueue& q, Item& v) {
  return q.pop(v);
}
using Rwq = moodycamel::ReaderWriterQueue<Item>;
bool push(Rwq& q, Item v) {
  return q.try_enqueue(v);
}
bool pop(Rwq& q, Item& v) {
  return q.try_dequeue(v);
}
bool push(MutexQueue<Item>& q, Item v) {
  return q.try_push(v);
}
bool pop(MutexQueue<Item>& q, Item& v) {
  return q.try_pop(v);
}

template <class Q>
std::unique_ptr<Q> make_queue() {
  return std::make_unique<Q>(kCapacity);
}

// ---- queue throughput -------------------------------------------------------

// One producer thread, the benchmark thread consumes; kItems per iteration.
template <class Q>
void BM_Spsc(benchmark::State& state) {
  auto q = make_queue<Q>();
  std::uint64_t checksum = 0;
  for (auto _ : state) {
    std::thread producer([&] {
      Retry retry;
      for (Item i = 1; i <= kItems; ++i)
        while (!push(*q, i)) retry();
    });
    Retry retry;
    Item v = 0;
    for (std::uint64_t n = 0; n < kItems; ++n) {
      while (!pop(*q, v)) retry();
      checksum += v;
    }
    producer.join();
  }
  if (checksum != state.iterations() * (kItems * (kItems + 1) / 2)) state.SkipWithError("lost items");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kItems));
}

// Two producers, two consumers; kItems per iteration in total.
template <class Q>
void BM_Mpmc(benchmark::State& state) {
  constexpr int kSide = 2;
  auto q = make_queue<Q>();
  std::atomic<std::uint64_t> checksum{0};
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (int p = 0; p < kSide; ++p)
      threads.emplace_back([&, p] {
        Retry retry;
        for (Item i = 1 + static_cast<Item>(p); i <= kItems; i += kSide)
          while (!push(*q, i)) retry();
      });
    for (int c = 0; c < kSide; ++c)
      threads.emplace_back([&] {
        Retry retry;
        Item v = 0;
        std::uint64_t sum = 0;
        for (std::uint64_t n = 0; n < kItems / kSide; ++n) {
          while (!pop(*q, v)) retry();
          sum += v;
        }
        checksum.fetch_add(sum);
      });
    for (auto& t : threads) t.join();
  }
  if (checksum.load() != state.iterations() * (kItems * (kItems + 1) / 2)) state.SkipWithError("lost items");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kItems));
}

// Uncontended cost of one push + one pop from a single thread: the
// instruction path alone, stable even on a loaded machine (CPU time).
template <class Q>
void BM_PushPop1t(benchmark::State& state) {
  auto q = make_queue<Q>();
  Item v = 0;
  Item i = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(push(*q, i++));
    benchmark::DoNotOptimize(pop(*q, v));
  }
  benchmark::DoNotOptimize(v);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_PushPop1t, keel::SpscRing<Item>)->Name("pushpop_1t/keel_SpscRing");
BENCHMARK_TEMPLATE(BM_PushPop1t, AqSpsc)->Name("pushpop_1t/atomic_queue_spsc");
BENCHMARK_TEMPLATE(BM_PushPop1t, BoostSpsc)->Name("pushpop_1t/boost_spsc_queue");
BENCHMARK_TEMPLATE(BM_PushPop1t, Rwq)->Name("pushpop_1t/moodycamel_ReaderWriterQueue");
BENCHMARK_TEMPLATE(BM_PushPop1t, keel::MpmcQueue<Item>)->Name("pushpop_1t/keel_MpmcQueue");
BENCHMARK_TEMPLATE(BM_PushPop1t, AqMpmc)->Name("pushpop_1t/atomic_queue_mpmc");
BENCHMARK_TEMPLATE(BM_PushPop1t, BoostQueue)->Name("pushpop_1t/boost_queue");
BENCHMARK_TEMPLATE(BM_PushPop1t, MutexQueue<Item>)->Name("pushpop_1t/mutex_deque");

BENCHMARK_TEMPLATE(BM_Spsc, keel::SpscRing<Item>)->Name("spsc/keel_SpscRing")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Spsc, AqSpsc)->Name("spsc/atomic_queue")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Spsc, BoostSpsc)->Name("spsc/boost_spsc_queue")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Spsc, Rwq)->Name("spsc/moodycamel_ReaderWriterQueue")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Spsc, MutexQueue<Item>)->Name("spsc/mutex_deque")->UseRealTime();

BENCHMARK_TEMPLATE(BM_Mpmc, keel::MpmcQueue<Item>)->Name("mpmc_2x2/keel_MpmcQueue")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Mpmc, AqMpmc)->Name("mpmc_2x2/atomic_queue")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Mpmc, BoostQueue)->Name("mpmc_2x2/boost_queue")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Mpmc, MutexQueue<Item>)->Name("mpmc_2x2/mutex_deque")->UseRealTime();

// ---- stack: each thread pushes then pops, contended on one top -----------------

template <class S>
struct StackOps;
template <>
struct StackOps<keel::Stack<Item>> {
  static void push(keel::Stack<Item>& s, Item v) { s.push(v); }
  static bool pop(keel::Stack<Item>& s, Item& v) {
    auto got = s.pop();
    if (!got) return false;
    v = *got;
    return true;
  }
};
template <>
struct StackOps<boost::lockfree::stack<Item>> {
  static void push(boost::lockfree::stack<Item>& s, Item v) { s.push(v); }
  static bool pop(boost::lockfree::stack<Item>& s, Item& v) { return s.pop(v); }
};
template <>
struct StackOps<MutexStack<Item>> {
  static void push(MutexStack<Item>& s, Item v) { s.push(v); }
  static bool pop(MutexStack<Item>& s, Item& v) { return s.pop(v); }
};

template <class S>
std::unique_ptr<S> make_stack() {
  if constexpr (std::is_same_v<S, boost::lockfree::stack<Item>>) {
    return std::make_unique<S>(kCapacity);  // preallocated free list; grows as needed
  } else {
    return std::make_unique<S>();
  }
}

// Two threads, each doing push/pop pairs in batches of 8; operations per second.
template <class S>
void BM_Stack(benchmark::State& state) {
  constexpr int kThreads = 2;
  constexpr std::uint64_t kRounds = (1 << 17) / 8;
  auto s = make_stack<S>();
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&] {
        Item v = 0;
        for (std::uint64_t r = 0; r < kRounds; ++r) {
          for (Item i = 1; i <= 8; ++i) StackOps<S>::push(*s, i);
          for (int i = 0; i < 8; ++i) benchmark::DoNotOptimize(StackOps<S>::pop(*s, v));
        }
      });
    for (auto& t : threads) t.join();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kThreads * kRounds * 16));
}

template <class S>
void BM_Stack1t(benchmark::State& state) {
  auto s = make_stack<S>();
  Item v = 0;
  for (auto _ : state) {
    StackOps<S>::push(*s, v + 1);
    benchmark::DoNotOptimize(StackOps<S>::pop(*s, v));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_Stack1t, keel::Stack<Item>)->Name("stack_pushpop_1t/keel_Stack");
BENCHMARK_TEMPLATE(BM_Stack1t, boost::lockfree::stack<Item>)->Name("stack_pushpop_1t/boost_stack");
BENCHMARK_TEMPLATE(BM_Stack1t, MutexStack<Item>)->Name("stack_pushpop_1t/mutex_vector");

BENCHMARK_TEMPLATE(BM_Stack, keel::Stack<Item>)->Name("stack_2t/keel_Stack")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Stack, boost::lockfree::stack<Item>)->Name("stack_2t/boost_stack")->UseRealTime();
BENCHMARK_TEMPLATE(BM_Stack, MutexStack<Item>)->Name("stack_2t/mutex_vector")->UseRealTime();

// ---- rate limiter: try_acquire from 1, 2 and 4 threads -------------------------
// The bucket is large and refills fast, so calls succeed and do the full update.
// Both limiters read the same clock once per call; rate/steady_clock_now_floor
// is that cost alone (subtract it for the bucket logic's own cost). threads:4
// is more threads than the 2 cores here: a mutex holder can be preempted.

template <class Clock>
void BM_RateKeel(benchmark::State& state) {
  static keel::BasicRateLimiter<Clock> rl(1'000'000'000, 1e9);
  std::uint64_t ok = 0;
  for (auto _ : state) ok += rl.try_acquire() ? 1 : 0;
  benchmark::DoNotOptimize(ok);
  state.SetItemsProcessed(state.iterations());
}
template <class Clock>
void BM_RateMutex(benchmark::State& state) {
  static MutexBucket<Clock> rl(1e9, 1e9);
  std::uint64_t ok = 0;
  for (auto _ : state) ok += rl.try_acquire() ? 1 : 0;
  benchmark::DoNotOptimize(ok);
  state.SetItemsProcessed(state.iterations());
}
// The floor both pay: one steady_clock read.
void BM_SteadyClock(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_RateKeel, std::chrono::steady_clock)
    ->Name("rate/keel_RateLimiter")
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_RateMutex, std::chrono::steady_clock)
    ->Name("rate/mutex_bucket")
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_RateKeel, CoarseClock)
    ->Name("rate_coarse_clock/keel_RateLimiter")
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_RateMutex, CoarseClock)
    ->Name("rate_coarse_clock/mutex_bucket")
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();
BENCHMARK(BM_SteadyClock)->Name("rate/steady_clock_now_floor");

// ---- map: read-heavy lookups (and a 90/10 read/write mix) from 2 and 4 threads ----

constexpr int kKeys = 10'000;

class SharedMutexMap {
 public:
  std::optional<std::uint64_t> get(int k) const {
    std::shared_lock lock(mu_);
    auto it = m_.find(k);
    if (it == m_.end()) return std::nullopt;
    return it->second;
  }
  void insert_or_assign(int k, std::uint64_t v) {
    std::unique_lock lock(mu_);
    m_.insert_or_assign(k, v);
  }

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<int, std::uint64_t> m_;
};

template <class M>
M& shared_map() {
  static M* m = [] {
    auto* p = new M();
    for (int k = 0; k < kKeys; ++k) p->insert_or_assign(k, static_cast<std::uint64_t>(k));
    return p;
  }();
  return *m;
}

// state.range(0) = writes per 100 operations.
template <class M>
void BM_Map(benchmark::State& state) {
  M& m = shared_map<M>();
  const auto writes = static_cast<std::uint32_t>(state.range(0));
  std::uint32_t x = 12345u + static_cast<std::uint32_t>(state.thread_index()) * 7919u;
  std::uint64_t sum = 0;
  for (auto _ : state) {
    x = x * 1664525u + 1013904223u;
    const int k = static_cast<int>((x >> 8) % kKeys);
    if ((x >> 24) % 100 < writes) {
      m.insert_or_assign(k, x);
    } else {
      sum += m.get(k).value_or(0);
    }
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_Map, keel::ConcurrentMap<int, std::uint64_t>)
    ->Name("map_2t/keel_ConcurrentMap")
    ->Arg(0)
    ->Arg(10)
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Map, SharedMutexMap)
    ->Name("map_2t/shared_mutex_unordered_map")
    ->Arg(0)
    ->Arg(10)
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
