// libFuzzer target for keel::websocket's untrusted inputs.
//
// The first byte picks the surface:
// - even: the rest is a URL given to keel::ws::Url::parse (and, when it
//   parses, to_string/parse must round-trip);
// - odd: the rest is what a hostile server sends right after a valid opening
//   handshake (frames, garbage, truncated headers, huge lengths); then the
//   server ends TCP (bit 1 of the first byte clear) or keeps it open and
//   ignores the client (set: a peer that closes without FIN). A
//   keel::ws::Client on a loopback socket must turn it into events or a
//   disconnect, never a crash, a hang or a read out of bounds.
//
// The fuzz preset builds with clang++-16 (cmake/install-deps.sh installs
// clang-16 and libclang-rt-16-dev), so both surfaces are fuzzed. clang 14
// (bookworm's default `clang`) cannot assemble the client's C++20 coroutines
// with -fsanitize=fuzzer ("Cannot represent a difference across sections"):
// built with a clang older than 15, the frame surface is left out, odd first
// bytes do nothing and only the URL surface is fuzzed (fuzz/CMakeLists.txt
// warns at configure time).
#if defined(__clang__) && __clang_major__ < 15
#define KEEL_FUZZ_FRAMES 0
#include <keel/websocket/url.hpp>
#else
#define KEEL_FUZZ_FRAMES 1
#include <keel/websocket.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket.hpp>
#endif

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>

namespace {

void fuzz_url(std::string_view text) {
  auto url = keel::ws::Url::parse(text);
  if (!url) return;
  auto back = keel::ws::Url::parse(url->to_string());
  if (!back || !(*back == *url)) std::abort();
  (void)url->host_header();
  (void)url->redacted();
  if (auto next = url->follow(text.substr(text.size() / 2)); next) (void)next->to_string();
}

#if KEEL_FUZZ_FRAMES
namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

void fuzz_frames(std::string_view bytes, bool keep_open) {
  net::io_context io;
  tcp::acceptor acceptor(io, {net::ip::address_v4::loopback(), 0});
  const auto port = acceptor.local_endpoint().port();
  std::thread server([&] {
    boost::system::error_code ec;
    tcp::socket socket(io);
    acceptor.accept(socket, ec);
    if (ec) return;
    boost::beast::websocket::stream<tcp::socket> ws(std::move(socket));
    ws.accept(ec);
    if (ec) return;
    net::write(ws.next_layer(), net::buffer(bytes.data(), bytes.size()), ec);
    if (!keep_open) ws.next_layer().shutdown(tcp::socket::shutdown_send, ec);
    char sink[4096];
    for (int i = 0; i < 64 && !ec; ++i) (void)ws.next_layer().read_some(net::buffer(sink), ec);
  });
  keel::ws::ClientConfig cfg;
  cfg.url = "ws://127.0.0.1:" + std::to_string(port) + "/";
  cfg.max_retries = 1;
  cfg.backoff = {.initial = 1ms, .factor = 1.0, .max = 1ms, .jitter = false};
  cfg.max_message_size = 1 << 16;
  cfg.close_timeout = 200ms;
  cfg.connect_timeout = 200ms;
  cfg.handshake_timeout = 200ms;  // the retry finds nobody answering
  cfg.ping_interval = 50ms;
  {
    auto client = keel::ws::Client::start(cfg);
    if (!client) std::abort();
    for (int i = 0; i < 64; ++i) {
      auto ev = client->next_event_for(200ms);
      if (!ev || ev->kind == keel::ws::EventKind::disconnected) break;
    }
    client->close();
  }
  server.join();
}
#endif

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1U) == 0) {
    fuzz_url(rest);
  } else {
#if KEEL_FUZZ_FRAMES
    fuzz_frames(rest, (data[0] & 2U) != 0);
#endif
  }
  return 0;
}
