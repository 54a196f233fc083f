// A user of keel::asio alone: a channel received from an Asio callback.
#include <keel/channel/asio.hpp>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

int main() {
  boost::asio::io_context io;
  auto [tx, rx] = keel::channel<int>(4);
  int got = 0;
  keel::asio::async_recv(io.get_executor(), rx, [&](keel::Result<int> r) { got = r ? *r : -1; });
  if (!tx.send(42)) return 1;
  io.run();
  if (got != 42) return 1;
  fmt::print("keel asio consumer: received {}\n", got);
  return 0;
}
