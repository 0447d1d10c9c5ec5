#!/usr/bin/env bash
# Benchmarks: speed and footprint of the three services against the fastest
# honest baselines, measured side by side in one run on one machine, so that
# the noise of a shared machine largely cancels out in the ratios.
#
#   scripts/bench.sh               full run (~10-15 min), writes BENCHMARKS.md
#   scripts/bench.sh --quick       short points, smaller data (~4 min): for trying it out
#   Options: --out FILE (default BENCHMARKS.md), --keep-state (reuse .state/bench
#   instead of starting from empty servers), --no-build (use dist/ as it is),
#   --only listing (section 6 alone, ~5 min; the other results in OUT are kept).
#   MP_BIN_DIR=DIR benchmarks the binaries in DIR instead of dist/ (implies --no-build).
#
# What it measures (details in BENCHMARKS.md, "How it is measured"):
#   1. read path   GET /api/movies/{id}, GET /api/movies?title=: inventory direct,
#                  nginx in front of inventory, the gateway in front of inventory
#   2. write path  POST /api/movies (same three); POST /api/billing against
#                  raw confirmed publishes to the same RabbitMQ (bench-tools raw-publish)
#   3. drain       a 100,000-order backlog into PostgreSQL against the broker alone
#                  (bench-tools raw-consume) and the database alone (one plain INSERT)
#   4. scale       search and paging latency with 1k, 100k, 1M movies
#   5. footprint   binary sizes, RSS idle / after load / peak, start-up time to ready
#   6. listings    the full GET /api/movies at 1k, 100k, 1M movies (time, MB/s, peak
#                  RSS of inventory and gateway; direct, nginx, gateway); the last page
#                  at 1M with offset vs after_id; GET /api/movies/{id} while 4 full
#                  listings run. Its own block in OUT; `--only listing` runs just it.
#
# It runs its OWN instance of the system (state in .state/bench, ports 38080-38082,
# PostgreSQL 57432/57433, RabbitMQ 57672-57675, nginx 38090; override with
# BENCH_*_PORT) through scripts/local.sh, and stops it at the end, also on failure.
# Exits non-zero if any run had errors: a non-2xx answer, a socket error, a
# failed publish, an incomplete drain.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$MP_ROOT"
export LC_ALL=C

BENCH_DIR=$MP_ROOT/scripts/bench

# ------------------------------------------------------------------ options --

QUICK=0
ONLY=
KEEP_STATE=0
BUILD=1
OUT=$MP_ROOT/BENCHMARKS.md
[[ -z ${MP_BIN_DIR:-} ]] || BUILD=0
while (($#)); do
	case $1 in
	--quick) QUICK=1 ;;
	--keep-state) KEEP_STATE=1 ;;
	--no-build) BUILD=0 ;;
	--only)
		ONLY=${2:?--only needs a section}
		[[ $ONLY == listing ]] || die "--only takes: listing"
		shift
		;;
	--out)
		OUT=${2:?--out needs a file}
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown option $1 (see --help)" ;;
	esac
	shift
done

if ((QUICK)); then
	WARMUP=1 DURATION=3 ROUNDS=3 SLICE=1 SCALE_WARMUP=1 SCALE_DURATION=2
	BACKLOG=10000 SIZES=(1000 100000) STARTUP_RUNS=2 LISTING_RUNS=1
else
	WARMUP=3 DURATION=10 ROUNDS=5 SLICE=2 SCALE_WARMUP=2 SCALE_DURATION=5
	BACKLOG=100000 SIZES=(1000 100000 1000000) STARTUP_RUNS=5 LISTING_RUNS=3
fi
CONNS=(1 16 64)
WRITE_CONNS=16
READ_DATASET=1000

# ------------------------------------------------------ our own instance ----

export MP_STATE_DIR=$MP_ROOT/.state/bench
export LOCAL_GATEWAY_PORT=${BENCH_GATEWAY_PORT:-38080}
export LOCAL_INVENTORY_PORT=${BENCH_INVENTORY_PORT:-38081}
export LOCAL_BILLING_HEALTH_PORT=${BENCH_BILLING_HEALTH_PORT:-38082}
export LOCAL_PG_INVENTORY_PORT=${BENCH_PG_INVENTORY_PORT:-57432}
export LOCAL_PG_BILLING_PORT=${BENCH_PG_BILLING_PORT:-57433}
export LOCAL_RABBITMQ_PORT=${BENCH_RABBITMQ_PORT:-57672}
export LOCAL_RABBITMQ_MGMT_PORT=${BENCH_RABBITMQ_MGMT_PORT:-57673}
export LOCAL_RABBITMQ_DIST_PORT=${BENCH_RABBITMQ_DIST_PORT:-57674}
export LOCAL_EPMD_PORT=${BENCH_EPMD_PORT:-57675}
NGINX_PORT=${BENCH_NGINX_PORT:-38090}
# The services log at their normal level: logging is part of what is measured.
export RUST_LOG=${RUST_LOG:-info}

load_dotenv "$MP_ROOT/.env"
INVENTORY_URL=http://127.0.0.1:$LOCAL_INVENTORY_PORT
GATEWAY_URL=http://127.0.0.1:$LOCAL_GATEWAY_PORT
NGINX_URL=http://127.0.0.1:$NGINX_PORT

# The binaries under test (local.sh reads MP_BIN_DIR too).
export MP_BIN_DIR=${MP_BIN_DIR:-$(dist_dir)}
BIN_DIR=$MP_BIN_DIR
WORK=$MP_STATE_DIR/bench
RUN=$MP_STATE_DIR/run
TOOLS=$MP_ROOT/target/x86_64-unknown-linux-musl/release
LOCAL=("$MP_ROOT/scripts/local.sh")

NGINX_PID=
STARTED=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	nginx_stop
	if ((STARTED)); then
		say "stopping the bench instance"
		"${LOCAL[@]}" down >/dev/null 2>&1 || warn "scripts/local.sh down failed"
		epmd_stop
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Say where a failing command stopped the run (set -e alone is silent).
set -E
trap 'warn "bench.sh: line $LINENO: \"$BASH_COMMAND\" failed"' ERR

# local.sh records the pid of the shell that launched epmd, not epmd's, so
# its `down` leaves our epmd running: stop the epmd on OUR port, by its pid.
epmd_stop() {
	local pid
	pid=$(ss -Hltnp "sport = :$LOCAL_EPMD_PORT" 2>/dev/null | grep -o '"epmd",pid=[0-9]*' | head -n 1 | cut -d= -f2 || true)
	[[ -n $pid ]] && stop_pid "$pid" 5
	return 0
}

# ---------------------------------------------------------------- results ---

declare -A R # every figure, by key
ERRORS=()    # one line per run that had errors
record_error() {
	ERRORS+=("$*")
	warn "$*"
}

# calc EXPR [DECIMALS]: floating-point arithmetic.
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
now() { printf '%s' "$EPOCHREALTIME"; }
# ratio A B: A/B with two decimals, or "n/a".
ratio() {
	if [[ -n ${1:-} && -n ${2:-} && $1 != n/a && $2 != n/a ]] && awk "BEGIN { exit !($2 > 0) }"; then
		calc "$1 / $2" 2
	else
		printf 'n/a'
	fi
}
val() { printf '%s' "${R[$1]:-n/a}"; }

# --------------------------------------------------------------- helpers ----

psql_on() {
	local port=$1 db=$2
	shift 2
	PGCONNECT_TIMEOUT=5 psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}
movies_sql() { psql_on "$LOCAL_PG_INVENTORY_PORT" "$INVENTORY_DB_NAME" "$@"; }
orders_sql() { psql_on "$LOCAL_PG_BILLING_PORT" "$BILLING_DB_NAME" "$@"; }

