#!/usr/bin/env bash
# Runs every benchmark binary in DIR, printing the console table and writing
# Google Benchmark JSON to OUT/<name>.json, with the CPU model and compiler
# in its context. `python3 benchmarks/tables.py record OUT` keeps a run as
# the record the docs' tables are generated from.
set -euo pipefail
dir=${1:?benchmark directory}
out=${2:?output directory}
mkdir -p "$out"
cpu=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//; s/,/ /g' || true)
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$dir/../CMakeCache.txt" 2>/dev/null || true)
cxxv=$("${cxx:-c++}" -dumpfullversion 2>/dev/null || echo unknown)
shopt -s nullglob
for b in "$dir"/*_bench; do
  [[ -x "$b" ]] || continue
  name=$(basename "$b")
  echo "== $name"
  load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo unknown)
  "$b" --benchmark_out="$out/$name.json" --benchmark_out_format=json \
    "--benchmark_context=cpu_model=${cpu:-unknown},compiler=$(basename "${cxx:-c++}") ${cxxv},load_average=${load}" \
    ${KEEL_BENCH_ARGS:-}
done
echo "bench: results in $out"
