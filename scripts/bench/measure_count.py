"""7. Instruction counts per request (scripts/bench/bench.py): the gateway,
nginx and inventory-app run under valgrind's callgrind, and the instructions
they execute for N identical requests are counted. Unlike a timing, a count
repeats for the same binary and input whatever else the machine is doing,
so it is what `--ci` guards (scripts/bench/ci-baseline.json).
"""

import glob
import http.client
import json
import os
import shutil
import subprocess
import time

import mp_http

from figures import NA, BenchError, callgrind_total, ci_check, fmt, percent_more, ratio, top_functions
from processes import HERE, ROOT, read_text, say, stop_child, tail

# The request every count is made of: one seeded movie by id (the read path's
# request, with one fixed id so that every request is the same).
GET_PATH = "/api/movies/42"
# One order (the write path's body), the same every time.
ORDER = b'{"user_id":"bench-1","number_of_items":2,"total_amount":"12.50"}'
BASELINE = os.path.join(HERE, "ci-baseline.json")


def send(port, method, path, body, n):
    """N requests, one after the other on one keep-alive connection (a fixed
    client: no concurrency, no pacing, so the count is that of N requests and
    nothing else): the number answered with a 2xx."""
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    ok = 0
    try:
        for _ in range(n):
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            ok += 200 <= resp.status < 300
    finally:
        conn.close()
    return ok


