#!/usr/bin/env bash
# keel-wscat end to end against the npm `ws` echo server of tests/node:
# stdin lines come back as message events, the session ends with a clean
# close and exit 0; against a closed port it reports reconnecting events,
# then gave_up and exit 1.
#   wscat_check.sh KEEL_WSCAT TESTS_NODE_DIR
set -u
wscat=$1
node_dir=$2
# A missing peer fails the check: a scenario that did not run has not passed.
command -v node > /dev/null || { echo "node missing (make deps): wscat check FAILED"; exit 1; }
if [ ! -f "$node_dir/node_modules/ws/package.json" ]; then
  echo "tests/node/node_modules missing (make deps: npm ci in tests/node): wscat check FAILED"
  exit 1
fi
tmp=$(mktemp -d)
server=
trap 'exec 3>&- 4>&-; [ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$tmp"' EXIT

# The server exits by itself when its stdin (fd 3, held by this script) closes.
mkfifo "$tmp/server.in" "$tmp/wscat.in"
node "$node_dir/server.js" echo < "$tmp/server.in" > "$tmp/server.out" &
server=$!
exec 3> "$tmp/server.in"
for _ in $(seq 100); do
  grep -q '^PORT ' "$tmp/server.out" 2>/dev/null && break
  sleep 0.1
done
port=$(sed -n 's/^PORT //p' "$tmp/server.out")
[ -n "$port" ] || { echo "echo server did not start"; exit 1; }

printf 'hello\nworld\n' | timeout 20 "$wscat" "ws://127.0.0.1:$port/" --ping-interval-ms 100 > "$tmp/out.jsonl"
rc=$?
cat "$tmp/out.jsonl"
[ $rc -eq 0 ] || { echo "exit status $rc, want 0"; exit 1; }
grep -qx '{"event":"connected"}' "$tmp/out.jsonl" || { echo "no connected event"; exit 1; }
grep -qx '{"event":"message","data":"hello"}' "$tmp/out.jsonl" || { echo "no hello echo"; exit 1; }
grep -qx '{"event":"message","data":"world"}' "$tmp/out.jsonl" || { echo "no world echo"; exit 1; }
tail -n1 "$tmp/out.jsonl" | grep -q '"event":"disconnected","reason":"closed by client","code":1000' ||
  { echo "last event is not a clean close"; exit 1; }

# A port nobody listens on: reconnecting twice, then gave_up and exit 1.
# stdin stays open (fd 4) so that only gave_up can end it.
timeout 20 "$wscat" "ws://127.0.0.1:1/" --max-retries 2 --backoff-initial-ms 10 --backoff-max-ms 40 \
  < "$tmp/wscat.in" > "$tmp/refused.jsonl" 2> /dev/null &
wscat_pid=$!
exec 4> "$tmp/wscat.in"
wait $wscat_pid
rc=$?
exec 4>&-
cat "$tmp/refused.jsonl"
[ $rc -eq 1 ] || { echo "exit status $rc, want 1"; exit 1; }
[ "$(grep -c '"event":"reconnecting","attempt":' "$tmp/refused.jsonl")" -eq 2 ] || { echo "want 2 reconnecting events"; exit 1; }
tail -n1 "$tmp/refused.jsonl" | grep -q '^{"event":"gave_up"' || { echo "last event is not gave_up"; exit 1; }

# Bad usage: exit 2.
"$wscat" 2> /dev/null
[ $? -eq 2 ] || { echo "no URL should exit 2"; exit 1; }
echo "wscat check passed"
