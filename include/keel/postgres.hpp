// keel/postgres.hpp: a pool of PostgreSQL connections with typed queries, a
// statement cache, transactions that retry serialization failures, migrations
// under an advisory lock, LISTEN/NOTIFY as a keel channel, and COPY and
// pipelined batches (target keel::postgres, on libpq). The same patterns as
// keel::sqlite, for data that outgrows one machine.
//
//     auto pool = keel::pg::Pool::open({.conninfo = "host=db dbname=app", .max_size = 16});
//     KEEL_TRY_ASSIGN(auto conn, pool->get());                             // RAII checkout
//     KEEL_TRY(keel::pg::migrate(conn, kMigrations));
//     KEEL_TRY(keel::pg::transaction(conn, [&](keel::pg::PooledConnection& c) -> keel::Result<void> {
//       return c.exec("UPDATE counters SET n = n + 1 WHERE id = $1", 7).transform([](auto&&) {});
//     }, {.isolation = keel::pg::Isolation::serializable}));              // retried on 40001/40P01
//
// Thread-safety: a Pool (and its copies) may be used from any number of
// threads; a PooledConnection, and the Rows and Statements it gives, by one
// thread at a time.
//
// Guarantees:
// - libpq never throws; every failure is a keel::Error whose kind follows
//   the SQLSTATE (unique violation: already_exists; 40001/40P01: busy;
//   connection loss, shutdown: unavailable; 28xxx: auth_failed; 57014:
//   timeout; syntax and undefined objects: invalid_argument), with the
//   SQLSTATE, the server's detail and hint, and the SQL in its context.
// - get() waits at most connection_timeout; a connection attempt takes at
//   most connect_timeout. Failed attempts back off (full jitter), so a down
//   server or wrong password is not hammered; bad credentials fail at once.
// - A connection goes back to the pool with no transaction open (one left
//   open is rolled back); a dead or wedged one is closed, never reused.
// - Connections the server dropped while idle are noticed at checkout and
//   replaced; those idle longer than health_check_after are pinged first.
// - What a crash loses: transactions not committed. A connection lost during
//   COMMIT leaves the outcome unknown (Errc::unavailable); it is not retried.
//
// See docs/postgres.md for the move from SQLite, pitfalls and figures.
#pragma once

#include <keel/postgres/bulk.hpp>
#include <keel/postgres/error.hpp>
#include <keel/postgres/listen.hpp>
#include <keel/postgres/migrate.hpp>
#include <keel/postgres/pool.hpp>
#include <keel/postgres/transaction.hpp>
#include <keel/postgres/types.hpp>
