#!/usr/bin/env python3
"""Benchmarks: speed and footprint of the three services against the fastest
honest baselines, measured side by side in one run on one machine, so that
the noise of a shared machine largely cancels out in the ratios.

  scripts/bench.sh               full run (~10-15 min), writes BENCHMARKS.md
  scripts/bench.sh --quick       short points, smaller data (~4 min): for trying it out
  MP_BIN_DIR=DIR benchmarks the binaries in DIR instead of dist/ (implies --no-build).

What it measures (details in BENCHMARKS.md, "How it is measured"):
  1. read path   GET /api/movies/{id}, GET /api/movies?title=: inventory direct,
                 nginx in front of inventory, the gateway in front of inventory
  2. write path  POST /api/movies (same three); POST /api/billing against
                 raw confirmed publishes to the same RabbitMQ (bench-tools raw-publish)
  3. drain       a 100,000-order backlog into PostgreSQL against the broker alone
                 (bench-tools raw-consume) and the database alone (one plain INSERT)
  4. scale       search and paging latency with 1k, 100k, 1M movies
  5. footprint   binary sizes, RSS idle / after load / peak, start-up time to ready
  6. listings    the full GET /api/movies at 1k, 100k, 1M movies (time, MB/s, peak
                 RSS of inventory and gateway; direct, nginx, gateway); the last page
                 at 1M with offset vs after_id; GET /api/movies/{id} while 4 full
                 listings run. Its own block in OUT; `--only listing` runs just it.

It runs its OWN instance of the system (state in .state/bench, ports 38080-38082,
PostgreSQL 57432/57433, RabbitMQ 57672-57675, nginx 38090; override with
BENCH_*_PORT) through scripts/local.sh, and stops it at the end, also on failure.
Exits non-zero if any run had errors: a non-2xx answer, a socket error, a
failed publish, an incomplete drain.

The program behind scripts/bench.sh (Python 3 standard library only). The
arithmetic and the Markdown are plain functions at the top (tested by
test_bench.py against fixed inputs); the Bench class below drives wrk, curl,
nginx, psql, bench-tools and scripts/local.sh.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import mp_dotenv  # noqa: E402
import mp_http  # noqa: E402
import mp_rabbitmq  # noqa: E402

SERVICES = ("api-gateway", "inventory-app", "billing-worker")
PATHS = ("direct", "nginx", "gateway")
NA = "n/a"


class BenchError(Exception):
    """Stops the run with one message (the bash version's `die`)."""


# ------------------------------------------------- arithmetic and figures --
# Every figure is kept as the text that goes into the report, rounded where
# it is measured, exactly as the shell version kept it: a ratio is computed
# from the rounded figures the table shows, so a reader can check it.


def num(text):
    """TEXT as a float; None when it is empty, n/a or not a number."""
    if text is None or text == "" or text == NA:
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def fmt(value, decimals=1):
    """VALUE with DECIMALS decimals (C printf rounding, as awk's printf)."""
    return f"{value:.{decimals}f}"


def ratio(a, b):
    """A/B with two decimals, or n/a when either is missing or B is not > 0."""
    x, y = num(a), num(b)
    if x is None or y is None or y <= 0:
        return NA
    return fmt(x / y, 2)


def mb(kb):
    """kB as MB (1024) with one decimal, or n/a."""
    x = num(kb)
    return NA if x is None else fmt(x / 1024, 1)


def median(values):
    """The middle value (the lower of the two middle ones), as given; n/a if none."""
    items = [v for v in values if num(v) is not None]
    if not items:
        return NA
    items.sort(key=float)
    return items[(len(items) - 1) // 2]


def min_of(values):
    """The smallest number, ignoring n/a; "" when there is none."""
    items = [v for v in values if num(v) is not None]
    return min(items, key=float) if items else ""


def verdict(ok):
    return "met" if ok else "**NOT met**"


def kv_fields(text):
    """The KEY=VALUE words of TEXT (a BENCH line of report.lua, a bench-tools
    result line), as a dict of strings."""
    fields = {}
    for word in (text or "").split():
        if "=" in word:
            k, _, v = word.partition("=")
            fields[k] = v
    return fields


def bench_line(output):
    """The BENCH line report.lua printed ("" when there is none)."""
    return "\n".join(line for line in output.splitlines() if line.startswith("BENCH "))


def wrk_errors(line):
    """The non-zero error counters of a BENCH line (status = non-2xx/3xx
    answers; connect, read, write, timeout = socket errors), "k=v " each."""
    bad = ""
    for word in line.split()[1:]:
        k, _, v = word.partition("=")
        if k == "requests" or k.endswith("_us"):
            continue
        if (num(v) or 0) > 0:
            bad += word + " "
    return bad


def wrk_ok(fields):
    """Successful answers of a wrk run: only they count as throughput."""
    return int(fields.get("requests", 0)) - int(fields.get("status", 0))


def per_second(count, duration_us):
    return fmt(count / (duration_us / 1_000_000), 0)


def ms(us):
    """Microseconds (text) as milliseconds with two decimals."""
    return fmt(float(us) / 1000, 2)


def cpu_us_per(ticks, clk_tck, count):
    """CPU microseconds per request from clock ticks."""
    return fmt(ticks * 1_000_000 / clk_tck / count, 0)


def stat_cpu_ticks(stat):
    """utime + stime of a /proc/PID/stat text (fields after the command name,
    which may hold spaces and parentheses)."""
    fields = stat.rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def status_field(status, field):
    """The kB figure of FIELD (VmRSS, VmHWM) in a /proc/PID/status text, or ""."""
    for line in status.splitlines():
        parts = line.split()
        if parts and parts[0] == field + ":":
            return parts[1]
    return ""


def put_block(text, block, marker):
    """TEXT (a BENCHMARKS.md, or None when the file does not exist) with the
    part from <!-- MARKER:begin to <!-- MARKER:end --> replaced by BLOCK, or
    BLOCK appended when TEXT has none."""
    if text is None:
        return "# Benchmarks\n\n" + block
    if re.search(r"^<!-- " + re.escape(marker) + ":begin", text, flags=re.M):
        pattern = r"<!-- " + re.escape(marker) + r":begin.*?<!-- " + re.escape(marker) + r":end -->\n?"
        return re.sub(pattern, lambda _: block, text, count=1, flags=re.S)
    return text + "\n" + block


# ----------------------------------------------------------------- report --


class Settings:
    """The run's shape: durations and sizes (full or --quick)."""

    def __init__(self, quick=False, only="", rust_log="info", prefetch="", batch=""):
        self.quick = quick
        self.only = only
        self.rust_log = rust_log
        self.prefetch = prefetch
        self.batch = batch
        if quick:
            self.warmup, self.duration, self.rounds, self.slice = 1, 3, 3, 1
            self.scale_warmup, self.scale_duration = 1, 2
            self.backlog, self.sizes, self.startup_runs, self.listing_runs = 10000, [1000, 100000], 2, 1
        else:
            self.warmup, self.duration, self.rounds, self.slice = 3, 10, 5, 2
            self.scale_warmup, self.scale_duration = 2, 5
            self.backlog, self.sizes, self.startup_runs, self.listing_runs = 100000, [1000, 100000, 1000000], 5, 3
        self.conns = [1, 16, 64]
        self.write_conns = 16
        self.read_dataset = 1000


def row(*cells):
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |\n"


def table(*columns):
    """A Markdown table's header and alignment rows: a column named with a
    leading ">" is right-aligned (figures), the others left-aligned."""
    names = [c.lstrip(">") for c in columns]
    align = ["--:" if c.startswith(">") else "---" for c in columns]
    return row(*names) + "|" + "|".join(align) + "|\n"


class Figures:
    """Figures by key, as the report reads them: n/a when missing or empty."""

    def __init__(self, R):
        self.R = R

    def __call__(self, key):
        return self.R.get(key) or NA

    def lat(self, key):
        """KEY's "p50 / p99" cell."""
        return f"{self(key + '.p50')} / {self(key + '.p99')}"

    def ratio(self, a, b):
        return ratio(self(a), self(b))

    def mb(self, key):
        return mb(self(key))


def report(R, s, errors):
    """The main block of BENCHMARKS.md (sections 1-5 and the targets)."""
    v = Figures(R)
    quick = " (--quick: short points, smaller data; indicative only)" if s.quick else ""
    o = [
        "<!-- bench:begin: generated by scripts/bench.sh; everything up to bench:end is rewritten on each run -->\n",
        f"## Latest run: {v('date')}{quick}\n\n",
        f"{v('nproc')} x {v('cpu')}, {v('ram')} RAM; {v('kernel')}; {v('os')}. Commit {v('commit')}.  \n",
        f"rustc {v('rustc')}, PostgreSQL {v('postgres')}, RabbitMQ {v('rabbitmq')}, nginx {v('nginx')}, wrk {v('wrk')}. ",
        f"Load average at start {v('load_start')}, at end {v('load_end')}. ",
        f"Each point: {s.warmup} s warm-up, then {s.duration} s measured; direct / nginx / gateway comparisons "
        f"in {s.rounds} interleaved rounds of {s.slice} s each; wrk -t1; RUST_LOG={s.rust_log}.\n\n",
    ]

    # Ratios first: they are what the targets are about.
    read_keys = [f"read.{ep}.{c}" for ep in ("by_id", "search") for c in s.conns]
    min_direct = min_of([v.ratio(f"{k}.gateway.rps", f"{k}.direct.rps") for k in read_keys])
    min_nginx = min_of([v.ratio(f"{k}.gateway.rps", f"{k}.nginx.rps") for k in read_keys])
    min_billing = min_of([v.ratio(f"write.billing.{c}.rps", f"write.raw.{c}.rps") for c in s.conns])
    drain_ratio = v.ratio("drain.rps", "drain.insert_rps")
    max_rss = int(max([0] + [num(v(f"rss_idle.{x}")) or 0 for x in SERVICES]))

    o.append("### Targets\n\n" + table("target", "measured (worst point)", "verdict"))
    o.append(row("gateway keeps >= 70% of inventory's direct throughput", f"{min_direct or NA} x direct",
                 verdict(float(min_direct or 0) >= 0.70)))
    o.append(row("gateway matches or beats nginx in front of inventory (>= 0.95, noise)", f"{min_nginx or NA} x nginx",
                 verdict(float(min_nginx or 0) >= 0.95)))
    o.append(row("billing accepts >= 50% of the raw confirmed-publish rate (same concurrency, 1 channel)",
                 f"{min_billing or NA} x raw", verdict(float(min_billing or 0) >= 0.5)))
    o.append(row("drain reaches >= 50% of one plain INSERT of the same rows", f"{drain_ratio} x INSERT",
                 verdict((num(drain_ratio) or 0) >= 0.5)))
    o.append(row("each service < 20 MB RSS idle", f"max {mb(str(max_rss))} MB", verdict(0 < max_rss < 20480)) + "\n")

    o.append(f"### 1. Read path ({s.read_dataset} movies)\n\n")
    o.append("req/s, p50 / p99 latency in ms. *direct*: wrk → inventory-app; *nginx*: wrk → nginx → inventory-app; ")
    o.append("*gateway*: wrk → api-gateway → inventory-app. *CPU/req*: CPU time of the proxy process(es) per request, in µs.\n")
    o.append(f"Search: `?title={v('read.term')}` ({v('read.matches')} matching row(s)).\n\n")
    o.append(table("request", ">conns", ">direct req/s", ">p50 / p99", ">nginx req/s", ">p50 / p99", ">CPU/req",
                   ">gateway req/s", ">p50 / p99", ">CPU/req", ">gateway / direct", ">gateway / nginx"))
    for ep, label in (("by_id", "`GET /api/movies/{id}`"), ("search", "`GET /api/movies?title=`")):
        for c in s.conns:
            k = f"read.{ep}.{c}"
            o.append(row(label, c, v(k + ".direct.rps"), v.lat(k + ".direct"),
                         v(k + ".nginx.rps"), v.lat(k + ".nginx"), v(k + ".nginx.cpu_us"),
                         v(k + ".gateway.rps"), v.lat(k + ".gateway"), v(k + ".gateway.cpu_us"),
                         v.ratio(k + ".gateway.rps", k + ".direct.rps"), v.ratio(k + ".gateway.rps", k + ".nginx.rps")))

    o.append("\n### 2. Write path\n\n")
    c = s.write_conns
    k = f"write.movie.{c}"
    o.append(table("request", ">conns", ">direct req/s", ">p50 / p99", ">nginx req/s", ">p50 / p99", ">gateway req/s",
                   ">p50 / p99", ">gateway / direct", ">gateway / nginx"))
    o.append(row("`POST /api/movies`", c, v(k + ".direct.rps"), v.lat(k + ".direct"), v(k + ".nginx.rps"),
                 v.lat(k + ".nginx"), v(k + ".gateway.rps"), v.lat(k + ".gateway"),
                 v.ratio(k + ".gateway.rps", k + ".direct.rps"), v.ratio(k + ".gateway.rps", k + ".nginx.rps")) + "\n")
    o.append("`POST /api/billing` (200 only after the broker's confirm) against `raw-publish`: the same persistent, mandatory ")
    o.append("order messages published straight to `billing_queue` by N concurrent publishers on one channel, "
             "each awaiting its confirm.\n\n")
    o.append(table(">concurrency", ">gateway accepted orders/s", ">p50 / p99", ">raw confirmed publishes/s (1 channel)",
                   ">p50 / p99", ">gateway / raw"))
    for c in s.conns:
        b, r = f"write.billing.{c}", f"write.raw.{c}"
        o.append(row(c, v(b + ".rps"), v.lat(b), v(r + ".rps"), v.lat(r), v.ratio(b + ".rps", r + ".rps")))
    o.append(f"\nRaw publishes over 4 channels at concurrency 64: {v('write.raw4.64.rps')}/s "
             f"(p50 {v('write.raw4.64.p50')} ms, p99 {v('write.raw4.64.p99')} ms). ")
    o.append(f"Gateway CPU per accepted order at 64: {v('write.billing.64.cpu_us')} µs.\n\n")

    o.append("### 3. Drain\n\n")
    o.append("A backlog published with the worker stopped (raw-publish, 64 publishers on 4 channels), then the worker "
             "started: time until every order is in `orders`. ")
    o.append(f"Baselines: the broker alone (`raw-consume`: the same backlog consumed with prefetch {s.prefetch}, "
             f"one multiple-ack per {s.batch}, nothing stored) ")
    o.append("and the database alone (one `INSERT ... SELECT FROM generate_series` of as many rows into a copy of "
             "`orders` with the same constraints and indexes).\n\n")
    o.append(table(">backlog", ">published at", ">worker: start → all stored", ">orders/s", ">first row after",
                   ">orders/s from first row", ">broker alone: consumed/s", ">database alone: rows/s",
                   ">worker / database", ">worker / broker"))
    o.append(row(v("drain.n"), v("drain.publish_rps") + "/s", v("drain.seconds") + " s", v("drain.rps"),
                 v("drain.first_ms") + " ms", v("drain.steady_rps"), v("drain.consume_rps"), v("drain.insert_rps"),
                 drain_ratio, v.ratio("drain.rps", "drain.consume_rps")) + "\n")

    o.append("### 4. Scale (through the gateway, 1 connection)\n\n")
    o.append("p50 / p99 latency in ms. *search, rare*: `?title=<an 8-letter word>` (about one match, no limit); ")
    o.append(f"*search, common*: `?title={v('scale.common')}&limit=20` (about 0.25% of titles match); "
             "*page*: `?limit=20&offset=0` and `offset=<count-20>`.\n\n")
    o.append(table(">movies", ">seeded in", ">search, rare", ">search, common", ">first page", ">last page"))
    for size in s.sizes:
        o.append(row(size, v(f"seed.{size}") + " s",
                     *(v.lat(f"scale.{size}.{q}") for q in ("rare", "common", "page0", "pagedeep"))))

    o.append("\n### 5. Footprint\n\n")
    o.append(table("service", ">static binary", ">RSS idle", ">RSS after the load runs", ">peak RSS",
                   f">start-up to ready (median of {s.startup_runs})", ">RSS of a fresh start"))
    for x in SERVICES:
        size = num(v(f"size.{x}"))
        o.append(row(x, (NA if size is None else fmt(size / 1048576, 2)) + " MB", v.mb(f"rss_idle.{x}") + " MB",
                     v.mb(f"rss_load.{x}") + " MB", v.mb(f"rss_peak.{x}") + " MB", v(f"startup.{x}") + " ms",
                     v.mb(f"startup_rss.{x}") + " MB"))
    o.append("| nginx (master + workers, for scale) | | | " + v.mb("rss_load.nginx") + " MB | | | |\n\n")

    if errors:
        o.append("### Errors in this run (the run exited non-zero)\n\n")
        o.extend(f"- {e}\n" for e in errors)
        o.append("\n")
    else:
        o.append("No errors: every request under load answered 2xx, every publish was confirmed, every order stored once.\n\n")
    o.append("<!-- bench:end -->\n")
    return "".join(o)


def report_listing(R, s, errors):
    """The listings block of BENCHMARKS.md (section 6)."""
    v = Figures(R)
    largest = s.sizes[-1]
    top = f"listing.{largest}"
    quick = " (--quick: smaller data; indicative only)" if s.quick else ""
    o = [
        "<!-- bench-listing:begin: generated by scripts/bench.sh (section 6); rewritten on each run -->\n",
        f"### Listings: latest run {v('date')}{quick}\n\n",
        f"{v('nproc')} x {v('cpu')}; commit {v('commit')}; load average at start {v('load_start')}. "
        f"{s.listing_runs} run(s) per point (median time). ",
        "MB = 10^6 bytes. Peak RSS: the kernel's VmHWM, reset before each point, so it is the peak during that point.\n\n",
    ]
    ratio_1m = v.ratio(f"{top}.gateway.mbps", f"{top}.direct.mbps")
    worst_rss = int(max([0] + [num(v(f"{top}.{t}.{p}")) or 0 for t in ("direct", "gateway") for p in ("rss_inv", "rss_gw")]))
    failed = R.get(f"{top}.gateway.failed")
    completes = not failed
    after = v("listing.last.after.gateway.p50")
    measured = f"yes, {fmt((num(v(top + '.gateway.bytes')) or 0) / 1000000, 1)} MB" if completes else f"no: {failed}"
    o.append(table("target", "measured", "verdict"))
    o.append(row(f"the {largest}-movie listing completes through the gateway", measured, verdict(completes)))
    o.append(row("the gateway delivers it at >= 0.8 x direct", f"{ratio_1m} x direct", verdict((num(ratio_1m) or 0) >= 0.8)))
    o.append(row("peak RSS of each service < 50 MB during it", f"max {mb(str(worst_rss))} MB",
                 verdict(completes and 0 < worst_rss < 51200)))
    o.append(row(f"the `after_id` last page at {largest} is <= 2 ms p50 (through the gateway)", f"{after} ms",
                 verdict((99 if num(after) is None else num(after)) <= 2)) + "\n")

    o.append("**Full listing** (`GET /api/movies`, every movie, one client with curl).\n\n")
    o.append("*PostgreSQL alone*: the same rows with `COPY ... TO STDOUT` through psql (tab-separated text, not JSON). ")
    o.append("*CPU*: CPU time the process used per listing (10 ms granularity).\n\n")
    o.append(table(">movies", ">JSON size", ">PostgreSQL alone: s", ">direct: s", ">MB/s", ">inventory peak RSS",
                   ">inventory CPU", ">nginx: s", ">MB/s", ">gateway: s", ">MB/s", ">inventory / gateway peak RSS",
                   ">gateway CPU", ">direct / PostgreSQL alone (time)", ">gateway / direct (MB/s)"))
    for size in s.sizes:
        k = f"listing.{size}"
        cells = [size, fmt((num(v(k + ".direct.bytes")) or 0) / 1000000, 1) + " MB", v(k + ".copy.s")]
        for t in PATHS:
            p = f"{k}.{t}"
            if R.get(p + ".failed"):
                # The cells the point would have had: 2 for nginx, 4 otherwise
                # (as the shell version wrote them, blanks included).
                cells.append(f"failed: {R[p + '.failed']} | " + ("" if t == "nginx" else " | | "))
                continue
            cells += [v(p + ".s"), v(p + ".mbps")]
            if t == "direct":
                cells += [v.mb(p + ".rss_inv") + " MB", v(p + ".cpu_inv") + " ms"]
            elif t == "gateway":
                cells += [f"{v.mb(p + '.rss_inv')} / {v.mb(p + '.rss_gw')} MB", v(p + ".cpu_gw") + " ms"]
        cells += [v.ratio(k + ".direct.s", k + ".copy.s"), v.ratio(k + ".gateway.mbps", k + ".direct.mbps")]
        o.append(row(*cells))

    o.append(f"\n**The last page of {largest} movies** (`limit=20`; 1 connection; p50 / p99 in ms).\n\n")
    o.append(table("path", f">`offset={largest - 20}`", ">`after_id=<max id - 20>`", ">offset / after_id (p50)"))
    for t in ("direct", "gateway"):
        off, aft = f"listing.last.offset.{t}", f"listing.last.after.{t}"
        o.append(row(t, v.lat(off), v.lat(aft), v.ratio(off + ".p50", aft + ".p50")))

    o.append(f"\n**`GET /api/movies/{{id}}` while 4 full listings of {largest} movies run** "
             "(1 connection, random ids; the 4 listings loop on the same path).\n\n")
    o.append(table("path", ">alone: req/s", ">p50 / p99", ">with 4 listings: req/s", ">p50 / p99",
                   ">listings completed meanwhile", ">peak RSS inventory / gateway"))
    for t in ("direct", "gateway"):
        k = f"listing.byid.{t}"
        if R.get(k + ".busy.skipped"):
            # Three empty cells, written "| | |" as the shell version did.
            o.append(row(t, v(k + ".idle.rps"), v.lat(k + ".idle"), "not run: the full listing fails on this path")[:-1]
                     + " | | |\n")
            continue
        o.append(row(t, v(k + ".idle.rps"), v.lat(k + ".idle"), v(k + ".busy.rps"), v.lat(k + ".busy"),
                     v(k + ".busy.listings"), f"{v.mb(k + '.busy.rss_inv')} / {v.mb(k + '.busy.rss_gw')} MB"))
    if errors:
        o.append("\nErrors in this run:\n\n")
        o.extend(f"- {e}\n" for e in errors)
    o.append("\n<!-- bench-listing:end -->\n")
    return "".join(o)


# ---------------------------------------------------------------- the run --


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def point_line(key, conns, rps, p50, p99):
    print(f"    {key:<34} c={conns:<3} {rps:>8} req/s  p50 {p50:>7} ms  p99 {p99:>7} ms", file=sys.stderr, flush=True)


def tail(text, n):
    """The last N lines of TEXT joined by spaces (for one-line error messages)."""
    return "".join(line + " " for line in text.splitlines()[-n:])


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cpu_ticks(pids):
    """CPU time (user+system, clock ticks) of PIDS, all threads."""
    total = 0
    for pid in pids:
        text = read_text(f"/proc/{pid}/stat")
        if text:
            total += stat_cpu_ticks(text)
    return total


def rss_kb(pid, field):
    return status_field(read_text(f"/proc/{pid}/status"), field) if pid else ""


def reset_peak(pids):
    """Restarts the kernel's peak-RSS counter (VmHWM) of each process at its
    current RSS, so that the next reading is the peak of what happened in between."""
    for pid in pids:
        if pid:
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5\n")
            except OSError:
                pass


def pid_alive(pid):
    """True when PID is a live process (not a zombie)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    stat = read_text(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(") ", 1)[1][:1] != "Z"


def stop_pid(pid, seconds):
    """TERM, up to SECONDS to exit, then KILL: a process that is not our child."""
    if not pid_alive(pid):
        return
    try:
        os.kill(int(pid), signal.SIGTERM)
    except OSError:
        return
    if not mp_http.wait_until(lambda: not pid_alive(pid), seconds, 0.2):
        warn(f"pid {pid} did not stop in {seconds}s, killing it")
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def stop_child(proc, seconds):
    """TERM, up to SECONDS, then KILL: a process we started (and reap it)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        warn(f"pid {proc.pid} did not stop in {seconds}s, killing it")
        proc.kill()
        proc.wait()


def port_open(port):
    import socket

    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


def shell_lib(*words):
    """Runs a function of scripts/lib/common.sh (the one definition of
    dist_dir; and of mp.sh, which it sources: mp::pkg::install): its output,
    or BenchError."""
    script = 'source "$1"; shift; "$@"'
    r = subprocess.run(
        ["bash", "-c", script, "bash", os.path.join(ROOT, "scripts", "lib", "common.sh"), *words],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise BenchError(f"{' '.join(words)} failed")
    return r.stdout.strip()


class Instance:
    """The bench's own instance of the system: its ports and state, the
    local run (scripts/local.sh), psql, nginx, the seeded tables. The section
    classes below are mixins of Bench and use what this one sets up."""

    def __init__(self, settings, out, keep_state, build):
        self.s = settings
        self.out = out
        self.keep_state = keep_state
        self.build = build
        self.R = {}
        self.errors = []
        self.nginx = None
        self.started = False
        self.clk_tck = os.sysconf("SC_CLK_TCK")

        env = os.environ
        # MP_BIN_DIR=DIR benchmarks the binaries in DIR (local.sh reads it too).
        self.bin_dir = env.get("MP_BIN_DIR") or ""
        env["LC_ALL"] = "C"
        self.state = os.path.join(ROOT, ".state", "bench")
        env["MP_STATE_DIR"] = self.state
        ports = {
            "LOCAL_GATEWAY_PORT": ("BENCH_GATEWAY_PORT", 38080),
            "LOCAL_INVENTORY_PORT": ("BENCH_INVENTORY_PORT", 38081),
            "LOCAL_BILLING_HEALTH_PORT": ("BENCH_BILLING_HEALTH_PORT", 38082),
            "LOCAL_PG_INVENTORY_PORT": ("BENCH_PG_INVENTORY_PORT", 57432),
            "LOCAL_PG_BILLING_PORT": ("BENCH_PG_BILLING_PORT", 57433),
            "LOCAL_RABBITMQ_PORT": ("BENCH_RABBITMQ_PORT", 57672),
            "LOCAL_RABBITMQ_MGMT_PORT": ("BENCH_RABBITMQ_MGMT_PORT", 57673),
            "LOCAL_RABBITMQ_DIST_PORT": ("BENCH_RABBITMQ_DIST_PORT", 57674),
            "LOCAL_EPMD_PORT": ("BENCH_EPMD_PORT", 57675),
        }
        for local_name, (bench_name, default) in ports.items():
            env[local_name] = env.get(bench_name) or str(default)
        self.nginx_port = env.get("BENCH_NGINX_PORT") or "38090"
        # The services log at their normal level: logging is part of what is measured.
        env["RUST_LOG"] = env.get("RUST_LOG") or "info"
        settings.rust_log = env["RUST_LOG"]
        # The one .env format (scripts/mp_dotenv.py); the environment wins.
        try:
            dotenv = mp_dotenv.load(os.path.join(ROOT, ".env"), dict(env))
        except (mp_dotenv.DotenvError, OSError) as e:
            raise BenchError(f"cannot load .env: {e}") from e
        env.update(dotenv)
        settings.prefetch = env.get("BILLING_PREFETCH", "")
        settings.batch = env.get("BILLING_BATCH_SIZE", "")

        self.url = {
            "direct": f"http://127.0.0.1:{env['LOCAL_INVENTORY_PORT']}",
            "nginx": f"http://127.0.0.1:{self.nginx_port}",
            "gateway": f"http://127.0.0.1:{env['LOCAL_GATEWAY_PORT']}",
        }
        # The broker's management API (guest: loopback only).
        self.mgmt = mp_rabbitmq.Management(env["LOCAL_RABBITMQ_MGMT_PORT"], env.get("RABBITMQ_VHOST", "/"), timeout=10)
        if self.bin_dir:
            self.build = False
        else:
            self.bin_dir = shell_lib("dist_dir")
        env["MP_BIN_DIR"] = self.bin_dir
        self.work = os.path.join(self.state, "bench")
        self.run_dir = os.path.join(self.state, "run")
        self.tools = os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "release")
        self.local_sh = os.path.join(ROOT, "scripts", "local.sh")


    # ------------------------------------------------------------ helpers --

    def record_error(self, msg):
        self.errors.append(msg)
        warn(msg)

    def local(self, *args, log=None, check=True, extra_env=None):
        """scripts/local.sh ARGS, its output appended to LOG (or discarded)."""
        env = dict(os.environ, **(extra_env or {}))
        with open(log, "a") if log else open(os.devnull, "w") as sink:
            r = subprocess.run([self.local_sh, *args], stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
        if check and r.returncode != 0:
            raise BenchError(f"scripts/local.sh {' '.join(args)} failed" + (f" (see {log})" if log else ""))
        return r.returncode

    def psql(self, port, db, *args):
        """psql on 127.0.0.1:PORT as postgres: its output without the final newlines."""
        cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port)]
        cmd += ["-U", "postgres", "-d", db, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PGCONNECT_TIMEOUT="5"), check=False)
        if r.returncode != 0:
            raise BenchError(f"psql on port {port}, database {db}: {tail(r.stderr, 3)}")
        return r.stdout.rstrip("\n")

    def movies_sql(self, *args):
        return self.psql(os.environ["LOCAL_PG_INVENTORY_PORT"], os.environ["INVENTORY_DB_NAME"], *args)

    def orders_sql(self, *args):
        return self.psql(os.environ["LOCAL_PG_BILLING_PORT"], os.environ["BILLING_DB_NAME"], *args)

    def service_pid(self, name):
        return read_text(os.path.join(self.run_dir, f"{name}.pid")).strip()

    def nginx_pids(self):
        """The nginx master and its workers."""
        if self.nginx is None:
            return []
        r = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.nginx.pid)], capture_output=True, text=True, check=False)
        return [str(self.nginx.pid)] + r.stdout.split()

    def epmd_stop(self):
        """local.sh records the pid of the shell that launched epmd, not epmd's,
        so its `down` leaves our epmd running: stop the epmd on OUR port, by its pid."""
        r = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{os.environ['LOCAL_EPMD_PORT']}"], capture_output=True, text=True, check=False
        )
        m = re.search(r'"epmd",pid=([0-9]+)', r.stdout)
        if m:
            stop_pid(m.group(1), 5)

    # ---------------------------------------------------------- instance --

    def build_all(self):
        if self.build:
            say("building the services (scripts/build.sh)")
            if subprocess.run([os.path.join(ROOT, "scripts", "build.sh")], check=False).returncode != 0:
                raise BenchError("scripts/build.sh failed")
        say("building bench-tools")
        cmd = ["cargo", "build", "--quiet", "--release", "--target", "x86_64-unknown-linux-musl", "-p", "bench-tools"]
        if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
            raise BenchError("building bench-tools failed")
        for b in SERVICES:
            if not os.access(os.path.join(self.bin_dir, b), os.X_OK):
                raise BenchError(f"{self.bin_dir}/{b} is missing: run scripts/build.sh")

    def bench_amqp_env(self):
        env = os.environ
        env["BENCH_AMQP_HOST"] = "127.0.0.1"
        env["BENCH_AMQP_PORT"] = env["LOCAL_RABBITMQ_PORT"]
        # raw-publish and raw-consume both publish and consume: no service account
        # may do both, guest (loopback only, local run) may.
        env["BENCH_AMQP_USER"] = env["BENCH_AMQP_PASSWORD"] = "guest"
        env["BENCH_AMQP_VHOST"] = env.get("RABBITMQ_VHOST", "")

    def instance_up(self):
        self.local("down", check=False)
        if not self.keep_state:
            # Empty servers every run, so one run's data cannot skew the next.
            shutil.rmtree(self.state, ignore_errors=True)
        self.epmd_stop()
        env = os.environ
        names = ["LOCAL_GATEWAY_PORT", "LOCAL_INVENTORY_PORT", "LOCAL_BILLING_HEALTH_PORT"]
        ports = [env[n] for n in names] + [self.nginx_port]
        names = ["LOCAL_PG_INVENTORY_PORT", "LOCAL_PG_BILLING_PORT", "LOCAL_RABBITMQ_PORT"]
        names += ["LOCAL_RABBITMQ_MGMT_PORT", "LOCAL_RABBITMQ_DIST_PORT", "LOCAL_EPMD_PORT"]
        for port in ports + [env[n] for n in names]:
            if port_open(port):
                raise BenchError(f"port {port} is already in use (another instance?): set BENCH_*_PORT")
        os.makedirs(self.work, exist_ok=True)
        self.started = True
        say(f"starting the bench instance (scripts/local.sh up, state in {self.state})")
        log = os.path.join(self.work, "local-up.log")
        if self.local("up", log=log, check=False, extra_env={"MP_SKIP_BUILD": "1"}) != 0:
            sys.stderr.write("".join(line + "\n" for line in read_text(log).splitlines()[-30:]))
            raise BenchError("scripts/local.sh up failed")
        for name in ("inventory-app", "api-gateway", "billing-worker"):
            if not self.service_pid(name):
                raise BenchError(f"{name} did not start (see {log})")

    def nginx_start(self):
        d = os.path.join(self.work, "nginx")
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        user_line = ""
        # As root, nginx's workers drop to nobody; let them use the temp dirs.
        if os.geteuid() == 0:
            user_line = "user nobody nogroup;"
            shutil.chown(os.path.join(d, "tmp"), "nobody", "nogroup")
        conf = os.path.join(d, "nginx.conf")
        text = read_text(os.path.join(HERE, "nginx.conf.template"))
        for k, v in (("@DIR@", d), ("@PORT@", self.nginx_port),
                     ("@UPSTREAM_PORT@", os.environ["LOCAL_INVENTORY_PORT"]), ("@USER_LINE@", user_line)):
            text = text.replace(k, v)
        with open(conf, "w") as f:
            f.write(text)
        with open(os.path.join(d, "stdout.log"), "a") as logf:
            self.nginx = subprocess.Popen(
                ["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log"), "-g", f"daemon off; pid {d}/nginx.pid;"],
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        if not mp_http.wait_until(lambda: port_open(self.nginx_port), 10, 0.2):
            raise BenchError(f"nginx did not start; see {d}/error.log")

    def nginx_stop(self):
        if self.nginx is not None:
            stop_child(self.nginx, 10)
            self.nginx = None

    def cleanup(self):
        self.nginx_stop()
        if self.started:
            say("stopping the bench instance")
            if self.local("down", check=False) != 0:
                warn("scripts/local.sh down failed")
            self.epmd_stop()

    # ------------------------------------------------------------ seeding --

    def seed_movies(self, target, start=0):
        """Grows the movies table to TARGET rows (from an empty table when START
        is 0), then ANALYZE. seed.TARGET = seconds."""
        t0 = time.time()
        if start == 0:
            self.movies_sql("-c", "TRUNCATE movies RESTART IDENTITY")
        self.movies_sql("-v", f"from={start}", "-v", f"target={target}", "-f", os.path.join(HERE, "seed-movies.sql"))
        self.movies_sql("-c", "ANALYZE movies")
        self.R[f"seed.{target}"] = fmt(time.time() - t0, 1)


