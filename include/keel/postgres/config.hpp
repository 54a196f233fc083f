// keel/postgres/config.hpp: keel::pg::PoolConfig (what Pool::open takes)
// and PoolStats (what Pool::stats returns).
//
//     keel::pg::PoolConfig cfg{.conninfo = "host=db dbname=app user=app", .max_size = 8};
//     if (auto ok = cfg.validate(); !ok) return ok.error();   // Errc::config, naming the field
//
// Part of <keel/postgres.hpp>; a plain struct, safe to copy between threads.
#pragma once

#include <keel/backoff.hpp>
#include <keel/postgres/error.hpp>
#include <keel/result.hpp>

#include <libpq-fe.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace keel::pg {

class Connection;

/// How a Pool opens and keeps its connections. Durations of zero disable the
/// corresponding limit (except connect_timeout and maintenance_interval,
/// which must be positive).
struct PoolConfig {
  /// libpq connection string: "host=... port=... dbname=... user=..." or a
  /// "postgresql://" URI. Environment variables (PGHOST, PGPASSWORD, ...) and
  /// ~/.pgpass fill what it leaves out, as for psql.
  std::string conninfo;
  /// Most connections open at once (checked out + idle).
  std::size_t max_size = 8;
  /// Idle connections kept open and ready (opened at Pool::open, topped up by
  /// the maintenance thread; never more than max_size in all).
  std::size_t min_idle = 2;
  /// How long get() waits for a connection (a free one, or a new one while
  /// the server is unreachable) before failing.
  std::chrono::milliseconds connection_timeout{10'000};
  /// The longest one connection attempt may take (TCP, TLS, authentication,
  /// connection setup), whatever the caller's timeout.
  std::chrono::milliseconds connect_timeout{5'000};
  /// An idle connection unused this long is closed (min_idle are kept).
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
  /// A connection older than this is closed when it is next idle.
  std::chrono::milliseconds max_lifetime{std::chrono::minutes(30)};
  /// A connection idle at least this long is pinged (an empty query) before
  /// get() hands it out; a dead one is replaced.
  std::chrono::milliseconds health_check_after{std::chrono::seconds(30)};
  /// How often the maintenance thread retires and tops up connections.
  std::chrono::milliseconds maintenance_interval{1'000};
  /// After a failed connection attempt, new attempts wait on this schedule
  /// (full jitter), so a server that is down or refuses the credentials is
  /// not hammered; a success resets it.
  BackoffPolicy reconnect_backoff{
      .initial = std::chrono::milliseconds(50), .factor = 2.0, .max = std::chrono::milliseconds(5'000)};
  /// Prepared statements kept per connection by prepare_cached (LRU); at least 1.
  std::size_t statement_cache_capacity = 64;
  /// Runs on each new connection after keel's own setup (DateStyle = ISO):
  /// per-connection settings (SET search_path, statement_timeout, ...); an error
  /// fails the connection.
  std::function<Result<void>(Connection&)> on_connect{};

  /// Errc::config naming the first bad field, or success.
  [[nodiscard]] Result<void> validate() const {
    if (max_size == 0) return fail(Errc::config, "PoolConfig::max_size must be at least 1");
    if (min_idle > max_size) {
      return fail(Errc::config, "PoolConfig::min_idle ({}) exceeds max_size ({})", min_idle, max_size);
    }
    if (connection_timeout.count() < 0 || idle_timeout.count() < 0 || max_lifetime.count() < 0 ||
        health_check_after.count() < 0) {
      return fail(Errc::config, "PoolConfig durations must not be negative");
    }
    if (connect_timeout.count() <= 0 || maintenance_interval.count() <= 0) {
      return fail(Errc::config, "PoolConfig::connect_timeout and maintenance_interval must be positive");
    }
    if (statement_cache_capacity == 0)
      return fail(Errc::config, "PoolConfig::statement_cache_capacity must be at least 1");
    if (auto b = reconnect_backoff.validate(); !b) {
      return fail(Errc::config, "PoolConfig::reconnect_backoff: {}", b.error().message());
    }
    if (conninfo.find('\0') != std::string::npos)
      return fail(Errc::config, "PoolConfig::conninfo holds a NUL byte");
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
    if (opts == nullptr) {
      std::string why = err != nullptr ? detail::trim_message(err) : std::string("out of memory");
      if (err != nullptr) PQfreemem(err);
      return fail(Errc::config, "PoolConfig::conninfo: {}", why);
    }
    PQconninfoFree(opts);
    return {};
  }
};

/// A snapshot of a pool's counters.
struct PoolStats {
  std::size_t size = 0;                      ///< connections open or being opened
  std::size_t idle = 0;                      ///< ready in the pool
  std::size_t in_use = 0;                    ///< checked out
  std::size_t max_size = 0;                  ///< the configured limit
  std::uint64_t gets = 0;                    ///< successful get() calls
  std::uint64_t waits = 0;                   ///< get() calls that had to wait
  std::uint64_t timeouts = 0;                ///< get() calls that gave up waiting for a free connection
  std::chrono::nanoseconds longest_wait{0};  ///< the longest a get() waited
  std::uint64_t opened = 0;                  ///< connections opened over the pool's life
  std::uint64_t closed = 0;                  ///< connections closed (retired, broken, at close)
  std::uint64_t connect_attempts = 0;        ///< connection attempts (successful or not)
  std::uint64_t connect_failures = 0;        ///< connection attempts that failed
  std::uint64_t broken = 0;                  ///< connections dropped because they were dead or in a bad state
};

}  // namespace keel::pg
