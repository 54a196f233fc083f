# keel's module graph, written once. The build (targets, KEEL_WITH_* options,
# header checks, install) and the installed keelConfig.cmake (components and
# what each one looks for) are all derived from these lists.
#
# KEEL_MODULES is in dependency order: a module comes after every module it
# builds on. For each module <m>:
#   KEEL_<m>_REQUIRES  keel modules it builds on
#   KEEL_<m>_PACKAGES  packages it needs (keys of the table below)
#   KEEL_<m>_HEADERS   regexes of the headers (relative to include/) it owns;
#                      a header no module claims belongs to keel::core; when
#                      two modules match, the later one in KEEL_MODULES (the
#                      one building on the other) owns it
# For each package key <p>:
#   KEEL_PKG_<p>_TARGETS  the imported targets a module links
#   KEEL_PKG_<p>_DEBIAN   the Debian package that provides it (for messages)
# How each package is found is in KeelDependencies.cmake (keel_find_package).

set(KEEL_MODULES core json log asio sqlite crypto vault postgres vault_postgres websocket)

set(KEEL_core_REQUIRES "")
set(KEEL_core_PACKAGES fmt Threads)
set(KEEL_core_HEADERS "")
set(KEEL_core_SUMMARY "result, channels, lock-free primitives, SIMD search, backoff")

set(KEEL_json_REQUIRES core)
set(KEEL_json_PACKAGES nlohmann_json)
set(KEEL_json_HEADERS "^keel/json\\.hpp$")
set(KEEL_json_SUMMARY "JSON for errors and config types")

set(KEEL_log_REQUIRES core)
set(KEEL_log_PACKAGES spdlog)
set(KEEL_log_HEADERS "^keel/log\\.hpp$" "^keel/log/")
set(KEEL_log_SUMMARY "spdlog setup")

set(KEEL_asio_REQUIRES core)
set(KEEL_asio_PACKAGES Boost)
set(KEEL_asio_HEADERS "^keel/channel/asio\\.hpp$" "^keel/asio/")
set(KEEL_asio_SUMMARY "channel operations as Asio asynchronous operations")

set(KEEL_sqlite_REQUIRES core)
set(KEEL_sqlite_PACKAGES SQLiteCpp)
set(KEEL_sqlite_HEADERS "^keel/sqlite\\.hpp$" "^keel/sqlite/")
set(KEEL_sqlite_SUMMARY "SQLite pool, migrations, transactions")

set(KEEL_crypto_REQUIRES core)
set(KEEL_crypto_PACKAGES OpenSSL_Crypto)
set(KEEL_crypto_HEADERS "^keel/crypto\\.hpp$" "^keel/crypto/(aead|key)\\.hpp$")
set(KEEL_crypto_SUMMARY "keys, AES-256-GCM envelopes, KDFs")

set(KEEL_vault_REQUIRES core sqlite crypto)
set(KEEL_vault_PACKAGES argon2)
set(KEEL_vault_HEADERS "^keel/vault\\.hpp$" "^keel/vault/" "^keel/crypto/store\\.hpp$")
set(KEEL_vault_SUMMARY "encrypted credential store")

set(KEEL_postgres_REQUIRES core)
set(KEEL_postgres_PACKAGES PostgreSQL)
set(KEEL_postgres_HEADERS "^keel/postgres\\.hpp$" "^keel/postgres/")
set(KEEL_postgres_SUMMARY "PostgreSQL pool, transactions, migrations, LISTEN/NOTIFY")

set(KEEL_vault_postgres_REQUIRES core vault postgres)
set(KEEL_vault_postgres_PACKAGES "")
set(KEEL_vault_postgres_HEADERS "^keel/vault/postgres\\.hpp$")
set(KEEL_vault_postgres_SUMMARY "the credential store over a PostgreSQL pool")

