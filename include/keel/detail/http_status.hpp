// keel/detail/http_status.hpp: keel::http_status(Errc), the HTTP status the
// JSON boundary (<keel/json.hpp>) gives each error kind. Kept in this
// standard-library-only header so that Error::http_status() keeps working
// for code that includes only <keel/result.hpp>; <keel/json.hpp> is where it
// is documented.
#pragma once

#include <keel/errc.hpp>

namespace keel {

/// The HTTP status for a kind, at an HTTP or IPC boundary: the "status" of
/// keel::to_json. The table and the reasoning behind each entry are in
/// docs/json.md.
[[nodiscard]] constexpr int http_status(Errc c) noexcept {
  switch (c) {
    case Errc::invalid_argument:
      return 400;
    case Errc::not_found:
      return 404;
    case Errc::already_exists:
      return 409;
    case Errc::timeout:
      return 504;
    case Errc::closed:
      return 410;  // Gone: the resource existed and is shut.
    case Errc::full:
      return 503;  // Backpressure: try again later.
    case Errc::empty:
      return 404;  // Nothing to hand out right now.
    case Errc::lagged:
      return 409;  // The reader's position conflicts with what is retained.
    case Errc::cancelled:
      return 499;  // Client closed request (nginx, gRPC's mapping).
    case Errc::busy:
      return 503;
    case Errc::io:
      return 500;
    case Errc::database:
      return 500;
    case Errc::crypto:
      return 500;
    case Errc::auth_failed:
      return 401;
    case Errc::protocol:
      return 502;  // Bad Gateway: a peer spoke wrongly.
    case Errc::config:
      return 500;
    case Errc::resource_exhausted:
      return 429;
    case Errc::unavailable:
      return 503;
    case Errc::internal:
      return 500;
    case Errc::data_loss:
      return 500;
    case Errc::unknown:
      return 500;
  }
  return 500;
}

}  // namespace keel