class WrkRuns:
    """wrk against one URL or the three paths (direct, nginx, gateway) in
    interleaved rounds, so a shared machine's noise cancels out in the ratios."""

    def lua_script(self, name, src, **fill):
        """A wrk script = the request part (@KEY@ filled in from FILL: ids= gives @IDS@,
        path= gives @PATH@) + the reporting part."""
        os.makedirs(os.path.join(self.work, "lua"), exist_ok=True)
        body = read_text(os.path.join(HERE, src)) if src else ""
        for key, value in fill.items():
            body = body.replace(f"@{key.upper()}@", str(value))
        path = os.path.join(self.work, "lua", f"{name}.lua")
        with open(path, "w") as f:
            f.write(body + read_text(os.path.join(HERE, "report.lua")))
        return path

    def wrk_once(self, label, url, conns, script, secs):
        """One wrk run: the fields of its BENCH line, or None (error recorded)."""
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "10s", "--latency", "-s", script, url]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        out = r.stdout.rstrip("\n")
        if r.returncode != 0:
            self.record_error(f"{label}: wrk failed: {tail(out, 3)}")
            return None
        line = bench_line(out)
        if not line:
            self.record_error(f"{label}: no result from wrk: {tail(out, 3)}")
            return None
        errs = wrk_errors(line)
        if errs:
            self.record_error(f"{label} (c={conns}): errors under load: {errs}")
        if " requests=0 " in line:
            self.record_error(f"{label} (c={conns}): no request completed")
        return kv_fields(line)

    def wrk_point(self, key, url, conns, script, warm, dur, pids=()):
        """Warm-up run (discarded, but its errors count), then the measured run:
        KEY.rps, KEY.p50, KEY.p99 (ms), KEY.cpu_us (CPU of PIDS per request)."""
        R = self.R
        if warm > 0:
            self.wrk_once(f"{key} (warm-up)", url, conns, script, warm)
        c0 = cpu_ticks(pids)
        m = self.wrk_once(key, url, conns, script, dur)
        c1 = cpu_ticks(pids)
        if m is None:
            R[f"{key}.rps"] = R[f"{key}.p50"] = R[f"{key}.p99"] = NA
            return
        ok = wrk_ok(m)
        R[f"{key}.requests"] = str(ok)
        R[f"{key}.rps"] = per_second(ok, int(m["duration_us"]))
        R[f"{key}.p50"] = ms(m["p50_us"])
        R[f"{key}.p99"] = ms(m["p99_us"])
        if pids and ok > 0:
            R[f"{key}.cpu_us"] = cpu_us_per(c1 - c0, self.clk_tck, ok)
        point_line(key, conns, R[f"{key}.rps"], R[f"{key}.p50"], R[f"{key}.p99"])

    def wrk_compare(self, key, path, conns, script):
        """The same requests to inventory directly, through nginx and through the
        gateway, in ROUNDS interleaved rounds of SLICE seconds (after one warm-up
        each), so that a burst of outside load on a shared machine hits all three
        alike instead of one. KEY.T.rps over all rounds, KEY.T.p50/p99 (median
        of the rounds, ms), KEY.T.cpu_us (the proxy's CPU per request)."""
        s, R = self.s, self.R
        pids = {"direct": [], "nginx": self.nginx_pids(), "gateway": [self.service_pid("api-gateway")]}
        ok = dict.fromkeys(PATHS, 0)
        us = dict.fromkeys(PATHS, 0)
        ticks = dict.fromkeys(PATHS, 0)
        p50 = {t: [] for t in PATHS}
        p99 = {t: [] for t in PATHS}
        for t in PATHS:
            self.wrk_once(f"{key}.{t} (warm-up)", self.url[t] + path, conns, script, s.warmup)
        for rnd in range(1, s.rounds + 1):
            for t in PATHS:
                c0 = cpu_ticks(pids[t])
                m = self.wrk_once(f"{key}.{t} (round {rnd})", self.url[t] + path, conns, script, s.slice)
                if m is None:
                    continue
                c1 = cpu_ticks(pids[t])
                ok[t] += wrk_ok(m)
                us[t] += int(m["duration_us"])
                ticks[t] += c1 - c0
                p50[t].append(m["p50_us"])
                p99[t].append(m["p99_us"])
        for t in PATHS:
            k = f"{key}.{t}"
            if us[t] == 0:
                R[f"{k}.rps"] = R[f"{k}.p50"] = R[f"{k}.p99"] = NA
                continue
            R[f"{k}.rps"] = per_second(ok[t], us[t])
            R[f"{k}.p50"] = ms(median(p50[t]))
            R[f"{k}.p99"] = ms(median(p99[t]))
            if pids[t] and ok[t] > 0:
                R[f"{k}.cpu_us"] = cpu_us_per(ticks[t], self.clk_tck, ok[t])
            point_line(k, conns, R[f"{k}.rps"], R[f"{k}.p50"], R[f"{k}.p99"])


