// A Selector keeps a pointer to each receiver it watches: adding a
// temporary (gone before the Selector looks at it) must not compile.
#include <keel/channel.hpp>

#include <cstddef>
#include <utility>

int main() {
  auto [tx, rx] = keel::channel<int>(1);
  keel::Selector sel;
#if KEEL_MISUSE
  const std::size_t i = sel.add(keel::Receiver<int>(rx));
#else
  const std::size_t i = sel.add(rx);
#endif
  (void)tx.send(1);
  return sel.try_ready().value_or(1) == i ? 0 : 1;
}