mgmt() {
	curl -fsS -m 10 -u guest:guest -H 'content-type: application/json' \
		"http://127.0.0.1:$LOCAL_RABBITMQ_MGMT_PORT/api$1" "${@:2}"
}
purge_queue() { mgmt "/queues/%2F/billing_queue/contents" -X DELETE >/dev/null 2>&1 || true; }

service_pid() { cat "$RUN/$1.pid" 2>/dev/null || true; }

# rss_kb PID FIELD: VmRSS or VmHWM (peak) in kB.
rss_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
mb() { [[ -n ${1:-} && $1 != n/a ]] && calc "$1 / 1024" 1 || printf 'n/a'; }

# CPU time (user+system, in clock ticks) of PIDS and their children's threads.
cpu_ticks() {
	local total=0 pid t
	for pid in "$@"; do
		[[ -r /proc/$pid/stat ]] || continue
		# Fields after the command name (which may contain spaces): utime is
		# the 12th, stime the 13th.
		t=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
		total=$((total + t))
	done
	echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# --------------------------------------------------------------- wrk runs ---

# lua_script NAME BODY_FILE [sed expressions]: a wrk script = the request part
# (with @VAR@ filled in) + the reporting part.
lua_script() {
	local name=$1 src=$2
	shift 2
	mkdir -p "$WORK/lua"
	{
		if [[ -n $src ]]; then sed -e '' "$@" "$BENCH_DIR/$src"; fi
		cat "$BENCH_DIR/report.lua"
	} >"$WORK/lua/$name.lua"
	printf '%s' "$WORK/lua/$name.lua"
}

# wrk_fields: the fields of WRK_LINE (requests=, status=, p50_us=, ...) into M.
declare -A M=()
wrk_fields() {
	local kv
	M=()
	for kv in $WRK_LINE; do [[ $kv == *=* ]] && M[${kv%%=*}]=${kv#*=}; done
	# Only successful answers count as throughput (errors fail the run anyway).
	M[ok]=$((M[requests] - M[status]))
}

# wrk_point KEY URL CONNS SCRIPT WARMUP DURATION [PROXY_PIDS...]
# Warm-up run (discarded, but its errors count), then the measured run. Sets
# R[KEY.rps], R[KEY.p50], R[KEY.p99] (ms), R[KEY.cpu_us] (CPU of PROXY_PIDS per
# request, when given).
wrk_point() {
	local key=$1 url=$2 conns=$3 script=$4 warm=$5 dur=$6
	shift 6
	local c0 c1
	if ((warm > 0)); then
		wrk_once "$key (warm-up)" "$url" "$conns" "$script" "$warm" || true
	fi
	c0=$(cpu_ticks "$@")
	wrk_once "$key" "$url" "$conns" "$script" "$dur" || true
	c1=$(cpu_ticks "$@")
	if [[ -z $WRK_LINE ]]; then
		R[$key.rps]=n/a R[$key.p50]=n/a R[$key.p99]=n/a
		return 0
	fi
	wrk_fields
	R[$key.requests]=${M[ok]}
	R[$key.rps]=$(calc "${M[ok]} / (${M[duration_us]} / 1000000)" 0)
	R[$key.p50]=$(calc "${M[p50_us]} / 1000" 2)
	R[$key.p99]=$(calc "${M[p99_us]} / 1000" 2)
	if (($# > 0 && M[ok] > 0)); then
		R[$key.cpu_us]=$(calc "($c1 - $c0) * 1000000 / $CLK_TCK / ${M[ok]}" 0)
	fi
	printf '    %-34s c=%-3s %8s req/s  p50 %7s ms  p99 %7s ms\n' "$key" "$conns" \
		"${R[$key.rps]}" "${R[$key.p50]}" "${R[$key.p99]}" >&2
}

# median VALUES...: the middle value (the lower of the two middle ones).
median() {
	local -a v
	mapfile -t v < <(printf '%s\n' "$@" | sort -g)
	printf '%s' "${v[$(((${#v[@]} - 1) / 2))]}"
}

# wrk_compare KEY PATH CONNS SCRIPT: the same requests to inventory directly,
# through nginx and through the gateway, in ROUNDS interleaved rounds of
# SLICE seconds (after one warm-up each), so that a burst of outside load on
# a shared machine hits all three alike instead of one. Sets, for T in
# direct, nginx, gateway: R[KEY.T.rps] over all rounds, R[KEY.T.p50] and
# R[KEY.T.p99] (median of the rounds, ms), R[KEY.T.cpu_us] (the proxy's CPU
# per request).
wrk_compare() {
	local key=$1 path=$2 conns=$3 script=$4 t round c0 c1
	local -a ngx
	mapfile -t ngx < <(nginx_pids)
	local -A at=([direct]=$INVENTORY_URL$path [nginx]=$NGINX_URL$path [gateway]=$GATEWAY_URL$path)
	local -A pids=([direct]='' [nginx]="${ngx[*]}" [gateway]=$(service_pid api-gateway))
	local -A ok=() us=() ticks=() p50=() p99=()
	for t in direct nginx gateway; do
		wrk_once "$key.$t (warm-up)" "${at[$t]}" "$conns" "$script" "$WARMUP" || true
		ok[$t]=0 us[$t]=0 ticks[$t]=0
	done
	for ((round = 1; round <= ROUNDS; round++)); do
		for t in direct nginx gateway; do
			# shellcheck disable=SC2086 # a list of pids
			c0=$(cpu_ticks ${pids[$t]})
			wrk_once "$key.$t (round $round)" "${at[$t]}" "$conns" "$script" "$SLICE" || continue
			# shellcheck disable=SC2086
			c1=$(cpu_ticks ${pids[$t]})
			wrk_fields
			ok[$t]=$((ok[$t] + M[ok])) us[$t]=$((us[$t] + M[duration_us])) ticks[$t]=$((ticks[$t] + c1 - c0))
			p50[$t]+="${M[p50_us]} " p99[$t]+="${M[p99_us]} "
		done
	done
	for t in direct nginx gateway; do
		if ((us[$t] == 0)); then
			R[$key.$t.rps]=n/a R[$key.$t.p50]=n/a R[$key.$t.p99]=n/a
			continue
		fi
		R[$key.$t.rps]=$(calc "${ok[$t]} / (${us[$t]} / 1000000)" 0)
		# shellcheck disable=SC2086 # space-separated lists
		R[$key.$t.p50]=$(calc "$(median ${p50[$t]}) / 1000" 2)
		# shellcheck disable=SC2086
		R[$key.$t.p99]=$(calc "$(median ${p99[$t]}) / 1000" 2)
		if [[ -n ${pids[$t]} ]] && ((ok[$t] > 0)); then
			R[$key.$t.cpu_us]=$(calc "${ticks[$t]} * 1000000 / $CLK_TCK / ${ok[$t]}" 0)
		fi
		printf '    %-34s c=%-3s %8s req/s  p50 %7s ms  p99 %7s ms\n' "$key.$t" "$conns" \
			"${R[$key.$t.rps]}" "${R[$key.$t.p50]}" "${R[$key.$t.p99]}" >&2
	done
}

# wrk_once LABEL URL CONNS SCRIPT SECONDS: sets WRK_LINE to wrk's BENCH line
# (empty on failure) and records any error. Not run in a subshell, so that
# record_error reaches ERRORS.
WRK_LINE=
wrk_once() {
	local label=$1 url=$2 conns=$3 script=$4 secs=$5 out errs
	WRK_LINE=
	out=$(wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$script" "$url" 2>&1) || {
		record_error "$label: wrk failed: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
		return 1
	}
	WRK_LINE=$(grep '^BENCH ' <<<"$out" || true)
	[[ -n $WRK_LINE ]] || {
		record_error "$label: no result from wrk: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
		return 1
	}
	# Any non-zero error counter (status = non-2xx/3xx answers; connect, read,
	# write, timeout = socket errors) fails the run.
	errs=$(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] != "requests" && kv[1] !~ /_us$/ && kv[2] > 0) printf "%s ", $i } }' <<<"$WRK_LINE")
	[[ -z $errs ]] || record_error "$label (c=$conns): errors under load: $errs"
	[[ $WRK_LINE != *" requests=0 "* ]] || record_error "$label (c=$conns): no request completed"
}

# ------------------------------------------------------------- instance ----

build_all() {
	if ((BUILD)); then
		say "building the services (scripts/build.sh)"
		"$MP_ROOT/scripts/build.sh"
	fi
	say "building bench-tools"
	cargo build --quiet --release --target x86_64-unknown-linux-musl -p bench-tools
	local b
	for b in api-gateway inventory-app billing-worker; do
		[[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing: run scripts/build.sh"
	done
}

instance_up() {
	"${LOCAL[@]}" down >/dev/null 2>&1 || true
	if ((!KEEP_STATE)); then
		# Empty servers every run, so one run's data cannot skew the next.
		rm -rf "$MP_STATE_DIR"
	fi
	epmd_stop
	local port
	for port in "$LOCAL_GATEWAY_PORT" "$LOCAL_INVENTORY_PORT" "$LOCAL_BILLING_HEALTH_PORT" "$NGINX_PORT" \
		"$LOCAL_PG_INVENTORY_PORT" "$LOCAL_PG_BILLING_PORT" "$LOCAL_RABBITMQ_PORT" "$LOCAL_RABBITMQ_MGMT_PORT" \
		"$LOCAL_RABBITMQ_DIST_PORT" "$LOCAL_EPMD_PORT"; do
		! port_open "$port" || die "port $port is already in use (another instance?): set BENCH_*_PORT"
	done
	mkdir -p "$WORK"
	STARTED=1
	say "starting the bench instance (scripts/local.sh up, state in $MP_STATE_DIR)"
	MP_SKIP_BUILD=1 "${LOCAL[@]}" up >"$WORK/local-up.log" 2>&1 || {
		tail -n 30 "$WORK/local-up.log" >&2
		die "scripts/local.sh up failed"
	}
	local s
	for s in inventory-app api-gateway billing-worker; do
		[[ -n $(service_pid "$s") ]] || die "$s did not start (see $WORK/local-up.log)"
	done
}

nginx_start() {
	local dir=$WORK/nginx user_line='' conf
	mkdir -p "$dir/tmp"
	# As root, nginx's workers drop to nobody; let them use the temp dirs.
	if is_root; then
		user_line='user nobody nogroup;'
		chown nobody: "$dir/tmp"
	fi
	conf=$dir/nginx.conf
	sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@UPSTREAM_PORT@|$LOCAL_INVENTORY_PORT|g" \
		-e "s|@USER_LINE@|$user_line|" "$BENCH_DIR/nginx.conf.template" >"$conf"
	nginx -p "$dir" -c "$conf" -e "$dir/error.log" -g "daemon off; pid $dir/nginx.pid;" \
		>>"$dir/stdout.log" 2>&1 &
	NGINX_PID=$!
	wait_until 10 "nginx on port $NGINX_PORT" port_open "$NGINX_PORT" || die "nginx did not start; see $dir/error.log"
}

nginx_stop() {
	[[ -n $NGINX_PID ]] || return 0
	stop_pid "$NGINX_PID" 10
	wait "$NGINX_PID" 2>/dev/null || true
	NGINX_PID=
}

# The nginx master and its workers, one per line.
nginx_pids() {
	[[ -n $NGINX_PID ]] || return 0
	echo "$NGINX_PID"
	ps -o pid= --ppid "$NGINX_PID" 2>/dev/null | tr -d ' ' || true
}

# ---------------------------------------------------------------- seeding ---

# seed_movies TARGET: grows the movies table to TARGET rows (starting over from
# an empty table when FROM is 0), then ANALYZE. Sets R[seed.TARGET] (seconds).
seed_movies() {
	local target=$1 from=${2:-0} t0
	t0=$(now)
	if ((from == 0)); then
		movies_sql -c "TRUNCATE movies RESTART IDENTITY"
	fi
	movies_sql -v from="$from" -v target="$target" -f "$BENCH_DIR/seed-movies.sql"
	movies_sql -c "ANALYZE movies"
	R[seed.$target]=$(calc "$(now) - $t0" 1)
}

# --------------------------------------------------------------- sections ---

section_machine() {
	R[date]=$(date -u '+%Y-%m-%d %H:%M UTC')
	R[nproc]=$(nproc)
	R[cpu]=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	R[ram]=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	R[kernel]=$(uname -sr)
	R[os]=$(. /etc/os-release && printf '%s' "$PRETTY_NAME")
	R[rustc]=$(rustc --version | awk '{ print $2 }')
	R[postgres]=$(movies_sql -c 'SHOW server_version' | awk '{ print $1 }')
	R[rabbitmq]=$(mgmt /overview | python3 -c 'import json,sys; o=json.load(sys.stdin); print(o["rabbitmq_version"], "/ Erlang", o["erlang_version"])')
	R[nginx]=$(nginx -v 2>&1 | sed 's|.*nginx/||')
	R[wrk]=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }')
	R[commit]=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	git diff --quiet HEAD -- srcs Cargo.toml 2>/dev/null || R[commit]+=" + uncommitted changes"
	R[load_start]=$(cut -d' ' -f1-3 /proc/loadavg)
}

section_idle_footprint() {
	say "footprint: binaries and idle memory"
	local s pid
	for s in api-gateway inventory-app billing-worker; do
		R[size.$s]=$(stat -c %s "$BIN_DIR/$s")
	done
	sleep 3
	for s in api-gateway inventory-app billing-worker; do
		pid=$(service_pid "$s")
		R[rss_idle.$s]=$(rss_kb "$pid" VmRSS)
	done
}

section_read() {
	say "1. read path ($READ_DATASET movies; ${WARMUP}s warm-up + $ROUNDS interleaved rounds of ${SLICE}s per point)"
	seed_movies "$READ_DATASET"
	local term by_id search c ep url
	# A word that occurs in a few titles: a search that finds something.
	term=$(movies_sql -c "SELECT lower(split_part(title, ' ', 2)) FROM movies WHERE id = $((READ_DATASET / 2))")
	R[read.term]=$term
	by_id=$(lua_script get-by-id get-by-id.lua -e "s|@IDS@|$READ_DATASET|")
	search=$(lua_script search '')
	for ep in by_id search; do
		for c in "${CONNS[@]}"; do
			if [[ $ep == by_id ]]; then
				url=/api/movies/1
				script=$by_id
			else
				url="/api/movies?title=$term"
				script=$search
			fi
			wrk_compare "read.$ep.$c" "$url" "$c" "$script"
		done
	done
}

section_write() {
	say "2. write path"
	local post_movie post_order c gw_pid line
	post_movie=$(lua_script post-movie post-movie.lua)
	post_order=$(lua_script post-order post-order.lua)
	gw_pid=$(service_pid api-gateway)
	c=$WRITE_CONNS
	wrk_compare "write.movie.$c" /api/movies "$c" "$post_movie"

	for c in "${CONNS[@]}"; do
		raw_publish_point "write.raw.$c" --concurrency "$c" --channels 1
		wrk_point "write.billing.$c" "$GATEWAY_URL/api/billing" "$c" "$post_order" "$WARMUP" "$DURATION" "$gw_pid"
	done
	# The broker's limit with the load spread over several channels.
	raw_publish_point "write.raw4.64" --concurrency 64 --channels 4
	# Keep the worker's backlog from spilling into the next section.
	wait_queue_empty 120 || record_error "write path: billing_queue did not drain within 120 s"
}

bench_amqp_env() {
	export BENCH_AMQP_HOST=127.0.0.1 BENCH_AMQP_PORT=$LOCAL_RABBITMQ_PORT
	# raw-publish and raw-consume both publish and consume: no service account
	# may do both, guest (loopback only, local run) may.
	export BENCH_AMQP_USER=guest BENCH_AMQP_PASSWORD=guest BENCH_AMQP_VHOST=$RABBITMQ_VHOST
}

# raw_publish_point KEY ARGS...: raw-publish for WARMUP+DURATION seconds.
raw_publish_point() {
	local key=$1 line kv
	shift
	line=$("$TOOLS/raw-publish" --duration "$DURATION" --warmup "$WARMUP" "$@" 2>"$WORK/raw-publish.err") ||
		record_error "$key: raw-publish failed: $(tail -n 2 "$WORK/raw-publish.err" | tr '\n' ' ') $line"
	local -A m=()
	for kv in $line; do [[ $kv == *=* ]] && m[${kv%%=*}]=${kv#*=}; done
	R[$key.rps]=$(calc "${m[rate]:-0}" 0)
	R[$key.p50]=${m[p50_ms]:-n/a}
	R[$key.p99]=${m[p99_ms]:-n/a}
	printf '    %-34s %-5s %8s msg/s  p50 %7s ms  p99 %7s ms\n' "$key" "$*" "${R[$key.rps]}" \
		"${R[$key.p50]}" "${R[$key.p99]}" >&2
}

queue_depth() {
	mgmt "/queues/%2F/billing_queue?columns=messages" 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin).get("messages", 0))' 2>/dev/null || echo -1
}

# The management API's counts lag by a few seconds: wait until it shows an
# empty queue twice in a row.
wait_queue_empty() {
	local deadline=$((SECONDS + $1)) zero=0
	while ((SECONDS < deadline)); do
		if [[ $(queue_depth) == 0 ]]; then
			((++zero >= 2)) && return 0
		else
			zero=0
		fi
		sleep 1
	done
	return 1
}

orders_count() { orders_sql -c "SELECT count(*) FROM orders"; }

# publish_backlog N: N orders into billing_queue with raw-publish (64
# publishers on 4 channels); sets BACKLOG_N (published) and BACKLOG_RATE.
publish_backlog() {
	local line kv
	BACKLOG_N=0 BACKLOG_RATE=0
	line=$("$TOOLS/raw-publish" --count "$1" --concurrency 64 --channels 4 2>"$WORK/raw-publish.err") ||
		record_error "drain: publishing the backlog failed: $(tail -n 2 "$WORK/raw-publish.err" | tr '\n' ' ')"
	local -A m=()
	for kv in $line; do [[ $kv == *=* ]] && m[${kv%%=*}]=${kv#*=}; done
	BACKLOG_N=${m[published]:-0}
	BACKLOG_RATE=$(calc "${m[rate]:-0}" 0)
}

section_drain() {
	say "3. drain: a backlog of $BACKLOG orders"
	local line kv t0 t_first='' t_end='' n count deadline
	"${LOCAL[@]}" stop billing-worker >>"$WORK/local.log" 2>&1
	purge_queue
	orders_sql -c "TRUNCATE orders"

	# The broker's limit: the same backlog consumed and acked (with the
	# worker's prefetch and batch size) by a consumer that stores nothing.
	publish_backlog "$BACKLOG"
	R[drain.publish_rps]=$BACKLOG_RATE
	line=$("$TOOLS/raw-consume" --count "$BACKLOG_N" --prefetch "$BILLING_PREFETCH" \
		--ack-every "$BILLING_BATCH_SIZE" 2>"$WORK/raw-consume.err") ||
		record_error "drain: raw-consume failed: $(tail -n 2 "$WORK/raw-consume.err" | tr '\n' ' ')"
	local -A m=()
	for kv in $line; do [[ $kv == *=* ]] && m[${kv%%=*}]=${kv#*=}; done
	R[drain.consume_rps]=$(calc "${m[rate]:-0}" 0)
	say "    broker: published at ${R[drain.publish_rps]}/s, consumed at ${R[drain.consume_rps]}/s"

	publish_backlog "$BACKLOG"
	n=$BACKLOG_N
	R[drain.n]=$n
	t0=$(now)
	"${LOCAL[@]}" start billing-worker >>"$WORK/local.log" 2>&1
	deadline=$((SECONDS + 60 + n / 200))
	while ((SECONDS < deadline)); do
		count=$(orders_count)
		if [[ -z $t_first ]] && ((count > 0)); then t_first=$(now); fi
		if ((count >= n)); then
			t_end=$(now)
			break
		fi
		sleep 0.1
	done
	if [[ -z $t_end ]]; then
		record_error "drain: only $(orders_count) of $n orders stored after $((60 + n / 200)) s"
	else
		R[drain.seconds]=$(calc "$t_end - $t0" 2)
		R[drain.rps]=$(calc "$n / ($t_end - $t0)" 0)
		R[drain.first_ms]=$(calc "($t_first - $t0) * 1000" 0)
		R[drain.steady_rps]=$(calc "$n / ($t_end - $t_first)" 0)
	fi
	count=$(orders_count)
	((count == n)) || record_error "drain: $count rows in orders for $n published orders"
	say "    worker: drained in $(val drain.seconds) s: $(val drain.rps) orders/s"

	# The database's limit: the same rows, in one plain multi-row INSERT into a
	# table with the same columns, constraints and indexes.
	orders_sql -c "DROP TABLE IF EXISTS bench_orders" -c "CREATE TABLE bench_orders (LIKE orders INCLUDING ALL)" 2>/dev/null
	t0=$(now)
	orders_sql -c "INSERT INTO bench_orders (order_id, user_id, number_of_items, total_amount)
		SELECT gen_random_uuid(), 'bench-' || (i % 1000), i % 10 + 1, ((i % 100000) / 100.0)::numeric(12, 2)
		FROM generate_series(1, $n) AS i"
	R[drain.insert_rps]=$(calc "$n / ($(now) - $t0)" 0)
	orders_sql -c "DROP TABLE bench_orders"
	say "    database: one plain INSERT at $(val drain.insert_rps) rows/s"
}

section_scale() {
	say "4. scale: ${SIZES[*]} movies"
	local size prev=0 rare common url key deep
	for size in "${SIZES[@]}"; do
		seed_movies "$size" "$prev"
		prev=$size
		# An 8-letter word: as in a user's search for one particular title.
		rare=$(movies_sql -c "SELECT lower(split_part(title, ' ', 1)) FROM movies
			WHERE id = (SELECT max(id) FROM movies WHERE id <= $((size / 2)) AND id % 5 = 4)")
		common=ama
		deep=$((size - 20))
		R[scale.rare]=$rare R[scale.common]=$common
		say "    $size movies (seeded in $(val "seed.$size") s)"
		for q in rare common page0 pagedeep; do
			case $q in
			rare) url="/api/movies?title=$rare" ;;
			common) url="/api/movies?title=$common&limit=20" ;;
			page0) url="/api/movies?limit=20&offset=0" ;;
			pagedeep) url="/api/movies?limit=20&offset=$deep" ;;
			esac
			key=scale.$size.$q
			wrk_point "$key" "$GATEWAY_URL$url" 1 "$WORK/lua/search.lua" "$SCALE_WARMUP" "$SCALE_DURATION"
		done
	done
}

