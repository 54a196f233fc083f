// keel/lockfree.hpp: lock-free primitives (target keel::core).
//
// - SpscRing<T>: bounded wait-free single-producer single-consumer ring.
// - MpmcQueue<T>: bounded lock-free multi-producer multi-consumer queue (Vyukov).
// - Stack<T>: lock-free Treiber stack, nodes reclaimed with hazard pointers.
// - RateLimiter / BasicRateLimiter<Clock>: lock-free token bucket in one word.
// - ConcurrentMap<K, V>: sharded hash map with closure-style access.
// - CachePadded<T>, Counter: cache-line padding and padded statistics counters.
//
//     keel::SpscRing<int> ring(1024);         ring.try_push(1);  auto v = ring.try_pop();
//     keel::MpmcQueue<Job> jobs(4096);        jobs.try_push(job); auto j = jobs.try_pop();
//     keel::Stack<Buffer> pool;               pool.push(Buffer{}); auto b = pool.pop();
//     keel::RateLimiter limiter(100, 20.0);   if (limiter.try_acquire()) serve();
//     keel::ConcurrentMap<std::string, int> m; m.upsert("k", [](int& n) { ++n; });
//
// Thread-safety, progress and ordering guarantees are stated in each part's
// header. None of these ever blocks or spins waiting for another thread
// (ConcurrentMap uses shard locks); when a consumer must wait for data, a
// keel channel (<keel/channel.hpp>) is the better tool. See docs/lockfree.md.
#pragma once

#include <keel/lockfree/cache_padded.hpp>
#include <keel/lockfree/concurrent_map.hpp>
#include <keel/lockfree/mpmc_queue.hpp>
#include <keel/lockfree/rate_limiter.hpp>
#include <keel/lockfree/spsc_ring.hpp>
#include <keel/lockfree/stack.hpp>
