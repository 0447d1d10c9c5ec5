#!/usr/bin/env python3
"""Unit tests of the benchmark's arithmetic and parsing (scripts/bench/figures.py)
and Markdown (scripts/bench/report.py), against fixed inputs (no services, no
load: ~0.1 s).

testdata/*.json hold the figures of a run (one complete, one --quick run with
failed points, missing figures and errors); testdata/*.md are the blocks that
the shell version of scripts/bench.sh (commit 8aada84) wrote for exactly those
figures, so the Markdown of BENCHMARKS.md stays what it was, byte for byte.

    python3 scripts/bench/test_bench.py
"""

import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import figures  # noqa: E402
import report as bench_report  # noqa: E402


class Arithmetic(unittest.TestCase):
    def test_fmt_rounds_as_printf(self):
        self.assertEqual(figures.fmt(2.675, 2), "2.67")  # binary 2.67499...
        self.assertEqual(figures.fmt(0.5, 0), "0")  # ties to even, as glibc's printf
        self.assertEqual(figures.fmt(1.5, 0), "2")
        self.assertEqual(figures.fmt(4295.4, 0), "4295")

    def test_ratio(self):
        self.assertEqual(figures.ratio("4295", "6083"), "0.71")
        self.assertEqual(figures.ratio("10", "3"), "3.33")
        self.assertEqual(figures.ratio("1", "0"), "n/a")
        self.assertEqual(figures.ratio("n/a", "5"), "n/a")
        self.assertEqual(figures.ratio("5", ""), "n/a")
        self.assertEqual(figures.ratio(None, "5"), "n/a")

    def test_median_is_the_lower_middle_numerically(self):
        self.assertEqual(figures.median(["150", "90", "1200"]), "150")
        self.assertEqual(figures.median(["4", "1", "3", "2"]), "2")
        self.assertEqual(figures.median(["0.831", "0.944", "0.8"]), "0.831")
        self.assertEqual(figures.median([]), "n/a")

    def test_min_of_ignores_na(self):
        self.assertEqual(figures.min_of(["0.95", "n/a", "0.71", "1.00"]), "0.71")
        self.assertEqual(figures.min_of(["n/a"]), "")

    def test_mb_and_per_request_figures(self):
        self.assertEqual(figures.mb("14131"), "13.8")
        self.assertEqual(figures.mb("n/a"), "n/a")
        self.assertEqual(figures.per_second(42950, 10_000_000), "4295")
        self.assertEqual(figures.ms("1432"), "1.43")
        # 62 ticks of 10 ms over 10,000 requests: 62 us each.
        self.assertEqual(figures.cpu_us_per(62, 100, 10_000), "62")

    def test_verdict(self):
        self.assertEqual(figures.verdict(True), "met")
        self.assertEqual(figures.verdict(False), "**NOT met**")


class Parsing(unittest.TestCase):
    LINE = "BENCH requests=43012 duration_us=10000415 p50_us=210 p99_us=530 status=2 connect=0 read=1 write=0 timeout=0"

    def test_bench_line_and_fields(self):
        out = "Running 10s test @ http://x\n  1 threads\n" + self.LINE + "\nRequests/sec: 4301.1\n"
        line = figures.bench_line(out)
        self.assertEqual(line, self.LINE)
        m = figures.kv_fields(line)
        self.assertEqual(m["p99_us"], "530")
        self.assertEqual(figures.wrk_ok(m), 43010)

    def test_wrk_errors_names_every_nonzero_counter(self):
        self.assertEqual(figures.wrk_errors(self.LINE), "status=2 read=1 ")
        clean = "BENCH requests=5 duration_us=9 p50_us=1 p99_us=2 status=0 connect=0 read=0 write=0 timeout=0"
        self.assertEqual(figures.wrk_errors(clean), "")

    def test_tool_result_line(self):
        m = figures.kv_fields("published=100000 rate=15604.3 p50_ms=0.448 p99_ms=1.442")
        self.assertEqual((m["published"], m["rate"]), ("100000", "15604.3"))

    def test_proc_stat_with_spaces_and_parens_in_the_name(self):
        stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 173 41 0 0 20 0 5 0 1234 0 0"
        self.assertEqual(figures.stat_cpu_ticks(stat), 214)

    def test_cpu_by_group_counts_new_processes_whole_and_reused_pids_afresh(self):
        before = {"10": ("beam.smp", 500), "11": ("postgres", 40), "12": ("bash", 9)}
        after = {"10": ("beam.smp", 650), "11": ("postgres", 70), "13": ("postgres", 25),
                 "12": ("billing-worker", 30), "14": ("psql", 2)}
        self.assertEqual(figures.cpu_by_group(before, after), {"broker": 150, "postgres": 55, "worker": 30, "other": 2})
        self.assertEqual(figures.stat_comm("4242 (tokio (rt) 1) S 1 4242"), "tokio (rt) 1")

    def test_metric_value_reads_one_unlabelled_sample(self):
        text = ("# HELP billing_orders_stored Orders stored\nbilling_orders_stored_total 4200\n"
                "billing_batch_size_sum 4200.0\nbilling_batch_size_bucket{le=\"1.0\"} 3\n")
        self.assertEqual(figures.metric_value(text, "billing_orders_stored_total"), 4200.0)
        self.assertEqual(figures.metric_value(text, "billing_batch_size_sum"), 4200.0)
        self.assertIsNone(figures.metric_value(text, "billing_batch_size_count"))

    def test_machine_ticks_leave_out_idle_and_iowait(self):
        self.assertEqual(figures.machine_ticks("cpu  100 5 50 800 45 0 10 0 0 0\ncpu0 1 2 3 4\n"), (165, 1010))

    def test_proc_status_field(self):
        status = "Name:\tinventory-app\nVmHWM:\t   21904 kB\nVmRSS:\t    4300 kB\n"
        self.assertEqual(figures.status_field(status, "VmRSS"), "4300")
        self.assertEqual(figures.status_field(status, "VmHWM"), "21904")
        self.assertEqual(figures.status_field(status, "VmSwap"), "")