section_load_footprint() {
	local s pid
	for s in api-gateway inventory-app billing-worker; do
		pid=$(service_pid "$s")
		R[rss_load.$s]=$(rss_kb "$pid" VmRSS)
		R[rss_peak.$s]=$(rss_kb "$pid" VmHWM)
	done
	local -a np
	mapfile -t np < <(nginx_pids)
	local total=0 p
	for p in "${np[@]}"; do total=$((total + $(rss_kb "$p" VmRSS || echo 0))); done
	R[rss_load.nginx]=$total
}

# Start-up time to ready: each service is stopped, then started by
# bench-tools `startup` with exactly the environment local.sh gave it (read
# from /proc), STARTUP_RUNS times; then local.sh starts it again.
section_startup() {
	say "5. start-up time to ready ($STARTUP_RUNS runs each)"
	local s pid port line kv
	local -a environ
	for s in inventory-app billing-worker api-gateway; do
		pid=$(service_pid "$s")
		mapfile -d '' -t environ <"/proc/$pid/environ"
		case $s in
		inventory-app) port=$LOCAL_INVENTORY_PORT ;;
		api-gateway) port=$LOCAL_GATEWAY_PORT ;;
		billing-worker) port=$LOCAL_BILLING_HEALTH_PORT ;;
		esac
		"${LOCAL[@]}" stop "$s" >>"$WORK/local.log" 2>&1
		line=$(env -i "${environ[@]}" "$TOOLS/startup" --port "$port" --runs "$STARTUP_RUNS" --settle 2 \
			--log "$WORK/startup-$s.log" -- "$BIN_DIR/$s" 2>&1 | tail -n 1) ||
			record_error "start-up of $s: $line"
		local -A m=()
		for kv in $line; do [[ $kv == *=* ]] && m[${kv%%=*}]=${kv#*=}; done
		R[startup.$s]=${m[ready_ms_median]:-n/a}
		R[startup_rss.$s]=${m[rss_kb_median]:-n/a}
		"${LOCAL[@]}" start "$s" >>"$WORK/local.log" 2>&1
		say "    $s: ready in $(val "startup.$s") ms (median), fresh RSS $(mb "$(val "startup_rss.$s")") MB"
	done
}

