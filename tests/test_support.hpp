// Shared by keel's tests: which sanitizer this file is built under, so that
// stress loops can scale their counts down (sanitizers run 5-15x slower, on
// two busy cores) and every case stays well inside its time budget.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define KEEL_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KEEL_TEST_TSAN 1
#endif
#endif
#ifndef KEEL_TEST_TSAN
#define KEEL_TEST_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define KEEL_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEL_TEST_ASAN 1
#endif
#endif
#ifndef KEEL_TEST_ASAN
#define KEEL_TEST_ASAN 0
#endif

/// 1 under ASan or TSan, else 0.
#define KEEL_TEST_SANITIZED (KEEL_TEST_TSAN || KEEL_TEST_ASAN)

namespace keel_test {
/// `factor` under a sanitizer, 1 otherwise: divide iteration counts by it.
constexpr int sanitizer_scale(int factor) noexcept {
  return KEEL_TEST_SANITIZED ? factor : 1;
}
}  // namespace keel_test