class ReadWriteSections:
    """The machine, the idle footprint, 1. the read path and 2. the write path."""

    def section_machine(self):
        R = self.R
        R["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        R["nproc"] = str(len(os.sched_getaffinity(0)))
        R["cpu"] = next((line.split(": ", 1)[1] for line in read_text("/proc/cpuinfo").splitlines()
                         if line.startswith("model name")), "")
        R["ram"] = fmt(int(status_field(read_text("/proc/meminfo"), "MemTotal") or 0) / 1048576, 1) + " GiB"
        R["kernel"] = f"{os.uname().sysname} {os.uname().release}"
        osrel = dict(
            line.split("=", 1) for line in read_text("/etc/os-release").splitlines() if "=" in line
        )
        R["os"] = osrel.get("PRETTY_NAME", "").strip('"')
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=False).stdout.split()
        R["rustc"] = rustc[1] if len(rustc) > 1 else ""
        R["postgres"] = (self.movies_sql("-c", "SHOW server_version").split() + [""])[0]
        try:
            o = self.mgmt.overview()
        except (OSError, ValueError) as e:
            raise BenchError(f"the RabbitMQ management API does not answer /overview: {e}") from e
        R["rabbitmq"] = f"{o['rabbitmq_version']} / Erlang {o['erlang_version']}"
        nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()
        R["nginx"] = re.sub(r".*nginx/", "", nginx_v)
        wrk_v = subprocess.run(["wrk", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        first = (wrk_v.stdout.splitlines() or [""])[0].split()
        R["wrk"] = first[1] if len(first) > 1 else ""
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
        R["commit"] = git.stdout.strip() if git.returncode == 0 else "unknown"
        diff = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "srcs", "Cargo.toml"], cwd=ROOT,
                              capture_output=True, check=False)
        if diff.returncode != 0:
            R["commit"] += " + uncommitted changes"
        R["load_start"] = " ".join(read_text("/proc/loadavg").split()[:3])

    def section_idle_footprint(self):
        say("footprint: binaries and idle memory")
        for x in SERVICES:
            self.R[f"size.{x}"] = str(os.stat(os.path.join(self.bin_dir, x)).st_size)
        time.sleep(3)
        for x in SERVICES:
            self.R[f"rss_idle.{x}"] = rss_kb(self.service_pid(x), "VmRSS")

    def section_read(self):
        s = self.s
        say(f"1. read path ({s.read_dataset} movies; {s.warmup}s warm-up + {s.rounds} interleaved rounds of {s.slice}s per point)")
        self.seed_movies(s.read_dataset)
        # A word that occurs in a few titles: a search that finds something.
        term = self.movies_sql(
            "-c", f"SELECT lower(split_part(title, ' ', 2)) FROM movies WHERE id = {s.read_dataset // 2}"
        )
        self.R["read.term"] = term
        by_id = self.lua_script("get-by-id", "get-by-id.lua", ids=s.read_dataset)
        search = self.lua_script("search", "")
        for ep, url, script in (("by_id", "/api/movies/1", by_id), ("search", f"/api/movies?title={term}", search)):
            for c in s.conns:
                self.wrk_compare(f"read.{ep}.{c}", url, c, script)

    def raw_publish_point(self, key, *args):
        """raw-publish for WARMUP+DURATION seconds."""
        s, R = self.s, self.R
        err = os.path.join(self.work, "raw-publish.err")
        cmd = [os.path.join(self.tools, "raw-publish"), "--duration", str(s.duration), "--warmup", str(s.warmup), *args]
        with open(err, "w") as errf:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, check=False)
        line = r.stdout.rstrip("\n")
        if r.returncode != 0:
            self.record_error(f"{key}: raw-publish failed: {tail(read_text(err), 2)} {line}")
        m = kv_fields(line)
        R[f"{key}.rps"] = fmt(num(m.get("rate")) or 0, 0)
        R[f"{key}.p50"] = m.get("p50_ms") or NA
        R[f"{key}.p99"] = m.get("p99_ms") or NA
        print(
            f"    {key:<34} {' '.join(args):<5} {R[key + '.rps']:>8} msg/s  p50 {R[key + '.p50']:>7} ms  "
            f"p99 {R[key + '.p99']:>7} ms",
            file=sys.stderr,
            flush=True,
        )

    def section_write(self):
        s = self.s
        say("2. write path")
        post_movie = self.lua_script("post-movie", "post.lua", path="/api/movies")
        post_order = self.lua_script("post-order", "post.lua", path="/api/billing")
        gw_pid = self.service_pid("api-gateway")
        c = s.write_conns
        self.wrk_compare(f"write.movie.{c}", "/api/movies", c, post_movie)
        for c in s.conns:
            self.raw_publish_point(f"write.raw.{c}", "--concurrency", str(c), "--channels", "1")
            self.wrk_point(f"write.billing.{c}", self.url["gateway"] + "/api/billing", c, post_order,
                           s.warmup, s.duration, [gw_pid])
        # The broker's limit with the load spread over several channels.
        self.raw_publish_point("write.raw4.64", "--concurrency", "64", "--channels", "4")
        # Keep the worker's backlog from spilling into the next section.
        if not self.wait_queue_empty(120):
            self.record_error("write path: billing_queue did not drain within 120 s")


