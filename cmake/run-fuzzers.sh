#!/usr/bin/env bash
# Runs every libFuzzer target in DIR for SECONDS each, starting from its seed
# corpus in fuzz/corpus/<name> when there is one, JOBS targets at a time (one
# per core; each fuzzer is single-threaded). Exits non-zero when any crashes.
set -euo pipefail
dir=${1:?fuzzer directory}
seconds=${2:-20}
jobs=${3:-$(nproc 2>/dev/null || echo 2)}
shopt -s nullglob
logs=$(mktemp -d)
artifacts="$dir/artifacts" # a crashing input is kept here
mkdir -p "$artifacts"
trap 'rm -rf "$logs"' EXIT

run_one() {
  local f=$1 name work seeds rc
  name=$(basename "$f")
  work=$(mktemp -d)
  seeds="fuzz/corpus/${name#fuzz_}"
  local args=("$work")
  [[ -d "$seeds" ]] && args+=("$seeds")
  rc=0
  "$f" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
    "${args[@]}" > "$logs/$name.log" 2>&1 || rc=$?
  rm -rf "$work"
  echo "$rc" > "$logs/$name.rc"
}

targets=()
for f in "$dir"/fuzz_*; do
  [[ -x "$f" && -f "$f" ]] && targets+=("$f")
done
[[ ${#targets[@]} -gt 0 ]] || { echo "fuzz: no targets in $dir" >&2; exit 1; }

running=0
for f in "${targets[@]}"; do
  echo "== $(basename "$f") (${seconds}s)"
  run_one "$f" &
  running=$((running + 1))
  if [[ $running -ge $jobs ]]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

failed=0
for f in "${targets[@]}"; do
  name=$(basename "$f")
  rc=$(cat "$logs/$name.rc" 2>/dev/null || echo 99)
  if [[ $rc -ne 0 ]]; then
    echo "fuzz: $name failed ($rc):" >&2
    tail -n 60 "$logs/$name.log" >&2
    failed=1
  else
    echo "-- $name"
    tail -n 5 "$logs/$name.log"
  fi
done
[[ $failed -eq 0 ]] || exit 1
echo "fuzz: ${#targets[@]} targets ran clean"
