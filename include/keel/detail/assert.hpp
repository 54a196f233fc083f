// keel/detail/assert.hpp: KEEL_ASSERT and the few configuration macros every
// keel header may need. Standard library only (no fmt), so the lock-free and
// SIMD headers can use it without pulling in the error core.
//
// KEEL_ASSERT(cond) checks a precondition in debug builds (it prints the
// condition and where, then aborts) and compiles to nothing under NDEBUG. A
// program may define KEEL_ASSERT itself before including any keel header.
#pragma once

#include <cstdio>
#include <cstdlib>

/// 1 when the translation unit is built with exceptions, 0 under -fno-exceptions.
#ifndef KEEL_HAS_EXCEPTIONS
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define KEEL_HAS_EXCEPTIONS 1
#else
#define KEEL_HAS_EXCEPTIONS 0
#endif
#endif

/// Marks a parameter (or, after a member function's qualifiers, the object)
/// whose lifetime the returned view depends on, so clang warns when the
/// result outlives a temporary. Empty on compilers without the attribute.
#if defined(__has_cpp_attribute)
#if __has_cpp_attribute(clang::lifetimebound)
#define KEEL_LIFETIMEBOUND [[clang::lifetimebound]]
#endif
#endif
#ifndef KEEL_LIFETIMEBOUND
#define KEEL_LIFETIMEBOUND
#endif

namespace keel::detail {
[[noreturn]] inline void assert_fail(const char* what, const char* file, unsigned line) noexcept {
  std::fprintf(stderr, "keel: assertion failed: %s at %s:%u\n", what, file, line);
  std::abort();
}
}  // namespace keel::detail

#ifndef KEEL_ASSERT
#ifdef NDEBUG
#define KEEL_ASSERT(cond) static_cast<void>(0)
#else
#define KEEL_ASSERT(cond)        \
  ((cond) ? static_cast<void>(0) \
          : ::keel::detail::assert_fail(#cond, __FILE__, static_cast<unsigned>(__LINE__)))
#endif
#endif
