// A SendResult may hold the value that could not be sent: ignoring it must
// not compile (under -Werror), so a failed send is never dropped unnoticed.
#include <keel/channel.hpp>

int main() {
  auto [tx, rx] = keel::channel<int>(1);
#if KEEL_MISUSE
  tx.try_send(1);
#else
  (void)tx.try_send(1);
#endif
  return rx.try_recv().value_or(0) == 1 ? 0 : 1;
}
