#!/usr/bin/env bash
# Benchmarks: speed and footprint of the three services against the fastest
# honest baselines, measured side by side in one run (BENCHMARKS.md).
#
#   scripts/bench.sh               full run (~10-15 min), writes BENCHMARKS.md
#   scripts/bench.sh --quick       short points, smaller data (~4 min)
#   scripts/bench.sh --only listing   section 6 alone
#   scripts/bench.sh --help        every option
#
# The program is scripts/bench/bench.py (Python 3 standard library only): it
# drives wrk, curl, nginx, psql, bench-tools and scripts/local.sh and writes
# Markdown, which had outgrown bash and awk. This wrapper keeps the command.
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/bench/bench.py" "$@"
