#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for keel's postgres tests.
#
#   postgres_cluster.sh start DIR    initdb (trust auth) + pg_ctl start on a free
#                                    127.0.0.1 port with a private socket dir;
#                                    writes DIR/conninfo and DIR/conninfo_password
#   postgres_cluster.sh stop DIR     stops it (immediate) and removes DIR
#   postgres_cluster.sh restart DIR  pg_ctl restart (fast), same port
#   postgres_cluster.sh halt DIR     pg_ctl stop (fast), keeping DIR
#   postgres_cluster.sh resume DIR   pg_ctl start again after halt
#
# Run as root, the server runs as the `postgres` system user (initdb refuses
# root). The role keel_pw logs in with a password (scram-sha-256) so the
# tests can check authentication failures; everything else is trusted.
set -euo pipefail

cmd=${1:?start|stop|restart|halt|resume}
dir=${2:?cluster directory}

bindir=${KEEL_PG_BINDIR:-}
if [[ -z "$bindir" ]]; then
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] && bindir=$d
  done
fi
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
  echo "postgres_cluster: no initdb found (Debian: postgresql-15; make deps installs it)" >&2
  exit 1
fi

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pgctl() { as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" "$@"; }

case "$cmd" in
  start)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      as_pg "$bindir/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    mkdir -p "$dir/sock"
    if [[ $(id -u) -eq 0 ]]; then
      chown -R postgres: "$dir"
      if ! runuser -u postgres -- test -w "$dir/sock"; then
        echo "postgres_cluster: the postgres user cannot reach $dir (a parent directory is not o+x)" >&2
        exit 1
      fi
    fi
    as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$dir/sock'"
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
      echo "max_connections = 100"
      echo "shared_buffers = 32MB"
      echo "lc_messages = 'C'"
    } >>"$dir/data/postgresql.conf"
    # password auth for keel_pw first (first match wins), trust for the rest
    {
      echo "local all keel_pw scram-sha-256"
      echo "host all keel_pw 127.0.0.1/32 scram-sha-256"
      cat "$dir/data/pg_hba.conf"
    } >"$dir/pg_hba.tmp"
    mv "$dir/pg_hba.tmp" "$dir/data/pg_hba.conf"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$dir/data/pg_hba.conf"
    pgctl -w -t 60 start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    as_pg "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 \
      -c "CREATE ROLE keel_pw LOGIN PASSWORD 'keel-right-password'" >/dev/null
    echo "host=127.0.0.1 port=$port dbname=postgres user=postgres" >"$dir/conninfo"
    echo "host=127.0.0.1 port=$port dbname=postgres user=keel_pw" >"$dir/conninfo_password"
    echo "$port" >"$dir/port"
    echo "postgres_cluster: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)"
    ;;
  stop)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      pgctl -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    echo "postgres_cluster: stopped ($dir)"
    ;;
  restart)
    pgctl -w -t 60 -m fast restart >/dev/null
    ;;
  halt)
    pgctl -w -t 60 -m fast stop >/dev/null
    ;;
  resume)
    pgctl -w -t 60 start >/dev/null
    ;;
  *)
    echo "postgres_cluster: unknown command $cmd" >&2
    exit 2
    ;;
esac