# ------------------------------------------------------ 6. large listings ---

# listing_once URL: one full listing with curl, the body discarded. Sets
# L_CODE, L_BYTES, L_SECS; L_RC is curl's exit status (non-zero when the
# answer was cut: a stream that ends without its last chunk).
listing_once() {
	local out
	L_RC=0
	out=$(curl -sS -o /dev/null --max-time 600 -w '%{http_code} %{size_download} %{time_total}' "$1" 2>"$WORK/curl.err") || L_RC=$?
	read -r L_CODE L_BYTES L_SECS <<<"${out:-000 0 0}"
}

# reset_peak PIDS...: restarts the kernel's peak-RSS counter (VmHWM) of each
# process at its current RSS, so that the next reading is the peak of what
# happened in between.
reset_peak() {
	local pid
	for pid in "$@"; do
		if [[ -n $pid ]]; then
			{ echo 5 >"/proc/$pid/clear_refs"; } 2>/dev/null || true
		fi
	done
}

# listing_point KEY URL: LISTING_RUNS full listings. Sets R[KEY.s] (median
# seconds), R[KEY.bytes], R[KEY.mbps] (MB/s, 10^6 bytes), R[KEY.rss_inv] and
# R[KEY.rss_gw] (peak RSS in kB over the runs), R[KEY.cpu_inv] and
# R[KEY.cpu_gw] (CPU ms per listing: the figure a loaded machine disturbs
# least), or R[KEY.failed].
listing_point() {
	local key=$1 url=$2 inv gw i ci0 cg0
	local -a times=()
	inv=$(service_pid inventory-app) gw=$(service_pid api-gateway)
	reset_peak "$inv" "$gw"
	ci0=$(cpu_ticks "$inv") cg0=$(cpu_ticks "$gw")
	for ((i = 0; i < LISTING_RUNS; i++)); do
		listing_once "$url"
		if [[ $L_CODE != 200 || $L_RC != 0 ]]; then
			R[$key.failed]="HTTP $L_CODE after $L_BYTES bytes, curl exit $L_RC"
			record_error "$key: the full listing failed: ${R[$key.failed]} ($(tr '\n' ' ' <"$WORK/curl.err"))"
			break
		fi
		times+=("$L_SECS")
	done
	R[$key.rss_inv]=$(rss_kb "$inv" VmHWM) R[$key.rss_gw]=$(rss_kb "$gw" VmHWM)
	[[ -z ${R[$key.failed]:-} ]] || return 0
	R[$key.cpu_inv]=$(calc "($(cpu_ticks "$inv") - $ci0) * 1000 / $CLK_TCK / $LISTING_RUNS" 0)
	R[$key.cpu_gw]=$(calc "($(cpu_ticks "$gw") - $cg0) * 1000 / $CLK_TCK / $LISTING_RUNS" 0)
	R[$key.bytes]=$L_BYTES
	R[$key.s]=$(calc "$(median "${times[@]}")" 3)
	R[$key.mbps]=$(calc "$L_BYTES / 1000000 / ${R[$key.s]}" 1)
	printf '    %-34s %6s MB in %6s s: %6s MB/s, peak RSS inventory %s MB, gateway %s MB; CPU ms inventory %s, gateway %s\n' "$key" \
		"$(calc "$L_BYTES / 1000000" 1)" "${R[$key.s]}" "${R[$key.mbps]}" \
		"$(mb "${R[$key.rss_inv]}")" "$(mb "${R[$key.rss_gw]}")" "${R[$key.cpu_inv]}" "${R[$key.cpu_gw]}" >&2
}

