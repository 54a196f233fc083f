#!/usr/bin/env bash
# Checks keel-vault end to end (run by ctest as examples.vault):
# put/get/ls/rm/rotate/info round trips, Argon2id and PBKDF2 vaults, 0600
# files under any umask, one-line errors with a non-zero exit for a wrong
# password, a missing name and a file that is not a vault, and the password
# prompts through a pseudo-terminal (echo off, asked twice, empty and
# mismatched passwords refused, the terminal restored after Ctrl-C, the
# environment password wiped, no core dumps).
# usage: vault_check.sh /path/to/keel-vault WORKDIR
set -euo pipefail
vault=$1
dir=$2/vault_check.$$
rm -rf "$dir" && mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
db=$dir/v.db
export KEEL_VAULT_PASSWORD='first password'
v() { "$vault" --db "$db" --kdf pbkdf2 --iterations 100000 "$@"; }
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

(umask 000; printf 'hunter2' | v put db/password)
for f in "$db" "$db-wal" "$db-shm"; do
  [ ! -e "$f" ] || [ "$(stat -c %a "$f")" = 600 ] || fail "$f is not 0600: $(stat -c %a "$f")"
done
printf 'tok\nen with newline\n' | v put api/token
[ "$(v get db/password)" = "hunter2" ] || fail "get db/password"
[ "$(v get api/token | od -c)" = "$(printf 'tok\nen with newline\n' | od -c)" ] || fail "get api/token bytes"
[ "$(v ls | tr '\n' ' ')" = "api/token db/password " ] || fail "ls"
grep -q hunter2 "$db" "$db"-wal 2>/dev/null && fail "plaintext in the database file"
v info | grep -q '^kdf: pbkdf2-sha256 100000 iterations$' || fail "info kdf: $(v info)"
v info | grep -q '^records: 2$' || fail "info records"

expect_error AUTH_FAILED env KEEL_VAULT_PASSWORD='wrong' "$vault" --db "$db" get db/password
expect_error NOT_FOUND v get nope
expect_error NOT_FOUND v rm nope
expect_error INVALID_ARGUMENT env KEEL_VAULT_PASSWORD= "$vault" --db "$dir/empty.db" put x

v rm api/token
[ "$(v ls)" = "db/password" ] || fail "ls after rm"

# Rotation moves the vault to Argon2id (the default KDF).
KEEL_VAULT_NEW_PASSWORD='second password' "$vault" --db "$db" rotate
expect_error AUTH_FAILED v get db/password
[ "$(KEEL_VAULT_PASSWORD='second password' v get db/password)" = "hunter2" ] || fail "get after rotate"
"$vault" --db "$db" info | grep -q '^kdf: argon2id m=65536 KiB t=3 p=1$' || fail "info after rotate"
"$vault" --db "$db" info | grep -q '^format: 2$' || fail "format after rotate"

chmod 666 "$db"
expect_error CONFIG env KEEL_VAULT_PASSWORD='second password' "$vault" --db "$db" ls
chmod 600 "$db"

printf 'not a database, just text' > "$dir/junk.db"
expect_error . "$vault" --db "$dir/junk.db" ls
expect_error NOT_FOUND "$vault" --db "$dir/absent.db" ls
expect_error INVALID_ARGUMENT "$vault" --db "$db" frobnicate
expect_error INVALID_ARGUMENT "$vault" --db "$db" --kdf scrypt ls

# The prompts, through a pseudo-terminal that is the tool's controlling terminal.
python3 - "$vault" "$dir" <<'PY'
import fcntl, os, select, signal, subprocess, sys, termios, time

vault, d = sys.argv[1], sys.argv[2]

def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)