class InstructionCounts(unittest.TestCase):
    DUMP = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=(1) main\n0 5\nsummary: 4242\ntotals: 4240\n"

    def test_callgrind_total_prefers_totals_then_summary(self):
        self.assertEqual(figures.callgrind_total(self.DUMP), 4240)
        self.assertEqual(figures.callgrind_total("events: Ir\nsummary: 77 3\n"), 77)
        self.assertIsNone(figures.callgrind_total("events: Ir\nfn=(1) main\n"))
        self.assertIsNone(figures.callgrind_total(""))

    def test_ci_check_fails_above_and_below_the_tolerance(self):
        ok, msg = figures.ci_check(105000, 100000, 0.10)
        self.assertTrue(ok)
        self.assertIn("+5.0%", msg)
        ok, msg = figures.ci_check(111000, 100000, 0.10)
        self.assertFalse(ok)
        self.assertIn("REGRESSION", msg)
        ok, msg = figures.ci_check(89000, 100000, 0.10)
        self.assertFalse(ok)
        self.assertIn("update", msg)
        self.assertTrue(figures.ci_check(110000, 100000, 0.10)[0])
        self.assertTrue(figures.ci_check(90000, 100000, 0.10)[0])

    def test_top_functions_per_request_without_the_open_frames(self):
        annotated = (
            "Ir  file:function\n"
            "300,000 (100.0%)  ???:std::sys::backtrace::__rust_begin_short_backtrace [/x/api-gateway]\n"
            " 30,000 (10.00%)  /b/obj_musl/../src_musl/src/string/x86_64/memcpy.s:0x00000000004cae08 [/x/api-gateway]\n"
            " 15,000 ( 5.00%)  ???:regex_lite::pikevm::PikeVM::epsilon_closure [/x/api-gateway]\n"
            "  9,000 ( 3.00%)  /rustc/5980761/library/core/src/fmt/mod.rs:core::fmt::write [/x/api-gateway]\n"
        )
        self.assertEqual(figures.top_functions(annotated, 1000, 2), [
            (30.0, 10.0, "musl string/x86_64/memcpy.s:0x00000000004cae08"),
            (15.0, 5.0, "regex_lite::pikevm::PikeVM::epsilon_closure"),
        ])
        self.assertEqual(figures.top_functions(annotated, 1000, 9)[2], (9.0, 3.0, "std core/src/fmt/mod.rs:core::fmt::write"))

    def test_count_block_has_the_ratios_and_the_verdict(self):
        R = {"count.requests": "10", "count.gateway.ir": "90000", "count.nginx_log.ir": "30000",
             "count.nginx_nolog.ir": "20000", "count.ratio_log": "3.00", "count.cpu.gateway.cpu_us": "50",
             "count.cpu.nginx_log.cpu_us": "25"}
        block = bench_report.report_count(R, bench_report.Settings(quick=True), [])
        self.assertIn("| nginx, access log of the gateway's shape | 30000 | 3.00 | 25 | 2.00 |", block)
        self.assertIn("| nginx, no access log | 20000 | 4.50 | n/a | n/a |", block)
        self.assertIn("| 3.00× | **NOT met** |", block)
        self.assertTrue(block.endswith("<!-- bench-count:end -->\n"))
        self.assertNotIn("telemetry", block)
        self.assertNotIn("billing-worker", block)

    def test_count_block_has_the_worker_against_raw_consume(self):
        R = {"count.worker.ir": "52000", "count.raw_consume.ir": "20000", "count.worker_over_raw": "2.60"}
        block = bench_report.report_count(R, bench_report.Settings(quick=True), [])
        self.assertIn("| billing-worker | 52000 | 1.00 |\n| `raw-consume` | 20000 | 2.60 |\n", block)

    def test_count_block_has_the_telemetry_cost_and_its_verdict(self):
        R = {"count.telemetry_on.ir": "73500", "count.telemetry_off.ir": "70000",
             "count.telemetry_on_billing.ir": "107000", "count.telemetry_off_billing.ir": "100000"}
        R["count.telemetry_cost"] = figures.percent_more(R["count.telemetry_on.ir"], R["count.telemetry_off.ir"])
        R["count.telemetry_cost_billing"] = figures.percent_more("107000", "100000")
        self.assertEqual(R["count.telemetry_cost"], "+5.0")
        block = bench_report.report_count(R, bench_report.Settings(quick=True), [])
        self.assertIn("| `GET /api/movies/42` | 73500 | 70000 | +5.0 % |", block)
        self.assertIn("| +5.0 % (GET), +7.0 % (POST) | **NOT met** |", block)
        R["count.telemetry_cost_billing"] = figures.percent_more("104000", "100000")
        block = bench_report.report_count(R, bench_report.Settings(quick=True), [])
        self.assertIn("| +5.0 % (GET), +4.0 % (POST) | met |", block)
        self.assertEqual(figures.percent_more(None, "1"), figures.NA)


