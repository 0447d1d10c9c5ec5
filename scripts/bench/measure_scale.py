"""The measurements of sections 4-6 (scripts/bench/bench.py): scale (search and
paging at 1k, 100k, 1M movies), the footprint after load, start-up, and the
full listings.
"""

import os
import subprocess
import sys
import threading
import time

from figures import NA, PATHS, SERVICES, BenchError, fmt, kv_fields, mb, median
from processes import cpu_ticks, read_text, reset_peak, rss_kb, say


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
            environ = self.service_environ(x)
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