class Tty:
    """Runs keel-vault with a fresh pty as its controlling terminal."""
    def __init__(self, args, env=None, stdin=b""):
        self.master, self.slave = os.openpty()
        def setup():
            os.setsid()
            fcntl.ioctl(self.slave, termios.TIOCSCTTY, 0)
        e = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_VAULT")}
        e.update(env or {})
        self.p = subprocess.Popen([vault] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=e, preexec_fn=setup, pass_fds=[self.slave])
        self.stdin = stdin
        self.seen = b""

    def expect(self, text, timeout=20):
        deadline = time.monotonic() + timeout  # watchdog: a hang fails here, not at ctest's timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                self.p.kill()
                fail(f"no {text!r} on the terminal; saw {self.seen!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    self.seen += os.read(self.master, 1024)
                except OSError:
                    break
        if text.encode() not in self.seen:
            fail(f"no {text!r} on the terminal; saw {self.seen!r}")

    def echo_on(self):
        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    def type(self, s):
        os.write(self.master, s.encode())

    def finish(self):
        try:
            out, err = self.p.communicate(self.stdin, timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            fail("keel-vault did not finish")
        return self.p.returncode, out, err

db = os.path.join(d, "tty.db")
pbkdf2 = ["--db", db, "--kdf", "pbkdf2", "--iterations", "100000"]

# A new vault: echo off at the prompt, asked twice, nothing echoed.
t = Tty(pbkdf2 + ["put", "k"], stdin=b"tty-secret")
t.expect("vault password: ")
if t.echo_on(): fail("echo is on while the password is typed")
t.type("pty-pass-1\n")
t.expect("again: ")
t.type("pty-pass-1\n")
rc, out, err = t.finish()
if rc != 0: fail(f"put through the prompt: {rc} {err!r}")
if b"pty-pass-1" in t.seen: fail("the password was echoed")
if not t.echo_on(): fail("echo not restored")
print("ok: prompt with echo off, asked twice")

# A mismatch and an empty password are refused.
for first, second, why in (("one-pass", "two-pass", b"do not match"), ("", None, b"empty")):
    other = os.path.join(d, "tty2.db")
    t = Tty(["--db", other, "--kdf", "pbkdf2", "--iterations", "100000", "put", "k"], stdin=b"x")
    t.expect("vault password: ")
    t.type(first + "\n")
    if second is not None:
        t.expect("again: ")
        t.type(second + "\n")
    rc, out, err = t.finish()
    if rc == 0 or why not in err: fail(f"expected a refusal ({why!r}): {rc} {err!r}")
    print("ok: refused:", err.decode().strip())

# Ctrl-C at the prompt: the process dies of SIGINT and the terminal has echo back.
t = Tty(pbkdf2 + ["ls"])
t.expect("vault password: ")
if t.echo_on(): fail("echo is on at the prompt")
t.type("\x03")
rc, out, err = t.finish()
if rc != -signal.SIGINT: fail(f"expected death by SIGINT, got {rc}")
if not t.echo_on(): fail("echo not restored after Ctrl-C")
print("ok: terminal restored after Ctrl-C")

# The password from the environment is gone from /proc/PID/environ once
# read; core dumps are off. (Checked while rotate waits at its prompt.)
t = Tty(pbkdf2 + ["rotate"], env={"KEEL_VAULT_PASSWORD": "pty-pass-1"})
t.expect("new vault password: ")
with open(f"/proc/{t.p.pid}/environ", "rb") as f:
    if b"pty-pass-1" in f.read(): fail("the password is still in the environment")
with open(f"/proc/{t.p.pid}/limits") as f:
    core = [l for l in f if l.startswith("Max core file size")][0].split()
    if core[4] != "0" or core[5] != "0": fail(f"core dumps allowed: {core}")
t.type("pty-pass-2\n")
t.expect("again: ")
t.type("pty-pass-2\n")
rc, out, err = t.finish()
if rc != 0: fail(f"rotate through the prompt: {rc} {err!r}")
print("ok: environment password wiped, no core dumps")
PY
KEEL_VAULT_PASSWORD='pty-pass-2' "$vault" --db "$dir/tty.db" get k | grep -q '^tty-secret$' || fail "get after the tty rotate"
echo "vault check passed"
