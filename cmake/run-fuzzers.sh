#!/usr/bin/env bash
# Runs every libFuzzer target in DIR for SECONDS each, starting from its seed
# corpus in fuzz/corpus/<name> when there is one. Exits non-zero on the first crash.
set -euo pipefail
dir=${1:?fuzzer directory}
seconds=${2:-20}
shopt -s nullglob
ran=0
for f in "$dir"/fuzz_*; do
  [[ -x "$f" && -f "$f" ]] || continue
  name=$(basename "$f")
  work=$(mktemp -d)
  seeds="fuzz/corpus/${name#fuzz_}"
  args=("$work")
  [[ -d "$seeds" ]] && args+=("$seeds")
  echo "== $name (${seconds}s)"
  "$f" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/" "${args[@]}" 2>&1 | tail -n 5
  rc=${PIPESTATUS[0]}
  rm -rf "$work"
  [[ $rc -eq 0 ]] || { echo "fuzz: $name failed ($rc)" >&2; exit "$rc"; }
  ran=$((ran + 1))
done
echo "fuzz: $ran targets ran clean"