# copy_point KEY: the database alone: the same rows, in the same order, out
# of PostgreSQL with COPY through psql (LISTING_RUNS runs). Sets R[KEY.s]
# (median seconds) and R[KEY.bytes].
copy_point() {
	local key=$1 i t0 bytes
	local -a times=()
	for ((i = 0; i < LISTING_RUNS; i++)); do
		t0=$(now)
		bytes=$(movies_sql -c "COPY (SELECT id, title, description FROM movies ORDER BY id) TO STDOUT" | wc -c)
		times+=("$(calc "$(now) - $t0" 3)")
	done
	R[$key.s]=$(median "${times[@]}") R[$key.bytes]=$bytes
	printf '    %-34s %6s MB in %6s s\n' "$key" "$(calc "$bytes / 1000000" 1)" "${R[$key.s]}" >&2
}

# busy_point KEY BASE: GET BASE/api/movies/{id} (1 connection) while 4 loops
# fetch the full listing from BASE. Sets R[KEY.*] like wrk_point, plus
# R[KEY.listings] (completed during the run), R[KEY.rss_inv], R[KEY.rss_gw].
busy_point() {
	local key=$1 base=$2 inv gw i log=$WORK/busy-listings.log bad
	local -a loops=()
	inv=$(service_pid inventory-app) gw=$(service_pid api-gateway)
	: >"$log"
	for i in 1 2 3 4; do
		(while :; do curl -s -o /dev/null --max-time 600 -w '%{http_code} %{size_download}\n' "$base/api/movies" >>"$log" || echo "curl-exit-$?" >>"$log"; done) &
		loops+=($!)
	done
	sleep 1
	reset_peak "$inv" "$gw"
	wrk_point "$key" "$base/api/movies/1" 1 "$WORK/lua/listing-by-id.lua" "$SCALE_WARMUP" "$DURATION"
	R[$key.rss_inv]=$(rss_kb "$inv" VmHWM) R[$key.rss_gw]=$(rss_kb "$gw" VmHWM)
	for i in "${loops[@]}"; do stop_pid "$i" 5; done
	wait "${loops[@]}" 2>/dev/null || true
	R[$key.listings]=$(grep -c '^200 ' "$log" || true)
	bad=$(grep -vc '^200 ' "$log" || true)
	((bad == 0)) || record_error "$key: $bad of the concurrent full listings failed"
}