class DrainSection:
    """3. The drain of a backlog, against the broker alone and a plain INSERT."""

    def queue_depth(self):
        """billing_queue's depth, or None when the management API cannot tell."""
        return self.mgmt.queue_depth("billing_queue")

    def wait_queue_empty(self, seconds):
        """The management API's counts lag by a few seconds: wait until it shows
        an empty queue twice in a row."""
        deadline = time.monotonic() + seconds
        zero = 0
        while time.monotonic() < deadline:
            if self.queue_depth() == 0:
                zero += 1
                if zero >= 2:
                    return True
            else:
                zero = 0
            time.sleep(1)
        return False

    def orders_count(self):
        return int(self.orders_sql("-c", "SELECT count(*) FROM orders"))

    def publish_backlog(self, count):
        """COUNT orders into billing_queue with raw-publish (64 publishers on 4
        channels): (published, rate)."""
        err = os.path.join(self.work, "raw-publish.err")
        cmd = [os.path.join(self.tools, "raw-publish"), "--count", str(count), "--concurrency", "64", "--channels", "4"]
        with open(err, "w") as errf:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, check=False)
        if r.returncode != 0:
            self.record_error(f"drain: publishing the backlog failed: {tail(read_text(err), 2)}")
        m = kv_fields(r.stdout)
        return int(m.get("published") or 0), fmt(num(m.get("rate")) or 0, 0)

    def section_drain(self):
        s, R = self.s, self.R
        say(f"3. drain: a backlog of {s.backlog} orders")
        log = os.path.join(self.work, "local.log")
        self.local("stop", "billing-worker", log=log)
        try:
            self.mgmt.purge("billing_queue")
        except (OSError, ValueError):
            pass  # as before: the drain's counts below tell whether the queue was empty
        self.orders_sql("-c", "TRUNCATE orders")

        # The broker's limit: the same backlog consumed and acked (with the
        # worker's prefetch and batch size) by a consumer that stores nothing.
        n, R["drain.publish_rps"] = self.publish_backlog(s.backlog)
        err = os.path.join(self.work, "raw-consume.err")
        cmd = [os.path.join(self.tools, "raw-consume"), "--count", str(n), "--prefetch", s.prefetch, "--ack-every", s.batch]
        with open(err, "w") as errf:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, check=False)
        if r.returncode != 0:
            self.record_error(f"drain: raw-consume failed: {tail(read_text(err), 2)}")
        R["drain.consume_rps"] = fmt(num(kv_fields(r.stdout).get("rate")) or 0, 0)
        say(f"    broker: published at {R['drain.publish_rps']}/s, consumed at {R['drain.consume_rps']}/s")

        n, _ = self.publish_backlog(s.backlog)
        R["drain.n"] = str(n)
        t_first = t_end = None
        t0 = time.time()
        self.local("start", "billing-worker", log=log)
        limit = 60 + n // 200
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            count = self.orders_count()
            if t_first is None and count > 0:
                t_first = time.time()
            if count >= n:
                t_end = time.time()
                break
            time.sleep(0.1)
        if t_end is None:
            self.record_error(f"drain: only {self.orders_count()} of {n} orders stored after {limit} s")
        else:
            R["drain.seconds"] = fmt(t_end - t0, 2)
            R["drain.rps"] = fmt(n / (t_end - t0), 0)
            R["drain.first_ms"] = fmt((t_first - t0) * 1000, 0)
            R["drain.steady_rps"] = fmt(n / (t_end - t_first), 0) if t_end > t_first else NA
        count = self.orders_count()
        if count != n:
            self.record_error(f"drain: {count} rows in orders for {n} published orders")
        say(f"    worker: drained in {R.get('drain.seconds') or NA} s: {R.get('drain.rps') or NA} orders/s")

        # The database's limit: the same rows, in one plain multi-row INSERT into
        # a table with the same columns, constraints and indexes.
        self.orders_sql("-c", "DROP TABLE IF EXISTS bench_orders", "-c", "CREATE TABLE bench_orders (LIKE orders INCLUDING ALL)")
        t0 = time.time()
        self.orders_sql(
            "-c",
            "INSERT INTO bench_orders (order_id, user_id, number_of_items, total_amount)\n"
            "\t\tSELECT gen_random_uuid(), 'bench-' || (i % 1000), i % 10 + 1, ((i % 100000) / 100.0)::numeric(12, 2)\n"
            f"\t\tFROM generate_series(1, {n}) AS i",
        )
        R["drain.insert_rps"] = fmt(n / (time.time() - t0), 0)
        self.orders_sql("-c", "DROP TABLE bench_orders")
        say(f"    database: one plain INSERT at {R['drain.insert_rps']} rows/s")


