// Result<T&> is refused with a clear message: a Result owns its value; hold a
// pointer (or std::reference_wrapper) instead.
#include <keel/result.hpp>

int storage = 0;

#if KEEL_MISUSE
keel::Result<int&> get() {
  return storage;
}
#else
keel::Result<int*> get() {
  return &storage;
}
#endif

int use() {
  auto r = get();
  return r ? 1 : 0;
}
