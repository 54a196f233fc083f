// Result<Result<T>> is refused: two error channels are one too many; flatten
// with and_then.
#include <keel/result.hpp>

#if KEEL_MISUSE
keel::Result<keel::Result<int>> get() {
  return keel::Result<int>(1);
}
#else
keel::Result<int> get() {
  return keel::Result<int>(1).and_then([](int v) { return keel::Result<int>(v + 1); });
}
#endif

int use() {
  auto r = get();
  return r ? 1 : 0;
}