section_listing() {
	local largest=${SIZES[-1]} size prev=0 t base maxid
	local -A at=([direct]=$INVENTORY_URL [nginx]=$NGINX_URL [gateway]=$GATEWAY_URL)
	say "6. listings: the full GET /api/movies at ${SIZES[*]} movies ($LISTING_RUNS run(s) each)"
	lua_script search '' >/dev/null
	lua_script listing-by-id get-by-id.lua -e "s|@IDS@|$largest|" >/dev/null
	for size in "${SIZES[@]}"; do
		seed_movies "$size" "$prev"
		prev=$size
		copy_point "listing.$size.copy"
		for t in direct nginx gateway; do
			listing_point "listing.$size.$t" "${at[$t]}/api/movies"
		done
	done
	say "    the last page of $largest movies: offset against after_id"
	maxid=$(movies_sql -c "SELECT max(id) FROM movies")
	for t in direct gateway; do
		wrk_point "listing.last.offset.$t" "${at[$t]}/api/movies?limit=20&offset=$((largest - 20))" 1 \
			"$WORK/lua/search.lua" "$SCALE_WARMUP" "$SCALE_DURATION"
		wrk_point "listing.last.after.$t" "${at[$t]}/api/movies?limit=20&after_id=$((maxid - 20))" 1 \
			"$WORK/lua/search.lua" "$SCALE_WARMUP" "$SCALE_DURATION"
	done
	say "    GET /api/movies/{id} alone, then while 4 full listings of $largest movies run"
	for t in direct gateway; do
		wrk_point "listing.byid.$t.idle" "${at[$t]}/api/movies/1" 1 "$WORK/lua/listing-by-id.lua" "$SCALE_WARMUP" "$DURATION"
		if [[ -n ${R[listing.$largest.$t.failed]:-} ]]; then
			R[listing.byid.$t.busy.skipped]=1
			continue
		fi
		busy_point "listing.byid.$t.busy" "${at[$t]}"
	done
}

