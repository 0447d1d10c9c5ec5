"""The measurements of sections 1-3 (scripts/bench/bench.py): the machine, the
idle footprint, the read path, the write path and the drain of a backlog.
"""

import os
import re
import resource
import subprocess
import sys
import time

import mp_http

from figures import NA, SERVICES, BenchError, cpu_by_group, cpu_us_per, fmt, kv_fields, metric_value, num, status_field
from processes import ROOT, cpu_snapshot, read_text, rss_kb, say, tail


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

    def worker_metrics(self):
        """The worker's /metrics (its health listener), or "" when it does not answer."""
        status, body = mp_http.http_get(f"http://127.0.0.1:{os.environ['LOCAL_BILLING_HEALTH_PORT']}/metrics", 2)
        return body if status == 200 else ""

    def worker_stored(self):
        """Orders the running worker has stored as new rows since it started
        (its counter): a cheap reading to poll during the drain, where a psql
        process and a new PostgreSQL backend per reading took CPU from what
        is measured; the table's count is read once at the end."""
        return int(metric_value(self.worker_metrics(), "billing_orders_stored_total") or 0)

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

    def drain_cpu(self, key, n, start, consumer_ticks=None):
        """Where a drain's CPU went, from START (a cpu_snapshot) to now, in µs
        per order: KEY.broker (RabbitMQ), KEY.postgres (every PostgreSQL
        process), KEY.consumer (the worker, or raw-consume's CONSUMER_TICKS),
        KEY.rest (all else: this program's polling, psql, the other
        services), KEY.machine (their sum, the machine's busy time); and
        KEY.busy, how full the cores were (%). On a machine whose cores are
        full, the drain's rate is the cores' time over the machine's µs per
        order, whoever spends them."""
        procs, (busy0, all0) = start
        procs_now, (busy1, all1) = cpu_snapshot()
        spent = cpu_by_group(procs, procs_now)
        consumer = spent.get("worker", 0) if consumer_ticks is None else consumer_ticks
        machine = busy1 - busy0
        parts = {"broker": spent.get("broker", 0), "postgres": spent.get("postgres", 0), "consumer": consumer}
        parts["rest"] = max(0, machine - sum(parts.values()))
        parts["machine"] = machine
        for part, ticks in parts.items():
            self.R[f"{key}.{part}"] = cpu_us_per(ticks, self.clk_tck, n) if n else NA
        self.R[f"{key}.busy"] = fmt(100 * machine / (all1 - all0), 0) if all1 > all0 else NA
        say(f"    CPU µs per order: broker {self.R[key + '.broker']}, PostgreSQL {self.R[key + '.postgres']}, "
            f"consumer {self.R[key + '.consumer']}, rest {self.R[key + '.rest']}; cores {self.R[key + '.busy']} % busy")

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
        start, children = cpu_snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(err, "w") as errf:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, check=False)
        if r.returncode != 0:
            self.record_error(f"drain: raw-consume failed: {tail(read_text(err), 2)}")
        # raw-consume has ended: the snapshot cannot see it, its parent's
        # account of its children can.
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent = (ended.ru_utime + ended.ru_stime) - (children.ru_utime + children.ru_stime)
        self.drain_cpu("drain.cpu.raw", n, start, consumer_ticks=spent * self.clk_tck)
        R["drain.consume_rps"] = fmt(num(kv_fields(r.stdout).get("rate")) or 0, 0)
        say(f"    broker: published at {R['drain.publish_rps']}/s, consumed at {R['drain.consume_rps']}/s")

        n, _ = self.publish_backlog(s.backlog)
        R["drain.n"] = str(n)
        t_first = t_end = None
        start = cpu_snapshot()
        t0 = time.time()
        self.local("start", "billing-worker", log=log)
        limit = 60 + n // 200
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            count = self.worker_stored()
            if t_first is None and count > 0:
                t_first = time.time()
            if count >= n:
                t_end = time.time()
                break
            time.sleep(0.1)
        self.drain_cpu("drain.cpu.worker", n, start)
        # How the worker spent the drain: its batches, and the time inside
        # their store transactions (INSERT and COMMIT, waiting on PostgreSQL).
        text = self.worker_metrics()
        batches = metric_value(text, "billing_batch_size_count") or 0
        if batches and t_end is not None:
            R["drain.batches"] = fmt(batches, 0)
            R["drain.batch_mean"] = fmt((metric_value(text, "billing_batch_size_sum") or 0) / batches, 0)
            commit = metric_value(text, "billing_batch_commit_duration_seconds_sum") or 0
            R["drain.commit_ms"] = fmt(commit * 1000 / batches, 1)
            R["drain.commit_share"] = fmt(100 * commit / (t_end - t0), 0)
            say(f"    worker: {R['drain.batches']} batches of {R['drain.batch_mean']} on average, "
                f"{R['drain.commit_ms']} ms each in the store transaction ({R['drain.commit_share']} % of the drain)")
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
