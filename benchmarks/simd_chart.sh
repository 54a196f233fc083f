#!/bin/sh
# Draws docs/simd_bench.svg from simd_bench's Google Benchmark JSON: throughput
# (GB/s, log scale) at one haystack size, keel beside its peers. Benchmarks
# with a needle count before the size (BM_multi_keel/64/1048576) get the
# count appended to their name.
#
#   ./build/bench/benchmarks/simd_bench --benchmark_out=simd.json --benchmark_out_format=json
#   benchmarks/simd_chart.sh simd.json docs/simd_bench.svg [size, default 65536]
#   benchmarks/simd_chart.sh benchmarks/records/intel-r-xeon-r-processor-2cpu/2026-12-03/simd_bench.json docs/simd_text_bench.svg 1048576
#
# Needs python3 and gnuplot (Debian: gnuplot-nox).
set -eu
json=${1:?usage: simd_chart.sh BENCH.json OUT.svg [SIZE]}
out=${2:?usage: simd_chart.sh BENCH.json OUT.svg [SIZE]}
size=${3:-65536}
dat=$(mktemp)
trap 'rm -f "$dat"' EXIT

python3 - "$json" "$size" > "$dat" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
size = sys.argv[2]
rows = {}
order = []
for b in data["benchmarks"]:
    if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
        continue
    if "bytes_per_second" not in b:  # set-up timings
        continue
    name, _, arg = b.get("run_name", b["name"]).partition("/")
    args = arg.split("/")  # the haystack size is the last argument
    if args[-1] != size:
        continue
    parts = name[3:].split("_")  # BM_<op>_<impl>[/<needle count>]/<size>
    # op = everything up to the implementation name
    for i in range(1, len(parts)):
        impl = "_".join(parts[i:])
        if impl in ("keel", "keel_byteset", "keel_matches", "memchr", "memrchr", "memmem", "strcspn",
                    "std_find", "std_count", "string_view", "bmh", "memchr_loop", "strcasestr",
                    "hyperscan", "find_loop"):
            op = "_".join(parts[:i])
            break
    else:
        continue
    if len(args) > 1:
        op += "_" + "_".join(args[:-1])
    if op not in rows:
        rows[op] = {}
        order.append(op)
    rows[op][impl] = b["bytes_per_second"] / 1e9
impls = ["keel", "keel_byteset", "keel_matches", "memchr", "memrchr", "memchr_loop", "memmem", "strcspn",
         "std_find", "std_count", "string_view", "bmh", "strcasestr", "hyperscan", "find_loop"]
impls = [i for i in impls if any(i in r for r in rows.values())]
print("op " + " ".join(impls))
for op in order:
    print(op.replace("_", "-") + " " + " ".join("%.3f" % rows[op][i] if i in rows[op] else "-" for i in impls))
EOF

cols=$(head -1 "$dat" | wc -w)
gnuplot <<EOF
set terminal svg size 1100,520 dynamic font "sans,11"
set output "$out"
set title "keel::simd vs peers, $size-byte haystacks (GB/s, log scale, higher is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set datafile missing "-"
set logscale y
set yrange [0.05:*]
set ylabel "GB/s"
set xtics rotate by -30 scale 0
set key outside right top
set grid ytics
plot for [i=2:$cols] "$dat" using i:xtic(1) title columnheader(i)
EOF
echo "wrote $out"
