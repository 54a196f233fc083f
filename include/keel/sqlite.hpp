// keel/sqlite.hpp: a pool of SQLite connections with a statement cache,
// transactions that never surface SQLITE_BUSY under ordinary concurrency, and
// migrations (target keel::sqlite, on SQLiteCpp). The r2d2 + rusqlite pattern.
//
// Read this first: the SQLiteCpp objects keel hands out THROW. `*conn` and
// `conn->` (SQLite::Database), the SQLite::Statement& from prepare_cached,
// and the database given to the on_connect hook are SQLiteCpp's own: their
// bind/exec/executeStep/getColumn throw SQLite::Exception. Use them inside
// transaction() (the exception becomes an Error after the rollback) or
// try_sql(), or use execute / query_one / query_optional, which return Result.
//
//     auto pool = keel::sqlite::Pool::open({.path = "app.db"});   // Result<Pool>
//     KEEL_TRY_ASSIGN(auto conn, pool->get());                     // RAII checkout
//     KEEL_TRY(keel::sqlite::migrate(conn, kMigrations));
//     KEEL_TRY(keel::sqlite::transaction(conn, [&](auto& c) -> keel::Result<void> {
//       return c.exec("INSERT INTO users(name) VALUES ('ada')").transform([](int) {});
//     }));
//
// Thread-safety: a Pool (and its copies) may be used from any number of
// threads; a PooledConnection, and the statements it gives, by one thread at
// a time. PoolConfig::readers > 0 splits the pool: one writer connection in
// arrival order (get_writer()) and N read-only ones (get_reader()).
//
// Guarantees:
// - Connections open read-write-create with the configured pragmas (WAL,
//   synchronous=NORMAL, foreign_keys=ON, busy_timeout=5000, cache_size=-20000,
//   mmap_size=256 MiB by default); journal_mode is set once, at Pool::open.
// - get() waits at most connection_timeout, then Errc::timeout.
// - A connection goes back to the pool with no transaction open (one left open
//   is rolled back) and no statement mid-step on the database (cached ones
//   are reset; so is any other still holding a read snapshot).
// - Write transactions take the pool's write lock (fair: first come, first
//   served) and BEGIN IMMEDIATE, so writers in one process queue instead of
//   failing with SQLITE_BUSY; writers in other processes are waited out up to
//   busy_timeout + connection_timeout. A write transaction on a connection
//   with a statement left mid-step is refused at once (SQLITE_BUSY_SNAPSHOT
//   is never retried); a read-only transaction nested in a write one cannot
//   write.
// - Migrations run with foreign keys off and end with foreign_key_check; an
//   applied migration whose text changed is Errc::config.
// - A connection's statement cache is dropped at checkout when the schema
//   changed since it last looked.
// - The maintenance thread checkpoints (TRUNCATE) a WAL that has grown past
//   wal_checkpoint_bytes.
// - Every SQLiteCpp exception stops at keel's API and becomes a keel::Error
//   (context: the SQLite code and the SQL).
// - ":memory:" gives one in-memory database (memdb VFS) shared by all the
//   pool's connections, alive as long as the pool.
// - What a crash loses: transactions not yet committed. With
//   synchronous=NORMAL in WAL mode, an OS crash or power loss (not a process
//   crash) may also lose the last commits; use synchronous = "FULL" if that matters.
//
// See docs/sqlite.md for the one-writer rule, pragmas and pitfalls.
#pragma once

#include <keel/sqlite/config.hpp>
#include <keel/sqlite/error.hpp>
#include <keel/sqlite/migrate.hpp>
#include <keel/sqlite/pool.hpp>
#include <keel/sqlite/query.hpp>
#include <keel/sqlite/transaction.hpp>
