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
        ("success path, 3-deep chain", "BM_Success_KeelResult", "BM_Success_OwningPair",
         "a 16-byte struct with a destructor (the ABI's floor)"),
    ], "cpu_time"),
    # The README's summary: a few rows of each module, each from its own record.
    "summary": ("", [
        ("Result<int> success path, 3 calls deep", "BM_Success_KeelResult", "BM_Success_Exceptions",
         "exceptions' success path", "result_bench", "cpu_time"),
        ("error path, bare kind", "BM_Error_KeelResultBareCode", "BM_Error_ErrorCodeOut",
         "std::error_code out-param", "result_bench", "cpu_time"),
        ("error path, bare kind", "BM_Error_KeelResultBareCode", "BM_Error_Exceptions", "a throw", "result_bench",
         "cpu_time"),
        ("`simd::find`, a byte in 1 KiB", "BM_find_keel/1024", "BM_find_memchr/1024", "glibc memchr", "simd_bench",
         "cpu_time"),
        ("substring, 8-byte word in 1 MiB of English text", "BM_sub8_keel/1048576", "BM_sub8_memmem/1048576",
         "glibc memmem", "simd_bench", "cpu_time"),
        ("`find_icase` in 1 MiB of English text", "BM_icase_keel/1048576", "BM_icase_strcasestr/1048576",
         "glibc strcasestr", "simd_bench", "cpu_time"),
        ("MpmcQueue, 2 + 2 threads", "mpmc_2x2/keel_MpmcQueue/real_time", "mpmc_2x2/boost_queue/real_time",
         "Boost lockfree queue", "lockfree_bench"),
        ("ConcurrentMap, 10% writes, 2 threads", "map_2t/keel_ConcurrentMap/10/real_time/threads:2",
         "map_2t/shared_mutex_unordered_map/10/real_time/threads:2", "shared_mutex + unordered_map",
         "lockfree_bench"),
        ("channel, 1 producer 1 consumer", "BM_1P1C<KeelQ>/real_time", "BM_1P1C<Moody>/real_time",
         "moodycamel BlockingConcurrentQueue", "channel_bench"),
        ("channel ping-pong round trip", "BM_PingPong<KeelQ>/real_time", "BM_PingPong<Moody>/real_time",
         "moodycamel BlockingConcurrentQueue", "channel_bench"),
        ("SQLite point read, checkout per read", "BM_PointRead_Keel/real_time/threads:1",
         "BM_PointRead_Raw/real_time/threads:1", "raw C API", "sqlite_bench"),
        ("SQLite point read, 4 threads", "BM_PointRead_Keel/real_time/threads:4",
         "BM_PointRead_OpenPerOp/real_time/threads:4", "open per request", "sqlite_bench"),
        ("PostgreSQL point read, checkout per read", "BM_PointRead_Keel", "BM_PointRead_RawPrepared",
         "raw libpq, prepared", "postgres_bench", "cpu_time"),
        ("PostgreSQL point read, checkout per read", "BM_PointRead_Keel", "BM_PointRead_Pqxx", "libpqxx, prepared",
         "postgres_bench", "cpu_time"),
        ("AES-GCM `seal`, 64 B", "keel_seal/64", "raw_fresh_seal/64", "EVP, per-call context", "crypto_bench",
         "cpu_time"),
        ("WebSocket 64 B round trip, on your executor", "BM_KeelOnExecutor_RoundTrip/64/real_time",
         "BM_RawAsync_RoundTrip/64/real_time", "raw async Beast", "websocket_bench"),
        ("WebSocket 64 B round trip, own I/O thread", "BM_Keel_RoundTrip/64/real_time",
         "BM_RawIoThread_RoundTrip/64/real_time", "raw Beast on an I/O thread", "websocket_bench"),
    ]),
    "simd": ("simd_bench", [
        ("find a byte, 16 B", "BM_find_keel/16", "BM_find_memchr/16", "glibc memchr"),
        ("find a byte, 64 B", "BM_find_keel/64", "BM_find_memchr/64", "glibc memchr"),
        ("find a byte, 1 KiB", "BM_find_keel/1024", "BM_find_memchr/1024", "glibc memchr"),
        ("substring, 8-byte needle, 1 MiB text", "BM_sub8_keel/1048576", "BM_sub8_memmem/1048576", "glibc memmem"),
        ("substring, 16-byte needle, 1 MiB text", "BM_sub16_keel/1048576", "BM_sub16_memmem/1048576",
         "glibc memmem"),
        ("substring, 8-byte needle, 1 MiB text", "BM_sub8_keel/1048576", "BM_byte_scan_keel/1048576",
         "keel's single-byte scan"),
        ("rfind, 16-byte needle, 1 MiB text", "BM_rsub16_keel/1048576", "BM_sub16_keel/1048576",
         "keel's forward find"),
        ("ASCII case-insensitive, 1 MiB text", "BM_icase_keel/1048576", "BM_icase_strcasestr/1048576",
         "glibc strcasestr"),
        ("8 needles, 1 MiB text, no match", "BM_multi_keel/8/1048576", "BM_multi_hyperscan/8/1048576", "Hyperscan"),
        ("16 needles, 1 MiB text, no match", "BM_multi_keel/16/1048576", "BM_multi_hyperscan/16/1048576",
         "Hyperscan"),
        ("64 needles, 1 MiB text, no match", "BM_multi_keel/64/1048576", "BM_multi_hyperscan/64/1048576",
         "Hyperscan"),
        ("64 needles, setup", "BM_multi_setup_keel/64/1048576", "BM_multi_setup_hyperscan/64/1048576",
         "Hyperscan"),
    ], "cpu_time"),
    "postgres_point": ("postgres_bench", [
        ("point read, checkout per read", "BM_PointRead_Keel", "BM_PointRead_RawPrepared",
         "raw libpq, prepared"),
        ("point read, connection held", "BM_PointRead_KeelHeld", "BM_PointRead_RawPrepared",
         "raw libpq, prepared"),
        ("point read, checkout per read", "BM_PointRead_Keel", "BM_PointRead_Pqxx", "libpqxx, prepared"),
    ], "cpu_time"),
    "postgres_batch": ("postgres_bench", [
        ("1000-row insert, COPY", "BM_Batch_Copy/real_time", "BM_Batch_RowByRow/real_time", "row by row"),
        ("1000-row insert, pipeline", "BM_Batch_Pipeline/real_time", "BM_Batch_RowByRow/real_time",
         "row by row"),
    ]),
    "sqlite": ("sqlite_bench", [
        ("point read, checkout per read", "BM_PointRead_Keel/real_time/threads:1",
         "BM_PointRead_Raw/real_time/threads:1", "raw C API"),
        ("point read, connection held", "BM_PointRead_KeelHeld/real_time/threads:1",
         "BM_PointRead_Raw/real_time/threads:1", "raw C API"),
        ("point read, 4 threads", "BM_PointRead_Keel/real_time/threads:4",
         "BM_PointRead_Mutex/real_time/threads:4", "one connection behind a mutex"),
        ("point read, 4 threads", "BM_PointRead_Keel/real_time/threads:4",
         "BM_PointRead_OpenPerOp/real_time/threads:4", "open per operation"),
        ("single-row write transaction", "BM_InsertTx_Keel/real_time/threads:1",
         "BM_InsertTx_Raw/real_time/threads:1", "raw C API"),
        ("1000-row batch in one transaction", "BM_BatchInsert_Keel/real_time", "BM_BatchInsert_Raw/real_time",
         "raw C API"),
    ]),
    "channel": ("channel_bench", [
        ("1 producer, 1 consumer", "BM_1P1C<KeelQ>/real_time", "BM_1P1C<Moody>/real_time",
         "moodycamel BlockingConcurrentQueue"),
        ("2 producers, 2 consumers", "BM_2P2C<KeelQ>/real_time", "BM_2P2C<Moody>/real_time",
         "moodycamel BlockingConcurrentQueue"),
        ("4 producers, 2 consumers", "BM_4P2C<KeelQ>/real_time", "BM_4P2C<Moody>/real_time",
         "moodycamel BlockingConcurrentQueue"),
        ("ping-pong round trip", "BM_PingPong<KeelQ>/real_time", "BM_PingPong<Moody>/real_time",
         "moodycamel BlockingConcurrentQueue"),
        ("1 producer, 1 consumer", "BM_1P1C<KeelQ>/real_time", "BM_1P1C<MutexDeque>/real_time",
         "mutex + condition variable"),
        ("ping-pong round trip", "BM_PingPong<KeelQ>/real_time", "BM_PingPong<MutexDeque>/real_time",
         "mutex + condition variable"),
    ]),
    "lockfree": ("lockfree_bench", [
        ("SPSC push+pop, one thread", "pushpop_1t/keel_SpscRing", "pushpop_1t/atomic_queue_spsc",
         "atomic_queue SPSC"),
        ("SPSC, two threads", "spsc/keel_SpscRing/real_time", "spsc/moodycamel_ReaderWriterQueue/real_time",
         "moodycamel ReaderWriterQueue"),
        ("SPSC, two threads", "spsc/keel_SpscRing/real_time", "spsc/boost_spsc_queue/real_time",
         "Boost spsc_queue"),
        ("MPMC, 2x2 threads", "mpmc_2x2/keel_MpmcQueue/real_time", "mpmc_2x2/atomic_queue/real_time",
         "atomic_queue MPMC"),
        ("MPMC, 2x2 threads", "mpmc_2x2/keel_MpmcQueue/real_time", "mpmc_2x2/boost_queue/real_time",
         "Boost lockfree queue"),
        ("stack, two threads", "stack_2t/keel_Stack/real_time", "stack_2t/boost_stack/real_time",
         "Boost lockfree stack"),
        ("rate limiter, 2 threads", "rate/keel_RateLimiter/real_time/threads:2",
         "rate/mutex_bucket/real_time/threads:2", "mutex token bucket"),
        ("map, 10% writes, 2 threads", "map_2t/keel_ConcurrentMap/10/real_time/threads:2",
         "map_2t/shared_mutex_unordered_map/10/real_time/threads:2", "shared_mutex + unordered_map"),
    ]),
    "crypto": ("crypto_bench", [
        ("seal 64 B", "keel_seal/64", "raw_fresh_seal/64", "raw EVP, fresh context"),
        ("seal 64 KiB", "keel_seal/65536", "raw_fresh_seal/65536", "raw EVP, fresh context"),
        ("seal_into 64 B", "keel_seal_into/64", "raw_reused_seal/64", "raw EVP, reused context"),
        ("open 64 B", "keel_open/64", "raw_fresh_open/64", "raw EVP, fresh context"),
        ("open_into 64 KiB", "keel_open_into/65536", "raw_reused_open/65536", "raw EVP, reused context"),
        ("PBKDF2-SHA256, 600,000 iterations", "keel_derive_key/600000/iterations:4",
         "raw_pkcs5_pbkdf2/600000/iterations:4", "raw PKCS5_PBKDF2_HMAC"),
    ], "cpu_time"),
    "websocket": ("websocket_bench", [
        ("64 B round trip, one thread", "BM_KeelOnExecutor_RoundTrip/64/real_time",
         "BM_RawAsync_RoundTrip/64/real_time", "raw Beast async"),
        ("64 KiB round trip, one thread", "BM_KeelOnExecutor_RoundTrip/65536/real_time",
         "BM_RawAsync_RoundTrip/65536/real_time", "raw Beast async"),
        ("64 B pipelined, one thread", "BM_KeelOnExecutor_Pipelined/64/real_time",
         "BM_RawAsync_Pipelined/64/real_time", "raw Beast async"),
        ("64 KiB pipelined, one thread", "BM_KeelOnExecutor_Pipelined/65536/real_time",
         "BM_RawAsync_Pipelined/65536/real_time", "raw Beast async"),
        ("64 B round trip, I/O thread", "BM_Keel_RoundTrip/64/real_time", "BM_RawIoThread_RoundTrip/64/real_time",
         "raw Beast on an I/O thread"),
        ("64 KiB round trip, I/O thread", "BM_Keel_RoundTrip/65536/real_time",
         "BM_RawIoThread_RoundTrip/65536/real_time", "raw Beast on an I/O thread"),
        ("64 B pipelined, I/O thread", "BM_Keel_Pipelined/64/real_time", "BM_RawIoThread_Pipelined/64/real_time",
         "raw Beast on an I/O thread"),
        ("64 KiB pipelined, I/O thread", "BM_Keel_Pipelined/65536/real_time",
         "BM_RawIoThread_Pipelined/65536/real_time", "raw Beast on an I/O thread"),
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
    runs, medians = {}, {}
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
    for b in doc.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        name = b.get("run_name", b["name"])
        value = b[metric] * scale[b.get("time_unit", "ns")]
        if b.get("run_type") != "aggregate":
            runs.setdefault(name, []).append(value)
        elif b.get("aggregate_name") == "median":
            # A run with --benchmark_report_aggregates_only keeps only these.
            medians[name] = (value, b.get("repetitions", 1))
    out = {k: (statistics.median(v), len(v)) for k, v in runs.items()}
    for k, v in medians.items():
        out.setdefault(k, v)
    return out


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
    if not 1 <= row <= len(rows):
        return "(no such row)"
    r = row_of(rows[row - 1], bench, metric)
    rec = newest_record(r["bench"])
    if rec is None:
        return "(no record)"
    t = times(rec[2], r["metric"])
    if r["keel"] not in t or r["peer"] not in t:
        return "(missing)"
    return f"{t[r['peer']][0] / t[r['keel']][0]:.2f}x"


def row_of(row, bench, metric):
    """A row as a dict; a row may name its own bench binary and metric (5th
    and 6th fields), for summary tables that draw on several records."""
    out = {"case": row[0], "keel": row[1], "peer": row[2], "peer_name": row[3], "bench": bench,
           "metric": metric}
    if len(row) > 4 and row[4]:
        out["bench"] = row[4]
    if len(row) > 5 and row[5]:
        out["metric"] = row[5]
    return out


def render(table_id):
    bench, rows, metric = spec(table_id)
    rows = [row_of(r, bench, metric) for r in rows]
    benches = sorted({r["bench"] for r in rows})
    recs = {b: newest_record(b) for b in benches}
    missing = [b for b, rec in recs.items() if rec is None]
    if len(missing) == len(benches):
        return (f"(no record of {', '.join(missing)} yet: run `make bench` then "
                "`python3 benchmarks/tables.py record`)\n")
    rows = [r for r in rows if r["bench"] not in missing]
    benches = [b for b in benches if b not in missing]
    metrics = {r["metric"] for r in rows}
    what = ("time" if metrics == {"real_time"} else "CPU time" if metrics == {"cpu_time"} else "time")
    out = [f"| case | keel | peer | peer {what} / keel {what} |", "|---|---:|---:|---:|"]
    reps = []
    for r in rows:
        t = times(recs[r["bench"]][2], r["metric"])
        if r["keel"] not in t or r["peer"] not in t:
            out.append(f"| {r['case']} | missing | missing | |")
            continue
        k, p = t[r["keel"]][0], t[r["peer"]][0]
        reps += [t[r["keel"]][1], t[r["peer"]][1]]
        out.append(f"| {r['case']} | {fmt_ns(k)} | {r['peer_name']}: {fmt_ns(p)} | {p / k:.2f}x |")
    out.append("")
    for b in benches:
        machine, date, doc = recs[b]
        ctx = doc.get("context", {})
        out.append(f"- `{b}`: recorded {date} on {ctx.get('cpu_model', machine)} "
                   f"({ctx.get('num_cpus', '?')} CPUs), {ctx.get('compiler', 'g++')}, Release; "
                   + (f"load average {ctx['load_average']} when it started; " if "load_average" in ctx else "")
                   + f"`benchmarks/records/{machine}/{date}/{b}.json`.")
    if len(metrics) > 1:
        out.append("- Single-threaded rows compare CPU time, threaded rows wall time.")
    out.append(f"- Medians of {min(reps, default=0)} or more repetitions; above 1x, keel is faster.")
    if missing:
        out.append(f"- Not recorded yet: {', '.join('`' + b + '`' for b in missing)} "
                   "(`make bench`, then `make bench-record`).")
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
