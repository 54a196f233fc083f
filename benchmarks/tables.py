#!/usr/bin/env python3
"""Benchmark tables for the docs, generated from recorded benchmark JSON.

The figures the docs quote are kept as data: benchmarks/records/<machine>/
<date>/<name>_bench.json, Google Benchmark's own JSON as `make bench` wrote
it. Each table below names the benchmarks it compares; its rows are written
between the markers

    <!-- bench-table: ID -->
    ...
    <!-- /bench-table -->

in the pages that quote it, and a headline ratio in running text is written
between

    <!-- bench-ratio: ID ROW -->0.91x<!-- /bench-ratio -->

(ROW counts the table's rows from 1), so a headline and its table come from
the same numbers and cannot contradict each other.

    tables.py record RESULTS_DIR      copy `make bench` output into records/
    tables.py update                  rewrite every marked table in the docs
    tables.py check                   exit 1 when a marked table is stale
"""
import datetime
import json
import os
import re
import shutil
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = os.path.join(ROOT, "benchmarks", "records")
PAGES = ["README.md"] + sorted(
    os.path.join("docs", p) for p in os.listdir(os.path.join(ROOT, "docs")) if p.endswith(".md"))

# id -> (bench binary, rows[, metric]). A row: (case, keel benchmark, peer
# benchmark, peer's name). Times are per iteration; "x" is the peer's time over
# keel's (above 1: keel is faster). metric is "real_time" (the default) or
# "cpu_time" (the calling thread's CPU, for benchmarks that wait on a server).
TABLES = {
    "result": ("result_bench", [
        ("success path, 3-deep chain", "BM_Success_KeelResult", "BM_Success_PlainInt", "plain int"),
        ("success path, 3-deep chain", "BM_Success_KeelResult", "BM_Success_ErrorCodeOut",
         "std::error_code out-param"),
        ("success path, 3-deep chain", "BM_Success_KeelResult", "BM_Success_Exceptions", "exceptions"),
        ("error path, bare kind", "BM_Error_KeelResultBareCode", "BM_Error_ErrorCodeOut",
         "std::error_code out-param"),
        ("error path, bare kind", "BM_Error_KeelResultBareCode", "BM_Error_Exceptions", "a throw"),
        ("error path, formatted message", "BM_Error_KeelResultMessage", "BM_Error_Exceptions", "a throw"),
    ]),
}


def newest_record(bench):
    """(machine, date, parsed JSON) of the newest record of `bench`, or None."""
    best = None
    if not os.path.isdir(RECORDS):
        return None
    for machine in sorted(os.listdir(RECORDS)):
        mdir = os.path.join(RECORDS, machine)
        for date in sorted(os.listdir(mdir)) if os.path.isdir(mdir) else []:
            f = os.path.join(mdir, date, bench + ".json")
            if os.path.exists(f) and (best is None or date > best[1]):
                best = (machine, date, f)
    if best is None:
        return None
    with open(best[2], encoding="utf-8") as fh:
        return best[0], best[1], json.load(fh)


def times(doc, metric="real_time"):
    """name -> (median time in ns, repetitions) over the runs of one record."""
    runs = {}
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            continue
        name = b.get("run_name", b["name"])
        runs.setdefault(name, []).append(b[metric] * scale[b.get("time_unit", "ns")])
    return {k: (statistics.median(v), len(v)) for k, v in runs.items()}


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.2f} ns"


def spec(table_id):
    if table_id not in TABLES:
        raise SystemExit(f"tables.py: no table named {table_id!r} (see TABLES in {__file__})")
    entry = TABLES[table_id]
    return entry[0], entry[1], (entry[2] if len(entry) > 2 else "real_time")


def ratio(table_id, row):
    """The peer/keel ratio of one row (1-based) of a table, as the text "0.91x"."""
    bench, rows, metric = spec(table_id)
    rec = newest_record(bench)
    if rec is None or not 1 <= row <= len(rows):
        return "(no record)"
    t = times(rec[2], metric)
    _, keel, peer, _ = rows[row - 1]
    if keel not in t or peer not in t:
        return "(missing)"
    return f"{t[peer][0] / t[keel][0]:.2f}x"


def render(table_id):
    bench, rows, metric = spec(table_id)
    rec = newest_record(bench)
    if rec is None:
        return f"(no record of {bench} yet: run `make bench` then `python3 benchmarks/tables.py record`)\n"
    machine, date, doc = rec
    t = times(doc, metric)
    ctx = doc.get("context", {})
    what = "time" if metric == "real_time" else "CPU time"
    out = [f"| case | keel | peer | peer {what} / keel {what} |", "|---|---:|---:|---:|"]
    for case, keel, peer, peer_name in rows:
        if keel not in t or peer not in t:
            out.append(f"| {case} | missing | missing | |")
            continue
        k, p = t[keel][0], t[peer][0]
        out.append(f"| {case} | {fmt_ns(k)} | {peer_name}: {fmt_ns(p)} | {p / k:.2f}x |")
    reps = min((t[n][1] for r in rows for n in r[1:3] if n in t), default=0)
    out.append("")
    out.append(f"Recorded {date} on {ctx.get('cpu_model', machine)} ({ctx.get('num_cpus', '?')} CPUs), "
               f"{ctx.get('compiler', 'g++')}, Release; "
               f"median of {reps} repetition(s): `benchmarks/records/{machine}/{date}/{bench}.json`.")
    return "\n".join(out) + "\n"


MARK = re.compile(r"(<!-- bench-table: (\w+) -->\n)(.*?)(<!-- /bench-table -->)", re.S)
INLINE = re.compile(r"(<!-- bench-ratio: (\w+) (\d+) -->)(.*?)(<!-- /bench-ratio -->)")


def rewrite(text):
    text = MARK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), text)
    return INLINE.sub(lambda m: m.group(1) + ratio(m.group(2), int(m.group(3))) + m.group(5), text)


def machine_slug():
    model = "unknown-cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return f"{slug}-{os.cpu_count()}cpu"


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "check"
    if cmd == "record":
        src = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "build", "bench", "results")
        dest = os.path.join(RECORDS, machine_slug(), datetime.date.today().isoformat())
        os.makedirs(dest, exist_ok=True)
        for f in sorted(os.listdir(src)):
            if f.endswith(".json"):
                shutil.copy(os.path.join(src, f), dest)
                print(f"recorded {os.path.join(dest, f)}")
        return 0
    stale = []
    for page in PAGES:
        path = os.path.join(ROOT, page)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        new = rewrite(text)
        if new != text:
            if cmd == "update":
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(new)
                print(f"updated {page}")
            else:
                stale.append(page)
    if stale:
        print("stale benchmark tables (run `python3 benchmarks/tables.py update`): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
