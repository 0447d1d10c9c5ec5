#!/usr/bin/env bash
# API contract tests of the running system, through the gateway:
#   1. newman runs the Postman collection (postman/movie-platform.postman_collection.json):
#      every route of both APIs, chained (created movie id), with assertions on
#      status, JSON shape and headers;
#   2. schemathesis fuzzes every operation of the OpenAPI document the gateway
#      serves (GET /api/openapi.yaml) and checks each response against it.
# Installs both tools on first use, pinned, into .cache/ (git-ignored): newman
# with npm under .cache/node, schemathesis in a Python venv under .cache/venv.
#
# It writes: POST /api/billing queues real orders and DELETE /api/movies empties
# the movies table. Point it at a test instance (scripts/test.sh contract does).
#
#   GATEWAY_URL=http://127.0.0.1:18080 scripts/api-contract.sh
#
# Env: GATEWAY_URL (default http://127.0.0.1:8080), CONTRACT_OPENAPI (a file or
# URL instead of $GATEWAY_URL/api/openapi.yaml), CONTRACT_MAX_EXAMPLES (per
# operation and phase, default 100), CONTRACT_SEED (default 20240611),
# CONTRACT_REPORT_DIR (default .cache/api-contract), CONTRACT_ONLY (newman or
# schemathesis: run one tool).
# Last line: `api-contract: N passed, M failed` (newman assertions plus
# schemathesis operations); exits non-zero on any failure.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

NEWMAN_VERSION=6.2.2
SCHEMATHESIS_VERSION=4.32.5

GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:8080}
GATEWAY_URL=${GATEWAY_URL%/}
CACHE=$MP_ROOT/.cache
NODE_PREFIX=$CACHE/node
VENV=$CACHE/venv
NEWMAN=$NODE_PREFIX/node_modules/.bin/newman
SCHEMATHESIS=$VENV/bin/schemathesis
REPORT_DIR=${CONTRACT_REPORT_DIR:-$CACHE/api-contract}
COLLECTION=$MP_ROOT/postman/movie-platform.postman_collection.json
ENVIRONMENT=$MP_ROOT/postman/local.postman_environment.json
OPENAPI=${CONTRACT_OPENAPI:-$GATEWAY_URL/api/openapi.yaml}
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-100}
SEED=${CONTRACT_SEED:-20240611}
ONLY=${CONTRACT_ONLY:-}

passed=0
failed=0

# ---------------------------------------------------------------- installs --

install_newman() {
	if [[ -x $NEWMAN ]] && [[ $("$NEWMAN" --version 2>/dev/null) == "$NEWMAN_VERSION" ]]; then
		return 0
	fi
	command -v npm >/dev/null || mp::pkg::install nodejs npm
	mp::log::info "installing newman $NEWMAN_VERSION into $NODE_PREFIX"
	mkdir -p "$NODE_PREFIX"
	npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error \
		"newman@$NEWMAN_VERSION" >&2
	[[ $("$NEWMAN" --version) == "$NEWMAN_VERSION" ]] || mp::die "newman $NEWMAN_VERSION did not install in $NODE_PREFIX"
}

install_schemathesis() {
	if [[ -x $SCHEMATHESIS ]] && "$SCHEMATHESIS" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
		return 0
	fi
	if [[ ! -x $VENV/bin/pip ]]; then
		rm -rf "$VENV"
		# Debian splits ensurepip into python3-venv.
		python3 -m venv "$VENV" >/dev/null 2>&1 || {
			mp::pkg::install python3-venv
			rm -rf "$VENV"
			python3 -m venv "$VENV"
		}
	fi
	mp::log::info "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
}

# ------------------------------------------------------------------- runs --

# The gateway must answer before either tool starts, or both report noise.
wait_for_gateway() {
	mp::wait_until 30 "the gateway at $GATEWAY_URL/health" curl -fsS -m 2 -o /dev/null "$GATEWAY_URL/health" || {
		mp::log::warn "the gateway does not answer at $GATEWAY_URL/health (start it: scripts/local.sh up)"
		echo "api-contract: 0 passed, 1 failed"
		exit 1
	}
}