class ScaleSections:
    """4. Search and paging at scale, 5. the footprint under load and at start-up."""

    def section_scale(self):
        s, R = self.s, self.R
        say(f"4. scale: {' '.join(map(str, s.sizes))} movies")
        prev = 0
        search = os.path.join(self.work, "lua", "search.lua")
        for size in s.sizes:
            self.seed_movies(size, prev)
            prev = size
            # An 8-letter word: as in a user's search for one particular title.
            rare = self.movies_sql(
                "-c",
                "SELECT lower(split_part(title, ' ', 1)) FROM movies\n"
                f"\t\t\tWHERE id = (SELECT max(id) FROM movies WHERE id <= {size // 2} AND id % 5 = 4)",
            )
            common = "ama"
            R["scale.rare"], R["scale.common"] = rare, common
            say(f"    {size} movies (seeded in {R.get(f'seed.{size}') or NA} s)")
            urls = {
                "rare": f"/api/movies?title={rare}",
                "common": f"/api/movies?title={common}&limit=20",
                "page0": "/api/movies?limit=20&offset=0",
                "pagedeep": f"/api/movies?limit=20&offset={size - 20}",
            }
            for q, url in urls.items():
                self.wrk_point(f"scale.{size}.{q}", self.url["gateway"] + url, 1, search, s.scale_warmup, s.scale_duration)

    def section_load_footprint(self):
        R = self.R
        for x in SERVICES:
            pid = self.service_pid(x)
            R[f"rss_load.{x}"] = rss_kb(pid, "VmRSS")
            R[f"rss_peak.{x}"] = rss_kb(pid, "VmHWM")
        R["rss_load.nginx"] = str(sum(int(rss_kb(p, "VmRSS") or 0) for p in self.nginx_pids()))

    def section_startup(self):
        """Start-up time to ready: each service is stopped, then started by
        bench-tools `startup` with exactly the environment local.sh gave it (read
        from /proc), STARTUP_RUNS times; then local.sh starts it again."""
        s, R = self.s, self.R
        say(f"5. start-up time to ready ({s.startup_runs} runs each)")
        env = os.environ
        ports = {"inventory-app": env["LOCAL_INVENTORY_PORT"], "api-gateway": env["LOCAL_GATEWAY_PORT"],
                 "billing-worker": env["LOCAL_BILLING_HEALTH_PORT"]}
        log = os.path.join(self.work, "local.log")
        for x in ("inventory-app", "billing-worker", "api-gateway"):
            pid = self.service_pid(x)
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = dict(
                    item.decode("utf-8", "surrogateescape").split("=", 1) for item in f.read().split(b"\0") if b"=" in item
                )
            self.local("stop", x, log=log)
            cmd = [os.path.join(self.tools, "startup"), "--port", ports[x], "--runs", str(s.startup_runs), "--settle", "2"]
            cmd += ["--log", os.path.join(self.work, f"startup-{x}.log"), "--", os.path.join(self.bin_dir, x)]
            r = subprocess.run(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
            line = (r.stdout.splitlines() or [""])[-1]
            if r.returncode != 0:
                self.record_error(f"start-up of {x}: {line}")
            m = kv_fields(line)
            R[f"startup.{x}"] = m.get("ready_ms_median") or NA
            R[f"startup_rss.{x}"] = m.get("rss_kb_median") or NA
            self.local("start", x, log=log)
            say(f"    {x}: ready in {R[f'startup.{x}']} ms (median), fresh RSS {mb(R[f'startup_rss.{x}'])} MB")


class ListingSection:
    """6. Large listings: full lists, the last page by offset and after_id,
    single reads beside full listings."""

    def listing_once(self, url):
        """One full listing with curl, the body discarded: (code, bytes, seconds,
        curl's exit status: non-zero when the answer was cut)."""
        cmd = ["curl", "-sS", "-o", "/dev/null", "--max-time", "600", "-w", "%{http_code} %{size_download} %{time_total}", url]
        with open(os.path.join(self.work, "curl.err"), "w") as errf:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, check=False)
        code, size, secs = (r.stdout.split() + ["000", "0", "0"])[:3]
        return code, size, secs, r.returncode

    def listing_point(self, key, url):
        """LISTING_RUNS full listings: KEY.s (median seconds), KEY.bytes, KEY.mbps
        (MB/s, 10^6 bytes), KEY.rss_inv and KEY.rss_gw (peak RSS in kB over the
        runs), KEY.cpu_inv and KEY.cpu_gw (CPU ms per listing: the figure a
        loaded machine disturbs least), or KEY.failed."""
        s, R = self.s, self.R
        inv, gw = self.service_pid("inventory-app"), self.service_pid("api-gateway")
        reset_peak([inv, gw])
        ci0, cg0 = cpu_ticks([inv]), cpu_ticks([gw])
        times = []
        size = "0"
        for _ in range(s.listing_runs):
            code, size, secs, rc = self.listing_once(url)
            if code != "200" or rc != 0:
                R[f"{key}.failed"] = f"HTTP {code} after {size} bytes, curl exit {rc}"
                curl_err = read_text(os.path.join(self.work, "curl.err")).replace("\n", " ")
                self.record_error(f"{key}: the full listing failed: {R[key + '.failed']} ({curl_err})")
                break
            times.append(secs)
        R[f"{key}.rss_inv"], R[f"{key}.rss_gw"] = rss_kb(inv, "VmHWM"), rss_kb(gw, "VmHWM")
        if R.get(f"{key}.failed"):
            return
        R[f"{key}.cpu_inv"] = fmt((cpu_ticks([inv]) - ci0) * 1000 / self.clk_tck / s.listing_runs, 0)
        R[f"{key}.cpu_gw"] = fmt((cpu_ticks([gw]) - cg0) * 1000 / self.clk_tck / s.listing_runs, 0)
        R[f"{key}.bytes"] = size
        R[f"{key}.s"] = fmt(float(median(times)), 3)
        R[f"{key}.mbps"] = fmt(int(size) / 1000000 / float(R[f"{key}.s"]), 1) if float(R[f"{key}.s"]) > 0 else NA
        print(
            f"    {key:<34} {fmt(int(size) / 1000000, 1):>6} MB in {R[key + '.s']:>6} s: {R[key + '.mbps']:>6} MB/s, "
            f"peak RSS inventory {mb(R[key + '.rss_inv'])} MB, gateway {mb(R[key + '.rss_gw'])} MB; "
            f"CPU ms inventory {R[key + '.cpu_inv']}, gateway {R[key + '.cpu_gw']}",
            file=sys.stderr,
            flush=True,
        )

    def copy_point(self, key):
        """The database alone: the same rows, in the same order, out of PostgreSQL
        with COPY through psql (LISTING_RUNS runs). KEY.s (median seconds), KEY.bytes."""
        env = os.environ
        cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", env["LOCAL_PG_INVENTORY_PORT"]]
        cmd += ["-U", "postgres", "-d", env["INVENTORY_DB_NAME"]]
        cmd += ["-c", "COPY (SELECT id, title, description FROM movies ORDER BY id) TO STDOUT"]
        times, size = [], 0
        for _ in range(self.s.listing_runs):
            t0 = time.time()
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, env=dict(env, PGCONNECT_TIMEOUT="5")) as p:
                size = 0
                while chunk := p.stdout.read(1 << 20):
                    size += len(chunk)
            if p.returncode != 0:
                raise BenchError(f"{key}: COPY through psql failed")
            times.append(fmt(time.time() - t0, 3))
        self.R[f"{key}.s"], self.R[f"{key}.bytes"] = median(times), str(size)
        print(f"    {key:<34} {fmt(size / 1000000, 1):>6} MB in {self.R[key + '.s']:>6} s", file=sys.stderr, flush=True)

    def busy_point(self, key, base):
        """GET BASE/api/movies/{id} (1 connection) while 4 loops fetch the full
        listing from BASE. KEY.* as wrk_point, plus KEY.listings (completed
        during the run), KEY.rss_inv, KEY.rss_gw."""
        s, R = self.s, self.R
        inv, gw = self.service_pid("inventory-app"), self.service_pid("api-gateway")
        stop = threading.Event()
        results = []
        lock = threading.Lock()
        running = {}

        def loop(i):
            cmd = ["curl", "-s", "-o", "/dev/null", "--max-time", "600", "-w", "%{http_code} %{size_download}", f"{base}/api/movies"]
            while not stop.is_set():
                with lock:
                    if stop.is_set():
                        return
                    p = running[i] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
                out, _ = p.communicate()
                with lock:
                    # A listing we cut off at the end is neither completed nor failed.
                    if not stop.is_set():
                        results.append(out if p.returncode == 0 else f"curl-exit-{p.returncode}")

        threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(1)
        reset_peak([inv, gw])
        self.wrk_point(key, f"{base}/api/movies/1", 1, os.path.join(self.work, "lua", "listing-by-id.lua"),
                       s.scale_warmup, s.duration)
        R[f"{key}.rss_inv"], R[f"{key}.rss_gw"] = rss_kb(inv, "VmHWM"), rss_kb(gw, "VmHWM")
        with lock:
            stop.set()
            for p in running.values():
                if p.poll() is None:
                    p.terminate()
        for t in threads:
            t.join(10)
        R[f"{key}.listings"] = str(sum(1 for r in results if r.startswith("200 ")))
        bad = sum(1 for r in results if not r.startswith("200 "))
        if bad:
            self.record_error(f"{key}: {bad} of the concurrent full listings failed")

    def section_listing(self):
        s, R = self.s, self.R
        largest = s.sizes[-1]
        say(f"6. listings: the full GET /api/movies at {' '.join(map(str, s.sizes))} movies ({s.listing_runs} run(s) each)")
        search = self.lua_script("search", "")
        by_id = self.lua_script("listing-by-id", "get-by-id.lua", ids=largest)
        prev = 0
        for size in s.sizes:
            self.seed_movies(size, prev)
            prev = size
            self.copy_point(f"listing.{size}.copy")
            for t in PATHS:
                self.listing_point(f"listing.{size}.{t}", self.url[t] + "/api/movies")
        say(f"    the last page of {largest} movies: offset against after_id")
        maxid = int(self.movies_sql("-c", "SELECT max(id) FROM movies"))
        for t in ("direct", "gateway"):
            self.wrk_point(f"listing.last.offset.{t}", f"{self.url[t]}/api/movies?limit=20&offset={largest - 20}", 1,
                           search, s.scale_warmup, s.scale_duration)
            self.wrk_point(f"listing.last.after.{t}", f"{self.url[t]}/api/movies?limit=20&after_id={maxid - 20}", 1,
                           search, s.scale_warmup, s.scale_duration)
        say(f"    GET /api/movies/{{id}} alone, then while 4 full listings of {largest} movies run")
        for t in ("direct", "gateway"):
            self.wrk_point(f"listing.byid.{t}.idle", f"{self.url[t]}/api/movies/1", 1, by_id, s.scale_warmup, s.duration)
            if R.get(f"listing.{largest}.{t}.failed"):
                R[f"listing.byid.{t}.busy.skipped"] = "1"
                continue
            self.busy_point(f"listing.byid.{t}.busy", self.url[t])


