// keel/websocket/detail/outcome.hpp: how one connection attempt ended, and
// how a failure is classified (the Errc a program tests; whether a retry
// can help). Not part of the API.
#pragma once

#include <keel/result.hpp>
#include <keel/websocket/detail/net.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <string>

namespace keel::ws::detail {

// How one connection attempt ended.
struct Outcome {
  bool opened = false;
  bool fatal = false;      // do not retry: give up at once (on_connect threw)
  bool permanent = false;  // no retry can mend it (HTTP 401, a refused certificate...)
  Clock::time_point opened_at{};
  std::string reason;
  std::uint16_t close_code = 0;
  std::uint16_t http_status = 0;
  Errc error = Errc::io;
};

inline std::string describe(const ErrorCode& ec) {
  return ec.message();
}

// How a failed step is reported: the Errc a program tests, and whether
// retrying can help.
inline void classify(Outcome& out, const ErrorCode& ec) {
  out.error = Errc::io;
  if (ec == beast::error::timeout || ec == net::error::timed_out) {
    out.error = Errc::timeout;
  } else if (ec == net::error::host_not_found) {
    out.error = Errc::not_found;  // the name does not exist: no retry brings it
    out.permanent = true;
  } else if (ec == net::error::host_not_found_try_again || ec == net::error::connection_refused ||
             ec == net::error::connection_reset || ec == net::error::network_unreachable ||
             ec == net::error::host_unreachable || ec == net::error::eof) {
    out.error = Errc::unavailable;
  } else if (ec.category() == net::error::get_ssl_category()) {
    out.error = Errc::crypto;
    if (ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED)
      out.permanent = true;  // a certificate does not mend itself
  } else if (ec == websocket::condition::handshake_failed || ec == websocket::condition::protocol_violation) {
    out.error = Errc::protocol;
  }
}

// An HTTP status that refused the upgrade: 4xx are the client's fault
// (a token, a path) and permanent, but for 408 and 429; 5xx are the
// server's and transient.
inline void classify_http(Outcome& out, unsigned status) {
  out.http_status = static_cast<std::uint16_t>(status);
  out.error = status == 401 || status == 403   ? Errc::auth_failed
              : status == 404 || status == 410 ? Errc::not_found
              : status >= 500                  ? Errc::unavailable
                                               : Errc::protocol;
  out.permanent = status >= 400 && status < 500 && status != 408 && status != 429;
}

}  // namespace keel::ws::detail
