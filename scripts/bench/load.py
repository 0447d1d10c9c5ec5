"""Load generation (scripts/bench/bench.py): wrk runs, one point (warm-up, run,
CPU per request) and the comparison of the three paths (direct, nginx,
gateway).
"""

import os
import subprocess

from figures import NA, PATHS, bench_line, cpu_us_per, kv_fields, median, ms, per_second, wrk_errors, wrk_ok
from processes import HERE, cpu_ticks, point_line, read_text, tail


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
