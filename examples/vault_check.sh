#!/usr/bin/env bash
# Checks keel-vault end to end (run by ctest as examples.vault):
# put/get/ls/rm/rotate round trip, and one-line errors with a non-zero exit
# for a wrong password, a missing name and a file that is not a vault.
# usage: vault_check.sh /path/to/keel-vault WORKDIR
set -euo pipefail
vault=$1
dir=$2/vault_check.$$
rm -rf "$dir" && mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
db=$dir/v.db
export KEEL_VAULT_PASSWORD='first password'
v() { "$vault" --db "$db" --iterations 100000 "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# Expects a failure with exactly one line on stderr matching $1.
expect_error() {
  local pattern=$1; shift
  local err rc=0
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" -ne 0 ] || fail "expected a non-zero exit from: $*"
  [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "expected one line on stderr, got: $err"
  printf '%s\n' "$err" | grep -q -- "$pattern" || fail "expected '$pattern' in: $err"
  echo "ok (exit $rc): $err"
}

printf 'hunter2' | v put db/password
printf 'tok\nen with newline\n' | v put api/token
[ "$(v get db/password)" = "hunter2" ] || fail "get db/password"
[ "$(v get api/token | od -c)" = "$(printf 'tok\nen with newline\n' | od -c)" ] || fail "get api/token bytes"
[ "$(v ls | tr '\n' ' ')" = "api/token db/password " ] || fail "ls"
grep -q hunter2 "$db" "$db"-wal 2>/dev/null && fail "plaintext in the database file"

expect_error AUTH_FAILED env KEEL_VAULT_PASSWORD='wrong' "$vault" --db "$db" get db/password
expect_error NOT_FOUND v get nope
expect_error NOT_FOUND v rm nope

v rm api/token
[ "$(v ls)" = "db/password" ] || fail "ls after rm"

KEEL_VAULT_NEW_PASSWORD='second password' v rotate
expect_error AUTH_FAILED v get db/password
[ "$(KEEL_VAULT_PASSWORD='second password' v get db/password)" = "hunter2" ] || fail "get after rotate"

printf 'not a database, just text' > "$dir/junk.db"
expect_error . "$vault" --db "$dir/junk.db" ls
expect_error NOT_FOUND "$vault" --db "$dir/absent.db" ls
expect_error INVALID_ARGUMENT "$vault" --db "$db" frobnicate
echo "vault check passed"