class CountSection:
    """Instruction counts per request under callgrind, and the profile."""

    def callgrind_dir(self):
        d = os.path.join(self.work, "callgrind")
        os.makedirs(d, exist_ok=True)
        # nginx's worker runs as nobody and writes its own dumps here.
        os.chmod(d, 0o1777)
        return d

    def callgrind_cmd(self, label):
        """valgrind's command line for one counted program: its dumps go to
        callgrind/LABEL.PID[.N] (a fork, nginx's worker, gets its own)."""
        d = self.callgrind_dir()
        for old in glob.glob(os.path.join(d, f"{label}.*")):
            os.remove(old)
        return ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={d}/{label}.%p"]

    def callgrind_control(self, pid, *args):
        """callgrind_control ARGS for one process (through vgdb, which also
        reaches a process blocked in epoll_wait)."""
        r = subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, text=True, timeout=60,
                           check=False)
        if r.returncode != 0:
            raise BenchError(f"callgrind_control {' '.join(args)} {pid}: {tail(r.stdout + r.stderr, 3)}")

    def dump_total(self, key, label, pid):
        """Asks PID (under callgrind, dumps named LABEL) for a dump named KEY:
        the instructions it executed since its counters were last zeroed."""
        d = self.callgrind_dir()
        before = set(glob.glob(os.path.join(d, f"{label}.{pid}.*")))
        self.callgrind_control(pid, f"--dump={key}")

        # The dump is written by the process itself, just after vgdb returns.
        def new_dumps():
            return set(glob.glob(os.path.join(d, f"{label}.{pid}.*"))) - before

        mp_http.wait_until(lambda: bool(new_dumps()), 30, 0.2)
        files = new_dumps()
        if not files:
            raise BenchError(f"{key}: callgrind wrote no dump for pid {pid}")
        dump = max(files, key=lambda f: int(f.rsplit(".", 1)[1]))
        ir = None
        # Wait for the whole file: its totals line comes last.
        for _ in range(50):
            ir = callgrind_total(read_text(dump))
            if ir is not None:
                break
            time.sleep(0.2)
        if ir is None:
            raise BenchError(f"{key}: no totals in {dump}")
        self.R[f"{key}.dump.{pid}"] = dump
        return ir

    def count(self, key, label, port, pids, method="GET", path=GET_PATH, body=None):
        """Warm-up requests (uncounted: code translated, pools filled), the
        counters of PIDS zeroed, N requests, a dump: KEY.ir = instructions
        per request, summed over PIDS (nginx: master and worker)."""
        s, R = self.s, self.R
        if send(port, method, path, body, s.count_warmup) != s.count_warmup:
            self.record_error(f"{key}: a warm-up request was not answered with a 2xx")
        for pid in pids:
            self.callgrind_control(pid, "--zero")
        ok = send(port, method, path, body, s.count_requests)
        total = sum(self.dump_total(key, label, pid) for pid in pids)
        if ok != s.count_requests:
            self.record_error(f"{key}: {s.count_requests - ok} of {s.count_requests} requests not answered with a 2xx")
        R[f"{key}.ir"] = fmt(total / s.count_requests, 0)
        say(f"    {key:<34} {R[f'{key}.ir']:>9} instructions per request ({s.count_requests} requests)")
        return total / s.count_requests

    def count_nginx(self, key, log):
        """nginx's count: vgdb cannot reach a forked process (its worker), so
        no dump can be asked for; instead nginx runs twice, with the same
        start, warm-up and stop, once with no counted requests and once with
        N, and KEY.ir = the difference of the totals (master and worker) / N."""
        s, R = self.s, self.R
        totals = []
        for n in (0, s.count_requests):
            label = f"nginx-{log}-{n}"
            self.nginx_start(workers="1", access_log=log, wrapper=self.callgrind_cmd(label))
            try:
                if not mp_http.wait_until(lambda: mp_http.http_get(self.url["nginx"] + GET_PATH, 5)[0] == 200, 60, 0.5):
                    raise BenchError("nginx under callgrind did not answer")
                if send(self.nginx_port, "GET", GET_PATH, None, s.count_warmup) != s.count_warmup:
                    self.record_error(f"{key}: a warm-up request was not answered with a 2xx")
                if send(self.nginx_port, "GET", GET_PATH, None, n) != n:
                    self.record_error(f"{key}: a request was not answered with a 2xx")
            finally:
                # Each process writes its dump as it exits.
                self.nginx_stop()
            dumps = glob.glob(os.path.join(self.callgrind_dir(), f"{label}.*"))
            counts = [callgrind_total(read_text(f)) for f in dumps]
            if len(dumps) < 2 or None in counts:
                raise BenchError(f"{key}: expected the dumps of nginx's master and worker, found {dumps}")
            totals.append(sum(counts))
        R[f"{key}.ir"] = fmt((totals[1] - totals[0]) / s.count_requests, 0)
        say(f"    {key:<34} {R[f'{key}.ir']:>9} instructions per request ({s.count_requests} requests)")

    def service_under_callgrind(self, name, label, binary=None):
        """Stops NAME's local.sh instance and starts it again under callgrind
        (BINARY, else dist's), on its port with exactly the environment
        local.sh gave it (the way the start-up section runs it): (process,
        port, environment)."""
        env = os.environ
        port = {"inventory-app": env["LOCAL_INVENTORY_PORT"], "api-gateway": env["LOCAL_GATEWAY_PORT"],
                "billing-worker": env["LOCAL_BILLING_HEALTH_PORT"]}[name]
        environ = self.service_environ(name)
        self.local("stop", name, log=os.path.join(self.work, "local.log"))
        if binary is None and self.s.profile:
            # The same code with its symbols, for per-function counts.
            binary = os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "profiling", name)
            if not os.access(binary, os.X_OK):
                raise BenchError(f"{binary} is missing: cargo build --profile profiling "
                                 f"--target x86_64-unknown-linux-musl -p {name}")
        elif binary is None:
            binary = os.path.join(self.bin_dir, name)
        # Its log lines go to a file, as local.sh's do: the same sink.
        with open(os.path.join(self.work, f"{label}.log"), "w") as logf:
            proc = subprocess.Popen(self.callgrind_cmd(label) + [binary], env=environ, stdout=logf,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        ready = f"http://127.0.0.1:{port}/ready"
        if not mp_http.wait_until(lambda: proc.poll() is None and mp_http.http_get(ready, 2)[0] == 200, 120, 0.5):
            stop_child(proc, 30)
            self.local("start", name, log=os.path.join(self.work, "local.log"))
            raise BenchError(f"{name} under callgrind was not ready in 120 s (see {self.work}/{label}.log)")
        return proc, port, environ

    def section_count(self):
        """Instructions per GET /api/movies/{id}: the gateway, nginx in front
        of the same inventory with an access log of the gateway's shape and
        without one, and inventory direct; with --profile also per
        POST /api/billing, and each dump's per-function table."""
        s, R = self.s, self.R
        say(f"7. instruction counts per request (callgrind; {s.count_requests} requests after {s.count_warmup})")
        R["count.requests"] = str(s.count_requests)
        for name, label, paths, binary in self.count_plan():
            proc, port, environ = self.service_under_callgrind(name, label, binary)
            try:
                for key, method, path, body in paths:
                    self.count(key, label, port, [proc.pid], method, path, body)
                if label.startswith("telemetry-"):
                    self.check_telemetry(label, environ)
            finally:
                stop_child(proc, 60)
                self.local("start", name, log=os.path.join(self.work, "local.log"))
        for log in ["log"] if s.ci else ["log", "nolog"]:
            self.count_nginx(f"count.nginx_{log}", log)
        R["count.ratio_log"] = ratio(R.get("count.gateway.ir"), R.get("count.nginx_log.ir"))
        R["count.ratio_nolog"] = ratio(R.get("count.gateway.ir"), R.get("count.nginx_nolog.ir"))
        say(f"    gateway / nginx: {R['count.ratio_log']} with equal logging, {R['count.ratio_nolog']} against no log")
        if not s.ci:
            for what in ("", "_billing"):
                R[f"count.telemetry_cost{what}"] = percent_more(R.get(f"count.telemetry_on{what}.ir"),
                                                                R.get(f"count.telemetry_off{what}.ir"))
            say(f"    telemetry on against off: {R['count.telemetry_cost']} % per GET, "
                f"{R['count.telemetry_cost_billing']} % per POST /api/billing")
        if not s.ci:
            # The drain's counts: a failure is the run's error, not the end
            # of the run (the counts above are kept and reported).
            for step in (self.count_worker, self.count_raw_consume):
                try:
                    step()
                except (BenchError, OSError, ValueError, subprocess.SubprocessError) as e:
                    self.record_error(f"{step.__name__}: {e}")
            R["count.worker_over_raw"] = ratio(R.get("count.worker.ir"), R.get("count.raw_consume.ir"))
        if s.profile:
            self.annotate()
        if not s.ci:
            self.count_cpu()

    def wait_stored(self, key, count, seconds):
        """Until COUNT rows are in orders (the worker under callgrind stores
        ~50 times slower than natively); an error if not within SECONDS."""
        if not mp_http.wait_until(lambda: self.orders_count() >= count, seconds, 0.5):
            self.record_error(f"{key}: {self.orders_count()} of {count} orders stored after {seconds} s")
            return False
        return True

    def count_worker(self):
        """Instructions per stored order of billing-worker draining a
        backlog (count.worker.ir): the worker under callgrind, warmed up by
        a first backlog, its counters zeroed, then N orders published at
        once (raw-publish): it falls behind at once, so it takes full
        batches, as in a drain; a dump when all N are stored. With
        --profile, the symbol-keeping `profiling` build, for its profile."""
        s, R = self.s, self.R
        key, label, log = "count.worker", "worker", os.path.join(self.work, "local.log")
        binary = None
        if s.profile:
            cmd = ["cargo", "build", "--quiet", "--profile", "profiling", "--target", "x86_64-unknown-linux-musl",
                   "-p", "billing-worker"]
            say(f"    building the worker's profiling build: {' '.join(cmd)}")
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise BenchError(f"{' '.join(cmd)} failed: {tail(r.stdout + r.stderr, 10)}")
        # An empty queue and table; then the worker is replaced by one under
        # callgrind (which reads the running one's environment first).
        self.mgmt.purge("billing_queue")
        self.orders_sql("-c", "TRUNCATE orders")
        proc, _, _ = self.service_under_callgrind("billing-worker", label, binary)
        try:
            warm, _ = self.publish_backlog(s.count_warmup)
            if not self.wait_stored(key, warm, 300):
                return
            self.callgrind_control(proc.pid, "--zero")
            n, _ = self.publish_backlog(s.count_requests)
            if not self.wait_stored(key, warm + n, 600):
                return
            R[f"{key}.ir"] = fmt(self.dump_total(key, label, proc.pid) / n, 0)
            say(f"    {key:<34} {R[f'{key}.ir']:>9} instructions per stored order ({n} orders)")
        finally:
            stop_child(proc, 60)
            self.local("start", "billing-worker", log=log)

    def count_raw_consume(self):
        """Instructions per message of raw-consume (the drain's broker-alone
        baseline: the same prefetch and multiple-ack per batch, nothing
        stored), count.raw_consume.ir: it runs twice under callgrind on a
        backlog, for a few messages and for N more, and the difference of
        its totals / N leaves out its start and its connection."""
        s, R = self.s, self.R
        key = "count.raw_consume"
        self.local("stop", "billing-worker", log=os.path.join(self.work, "local.log"))
        try:
            totals = []
            for n in (s.count_warmup, s.count_warmup + s.count_requests):
                self.mgmt.purge("billing_queue")
                published, _ = self.publish_backlog(n)
                label = f"raw-consume-{n}"
                cmd = self.callgrind_cmd(label) + [os.path.join(self.tools, "raw-consume"), "--count", str(published),
                                                   "--prefetch", s.prefetch, "--ack-every", s.batch]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
                dumps = glob.glob(os.path.join(self.callgrind_dir(), f"{label}.*"))
                if r.returncode != 0 or published != n or len(dumps) != 1:
                    raise BenchError(f"{key}: raw-consume of {n} under callgrind: {tail(r.stderr, 3)}")
                totals.append(callgrind_total(read_text(dumps[0])) or 0)
                R[f"{key}.dump.{n}"] = dumps[0]
            R[f"{key}.ir"] = fmt((totals[1] - totals[0]) / s.count_requests, 0)
            say(f"    {key:<34} {R[f'{key}.ir']:>9} instructions per message ({s.count_requests} messages)")
        finally:
            self.local("start", "billing-worker", log=os.path.join(self.work, "local.log"))

    def count_plan(self):
        """(service, dump label, [(figure key, method, path, body)], binary
        or None for dist's) in order."""
        s = self.s
        gateway = [("count.gateway", "GET", GET_PATH, None)]
        if s.profile:
            gateway.append(("count.gateway_billing", "POST", "/api/billing", ORDER))
        plan = [("api-gateway", "gateway", gateway, None)]
        if not s.ci:
            plan.append(("inventory-app", "inventory", [("count.direct", "GET", GET_PATH, None)], None))
            for state, binary in self.telemetry_builds():
                plan.append(("api-gateway", f"telemetry-{state}",
                             [(f"count.telemetry_{state}", "GET", GET_PATH, None),
                              (f"count.telemetry_{state}_billing", "POST", "/api/billing", ORDER)], binary))
        return plan

    def telemetry_builds(self):
        """The gateway built twice the same way, with its cargo feature
        `telemetry` (the default: request metrics, trace propagation) and
        without it: [("on", path), ("off", path)]. Both from one cargo
        command line but for the feature, so their counts differ by that
        work alone (dist's binary is linked by zig, which counts ~3 % apart).
        The default build is made last, so that the `profiling` binary left
        behind is the one `--profile` wants."""
        built = []
        for state, flags in (("off", ["--no-default-features"]), ("on", [])):
            cmd = ["cargo", "build", "--quiet", "--profile", "profiling", "--target", "x86_64-unknown-linux-musl",
                   "-p", "api-gateway", *flags]
            say(f"    building the gateway with telemetry {state}: {' '.join(cmd)}")
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise BenchError(f"{' '.join(cmd)} failed: {tail(r.stdout + r.stderr, 10)}")
            path = os.path.join(self.work, f"api-gateway.telemetry-{state}")
            shutil.copy2(os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "profiling", "api-gateway"), path)
            built.append((state, path))
        return built[::-1]

    def check_telemetry(self, label, environ):
        """That a build is what its label says: the request metrics are in
        its /metrics with telemetry on, and absent with it off (a build
        that ignored the feature would make the comparison void)."""
        url = f"http://{environ['GATEWAY_METRICS_HOST']}:{environ['GATEWAY_METRICS_PORT']}/metrics"
        status, body = mp_http.http_get(url, 10)
        has = status == 200 and "http_requests_total{" in body
        if has != label.endswith("-on"):
            self.record_error(f"{label}: request metrics {'present' if has else 'absent'} in {url} (status {status})")

    def annotate(self):
        """callgrind_annotate of each profiled dump: callgrind/KEY.txt (its
        whole output) and callgrind/KEY.top.txt, the top entries by their own
        (exclusive) instructions per request, for BENCHMARKS.md."""
        d = self.callgrind_dir()
        for key in ("count.gateway", "count.gateway_billing", "count.worker"):
            for dump in [v for k, v in self.R.items() if k.startswith(f"{key}.dump.")]:
                r = subprocess.run(["callgrind_annotate", "--threshold=100", dump], capture_output=True, text=True,
                                   check=False)
                with open(os.path.join(d, f"{key}.txt"), "w") as f:
                    f.write(r.stdout)
                with open(os.path.join(d, f"{key}.top.txt"), "w") as f:
                    f.writelines(f"{ir:>9.0f} {pct:>6.2f}%  {fn}\n"
                                 for ir, pct, fn in top_functions(r.stdout, self.s.count_requests, 30))
                say(f"    profile of {key}: {d}/{key}.top.txt")

    def count_cpu(self):
        """The same request, natively, 1 connection, CPU time per request
        (/proc) of the gateway and of nginx with and without its log: the
        CPU-time ratio beside the count ratio, from the same run."""
        s, R = self.s, self.R
        script = self.lua_script("get-one", None)
        with open(script) as f:
            text = f.read()
        with open(script, "w") as f:
            f.write(f'request = function() return wrk.format("GET", "{GET_PATH}") end\n' + text)
        say("    CPU per request, natively (wrk, 1 connection)")
        self.wrk_point("count.cpu.gateway", self.url["gateway"] + GET_PATH, 1, script, s.warmup, s.duration,
                       [self.service_pid("api-gateway")])
        for log in ("log", "nolog"):
            self.nginx_start(workers="1", access_log=log)
            try:
                self.wrk_point(f"count.cpu.nginx_{log}", self.url["nginx"] + GET_PATH, 1, script, s.warmup,
                               s.duration, self.nginx_pids())
            finally:
                self.nginx_stop()
        R["count.cpu_ratio_log"] = ratio(R.get("count.cpu.gateway.cpu_us"), R.get("count.cpu.nginx_log.cpu_us"))
        R["count.cpu_ratio_nolog"] = ratio(R.get("count.cpu.gateway.cpu_us"), R.get("count.cpu.nginx_nolog.cpu_us"))

    def ci_verdict(self, update):
        """--ci: the gateway's count against scripts/bench/ci-baseline.json;
        with UPDATE, the baseline is rewritten from this run instead. The
        exit status."""
        R = self.R
        measured = float(R["count.gateway.ir"])
        if update:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True, check=False).stdout.strip()
            data = {
                "gateway_ir_per_request": int(measured),
                "nginx_log_ir_per_request": int(float(R.get("count.nginx_log.ir") or 0)),
                "tolerance": 0.10,
                "commit": commit,
                "measured": time.strftime("%Y-%m-%d", time.gmtime()),
                "how": (f"scripts/bench.sh --ci --update-baseline: the static musl api-gateway of {os.path.relpath(self.bin_dir, ROOT)} "
                        "(scripts/test.sh's build step: scripts/build.sh --portable, linked by zig; a musl-gcc "
                        "build counts ~3 % fewer) under valgrind "
                        f"--tool=callgrind, {self.s.count_requests} x GET {GET_PATH} on one keep-alive "
                        f"connection after {self.s.count_warmup} uncounted, RUST_LOG={self.s.rust_log}, "
                        "access log to a file"),
            }
            with open(BASELINE, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
            say(f"baseline written to {BASELINE}: {int(measured)} instructions per request")
            return 0
        try:
            with open(BASELINE) as f:
                base = json.load(f)
        except (OSError, ValueError) as e:
            raise BenchError(f"cannot read {BASELINE}: {e}") from e
        ok, msg = ci_check(measured, float(base["gateway_ir_per_request"]), float(base.get("tolerance", 0.10)))
        say(f"--ci: gateway {msg} (baseline of commit {base.get('commit', '?')}); "
            f"gateway / nginx with equal logging: {R.get('count.ratio_log', NA)}")
        return 0 if ok else 1

