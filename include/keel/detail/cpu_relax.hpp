// keel/detail/cpu_relax.hpp: the CPU's spin-wait hint, shared by the
// channel's waiters and the lock-free primitives. Not part of the API.
#pragma once

#include <atomic>

namespace keel::detail {

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
