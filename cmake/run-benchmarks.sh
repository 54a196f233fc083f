#!/usr/bin/env bash
# Runs every benchmark binary in DIR, printing the console table and writing
# Google Benchmark JSON to OUT/<name>.json (docs/benchmarks.md reads these).
set -euo pipefail
dir=${1:?benchmark directory}
out=${2:?output directory}
mkdir -p "$out"
shopt -s nullglob
for b in "$dir"/*_bench; do
  [[ -x "$b" ]] || continue
  name=$(basename "$b")
  echo "== $name"
  "$b" --benchmark_out="$out/$name.json" --benchmark_out_format=json ${KEEL_BENCH_ARGS:-}
done
echo "bench: results in $out"
