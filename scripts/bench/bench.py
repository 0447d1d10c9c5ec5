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
  7. counts      instructions per GET /api/movies/{id} under valgrind's callgrind
                 (exact and repeatable on a busy machine): the gateway, nginx with
                 an access log of the gateway's shape and without one, inventory
                 direct; and the CPU-time ratio natively. `--only count` runs just
                 it (with --profile: per-function profiles of GET and POST /api/billing
                 from the symbol-keeping `profiling` build).
  --ci           the gateway's count only, against scripts/bench/ci-baseline.json:
                 fails when it is more than 10 % above it (a regression) or below
                 it (update the baseline: --ci --update-baseline). ~1-2 min;
                 builds nothing if dist/ holds the binaries; writes no report.

It runs its OWN instance of the system (state in .state/bench, ports 28080-28082,
metrics 29101/29102, PostgreSQL 27432/27433, RabbitMQ 27672-27675, nginx 28090; override with
BENCH_*_PORT) through scripts/local.sh, and stops it at the end, also on failure.
Exits non-zero if any run had errors: a non-2xx answer, a socket error, a
failed publish, an incomplete drain.

The program behind scripts/bench.sh (Python 3 standard library only), one
module per concern in scripts/bench/: figures.py (arithmetic and parsing) and
report.py (the Markdown), plain functions tested by test_bench.py against
fixed inputs; processes.py (plumbing), instance.py (the system under test),
load.py (wrk), measure_rw.py and measure_scale.py (the sections). The Bench
class here joins them and drives the run.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback

# This folder (the modules below), the shared helpers (scripts/lib) and the
# .env reader (scripts): every module of the bench imports from them.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[0:0] = [HERE, os.path.join(HERE, "..", "lib"), os.path.join(HERE, "..")]

from figures import SERVICES, BenchError, put_block  # noqa: E402
from instance import Instance  # noqa: E402
from load import WrkRuns  # noqa: E402
from measure_count import CountSection  # noqa: E402
from measure_rw import DrainSection, ReadWriteSections  # noqa: E402
from measure_scale import ListingSection, ScaleSections  # noqa: E402
from processes import ROOT, read_text, say, shell_lib, warn  # noqa: E402
from report import Settings, report, report_count, report_listing  # noqa: E402


class Bench(Instance, WrkRuns, ReadWriteSections, DrainSection, ScaleSections, ListingSection, CountSection):
    """One run: every section in order, then the report."""

    def write_report(self):
        """Puts the generated blocks into OUT, keeping whatever is written around them."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ("-quick" if self.s.quick else "")
        results = os.path.join(self.state, "results")
        os.makedirs(results, exist_ok=True)
        with open(os.path.join(self.work, "figures.json"), "w") as f:
            json.dump({"figures": self.R, "errors": self.errors}, f, indent=1, sort_keys=True)
        blocks = []
        if self.s.only == "":
            blocks.append(("bench", report(self.R, self.s, self.errors)))
        if self.s.only in ("", "listing"):
            blocks.append(("bench-listing", report_listing(self.R, self.s, self.errors)))
        if self.s.only in ("", "count"):
            blocks.append(("bench-count", report_count(self.R, self.s, self.errors)))
        for marker, block in blocks:
            with open(os.path.join(results, f"{marker}-{stamp}.md"), "w") as f:
                f.write(block)
            text = read_text(self.out) if os.path.exists(self.out) else None
            with open(self.out, "w") as f:
                f.write(put_block(text, block, marker))
        say(f"results written to {self.out} (and {results}/)")

    def main(self):
        if not shutil.which("wrk") and not self.s.ci:
            shell_lib("mp::pkg::install", "wrk")
        if not shutil.which("nginx"):
            shell_lib("mp::pkg::install", "nginx-light")
        if not shutil.which("valgrind"):
            shell_lib("mp::pkg::install", "valgrind")
        if self.s.ci:
            return self.main_ci()
        self.build_all()
        self.bench_amqp_env()
        self.instance_up()
        self.section_machine()
        if self.s.only == "count":
            self.seed_movies(self.s.read_dataset)
            self.section_count()
        elif self.s.only == "drain":
            # Section 3 alone, e.g. to compare the worker's settings
            # (BILLING_PREFETCH, BILLING_BATCH_SIZE in the environment): its
            # figures are in the work directory's figures.json; no block.
            self.section_drain()
        elif self.s.only == "listing":
            self.nginx_start()
            self.section_listing()
            self.nginx_stop()
        else:
            self.section_idle_footprint()
            # With an access log of the gateway's shape: equal logging.
            self.nginx_start(access_log="log")
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
            self.section_count()
        self.R["load_end"] = " ".join(read_text("/proc/loadavg").split()[:3])
        self.write_report()
        if self.errors:
            warn(f"{len(self.errors)} run(s) had errors (listed in {self.out})")
            return 1
        say("benchmarks done, no errors")
        return 0

    def main_ci(self):
        """--ci: the gateway's instructions per request against the committed
        baseline (and nginx's, for the ratio); no report is written."""
        if self.build and not all(os.access(os.path.join(self.bin_dir, b), os.X_OK) for b in SERVICES):
            self.build_all()
        self.instance_up()
        self.seed_movies(self.s.read_dataset)
        self.section_count()
        if self.errors:
            warn(f"{len(self.errors)} run(s) had errors")
            return 1
        return self.ci_verdict(self.update_baseline)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench.sh", description=__doc__.split("\n\nThe program behind")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="short points, smaller data (~4 min): for trying it out")
    p.add_argument("--keep-state", action="store_true", help="reuse .state/bench instead of starting from empty servers")
    p.add_argument("--no-build", action="store_true", help="use dist/ as it is")
    p.add_argument("--only", choices=["listing", "count", "drain"], default="",
                   help="section 6 or 7 alone (the other results in OUT are kept), or 3 alone (no report)")
    p.add_argument("--ci", action="store_true",
                   help="the instruction-count guard: fails on a change of more than 10%% against scripts/bench/ci-baseline.json")
    p.add_argument("--update-baseline", action="store_true", help="with --ci: rewrite the baseline from this run")
    p.add_argument("--profile", action="store_true",
                   help="with --only count: per-function profiles (needs the `profiling` build of the gateway)")
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
        bench = Bench(Settings(quick=args.quick, only=args.only, ci=args.ci, profile=args.profile),
                      os.path.abspath(args.out), args.keep_state, not args.no_build)
        bench.update_baseline = args.update_baseline
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
