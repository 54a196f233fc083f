// A oneshot has exactly one sender and one receiver: copying either half
// must not compile.
#include <keel/channel.hpp>

#include <utility>

int main() {
  auto [tx, rx] = keel::oneshot<int>();
#if KEEL_MISUSE
  keel::OneshotSender<int> copy = tx;
#else
  keel::OneshotSender<int> copy = std::move(tx);
#endif
  (void)copy.send(1);
  return rx.try_recv().value_or(0) == 1 ? 0 : 1;
}