class Bench(Instance, WrkRuns, ReadWriteSections, DrainSection, ScaleSections, ListingSection):
    """One run: every section in order, then the report."""

    def write_report(self):
        """Puts the generated blocks into OUT, keeping whatever is written around them."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ("-quick" if self.s.quick else "")
        results = os.path.join(self.state, "results")
        os.makedirs(results, exist_ok=True)
        with open(os.path.join(self.work, "figures.json"), "w") as f:
            json.dump({"figures": self.R, "errors": self.errors}, f, indent=1, sort_keys=True)
        blocks = []
        if self.s.only != "listing":
            blocks.append(("bench", report(self.R, self.s, self.errors)))
        blocks.append(("bench-listing", report_listing(self.R, self.s, self.errors)))
        for marker, block in blocks:
            with open(os.path.join(results, f"{marker}-{stamp}.md"), "w") as f:
                f.write(block)
            text = read_text(self.out) if os.path.exists(self.out) else None
            with open(self.out, "w") as f:
                f.write(put_block(text, block, marker))
        say(f"results written to {self.out} (and {results}/)")

    def main(self):
        if not shutil.which("wrk"):
            shell_lib("mp::pkg::install", "wrk")
        if not shutil.which("nginx"):
            shell_lib("mp::pkg::install", "nginx-light")
        self.build_all()
        self.bench_amqp_env()
        self.instance_up()
        self.section_machine()
        if self.s.only == "listing":
            self.nginx_start()
            self.section_listing()
            self.nginx_stop()
        else:
            self.section_idle_footprint()
            self.nginx_start()
            self.section_read()
            term = self.R["read.term"]
            self.R["read.matches"] = self.movies_sql("-c", f"SELECT count(*) FROM movies WHERE title ILIKE '%{term}%'")
            self.section_write()
            self.section_drain()
            self.section_scale()
            self.section_load_footprint()
            self.section_listing()
            self.nginx_stop()
            self.section_startup()
        self.R["load_end"] = " ".join(read_text("/proc/loadavg").split()[:3])
        self.write_report()
        if self.errors:
            warn(f"{len(self.errors)} run(s) had errors (listed in {self.out})")
            return 1
        say("benchmarks done, no errors")
        return 0


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench.sh", description=__doc__.split("\n\nThe program behind")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="short points, smaller data (~4 min): for trying it out")
    p.add_argument("--keep-state", action="store_true", help="reuse .state/bench instead of starting from empty servers")
    p.add_argument("--no-build", action="store_true", help="use dist/ as it is")
    p.add_argument("--only", choices=["listing"], default="", help="section 6 alone; the other results in OUT are kept")
    p.add_argument("--out", metavar="FILE", default=os.path.join(ROOT, "BENCHMARKS.md"), help="default BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    os.chdir(ROOT)

    def on_term(signum, frame):
        raise SystemExit(130)

    signal.signal(signal.SIGTERM, on_term)
    bench = None
    try:
        bench = Bench(Settings(quick=args.quick, only=args.only), os.path.abspath(args.out), args.keep_state,
                      not args.no_build)
        return bench.main()
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line, not a stack trace
        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"error: bench: {type(e).__name__}: {e} (at {os.path.basename(where.filename)}:{where.lineno})", file=sys.stderr)
        return 1
    finally:
        if bench is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            bench.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
