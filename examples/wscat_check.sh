#!/usr/bin/env bash
# keel-wscat end to end against the npm `ws` echo server of tests/node:
# stdin lines come back as message events, the session ends with a clean
# close and exit 0; against a closed port it reports reconnecting events,
# then gave_up and exit 1; exit 1 whenever it never connected or could not
# deliver every line; flags -H, --subprotocol, --binary, --proxy (through a
# tinyproxy it starts); bad usage exits 2.
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
raw=
proxy=
trap 'exec 3>&- 4>&- 5>&-; [ -n "$server" ] && kill $server 2>/dev/null; [ -n "$raw" ] && kill $raw 2>/dev/null; [ -n "$proxy" ] && kill $proxy 2>/dev/null; rm -rf "$tmp"' EXIT

# The server exits by itself when its stdin (fd 3, held by this script) closes.
mkfifo "$tmp/server.in" "$tmp/wscat.in" "$tmp/raw.in"
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

# --max-retries 0: no reconnect at all, gave_up, exit 1.
echo hi | timeout 20 "$wscat" "ws://127.0.0.1:1/" --max-retries 0 > "$tmp/none.jsonl" 2> /dev/null
rc=$?
cat "$tmp/none.jsonl"
[ $rc -eq 1 ] || { echo "--max-retries 0: exit status $rc, want 1"; exit 1; }
grep -q '"event":"reconnecting"' "$tmp/none.jsonl" && { echo "--max-retries 0 reconnected"; exit 1; }

# Never connected, nothing to send: exit 1 at once.
timeout 20 "$wscat" "ws://127.0.0.1:1/" < /dev/null > /dev/null 2>&1
rc=$?
[ $rc -eq 1 ] || { echo "never connected, empty stdin: exit status $rc, want 1"; exit 1; }

# Never connected, a line to send, retrying forever: gives up on the line
# connect_timeout after the end of stdin, exit 1.
echo hi | timeout 30 "$wscat" "ws://127.0.0.1:1/" --backoff-max-ms 200 > /dev/null 2>&1
rc=$?
[ $rc -eq 1 ] || { echo "undeliverable line: exit status $rc, want 1"; exit 1; }

# A line that is not UTF-8 is refused (stderr), the others go, exit 1.
printf 'good\n\xff\xfe\nalso good\n' | timeout 20 "$wscat" "ws://127.0.0.1:$port/" > "$tmp/utf8.jsonl" 2> "$tmp/utf8.err"
rc=$?
[ $rc -eq 1 ] || { echo "invalid UTF-8 line: exit status $rc, want 1"; exit 1; }
grep -q 'not valid UTF-8' "$tmp/utf8.err" || { echo "no error for the invalid line"; exit 1; }
grep -qx '{"event":"message","data":"also good"}' "$tmp/utf8.jsonl" || { echo "valid lines not sent"; exit 1; }

# --binary: stdin bytes go as a binary message; the echo prints as base64.
printf '\x00\x01\xff' | timeout 20 "$wscat" "ws://127.0.0.1:$port/" --binary > "$tmp/bin.jsonl" 2> /dev/null
rc=$?
cat "$tmp/bin.jsonl"
[ $rc -eq 0 ] || { echo "--binary: exit status $rc, want 0"; exit 1; }
grep -qx '{"event":"message","data":"AAH/","binary":true}' "$tmp/bin.jsonl" || { echo "no base64 binary echo"; exit 1; }

# -H and --subprotocol reach the server (the hand-written peer of tests/node
# sends back the request it got, and picks the first subprotocol offered).
node "$node_dir/raw.js" < "$tmp/raw.in" > "$tmp/raw.out" &
raw=$!
exec 5> "$tmp/raw.in"
for _ in $(seq 100); do
  grep -q '^PORT ' "$tmp/raw.out" 2>/dev/null && break
  sleep 0.1
done
rport=$(sed -n 's/^PORT //p' "$tmp/raw.out")
[ -n "$rport" ] || { echo "raw server did not start"; exit 1; }
timeout 20 "$wscat" "ws://127.0.0.1:$rport/headers" -H 'X-Keel: one two' -H 'Authorization: Bearer t' \
  --subprotocol p1 --subprotocol p2 --linger-ms 300 < /dev/null > "$tmp/hdr.jsonl" 2> /dev/null
rc=$?
exec 5>&-
cat "$tmp/hdr.jsonl"
[ $rc -eq 0 ] || { echo "-H: exit status $rc, want 0"; exit 1; }
grep -q '{"event":"connected","subprotocol":"p1"}' "$tmp/hdr.jsonl" || { echo "no subprotocol p1"; exit 1; }
grep -q 'X-Keel: one two' "$tmp/hdr.jsonl" || { echo "-H header did not reach the server"; exit 1; }
grep -q 'Sec-WebSocket-Protocol: p1, p2' "$tmp/hdr.jsonl" || { echo "subprotocols not offered"; exit 1; }

# --proxy: through a tinyproxy on a free loopback port (HTTP CONNECT), which
# logs the tunnel it opened.
command -v tinyproxy > /dev/null || { echo "tinyproxy missing (make deps): wscat check FAILED"; exit 1; }
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'Port %s\nListen 127.0.0.1\nTimeout 30\nLogLevel Connect\nLogFile "%s"\n' "$pport" "$tmp/proxy.log" > "$tmp/proxy.conf"
tinyproxy -d -c "$tmp/proxy.conf" > /dev/null 2>&1 &
proxy=$!
for _ in $(seq 100); do
  (exec 6<> "/dev/tcp/127.0.0.1/$pport") 2> /dev/null && break
  sleep 0.1
done
echo through | timeout 20 "$wscat" "ws://127.0.0.1:$port/" --proxy "http://127.0.0.1:$pport" > "$tmp/proxy.jsonl"
rc=$?
cat "$tmp/proxy.jsonl"
[ $rc -eq 0 ] || { echo "--proxy: exit status $rc, want 0"; exit 1; }
grep -qx '{"event":"message","data":"through"}' "$tmp/proxy.jsonl" || { echo "--proxy: no echo"; exit 1; }
grep -q "CONNECT.*127.0.0.1:$port" "$tmp/proxy.log" || { echo "--proxy: the proxy logged no CONNECT"; cat "$tmp/proxy.log"; exit 1; }

# Bad usage: exit 2, flags parsed exactly.
"$wscat" 2> /dev/null
[ $? -eq 2 ] || { echo "no URL should exit 2"; exit 1; }
for bad in -vvv -vx --verbosity -x --max-retries; do
  "$wscat" "ws://127.0.0.1:1/" $bad < /dev/null > /dev/null 2>&1
  [ $? -eq 2 ] || { echo "flag $bad should exit 2"; exit 1; }
done
"$wscat" "ws://127.0.0.1:1/" -H 'X-Only-Name' < /dev/null > /dev/null 2>&1
[ $? -eq 2 ] || { echo "-H without a colon should exit 2"; exit 1; }
"$wscat" "ws://127.0.0.1:1/" -H 'Host: x' < /dev/null > /dev/null 2>&1
[ $? -eq 2 ] || { echo "-H Host should exit 2"; exit 1; }
"$wscat" "ws://127.0.0.1:1/" -v -v --max-retries 0 < /dev/null > /dev/null 2>&1
[ $? -eq 1 ] || { echo "-v -v is a valid flag pair"; exit 1; }
echo "wscat check passed"
