// keel/detail/cpu_relax.hpp: the CPU's spin-wait hint and the cache-line
// size, shared by the channel's waiters and the lock-free primitives. Not
// part of the API.
#pragma once

#include <atomic>
#include <cstddef>

namespace keel::detail {

/// The false-sharing granularity padded against, by the channels and the
/// lock-free primitives alike (keel::kCacheLineSize is this value). 128 on
/// x86-64 and AArch64: their prefetchers pull cache lines in adjacent pairs,
/// so two hot words 64 bytes apart still contend. 64 elsewhere.
/// (std::hardware_destructive_interference_size says 64 and warns on g++ 12.)
#if defined(__x86_64__) || defined(_M_X64) || defined(__aarch64__) || defined(_M_ARM64)
inline constexpr std::size_t kCacheLine = 128;
#else
inline constexpr std::size_t kCacheLine = 64;
#endif

/// One CPU "pause" hint in a retry loop: cheaper for the sibling hyper-thread
/// and for the memory system than a tight retry.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace keel::detail
