// keel/websocket/detail/tls.hpp: the TLS context of a wss:// client and the
// per-connection name checks (SNI, host or IP verification). Not part of
// the API.
#pragma once

#include <keel/result.hpp>
#include <keel/websocket/config.hpp>
#include <keel/websocket/detail/net.hpp>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <string>

namespace keel::ws::detail {

inline Result<net::ssl::context> make_tls_context(const TlsConfig& tls) {
  try {
    net::ssl::context ctx(net::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    if (tls.verify_peer) {
      ctx.set_verify_mode(net::ssl::verify_peer);
      if (!tls.ca_file.empty()) ctx.load_verify_file(tls.ca_file);
      if (!tls.ca_pem.empty()) ctx.add_certificate_authority(net::buffer(tls.ca_pem));
      if (tls.ca_file.empty() && tls.ca_pem.empty()) ctx.set_default_verify_paths();
    } else {
      ctx.set_verify_mode(net::ssl::verify_none);
    }
    return ctx;
  } catch (const boost::system::system_error& e) {
    return fail(Errc::config, "TLS setup: {}", e.what());
  }
}

// Before the TLS handshake: the name to send (SNI carries names, not
// addresses) and, when verifying, the name or address the certificate must
// match.
inline void prepare_tls(SSL* ssl, const std::string& name, bool verify_peer) {
  ErrorCode addr_ec;
  (void)net::ip::make_address(name, addr_ec);
  if (addr_ec) SSL_set_tlsext_host_name(ssl, name.c_str());
  if (verify_peer) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (!addr_ec) {
      X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    }
  }
}

}  // namespace keel::ws::detail