# tally TOOL UNIT EXIT "PASSED FAILED": adds one tool's counts to the totals.
# A non-zero exit that its report does not count as a failure is one.
tally() {
	local p f
	read -r p f <<<"$4"
	(($3 == 0 || f > 0)) || f=1
	mp::log::info "$1: $p $2 passed, $f failed (exit $3)"
	passed=$((passed + p)) failed=$((failed + f))
}

run_newman() {
	local rc=0 report=$REPORT_DIR/newman.json counts
	mp::log::info "newman: $COLLECTION against $GATEWAY_URL"
	rm -f "$report"
	# FORCE_COLOR=0: --color off alone leaves escapes in the failure table.
	FORCE_COLOR=0 "$NEWMAN" run "$COLLECTION" \
		--environment "$ENVIRONMENT" \
		--env-var "baseUrl=$GATEWAY_URL" \
		--timeout-request 15000 \
		--color off \
		--reporters cli,json \
		--reporter-json-export "$report" || rc=$?
	if [[ -s $report ]]; then
		counts=$(
			python3 - "$report" <<-'PY'
				import json, sys
				stats = json.load(open(sys.argv[1]))["run"]["stats"]
				a, r = stats["assertions"], stats["requests"]
				print(a["total"] - a["failed"], a["failed"] + r["failed"])
			PY
		)
	else
		counts="0 1"
	fi
	# newman failing for a reason its stats do not count (bad collection, crash).
	tally newman assertions "$rc" "$counts"
}

run_schemathesis() {
	local rc=0 junit=$REPORT_DIR/schemathesis-junit.xml counts
	mp::log::info "schemathesis: $OPENAPI against $GATEWAY_URL (max $MAX_EXAMPLES examples, seed $SEED)"
	rm -f "$junit"
	# --workers 1: one DELETE /api/movies from a parallel worker would remove
	# the movie another worker's stateful scenario has just created.
	(cd "$REPORT_DIR" && "$SCHEMATHESIS" run "$OPENAPI" \
		--url "$GATEWAY_URL" \
		--checks all \
		--phases examples,coverage,fuzzing,stateful \
		--max-examples "$MAX_EXAMPLES" \
		--seed "$SEED" \
		--generation-database none \
		--workers 1 \
		--request-timeout 15 \
		--wait-for-schema 30 \
		--no-color \
		--report junit \
		--report-junit-path "$junit") || rc=$?
	if [[ -s $junit ]]; then
		counts=$(
			python3 - "$junit" <<-'PY'
				import sys
				import xml.etree.ElementTree as ET
				cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
				bad = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
				skipped = sum(1 for c in cases if c.find("skipped") is not None)
				print(len(cases) - bad - skipped, bad)
			PY
		)
	else
		counts="0 1"
	fi
	# An error the report does not hold (schema not loadable, bad option).
	tally schemathesis operations "$rc" "$counts"
}

main() {
	case $ONLY in
	'' | newman | schemathesis) ;;
	*) mp::die "CONTRACT_ONLY must be newman or schemathesis, not $ONLY" ;;
	esac
	# Absolute paths: schemathesis runs inside the report folder (it keeps its
	# .hypothesis and .schemathesis state there, not in the checkout).
	mkdir -p "$REPORT_DIR"
	REPORT_DIR=$(cd "$REPORT_DIR" && pwd)
	if [[ $OPENAPI != http://* && $OPENAPI != https://* ]]; then
		[[ -f $OPENAPI ]] || mp::die "CONTRACT_OPENAPI: no file $OPENAPI"
		OPENAPI=$(cd "$(dirname "$OPENAPI")" && pwd)/$(basename "$OPENAPI")
	fi
	[[ $ONLY == schemathesis ]] || install_newman
	[[ $ONLY == newman ]] || install_schemathesis
	wait_for_gateway
	[[ $ONLY == schemathesis ]] || run_newman
	[[ $ONLY == newman ]] || run_schemathesis
	echo "api-contract: $passed passed, $failed failed"
	((failed == 0))
}

main "$@"