# Markdown backticks in single quotes are literal on purpose.
# shellcheck disable=SC2016
report_listing() {
	local largest=${SIZES[-1]} size t key ratio_1m worst_rss=0 r completes=1
	printf '<!-- bench-listing:begin: generated by scripts/bench.sh (section 6); rewritten on each run -->\n'
	printf '### Listings: latest run %s%s\n\n' "$(val date)" "$( ((QUICK)) && printf ' (--quick: smaller data; indicative only)')"
	printf '%s x %s; commit %s; load average at start %s. %s run(s) per point (median time). ' \
		"$(val nproc)" "$(val cpu)" "$(val commit)" "$(val load_start)" "$LISTING_RUNS"
	printf 'MB = 10^6 bytes. Peak RSS: the kernel'"'"'s VmHWM, reset before each point, so it is the peak during that point.\n\n'
	ratio_1m=$(ratio "$(val "listing.$largest.gateway.mbps")" "$(val "listing.$largest.direct.mbps")")
	for t in direct gateway; do
		for r in "$(val "listing.$largest.$t.rss_inv")" "$(val "listing.$largest.$t.rss_gw")"; do
			[[ $r != n/a ]] && ((r > worst_rss)) && worst_rss=$r
		done
	done
	[[ -z ${R[listing.$largest.gateway.failed]:-} ]] || completes=0
	printf '| target | measured | verdict |\n|---|---|---|\n'
	printf '| the %s-movie listing completes through the gateway | %s | %s |\n' "$largest" \
		"$(if ((completes)); then printf 'yes, %s MB' "$(calc "$(val "listing.$largest.gateway.bytes") / 1000000" 1)"; else printf 'no: %s' "${R[listing.$largest.gateway.failed]}"; fi)" \
		"$(verdict "$completes == 1")"
	printf '| the gateway delivers it at >= 0.8 x direct | %s x direct | %s |\n' "$ratio_1m" "$(verdict "${ratio_1m/n\/a/0} >= 0.8")"
	printf '| peak RSS of each service < 50 MB during it | max %s MB | %s |\n' "$(mb "$worst_rss")" \
		"$(verdict "$completes == 1 && $worst_rss > 0 && $worst_rss < 51200")"
	printf '| the `after_id` last page at %s is <= 2 ms p50 (through the gateway) | %s ms | %s |\n\n' "$largest" \
		"$(val listing.last.after.gateway.p50)" "$(verdict "$(val listing.last.after.gateway.p50 | sed 's|n/a|99|') <= 2")"

	printf '**Full listing** (`GET /api/movies`, every movie, one client with curl).\n\n'
	printf '*PostgreSQL alone*: the same rows with `COPY ... TO STDOUT` through psql (tab-separated text, not JSON). '
	printf '*CPU*: CPU time the process used per listing (10 ms granularity).\n\n'
	printf '| movies | JSON size | PostgreSQL alone: s | direct: s | MB/s | inventory peak RSS | inventory CPU | nginx: s | MB/s | gateway: s | MB/s | inventory / gateway peak RSS | gateway CPU | direct / PostgreSQL alone (time) | gateway / direct (MB/s) |\n'
	printf '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n'
	for size in "${SIZES[@]}"; do
		key=listing.$size
		printf '| %s | %s MB | %s' "$size" "$(calc "$(val "$key.direct.bytes" | sed 's|n/a|0|') / 1000000" 1)" "$(val "$key.copy.s")"
		for t in direct nginx gateway; do
			if [[ -n ${R[$key.$t.failed]:-} ]]; then
				# The cells the point would have had: 2 for nginx, 4 otherwise.
				printf ' | failed: %s | ' "${R[$key.$t.failed]}"
				[[ $t == nginx ]] || printf ' | | '
				continue
			fi
			printf ' | %s | %s' "$(val "$key.$t.s")" "$(val "$key.$t.mbps")"
			case $t in
			direct) printf ' | %s MB | %s ms' "$(mb "$(val "$key.$t.rss_inv")")" "$(val "$key.$t.cpu_inv")" ;;
			gateway) printf ' | %s / %s MB | %s ms' "$(mb "$(val "$key.$t.rss_inv")")" "$(mb "$(val "$key.$t.rss_gw")")" "$(val "$key.$t.cpu_gw")" ;;
			esac
		done
		printf ' | %s | %s |\n' "$(ratio "$(val "$key.direct.s")" "$(val "$key.copy.s")")" \
			"$(ratio "$(val "$key.gateway.mbps")" "$(val "$key.direct.mbps")")"
	done

	printf '\n**The last page of %s movies** (`limit=20`; 1 connection; p50 / p99 in ms).\n\n' "$largest"
	printf '| path | `offset=%s` | `after_id=<max id - 20>` | offset / after_id (p50) |\n|---|--:|--:|--:|\n' "$((largest - 20))"
	for t in direct gateway; do
		printf '| %s | %s / %s | %s / %s | %s |\n' "$t" \
			"$(val "listing.last.offset.$t.p50")" "$(val "listing.last.offset.$t.p99")" \
			"$(val "listing.last.after.$t.p50")" "$(val "listing.last.after.$t.p99")" \
			"$(ratio "$(val "listing.last.offset.$t.p50")" "$(val "listing.last.after.$t.p50")")"
	done

	printf '\n**`GET /api/movies/{id}` while 4 full listings of %s movies run** (1 connection, random ids; the 4 listings loop on the same path).\n\n' "$largest"
	printf '| path | alone: req/s | p50 / p99 | with 4 listings: req/s | p50 / p99 | listings completed meanwhile | peak RSS inventory / gateway |\n|---|--:|--:|--:|--:|--:|--:|\n'
	for t in direct gateway; do
		key=listing.byid.$t
		if [[ -n ${R[$key.busy.skipped]:-} ]]; then
			printf '| %s | %s | %s / %s | not run: the full listing fails on this path | | | |\n' "$t" \
				"$(val "$key.idle.rps")" "$(val "$key.idle.p50")" "$(val "$key.idle.p99")"
			continue
		fi
		printf '| %s | %s | %s / %s | %s | %s / %s | %s | %s / %s MB |\n' "$t" \
			"$(val "$key.idle.rps")" "$(val "$key.idle.p50")" "$(val "$key.idle.p99")" \
			"$(val "$key.busy.rps")" "$(val "$key.busy.p50")" "$(val "$key.busy.p99")" "$(val "$key.busy.listings")" \
			"$(mb "$(val "$key.busy.rss_inv")")" "$(mb "$(val "$key.busy.rss_gw")")"
	done
	if ((${#ERRORS[@]})); then
		printf '\nErrors in this run:\n\n'
		printf -- '- %s\n' "${ERRORS[@]}"
	fi
	printf '\n<!-- bench-listing:end -->\n'
}

# ---------------------------------------------------------------- report ----

# The verdict on one target: "met" / "NOT met".
verdict() { if awk "BEGIN { exit !($1) }"; then printf 'met'; else printf '**NOT met**'; fi; }

# min_of VALUES...: the smallest number, ignoring n/a.
min_of() { printf '%s\n' "$@" | grep -v '^n/a$' | sort -g | head -n 1; }

# Markdown backticks in single quotes are literal on purpose.
# shellcheck disable=SC2016
report() {
	local c ep s key label min_direct='' min_nginx='' r
	local -a direct_ratios=() nginx_ratios=() billing_ratios=()
	printf '<!-- bench:begin: generated by scripts/bench.sh; everything up to bench:end is rewritten on each run -->\n'
	printf '## Latest run: %s%s\n\n' "$(val date)" "$( ((QUICK)) && printf ' (--quick: short points, smaller data; indicative only)')"
	printf '%s x %s, %s RAM; %s; %s. Commit %s.  \n' "$(val nproc)" "$(val cpu)" "$(val ram)" "$(val kernel)" "$(val os)" "$(val commit)"
	printf 'rustc %s, PostgreSQL %s, RabbitMQ %s, nginx %s, wrk %s. ' "$(val rustc)" "$(val postgres)" "$(val rabbitmq)" "$(val nginx)" "$(val wrk)"
	printf 'Load average at start %s, at end %s. ' "$(val load_start)" "$(val load_end)"
	printf 'Each point: %s s warm-up, then %s s measured; direct / nginx / gateway comparisons in %s interleaved rounds of %s s each; wrk -t1; RUST_LOG=%s.\n\n' \
		"$WARMUP" "$DURATION" "$ROUNDS" "$SLICE" "$RUST_LOG"

	# Ratios first: they are what the targets are about.
	for ep in by_id search; do
		for c in "${CONNS[@]}"; do
			key=read.$ep.$c
			direct_ratios+=("$(ratio "$(val "$key.gateway.rps")" "$(val "$key.direct.rps")")")
			nginx_ratios+=("$(ratio "$(val "$key.gateway.rps")" "$(val "$key.nginx.rps")")")
		done
	done
	for c in "${CONNS[@]}"; do
		billing_ratios+=("$(ratio "$(val "write.billing.$c.rps")" "$(val "write.raw.$c.rps")")")
	done
	min_direct=$(min_of "${direct_ratios[@]}")
	min_nginx=$(min_of "${nginx_ratios[@]}")
	local min_billing drain_ratio max_rss=0
	min_billing=$(min_of "${billing_ratios[@]}")
	drain_ratio=$(ratio "$(val drain.rps)" "$(val drain.insert_rps)")
	for s in api-gateway inventory-app billing-worker; do
		r=$(val "rss_idle.$s")
		[[ $r != n/a ]] && ((r > max_rss)) && max_rss=$r
	done

	printf '### Targets\n\n| target | measured (worst point) | verdict |\n|---|---|---|\n'
	printf '| gateway keeps >= 70%% of inventory'"'"'s direct throughput | %s x direct | %s |\n' \
		"${min_direct:-n/a}" "$(verdict "${min_direct:-0} >= 0.70")"
	printf '| gateway matches or beats nginx in front of inventory (>= 0.95, noise) | %s x nginx | %s |\n' \
		"${min_nginx:-n/a}" "$(verdict "${min_nginx:-0} >= 0.95")"
	printf '| billing accepts >= 50%% of the raw confirmed-publish rate (same concurrency, 1 channel) | %s x raw | %s |\n' \
		"${min_billing:-n/a}" "$(verdict "${min_billing:-0} >= 0.5")"
	printf '| drain reaches >= 50%% of one plain INSERT of the same rows | %s x INSERT | %s |\n' \
		"$drain_ratio" "$(verdict "${drain_ratio/n\/a/0} >= 0.5")"
	printf '| each service < 20 MB RSS idle | max %s MB | %s |\n\n' "$(mb "$max_rss")" "$(verdict "$max_rss > 0 && $max_rss < 20480")"

	printf '### 1. Read path (%s movies)\n\n' "$READ_DATASET"
	printf 'req/s, p50 / p99 latency in ms. *direct*: wrk → inventory-app; *nginx*: wrk → nginx → inventory-app; '
	printf '*gateway*: wrk → api-gateway → inventory-app. *CPU/req*: CPU time of the proxy process(es) per request, in µs.\n'
	printf 'Search: `?title=%s` (%s matching row(s)).\n\n' "$(val read.term)" "$(val read.matches)"
	printf '| request | conns | direct req/s | p50 / p99 | nginx req/s | p50 / p99 | CPU/req | gateway req/s | p50 / p99 | CPU/req | gateway / direct | gateway / nginx |\n'
	printf '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n'
	for ep in by_id search; do
		[[ $ep == by_id ]] && label='`GET /api/movies/{id}`' || label='`GET /api/movies?title=`'
		for c in "${CONNS[@]}"; do
			key=read.$ep.$c
			printf '| %s | %s | %s | %s / %s | %s | %s / %s | %s | %s | %s / %s | %s | %s | %s |\n' "$label" "$c" \
				"$(val "$key.direct.rps")" "$(val "$key.direct.p50")" "$(val "$key.direct.p99")" \
				"$(val "$key.nginx.rps")" "$(val "$key.nginx.p50")" "$(val "$key.nginx.p99")" "$(val "$key.nginx.cpu_us")" \
				"$(val "$key.gateway.rps")" "$(val "$key.gateway.p50")" "$(val "$key.gateway.p99")" "$(val "$key.gateway.cpu_us")" \
				"$(ratio "$(val "$key.gateway.rps")" "$(val "$key.direct.rps")")" \
				"$(ratio "$(val "$key.gateway.rps")" "$(val "$key.nginx.rps")")"
		done
	done

	printf '\n### 2. Write path\n\n'
	c=$WRITE_CONNS
	key=write.movie.$c
	printf '| request | conns | direct req/s | p50 / p99 | nginx req/s | p50 / p99 | gateway req/s | p50 / p99 | gateway / direct | gateway / nginx |\n'
	printf '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n'
	printf '| `POST /api/movies` | %s | %s | %s / %s | %s | %s / %s | %s | %s / %s | %s | %s |\n\n' "$c" \
		"$(val "$key.direct.rps")" "$(val "$key.direct.p50")" "$(val "$key.direct.p99")" \
		"$(val "$key.nginx.rps")" "$(val "$key.nginx.p50")" "$(val "$key.nginx.p99")" \
		"$(val "$key.gateway.rps")" "$(val "$key.gateway.p50")" "$(val "$key.gateway.p99")" \
		"$(ratio "$(val "$key.gateway.rps")" "$(val "$key.direct.rps")")" \
		"$(ratio "$(val "$key.gateway.rps")" "$(val "$key.nginx.rps")")"
	printf '`POST /api/billing` (200 only after the broker'"'"'s confirm) against `raw-publish`: the same persistent, mandatory '
	printf 'order messages published straight to `billing_queue` by N concurrent publishers on one channel, each awaiting its confirm.\n\n'
	printf '| concurrency | gateway accepted orders/s | p50 / p99 | raw confirmed publishes/s (1 channel) | p50 / p99 | gateway / raw |\n'
	printf '|--:|--:|--:|--:|--:|--:|\n'
	for c in "${CONNS[@]}"; do
		printf '| %s | %s | %s / %s | %s | %s / %s | %s |\n' "$c" \
			"$(val "write.billing.$c.rps")" "$(val "write.billing.$c.p50")" "$(val "write.billing.$c.p99")" \
			"$(val "write.raw.$c.rps")" "$(val "write.raw.$c.p50")" "$(val "write.raw.$c.p99")" \
			"$(ratio "$(val "write.billing.$c.rps")" "$(val "write.raw.$c.rps")")"
	done
	printf '\nRaw publishes over 4 channels at concurrency 64: %s/s (p50 %s ms, p99 %s ms). ' \
		"$(val write.raw4.64.rps)" "$(val write.raw4.64.p50)" "$(val write.raw4.64.p99)"
	printf 'Gateway CPU per accepted order at 64: %s µs.\n\n' "$(val write.billing.64.cpu_us)"

	printf '### 3. Drain\n\n'
	printf 'A backlog published with the worker stopped (raw-publish, 64 publishers on 4 channels), then the worker started: time until every order is in `orders`. '
	printf 'Baselines: the broker alone (`raw-consume`: the same backlog consumed with prefetch %s, one multiple-ack per %s, nothing stored) ' "$BILLING_PREFETCH" "$BILLING_BATCH_SIZE"
	printf 'and the database alone (one `INSERT ... SELECT FROM generate_series` of as many rows into a copy of `orders` with the same constraints and indexes).\n\n'
	printf '| backlog | published at | worker: start → all stored | orders/s | first row after | orders/s from first row | broker alone: consumed/s | database alone: rows/s | worker / database | worker / broker |\n'
	printf '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n'
	printf '| %s | %s/s | %s s | %s | %s ms | %s | %s | %s | %s | %s |\n\n' "$(val drain.n)" "$(val drain.publish_rps)" \
		"$(val drain.seconds)" "$(val drain.rps)" "$(val drain.first_ms)" "$(val drain.steady_rps)" \
		"$(val drain.consume_rps)" "$(val drain.insert_rps)" "$drain_ratio" \
		"$(ratio "$(val drain.rps)" "$(val drain.consume_rps)")"

	printf '### 4. Scale (through the gateway, 1 connection)\n\n'
	printf 'p50 / p99 latency in ms. *search, rare*: `?title=<an 8-letter word>` (about one match, no limit); '
	printf '*search, common*: `?title=%s&limit=20` (about 0.25%% of titles match); *page*: `?limit=20&offset=0` and `offset=<count-20>`.\n\n' "$(val scale.common)"
	printf '| movies | seeded in | search, rare | search, common | first page | last page |\n|--:|--:|--:|--:|--:|--:|\n'
	for s in "${SIZES[@]}"; do
		printf '| %s | %s s' "$s" "$(val "seed.$s")"
		for q in rare common page0 pagedeep; do
			printf ' | %s / %s' "$(val "scale.$s.$q.p50")" "$(val "scale.$s.$q.p99")"
		done
		printf ' |\n'
	done

	printf '\n### 5. Footprint\n\n'
	printf '| service | static binary | RSS idle | RSS after the load runs | peak RSS | start-up to ready (median of %s) | RSS of a fresh start |\n' "$STARTUP_RUNS"
	printf '|---|--:|--:|--:|--:|--:|--:|\n'
	for s in api-gateway inventory-app billing-worker; do
		printf '| %s | %s MB | %s MB | %s MB | %s MB | %s ms | %s MB |\n' "$s" \
			"$(calc "$(val "size.$s") / 1048576" 2)" "$(mb "$(val "rss_idle.$s")")" "$(mb "$(val "rss_load.$s")")" \
			"$(mb "$(val "rss_peak.$s")")" "$(val "startup.$s")" "$(mb "$(val "startup_rss.$s")")"
	done
	printf '| nginx (master + workers, for scale) | | | %s MB | | | |\n\n' "$(mb "$(val rss_load.nginx)")"

	if ((${#ERRORS[@]})); then
		printf '### Errors in this run (the run exited non-zero)\n\n'
		printf -- '- %s\n' "${ERRORS[@]}"
		printf '\n'
	else
		printf 'No errors: every request under load answered 2xx, every publish was confirmed, every order stored once.\n\n'
	fi
	printf '<!-- bench:end -->\n'
}

# put_block FILE BLOCK MARKER: replaces the text from <!-- MARKER:begin to
# <!-- MARKER:end --> in FILE with BLOCK's, or appends BLOCK if FILE has none.
put_block() {
	local out=$1 block=$2 marker=$3
	if [[ -f $out ]] && grep -q "^<!-- $marker:begin" "$out"; then
		python3 - "$out" "$block" "$marker" <<-'PY'
			import re, sys
			out, block, marker = sys.argv[1], open(sys.argv[2]).read(), re.escape(sys.argv[3])
			text = open(out).read()
			text = re.sub(r"<!-- " + marker + r":begin.*?<!-- " + marker + r":end -->\n?", lambda m: block, text, count=1, flags=re.S)
			open(out, "w").write(text)
		PY
	elif [[ -f $out ]]; then
		{
			printf '\n'
			cat "$block"
		} >>"$out"
	else
		{
			printf '# Benchmarks\n\n'
			cat "$block"
		} >"$out"
	fi
}

# Puts the generated blocks into OUT, keeping whatever is written around them.
write_report() {
	local block=$WORK/report.md listing=$WORK/report-listing.md stamp
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	if ((QUICK)); then stamp+=-quick; fi
	mkdir -p "$MP_STATE_DIR/results"
	if [[ $ONLY != listing ]]; then
		report >"$block"
		cp "$block" "$MP_STATE_DIR/results/bench-$stamp.md"
		put_block "$OUT" "$block" bench
	fi
	report_listing >"$listing"
	cp "$listing" "$MP_STATE_DIR/results/bench-listing-$stamp.md"
	put_block "$OUT" "$listing" bench-listing
	say "results written to $OUT (and $MP_STATE_DIR/results/)"
}

main() {
	command -v wrk >/dev/null || apt_install wrk
	command -v nginx >/dev/null || apt_install nginx-light
	build_all
	bench_amqp_env
	instance_up
	section_machine
	if [[ $ONLY == listing ]]; then
		nginx_start
		section_listing
		nginx_stop
	else
		section_idle_footprint
		nginx_start
		section_read
		R[read.matches]=$(movies_sql -c "SELECT count(*) FROM movies WHERE title ILIKE '%$(val read.term)%'")
		section_write
		section_drain
		section_scale
		section_load_footprint
		section_listing
		nginx_stop
		section_startup
	fi
	R[load_end]=$(cut -d' ' -f1-3 /proc/loadavg)
	write_report
	if ((${#ERRORS[@]})); then
		warn "${#ERRORS[@]} run(s) had errors (listed in $OUT)"
		exit 1
	fi
	say "benchmarks done, no errors"
}

main
