// keel/websocket/detail/http_connect.hpp: the HTTP CONNECT exchange that
// turns a connection to a proxy into a tunnel. Not part of the API.
#pragma once

#include <keel/result.hpp>
#include <keel/websocket/detail/net.hpp>
#include <keel/websocket/detail/outcome.hpp>
#include <keel/websocket/proxy.hpp>
#include <keel/websocket/url.hpp>

#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <string>

namespace keel::ws::detail {

// The HTTP CONNECT exchange with a proxy on `sock`: afterwards the socket
// is a tunnel to `url`'s host and port.
inline net::awaitable<ErrorCode> tunnel(tcp::socket& sock, const ProxyEndpoint& proxy, const Url& url,
                                        Outcome& out) {
  ErrorCode ec;
  const std::string authority = url.host_header_for_url();
  std::string req =
      fmt::format("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\nUser-Agent: keel-websocket\r\n", authority);
  if (!proxy.user.empty())
    req +=
        "Proxy-Authorization: Basic " + keel::ws::detail::base64(proxy.user + ":" + proxy.password) + "\r\n";
  req += "\r\n";
  co_await net::async_write(sock, net::buffer(req), redirect(ec));
  if (ec) co_return ec;
  std::string head;
  const auto n =
      co_await net::async_read_until(sock, net::dynamic_buffer(head, 16 * 1024), "\r\n\r\n", redirect(ec));
  if (ec) co_return ec;
  // "HTTP/1.1 200 Connection established"
  unsigned status = 0;
  if (head.size() > 12 && head.rfind("HTTP/1.", 0) == 0 && head[8] == ' ') {
    for (std::size_t i = 9; i < 12; ++i) {
      if (head[i] < '0' || head[i] > '9') {
        status = 0;
        break;
      }
      status = status * 10 + static_cast<unsigned>(head[i] - '0');
    }
  }
  if (status == 0) co_return ErrorCode(net::error::invalid_argument);  // not an HTTP reply
  // (A refusal may carry a body; a tunnel must not: what follows is the peer's.)
  if (status >= 200 && status <= 299 && n != head.size()) co_return ErrorCode(net::error::invalid_argument);
  if (status < 200 || status > 299) {
    classify_http(out, status);
    if (status == 407) {
      out.error = Errc::auth_failed;
      out.permanent = true;
    }
    co_return ErrorCode(net::error::connection_refused);
  }
  co_return ErrorCode{};
}

}  // namespace keel::ws::detail