class Blocks(unittest.TestCase):
    def test_put_block_replaces_only_its_own_block(self):
        text = (
            "# Benchmarks\n\nintro\n<!-- bench:begin: x -->\nold\n<!-- bench:end -->\n\nmiddle\n"
            "<!-- bench-listing:begin: y -->\nold listing\n<!-- bench-listing:end -->\nend\n"
        )
        new = figures.put_block(text, "<!-- bench:begin: x -->\nnew\n<!-- bench:end -->\n", "bench")
        self.assertEqual(new, text.replace("\nold\n", "\nnew\n"))
        new = figures.put_block(text, "<!-- bench-listing:begin: y -->\nL\n<!-- bench-listing:end -->\n", "bench-listing")
        self.assertEqual(new, text.replace("old listing", "L"))

    def test_put_block_appends_or_creates(self):
        block = "<!-- bench-listing:begin -->\nL\n<!-- bench-listing:end -->\n"
        self.assertEqual(figures.put_block("# B\n", block, "bench-listing"), "# B\n\n" + block)
        self.assertEqual(figures.put_block(None, block, "bench-listing"), "# Benchmarks\n\n" + block)

    def test_put_block_keeps_backslashes_of_the_block(self):
        block = "<!-- bench:begin -->\na\\1 \\n b\n<!-- bench:end -->\n"
        self.assertEqual(figures.put_block("<!-- bench:begin -->\n<!-- bench:end -->\n", block, "bench"), block)


class Tables(unittest.TestCase):
    def test_row(self):
        self.assertEqual(bench_report.row("`GET`", 16, "0.71"), "| `GET` | 16 | 0.71 |\n")

    def test_table_header_aligns_figures_right(self):
        self.assertEqual(bench_report.table("path", ">req/s", ">p50 / p99"), "| path | req/s | p50 / p99 |\n|---|--:|--:|\n")

    def test_figures_read_missing_and_empty_as_na(self):
        v = bench_report.Figures({"a.p50": "0.20", "a.p99": "", "a.rps": "4295", "b.rps": "6083", "kb": "14131"})
        self.assertEqual(v.lat("a"), "0.20 / n/a")
        self.assertEqual(v.ratio("a.rps", "b.rps"), "0.71")
        self.assertEqual(v.ratio("a.rps", "c.rps"), "n/a")
        self.assertEqual(v.mb("kb"), "13.8")


class Reports(unittest.TestCase):
    """The blocks are those of the shell version for the same figures."""

    def check(self, name):
        with open(os.path.join(HERE, "testdata", name + ".json"), encoding="utf-8") as f:
            fx = json.load(f)
        with open(os.path.join(HERE, "testdata", name + ".md"), encoding="utf-8") as f:
            want = f.read()
        s = bench_report.Settings(quick=fx["quick"], rust_log=fx["rust_log"], prefetch=fx["prefetch"], batch=fx["batch"])
        got = bench_report.report(fx["figures"], s, fx["errors"]) + bench_report.report_listing(fx["figures"], s, fx["errors"])
        self.maxDiff = None
        self.assertEqual(got.splitlines(), want.splitlines())
        self.assertEqual(got, want)

    def test_full_run(self):
        self.check("full")

    def test_quick_run_with_failures_and_missing_figures(self):
        self.check("quick-errors")


if __name__ == "__main__":
    unittest.main()
