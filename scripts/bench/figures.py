"""The benchmark's arithmetic and parsing (scripts/bench/bench.py): plain
functions of text in, text out, tested by test_bench.py against fixed inputs;
the names every module shares (SERVICES, PATHS, NA) and BenchError.
"""

import re


SERVICES = ("api-gateway", "inventory-app", "billing-worker")
PATHS = ("direct", "nginx", "gateway")
NA = "n/a"


class BenchError(Exception):
    """Stops the run with one message (the bash version's `die`)."""


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


def percent_more(a, b):
    """How much more A is than B, in percent with one decimal and its sign
    (`+4.3`), or NA when either is missing: a cost too small for a ratio's
    two decimals."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return NA
    if b <= 0:
        return NA
    return f"{(a / b - 1) * 100:+.1f}"


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


# Which process does which part of a drain, by its command name (/proc's
# comm, at most 15 characters): RabbitMQ's Erlang VM and its helpers, every
# PostgreSQL process, the worker, the consumer that stores nothing.
CPU_GROUPS = {
    "beam.smp": "broker", "erl_child_setup": "broker", "inet_gethost": "broker", "epmd": "broker",
    "postgres": "postgres", "billing-worker": "worker", "raw-consume": "consumer",
}


def stat_comm(stat):
    """The command name of a /proc/PID/stat text (it may hold spaces and parentheses)."""
    return stat.split(" (", 1)[1].rsplit(") ", 1)[0]


def cpu_by_group(before, after):
    """CPU clock ticks spent between two snapshots ({pid: (comm, ticks)}),
    summed by CPU_GROUPS (others under "other"). A process that appeared
    counts whole; one that ended in between is not seen (its parent's
    getrusage of its children counts it, if needed)."""
    spent = {}
    for pid, (comm, ticks) in after.items():
        old = before.get(pid)
        base = old[1] if old and old[0] == comm else 0
        group = CPU_GROUPS.get(comm, "other")
        spent[group] = spent.get(group, 0) + max(0, ticks - base)
    return spent


def metric_value(text, name):
    """The value of the unlabelled sample NAME in a Prometheus text
    exposition, or None."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == name:
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def machine_ticks(proc_stat):
    """(busy, all) clock ticks of every CPU from a /proc/stat text: busy is
    all but idle and iowait."""
    fields = [int(x) for x in proc_stat.splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


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


def callgrind_total(text):
    """The Ir (instructions) total of a callgrind dump: its `totals:` line,
    else its `summary:` line (the first event is Ir); None when it has neither."""
    found = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("totals", "summary") and rest.split():
            found.setdefault(key, int(rest.split()[0]))
    return found.get("totals", found.get("summary"))


def ci_check(measured, baseline, tolerance):
    """The --ci verdict on instructions per request: (ok, message). Fails
    when MEASURED is more than TOLERANCE (a fraction) above BASELINE (a
    regression), and also when it is that much below: a gain the committed
    baseline does not hold yet would let the next regression pass unseen."""
    change = measured / baseline - 1
    where = f"{measured:.0f} instructions per request against the baseline's {baseline:.0f} ({change:+.1%})"
    if measured > baseline * (1 + tolerance):
        return False, f"REGRESSION: {where}, more than {tolerance:.0%} above it"
    if measured < baseline * (1 - tolerance):
        return False, (f"FASTER: {where}, more than {tolerance:.0%} below it: update "
                       "scripts/bench/ci-baseline.json (scripts/bench.sh --ci --update-baseline)")
    return True, f"ok: {where}, within {tolerance:.0%}"


def top_functions(annotated, requests, n):
    """The N first function lines of callgrind_annotate's output as
    (instructions per request, percent, short name). The frames that were
    open across the whole dump (thread start, the runtime's block_on) show
    their inclusive cost there, near 100 %: they are left out."""
    rows = []
    seen = False
    for line in annotated.splitlines():
        if "file:function" in line:
            seen = True
            continue
        m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)", line)
        if not seen or not m or float(m.group(2)) > 50:
            continue
        name = re.sub(r"\s*\[/.*\]$", "", m.group(3))
        name = re.sub(r"^\?\?\?:", "", name)
        name = re.sub(r"^/\S*/src_musl/src/(\S*):", r"musl \1:", name)
        name = re.sub(r"^/rustc/\w+/library/(\S*):", r"std \1:", name)
        rows.append((int(m.group(1).replace(",", "")) / requests, float(m.group(2)), name))
    return rows[:n]