set(KEEL_websocket_REQUIRES core asio)
set(KEEL_websocket_PACKAGES Boost OpenSSL_SSL OpenSSL_Crypto)
set(KEEL_websocket_HEADERS "^keel/websocket\\.hpp$" "^keel/websocket/")
set(KEEL_websocket_SUMMARY "WebSocket client with heartbeat and reconnect")

# <keel/keel.hpp> belongs to keel::keel, the target that links every module.
set(KEEL_keel_HEADERS "^keel/keel\\.hpp$")

set(KEEL_PKG_fmt_TARGETS fmt::fmt)
set(KEEL_PKG_fmt_DEBIAN libfmt-dev)
set(KEEL_PKG_Threads_TARGETS Threads::Threads)
set(KEEL_PKG_Threads_DEBIAN libc6-dev)
set(KEEL_PKG_nlohmann_json_TARGETS nlohmann_json::nlohmann_json)
set(KEEL_PKG_nlohmann_json_DEBIAN nlohmann-json3-dev)
set(KEEL_PKG_spdlog_TARGETS spdlog::spdlog)
set(KEEL_PKG_spdlog_DEBIAN libspdlog-dev)
set(KEEL_PKG_Boost_TARGETS Boost::headers)
set(KEEL_PKG_Boost_DEBIAN libboost-dev)
set(KEEL_PKG_SQLiteCpp_TARGETS SQLiteCpp)
set(KEEL_PKG_SQLiteCpp_DEBIAN libsqlitecpp-dev)
set(KEEL_PKG_OpenSSL_Crypto_TARGETS OpenSSL::Crypto)
set(KEEL_PKG_OpenSSL_Crypto_DEBIAN libssl-dev)
set(KEEL_PKG_OpenSSL_SSL_TARGETS OpenSSL::SSL)
set(KEEL_PKG_OpenSSL_SSL_DEBIAN libssl-dev)
set(KEEL_PKG_PostgreSQL_TARGETS PostgreSQL::PostgreSQL)
set(KEEL_PKG_PostgreSQL_DEBIAN libpq-dev)
set(KEEL_PKG_argon2_TARGETS PkgConfig::libargon2)
set(KEEL_PKG_argon2_DEBIAN libargon2-dev)

# keel_module_of_header(<header relative to include/> <out-var>): the module
# that owns a header ("keel" for <keel/keel.hpp>, "core" when none claims it).
# Later modules are asked first, so <keel/vault/postgres.hpp> belongs to
# vault_postgres although vault claims the rest of keel/vault/.
function(keel_module_of_header header out)
  set(_order ${KEEL_MODULES})
  list(REVERSE _order)
  foreach(_m IN LISTS _order ITEMS keel)
    # A module also owns its private parts: keel/detail/<m>_*.hpp, keel/detail/<m>/.
    foreach(_re IN LISTS KEEL_${_m}_HEADERS ITEMS "^keel/detail/${_m}[_/]")
      if(header MATCHES "${_re}")
        set(${out} ${_m} PARENT_SCOPE)
        return()
      endif()
    endforeach()
  endforeach()
  set(${out} core PARENT_SCOPE)
endfunction()

# keel_module_closure(<out-var> <module>...): the modules given and every
# module they build on, in dependency order.
function(keel_module_closure out)
  set(_want ${ARGN})
  set(_changed TRUE)
  while(_changed)
    set(_changed FALSE)
    foreach(_m IN LISTS _want)
      foreach(_r IN LISTS KEEL_${_m}_REQUIRES)
        if(NOT _r IN_LIST _want)
          list(APPEND _want ${_r})
          set(_changed TRUE)
        endif()
      endforeach()
    endforeach()
  endwhile()
  set(_ordered "")
  foreach(_m IN LISTS KEEL_MODULES)
    if(_m IN_LIST _want)
      list(APPEND _ordered ${_m})
    endif()
  endforeach()
  set(${out} "${_ordered}" PARENT_SCOPE)
endfunction()
