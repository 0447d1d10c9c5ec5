#!/usr/bin/env bash
# The containers deployment (deploy/docker/compose.yaml) on this machine's
# Docker, checked the way the containers audit walks through it. Starts
# dockerd when none answers (and stops that one at the end), makes the
# debian:bookworm-slim base image with debootstrap when the daemon lacks it
# (no registry here), builds the six images from dist/amd64, brings the
# system up and runs every check; each one can fail and is counted.
#
#   scripts/containers-test.sh        (scripts/test.sh containers runs it)
#
# Env: CONTAINERS_GATEWAY_PORT (default 20080 + MP_TEST_PORT_OFFSET; the
# gateway is published on 127.0.0.1, .env's default), CONTAINERS_COMPOSE (the
# compose command; default `docker compose` when that works, else
# `docker-compose`). Compose reads an env file of the test's own: .env with
# random passwords in place of the *-change-me placeholders, which the
# entrypoints refuse (a check proves they do).
# The deployment's container, volume and network names are fixed (the audit
# asks for them), so this refuses to run beside a deployment it did not make.
# CONTAINERS_TEST_ONLY_MONITORING=1: only the first up and the monitoring
# phase (a shortcut while working on monitoring.yaml).
# Last line: `containers: N passed, M failed`.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
source "$MP_ROOT/scripts/lib/docker.sh"
# shellcheck source=scripts/lib/walk.sh
source "$MP_ROOT/scripts/lib/walk.sh"

COMPOSE_FILE=$MP_ROOT/deploy/docker/compose.yaml
# Prometheus and Alertmanager (the monitoring phase, last).
MONITORING_FILE=$MP_ROOT/deploy/docker/monitoring.yaml
DIST=$MP_ROOT/dist/amd64
export COMPOSE_PROJECT_NAME=movie-platform
export CONTAINERS_GATEWAY_PORT=${CONTAINERS_GATEWAY_PORT:-$((20080 + ${MP_TEST_PORT_OFFSET:-0}))}
GW=http://127.0.0.1:$CONTAINERS_GATEWAY_PORT
export CONTAINERS_PROMETHEUS_PORT=${CONTAINERS_PROMETHEUS_PORT:-$((20090 + ${MP_TEST_PORT_OFFSET:-0}))}
export CONTAINERS_ALERTMANAGER_PORT=${CONTAINERS_ALERTMANAGER_PORT:-$((20093 + ${MP_TEST_PORT_OFFSET:-0}))}
PROM=http://127.0.0.1:$CONTAINERS_PROMETHEUS_PORT
AM=http://127.0.0.1:$CONTAINERS_ALERTMANAGER_PORT
CONTAINERS=(inventory-database billing-database RabbitMQ inventory-app billing-app api-gateway-app)
IMAGES=(inventory-database billing-database rabbitmq inventory-app billing-app api-gateway-app)
VOLUMES=(inventory-database billing-database api-gateway-app rabbitmq)
SERVICE_CONTAINERS=(inventory-app billing-app api-gateway-app)
# Marks that the deployment on the daemon is this test's own leftover.
OWNED=$DOCKER_STATE/deployment-owned
RUN_ID=ct$$$RANDOM
TMP=$(mktemp -d)
# .env with generated passwords (0600, in the 0700 $TMP): what Compose reads.
TEST_ENV=$TMP/test.env
# The one-off containers of the placeholder checks.
PROBE_PREFIX=mp-containers-test-$$
# Checks count with the one harness, mp::check (scripts/lib/mp.sh): a
# check's output is kept and its last lines shown when it fails.
MP_CHECK_TAIL=15
declare -A FIGURE

cleanup() {
	local rc=$?
	docker ps -aq --filter "name=^$PROBE_PREFIX" 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
	if [[ -e $OWNED ]]; then
		mp::log::info "removing the test deployment (down -v)"
		WITH_MONITORING=1 compose down -v --remove-orphans >/dev/null 2>&1 || mp::log::warn "compose down -v failed"
		rm -f "$OWNED"
	fi
	docker_down
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT

# compose ARGS...: on the six containers; with WITH_MONITORING=1 on
# monitoring.yaml's too.
compose() {
	local files=(-f "$COMPOSE_FILE")
	[[ ${WITH_MONITORING:-0} == 0 ]] || files+=(-f "$MONITORING_FILE")
	"${COMPOSE[@]}" --env-file "$TEST_ENV" "${files[@]}" "$@"
}

# make_test_env: .env, each *-change-me password replaced by a random one.
make_test_env() {
	(umask 077 && python3 - "$MP_ROOT/.env" "$TEST_ENV") <<-'PY'
		import re, secrets, sys
		src, dst = sys.argv[1:]
		with open(src, encoding="utf-8") as f:
		    lines = f.read().split("\n")
		out = []
		for line in lines:
		    m = re.fullmatch(r"([A-Z0-9_]*_PASSWORD)=.*change-me.*", line)
		    out.append(f"{m.group(1)}=ct-{secrets.token_hex(12)}" if m else line)
		with open(dst, "w", encoding="utf-8") as f:
		    f.write("\n".join(out))
	PY
	! grep -q '^[A-Z0-9_]*_PASSWORD=.*change-me' "$TEST_ENV" || mp::die "a placeholder is left in $TEST_ENV"
}

pick_compose() {
	if [[ -n ${CONTAINERS_COMPOSE:-} ]]; then
		read -r -a COMPOSE <<<"$CONTAINERS_COMPOSE"
	elif docker compose version >/dev/null 2>&1; then
		COMPOSE=(docker compose)
	else
		COMPOSE=(docker-compose)
	fi
	mp::log::info "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?'))"
}

# expect WHAT GOT WANT: compares, says both when they differ.
expect() {
	[[ $2 == "$3" ]] || {
		echo "$1: got [$2], want [$3]"
		return 1
	}
}

# http METHOD PATH [BODY]: sets STATUS, BODY_TEXT and RID (the request id sent).
REQUESTS=0
http() {
	REQUESTS=$((REQUESTS + 1))
	RID=$RUN_ID-$REQUESTS
	local args=(-sS -m 15 -o "$TMP/body" -w '%{http_code}' -X "$1" -H "X-Request-Id: $RID")
	[[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data "$3")
	STATUS=$(curl "${args[@]}" "$GW$2" 2>"$TMP/curl.err") || STATUS=000
	BODY_TEXT=$(cat "$TMP/body" 2>/dev/null || true)
}

json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null; }

is_healthy() { [[ $(health "$1") == healthy ]]; }

all_healthy() {
	local c
	for c in "${CONTAINERS[@]}"; do
		[[ $(health "$c") == healthy ]] || return 1
	done
}

wait_healthy() {
	mp::wait_until "${1:-180}" "all ${#CONTAINERS[@]} containers to be healthy" all_healthy || {
		docker ps -a >&2
		return 1
	}
}

psql_orders() { docker exec billing-database psql -X -qAt -d "$BILLING_DB_NAME" -c "$1"; }
orders_of() { psql_orders "SELECT count(*) FROM orders WHERE user_id = '$1'"; }
# Predicates for wait_until (evaluated on every poll).
stored_once() { [[ $(orders_of "$1" 2>/dev/null) == 1 ]]; }
restarted_since() { (($(restarts "$1") > $2)); }
queue_depth() {
	docker exec RabbitMQ rabbitmqctl -q list_queues name messages | awk '$1 == "billing_queue" {print $2}'
}

# order USER: POST /api/billing; echoes the status.
order() {
	http POST /api/billing "{\"user_id\":\"$1\",\"number_of_items\":2,\"total_amount\":\"19.90\"}"
	echo "$STATUS"
}

# --------------------------------------------------------------- set-up --

preflight() {
	local c v
	mp::pkg::install docker.io docker-compose iptables
	[[ -x $DIST/api-gateway && -x $DIST/inventory-app && -x $DIST/billing-worker ]] ||
		mp::die "no binaries in $DIST: run scripts/build.sh"
	docker_up
	pick_compose
	if [[ ! -e $OWNED ]]; then
		for c in "${CONTAINERS[@]}"; do
			! docker container inspect "$c" >/dev/null 2>&1 ||
				mp::die "a container named $c exists: this test uses the deployment's names; remove that deployment first (docker compose --env-file .env -f deploy/docker/compose.yaml down, add -v to drop its data)"
		done
		for v in "${VOLUMES[@]}"; do
			! docker volume inspect "$v" >/dev/null 2>&1 ||
				mp::die "a volume named $v exists (another deployment's data?): remove it first if you do not need it (docker volume rm $v)"
		done
	fi
	mkdir -p "$DOCKER_STATE"
	touch "$OWNED"
	WITH_MONITORING=1 compose down -v --remove-orphans >/dev/null 2>&1 || true
	# The ports must be free for the published gateway and UIs.
	local var
	for var in CONTAINERS_GATEWAY_PORT CONTAINERS_PROMETHEUS_PORT CONTAINERS_ALERTMANAGER_PORT; do
		! port_open "${!var}" || mp::die "port ${!var} is in use (set $var)"
	done
}

build_images() {
	local t0=$SECONDS
	docker_base_image
	FIGURE["base image"]=$((SECONDS - t0))s
	t0=$SECONDS
	compose build >"$DOCKER_STATE/build.log" 2>&1 || {
		tail -n 30 "$DOCKER_STATE/build.log" >&2
		mp::die "compose build failed (log: $DOCKER_STATE/build.log)"
	}
	FIGURE[build]=$((SECONDS - t0))s
}

# up_timed NAME: `up -d`, then until all six are healthy; records the time.
up_timed() {
	local t0
	t0=$(date +%s.%N)
	compose up -d >"$TMP/up.log" 2>&1 || {
		cat "$TMP/up.log" >&2
		return 1
	}
	wait_healthy 240 || return 1
	FIGURE[$1]=$(python3 -c "import sys,time; print(f'{time.time() - float(sys.argv[1]):.1f}s')" "$t0")
}

# --------------------------------------------------------------- checks --

check_ps() {
	local got want
	got=$(docker ps --format '{{.Names}}' | sort | tr '\n' ' ')
	want=$(printf '%s\n' "${CONTAINERS[@]}" | sort | tr '\n' ' ')
	expect "running containers" "$got" "$want" || return 1
	got=$(docker ps --filter name=^api-gateway-app$ --format '{{.Ports}}')
	expect "api-gateway-app ports" "$got" "127.0.0.1:$CONTAINERS_GATEWAY_PORT->8080/tcp"
	docker ps --format '{{.Names}}\t{{.Ports}}'
}

# expect_inspect WHAT FORMAT WANT [CONTAINER=WANT...]: `docker inspect -f FORMAT`
# of every container is WANT, or the WANT given for that container.
expect_inspect() {
	local what=$1 format=$2 want=$3 c kv bad=0
	local -A own=()
	shift 3
	for kv in "$@"; do own[${kv%%=*}]=${kv#*=}; done
	for c in "${CONTAINERS[@]}"; do
		expect "$c $what" "$(docker inspect -f "$format" "$c")" "${own[$c]-$want}" || bad=1
	done
	return "$bad"
}

check_restart_policy() { expect_inspect "restart policy" '{{.HostConfig.RestartPolicy}}' "{on-failure 0}"; }

check_names() {
	local n bad=0 volumes images
	# Listed first, matched after: under pipefail, `docker ... | grep -q` fails
	# when grep exits on its match before docker has written everything.
	volumes=$(docker volume ls -q)
	images=$(docker images --format '{{.Repository}}')
	for n in "${VOLUMES[@]}"; do
		grep -qxF "$n" <<<"$volumes" || {
			echo "no volume $n"
			bad=1
		}
	done
	for n in "${IMAGES[@]}"; do
		grep -qxF "$n" <<<"$images" || {
			echo "no image $n"
			bad=1
		}
	done
	return "$bad"
}

check_only_gateway_published() {
	# shellcheck disable=SC2016 # a Go template, for docker
	expect_inspect bindings '{{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostIp}}:{{.HostPort}}->{{$p}} {{end}}{{end}}' "" \
		api-gateway-app="127.0.0.1:$CONTAINERS_GATEWAY_PORT->8080/tcp "
}

# shellcheck disable=SC2016 # a Go template, for docker
check_networks() {
	expect_inspect networks '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "" \
		api-gateway-app="movie-platform movie-platform-gateway-broker movie-platform-gateway-inventory " \
		inventory-app="movie-platform-gateway-inventory movie-platform-inventory-database " \
		billing-app="movie-platform-billing-database movie-platform-worker-broker " \
		RabbitMQ="movie-platform-gateway-broker movie-platform-worker-broker " \
		inventory-database="movie-platform-inventory-database " \
		billing-database="movie-platform-billing-database "
}

# Who may open a connection to whom, as the VMs' firewalls allow: a pair
# sharing a network reaches each other's service port in both directions (a
# Docker network has no direction); every other pair reaches nothing.
declare -A SERVICE_NAME=(["api-gateway-app"]=api-gateway-app ["inventory-app"]=inventory-app ["billing-app"]=billing-app
	["inventory-database"]=inventory-database ["billing-database"]=billing-database [RabbitMQ]=rabbitmq)
declare -A SERVICE_PORT=(["api-gateway-app"]=8080 ["inventory-app"]=8080 ["billing-app"]=8080
	["inventory-database"]=5432 ["billing-database"]=5432 [RabbitMQ]=5672)
ALLOWED_PAIRS=(api-gateway-app:inventory-app api-gateway-app:RabbitMQ billing-app:RabbitMQ
	inventory-app:inventory-database billing-app:billing-database)

allowed() {
	local p
	for p in "${ALLOWED_PAIRS[@]}"; do
		[[ $p == "$1:$2" || $p == "$2:$1" ]] && return 0
	done
	return 1
}

# From every container to every other one's service port, by its service
# name and by each of its addresses (on any network): TCP connects, all at
# once, 3 s each. Allowed pairs: the name and exactly one address answer;
# others: nothing does (the gateway can reach no database port, inventory
# not the broker). The allowed connects are the probe's own control.
check_reachability() {
	local src dst addrs bad=0 opened want
	# shellcheck disable=SC2016 # the script runs in the container
	local probe='for t in "$@"; do (timeout 3 bash -c "exec 3<>/dev/tcp/${t%:*}/${t##*:}" 2>/dev/null && echo "open $t" || echo "closed $t") & done; wait'
	local pids=()
	for src in "${CONTAINERS[@]}"; do
		local targets=()
		for dst in "${CONTAINERS[@]}"; do
			[[ $dst != "$src" ]] || continue
			targets+=("${SERVICE_NAME[$dst]}:${SERVICE_PORT[$dst]}")
			# shellcheck disable=SC2016 # a Go template, for docker
			addrs=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$dst")
			for a in $addrs; do targets+=("$a:${SERVICE_PORT[$dst]}"); done
		done
		docker exec "$src" bash -c "$probe" probe "${targets[@]}" >"$TMP/reach.$src" 2>&1 &
		pids+=($!)
	done
	wait "${pids[@]}"
	for src in "${CONTAINERS[@]}"; do
		for dst in "${CONTAINERS[@]}"; do
			[[ $dst != "$src" ]] || continue
			# shellcheck disable=SC2016 # a Go template, for docker
			addrs=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$dst")
			opened=0
			for a in $addrs; do
				grep -qxF "open $a:${SERVICE_PORT[$dst]}" "$TMP/reach.$src" && opened=$((opened + 1))
			done
			if grep -qxF "open ${SERVICE_NAME[$dst]}:${SERVICE_PORT[$dst]}" "$TMP/reach.$src"; then
				opened="$opened+name"
			fi
			want=0
			allowed "$src" "$dst" && want="1+name"
			expect "$src -> $dst:${SERVICE_PORT[$dst]} (addresses open+name)" "$opened" "$want" || bad=1
			[[ $want == 0 ]] || echo "$src -> $dst:${SERVICE_PORT[$dst]}: reachable (allowed)"
		done
	done
	return "$bad"
}

# Every container: no capability at all (bounding and effective sets), no
# new privileges, a root file system it cannot write, memory and pids limits.
check_hardened() {
	local c out bad=0
	expect_inspect "cap_drop" '{{.HostConfig.CapDrop}}' "[ALL]" || bad=1
	expect_inspect "cap_add" '{{.HostConfig.CapAdd}}' "[]" || bad=1
	expect_inspect "security_opt" '{{.HostConfig.SecurityOpt}}' "[no-new-privileges:true]" || bad=1
	expect_inspect "read-only root" '{{.HostConfig.ReadonlyRootfs}}' "true" || bad=1
	expect_inspect "memory limit" '{{.HostConfig.Memory}}' "" \
		api-gateway-app=$((192 << 20)) inventory-app=$((384 << 20)) billing-app=$((192 << 20)) \
		inventory-database=$((384 << 20)) billing-database=$((384 << 20)) RabbitMQ=$((512 << 20)) \
		prometheus=$((512 << 20)) alertmanager=$((128 << 20)) inventory-database-exporter=$((64 << 20)) \
		billing-database-exporter=$((64 << 20)) node-exporter=$((64 << 20)) || bad=1
	expect_inspect "pids limit" '{{.HostConfig.PidsLimit}}' "" \
		api-gateway-app=256 inventory-app=1024 billing-app=256 \
		inventory-database=128 billing-database=128 RabbitMQ=256 prometheus=256 alertmanager=128 \
		inventory-database-exporter=64 billing-database-exporter=64 node-exporter=64 || bad=1
	for c in "${CONTAINERS[@]}"; do
		# What the kernel says of the container's main process (pid 1).
		out=$(docker exec "$c" bash -c 'grep -E "^(CapEff|CapBnd|NoNewPrivs):" /proc/1/status | tr -s "\t\n" "  "; touch /write-probe 2>/dev/null && echo "root writable"')
		expect "$c" "$out" "CapEff: 0000000000000000 CapBnd: 0000000000000000 NoNewPrivs: 1 " || bad=1
	done
	return "$bad"
}

check_non_root() {
	local c u bad=0
	for c in "${CONTAINERS[@]}"; do
		u=$(docker exec "$c" id -u)
		[[ $u != 0 ]] || {
			echo "$c runs as root"
			bad=1
		}
		echo "$c: uid $u ($(docker exec "$c" id -un))"
	done
	return "$bad"
}

check_base_images() {
	local f bad=0 line
	for f in "$MP_ROOT"/deploy/docker/*/Dockerfile; do
		while read -r line; do
			expect "$f" "$line" "FROM debian:bookworm-slim" || bad=1
		done < <(grep -i '^FROM' "$f")
	done
	return "$bad"
}

check_worker_health_port() {
	# From inside the worker's own container: its health server on 8080.
	docker exec billing-app bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET /health HTTP/1.0\r\n\r\n" >&3 && read -r s <&3 && echo "$s" && [[ $s == *" 200 "* ]]'
}

# The audit walk (scripts/lib/walk.sh) over docker exec: curl to the published
# port, psql and rabbitmqctl in their containers, docker stop/start billing-app.
docker::http() { mp::walk::curl "$GW" -- "$@"; }
docker::sql() { docker exec "$1-database" psql -X -qAt -d "$(mp::walk::db "$1")" -c "$2"; }
docker::queued() { queue_depth; }
docker::worker() {
	case $1 in
	stop) docker stop billing-app >/dev/null ;;
	start) docker start billing-app >/dev/null && mp::wait_until 60 "billing-app to be healthy" is_healthy billing-app ;;
	esac
}

check_access_log() {
	# The walk's movie that stays, asked for with a request id of our own.
	MOVIE_ID=${WALK_MOVIE_ID:-0}
	http GET "/api/movies/$MOVIE_ID"
	GET_RID=$RID
	expect "GET /api/movies/$MOVIE_ID" "$STATUS" 200 || return 1
	# The gateway's file log on the api-gateway-app volume holds the request.
	docker exec api-gateway-app cat /var/logs/api-gateway/access.log >"$TMP/access.log"
	grep -E "^20[0-9-]+T[0-9:.]+Z INFO GET /api/movies/$MOVIE_ID 200 [0-9]+ms trace_id=[0-9a-f]{32} request_id=$GET_RID\$" "$TMP/access.log"
}

check_order_stored() {
	local user=$RUN_ID-a$REQUESTS
	expect "POST /api/billing" "$(order "$user")" 200 || return 1
	mp::wait_until 30 "the order to be stored" stored_once "$user"
}

restarts() { docker inspect -f '{{.RestartCount}}' "$1"; }

# kill_and_recover CONTAINER: SIGKILL its process from the host; the policy
# must restart it and it must be healthy again.
kill_and_recover() {
	local c=$1 before pid
	before=$(restarts "$c")
	pid=$(docker inspect -f '{{.State.Pid}}' "$c")
	[[ $pid -gt 0 ]] || {
		echo "$c has no pid"
		return 1
	}
	kill -KILL "$pid"
	mp::wait_until 30 "$c to be restarted" restarted_since "$c" "$before" || return 1
	mp::wait_until 60 "$c to be healthy again" is_healthy "$c" || return 1
	echo "$c: restart count $before -> $(restarts "$c"), healthy again"
}

check_killed_services_restart() {
	local c bad=0
	for c in "${SERVICE_CONTAINERS[@]}"; do
		kill_and_recover "$c" || bad=1
	done
	((bad == 0)) || return 1
	http GET "/api/movies/$MOVIE_ID"
	expect "GET after the restarts" "$STATUS" 200
	check_order_stored
}

check_rabbitmq_restart() {
	local user attempt status
	docker restart RabbitMQ >/dev/null
	mp::wait_until 120 "RabbitMQ to be healthy" is_healthy RabbitMQ || return 1
	# The gateway reconnects by itself: an order is accepted again soon. A
	# user per attempt: an attempt that was refused must not count.
	for ((attempt = 1; attempt <= 60; attempt++)); do
		user=$RUN_ID-r$attempt
		status=$(order "$user")
		[[ $status == 200 ]] && break
		sleep 1
	done
	expect "order after the broker restart (attempt $attempt)" "$status" 200 || return 1
	mp::wait_until 60 "the order to be stored" stored_once "$user"
}

check_database_restart() {
	local user
	docker restart inventory-database >/dev/null
	mp::wait_until 60 "GET /api/movies/$MOVIE_ID to work again" bash -c "curl -fsS -m 5 -o /dev/null '$GW/api/movies/$MOVIE_ID'" || return 1
	docker restart billing-database >/dev/null
	mp::wait_until 60 "billing-database to be healthy" is_healthy billing-database || return 1
	user=$RUN_ID-d
	expect "POST /api/billing after the restart" "$(order "$user")" 200 || return 1
	mp::wait_until 90 "the order to be stored after the database restart" stored_once "$user" || {
		docker logs --tail 15 billing-app 2>&1
		return 1
	}
}

check_newman() {
	GATEWAY_URL=$GW CONTRACT_ONLY=newman "$MP_ROOT/scripts/api-contract.sh"
}

movie_count() {
	http GET /api/movies
	[[ $STATUS == 200 ]] || return 1
	python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$BODY_TEXT"
}

check_down_up_keeps_data() {
	local movies orders after_movies after_orders
	# Some data of our own: newman empties the movies table at its end.
	http POST /api/movies '{"title":"Containers kept '"$RUN_ID"'","description":"made by the containers test"}'
	expect "POST /api/movies" "$STATUS" 201 || return 1
	check_order_stored >/dev/null
	movies=$(movie_count)
	orders=$(psql_orders 'SELECT count(*) FROM orders')
	echo "before down: $movies movies, $orders orders"
	[[ $movies -gt 0 && $orders -gt 0 ]] || {
		echo "nothing to keep"
		return 1
	}
	compose down >/dev/null 2>&1
	up_timed "warm up (down, then up)" || return 1
	after_movies=$(movie_count)
	after_orders=$(psql_orders 'SELECT count(*) FROM orders')
	expect "movies after down/up" "$after_movies" "$movies" || return 1
	expect "orders after down/up" "$after_orders" "$orders" || return 1
	# Later starts change nothing: no first-start work in the new containers.
	if docker logs inventory-database 2>&1 | grep -F 'created role'; then return 1; fi
	if docker logs RabbitMQ 2>&1 | grep -F 'accounts ready'; then return 1; fi
	# The access log lived on its volume too.
	docker exec api-gateway-app grep -F "request_id=$GET_RID" /var/logs/api-gateway/access.log
}

check_down_v_starts_empty() {
	compose down -v >/dev/null 2>&1
	up_timed "cold up (empty volumes)" || return 1
	expect "movies after down -v" "$(movie_count)" 0 || return 1
	expect "orders after down -v" "$(psql_orders 'SELECT count(*) FROM orders')" 0 || return 1
	docker logs inventory-database 2>&1 | grep -F 'created role'
}

# Every password of .env: in no image layer, history or image config; the
# same search finds them in a running container's config (which holds its
# environment), so it would find them in an image too.
check_no_secret_in_images() {
	local key
	: >"$TMP/secrets"
	while IFS= read -r key; do
		[[ -n ${!key:-} ]] && printf '%s\n' "${!key}" >>"$TMP/secrets"
	done < <(compgen -e | grep -E '_PASSWORD$')
	sort -u -o "$TMP/secrets" "$TMP/secrets"
	echo "searching for $(wc -l <"$TMP/secrets") distinct passwords"
	[[ -s $TMP/secrets ]] || return 1
	# Read whole, then searched: `inspect | grep -q` fails under pipefail when
	# grep exits on its first match and docker's next write gets SIGPIPE.
	docker container inspect inventory-database >"$TMP/inspect.json" || return 1
	grep -qF -f "$TMP/secrets" "$TMP/inspect.json" || {
		echo "control failed: the container's config should hold its password"
		return 1
	}
	local img bad=0
	for img in "${IMAGES[@]}"; do
		if docker image inspect "$img" | grep -F -f "$TMP/secrets"; then
			echo "secret in docker inspect $img"
			bad=1
		fi
		if docker history --no-trunc "$img" | grep -F -f "$TMP/secrets"; then
			echo "secret in docker history $img"
			bad=1
		fi
	done
	# Every file of every layer (docker save holds them uncompressed).
	local rcs
	docker save "${IMAGES[@]}" | grep -a -c -F -f "$TMP/secrets"
	rcs=("${PIPESTATUS[@]}")
	expect "docker save exit" "${rcs[0]}" 0 || bad=1
	expect "grep in the layers (1: nothing found)" "${rcs[1]}" 1 || bad=1
	return "$bad"
}

# A code change rebuilds only the last layer: the gateway image from a
# changed binary shares every layer but the top one with the current image.
check_code_change_rebuilds_last_layer() {
	# Two levels below the root, as dist/amd64: the compose file finds the
	# Dockerfile relative to the context.
	local ctx=$MP_ROOT/.state/containers-changed-dist before after
	rm -rf "$ctx"
	mkdir -p "$ctx"
	cp "$DIST"/* "$ctx"/
	printf 'changed' >>"$ctx/api-gateway"
	before=$(docker image inspect -f '{{json .RootFS.Layers}}' api-gateway-app)
	CONTAINERS_DIST_DIR=$ctx compose build api-gateway-app >"$TMP/rebuild.log" 2>&1 || {
		cat "$TMP/rebuild.log"
		return 1
	}
	after=$(docker image inspect -f '{{json .RootFS.Layers}}' api-gateway-app)
	# Back to the real binary (all layers cached).
	compose build api-gateway-app >/dev/null 2>&1
	rm -rf "$ctx"
	python3 - "$before" "$after" <<-'PY'
		import json, sys
		before, after = (json.loads(a) for a in sys.argv[1:])
		print(f"{len(before)} layers before, {len(after)} after")
		assert len(before) == len(after), "layer count changed"
		assert before[:-1] == after[:-1], "a layer below the binary changed"
		assert before[-1] != after[-1], "the binary's layer did not change"
	PY
	grep -c 'Using cache' "$TMP/rebuild.log"
}

# The project's .env on a clone made as Git for Windows makes it (no
# symlinks): no tracked symlink; Compose without --env-file stops with the
# message that names the option; with it (a bare environment), every
# ${VARIABLE} of the compose file resolves to .env's value, and the gateway
# is published on 127.0.0.1. (The clone has no dist/: CONTAINERS_DIST_DIR
# points at this checkout's binaries, which `config` wants to exist.)
check_compose_reads_root_env() {
	local clone=$TMP/clone links
	git clone -q -c core.symlinks=false "$MP_ROOT" "$clone" || return 1
	links=$(git -C "$clone" ls-files -s | awk '$1 == 120000 {print $4}')
	expect "tracked symlinks" "$links" "" || return 1
	if (cd "$clone" && env -i PATH="$PATH" HOME="$HOME" CONTAINERS_DIST_DIR="$DIST" "${COMPOSE[@]}" -f deploy/docker/compose.yaml config) >"$TMP/noenv.out" 2>&1; then
		echo "config without --env-file succeeded: Compose found variables somewhere else"
		return 1
	fi
	grep -F 'run Compose from the project root with --env-file .env' "$TMP/noenv.out" || {
		cat "$TMP/noenv.out"
		return 1
	}
	(cd "$clone" && env -i PATH="$PATH" HOME="$HOME" CONTAINERS_DIST_DIR="$DIST" "${COMPOSE[@]}" --env-file .env -f deploy/docker/compose.yaml config) >"$TMP/config.yaml" 2>"$TMP/config.err" || {
		cat "$TMP/config.err"
		return 1
	}
	python3 - "$clone" "$TMP/config.yaml" <<-'PY'
		import re, sys, yaml
		clone, resolved_file = sys.argv[1:]
		sys.path.insert(0, f"{clone}/scripts")
		import mp_dotenv
		dotenv = mp_dotenv.load(f"{clone}/.env")
		raw = yaml.safe_load(open(f"{clone}/deploy/docker/compose.yaml"))
		resolved = yaml.safe_load(open(resolved_file))
		ref = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")
		checked = bad = 0
		for name, svc in raw["services"].items():
		    got_env = resolved["services"][name]["environment"]
		    for key, value in svc["environment"].items():
		        m = ref.fullmatch(str(value))
		        if not m:
		            continue
		        want = dotenv.get(m.group(1), m.group(3) if m.group(2) == "-" else None)
		        checked += 1
		        if want is None or str(got_env.get(key)) != want:
		            bad += 1
		            print(f"{name}: {key}: resolved to something else than .env's {m.group(1)}")
		assert "${" not in open(resolved_file).read(), "an unresolved ${...} is left"
		ports = str(resolved["services"]["api-gateway-app"]["ports"])
		assert "127.0.0.1" in ports and dotenv["CONTAINERS_GATEWAY_PORT"] in ports, ports
		print(f"{checked} variables resolved from .env; gateway published as {ports}")
		sys.exit(1 if bad or checked < 20 else 0)
	PY
}

# run_probe NAME IMAGE ENV...: a one-off container of IMAGE (no network,
# hardened as in the compose file, a throw-away data volume), in the
# background; its output in $TMP/NAME.log.
run_probe() {
	local tag=$1 image=$2 env=() kv
	shift 2
	for kv in "$@"; do env+=(-e "$kv"); done
	docker run --name "$PROBE_PREFIX-$tag" --network none --read-only --tmpfs /tmp --tmpfs /var/run/postgresql --tmpfs /var/log/rabbitmq \
		--cap-drop ALL --security-opt no-new-privileges:true \
		-v /var/lib/postgresql/data -v /var/lib/rabbitmq "${env[@]}" "$image" >"$TMP/$tag.log" 2>&1 &
	PROBE_PIDS+=($!)
}

probe_exited() { [[ $(docker inspect -f '{{.State.Status}}' "$PROBE_PREFIX-$1" 2>/dev/null) == exited ]]; }
probe_log_has() { grep -qF "$2" "$TMP/$1.log"; }

# The committed placeholders (.env as it is) are refused: each container
# exits 1 with the one message naming the variables and the two ways out;
# MP_ALLOW_DEFAULT_PASSWORDS=1 lets both start (PostgreSQL creates the role).
check_placeholders_refused() {
	local bad=0 n
	PROBE_PIDS=()
	local pg=(POSTGRES_DB=movies POSTGRES_USER=inventory "POSTGRES_PASSWORD=$(dotenv_value INVENTORY_DB_PASSWORD)")
	local mq=(GATEWAY_USER=gateway WORKER_USER=billing-worker RABBITMQ_VHOST=/
		"GATEWAY_PASSWORD=$(dotenv_value RABBITMQ_GATEWAY_PASSWORD)" "WORKER_PASSWORD=$(dotenv_value RABBITMQ_WORKER_PASSWORD)")
	run_probe pg-refused inventory-database "${pg[@]}"
	run_probe mq-refused rabbitmq "${mq[@]}"
	run_probe pg-allowed inventory-database "${pg[@]}" MP_ALLOW_DEFAULT_PASSWORDS=1
	run_probe mq-allowed rabbitmq "${mq[@]}" MP_ALLOW_DEFAULT_PASSWORDS=1
	for n in pg-refused mq-refused; do
		mp::wait_until 60 "$n to exit" probe_exited "$n" || bad=1
		expect "$n exit status" "$(docker inspect -f '{{.State.ExitCode}}' "$PROBE_PREFIX-$n")" 1 || bad=1
		cat "$TMP/$n.log"
	done
	grep -qF 'refusing to start: POSTGRES_PASSWORD still hold' "$TMP/pg-refused.log" || bad=1
	grep -qF 'refusing to start: GATEWAY_PASSWORD WORKER_PASSWORD still hold' "$TMP/mq-refused.log" || bad=1
	grep -qF 'or set MP_ALLOW_DEFAULT_PASSWORDS=1' "$TMP/mq-refused.log" || bad=1
	mp::wait_until 60 "PostgreSQL with the placeholder allowed to create its role" probe_log_has pg-allowed 'created role inventory' || bad=1
	mp::wait_until 60 "RabbitMQ with the placeholders allowed to start" probe_log_has mq-allowed 'MP_ALLOW_DEFAULT_PASSWORDS=1: running with' || bad=1
	sleep 2
	expect "RabbitMQ (placeholders allowed) running" "$(docker inspect -f '{{.State.Running}}' "$PROBE_PREFIX-mq-allowed")" true || bad=1
	head -n 3 "$TMP/pg-allowed.log" "$TMP/mq-allowed.log"
	docker rm -f -v "$PROBE_PREFIX"-{pg,mq}-{refused,allowed} >/dev/null 2>&1
	# Their own pids: a bare `wait` would wait for the dockerd we started.
	wait "${PROBE_PIDS[@]}" || true
	return "$bad"
}

# dotenv_value KEY: KEY as the committed .env resolves it (environment ignored).
dotenv_value() { python3 "$MP_ROOT/scripts/mp_dotenv.py" "$MP_ROOT/.env" | awk -F '\t' -v k="$1" '$1 == k {print $2}'; }

# The argv sampler (scripts/lib/argv-watch.py, as in the three-host test)
# over the first start: every password of the test's env file, and a canary
# process that shows one on purpose, so a blind sampler fails the check.
argv_watch_start() {
	local key
	: >"$TMP/argv-secrets"
	chmod 600 "$TMP/argv-secrets"
	while IFS= read -r key; do
		printf '%s\n' "${!key}" >>"$TMP/argv-secrets"
	done < <(compgen -e | grep -E '_PASSWORD$')
	CANARY=canary-$RANDOM$RANDOM$RANDOM
	echo "$CANARY" >>"$TMP/argv-secrets"
	python3 "$MP_ROOT/scripts/lib/argv-watch.py" "$TMP/argv-secrets" "$TMP/argv-watch.stop" >"$TMP/argv-watch.out" 2>&1 &
	ARGV_WATCH_PID=$!
	sleep 0.5
	# Debian's interpreter itself: a `python3` found first in PATH may be a
	# pyenv shim, bash scripts that carry the canary in their own argv too.
	/usr/bin/python3 -c 'import time; time.sleep(1)' "$CANARY" &
	CANARY_PID=$!
}

check_argv_clean() {
	local rc=0
	touch "$TMP/argv-watch.stop"
	wait "$CANARY_PID" || true
	wait "$ARGV_WATCH_PID" || rc=$?
	cat "$TMP/argv-watch.out"
	# Exactly one leak: the canary's.
	expect "argv-watch exit (2: a leak, the canary's)" "$rc" 2 || return 1
	grep -q '^samples=[1-9]' "$TMP/argv-watch.out" || return 1
	expect "leaks" "$(grep -c '^LEAK' "$TMP/argv-watch.out")" 1 || return 1
	grep -q "^LEAK pid $CANARY_PID:" "$TMP/argv-watch.out"
}

# ------------------------------------------------------------ monitoring --
# monitoring.yaml on top of the running deployment: Prometheus scrapes every
# target, and the resilience demo (the worker stopped with orders waiting)
# makes BillingQueueNoConsumer fire in Alertmanager, then resolve.

monitoring_up() {
	local t0=$SECONDS
	WITH_MONITORING=1 compose build >"$DOCKER_STATE/build-monitoring.log" 2>&1 || {
		tail -n 30 "$DOCKER_STATE/build-monitoring.log"
		return 1
	}
	FIGURE["monitoring build"]=$((SECONDS - t0))s
	t0=$SECONDS
	WITH_MONITORING=1 compose up -d >"$TMP/up-monitoring.log" 2>&1 || {
		cat "$TMP/up-monitoring.log"
		return 1
	}
	CONTAINERS+=(prometheus alertmanager inventory-database-exporter billing-database-exporter node-exporter)
	wait_healthy 240 || return 1
	FIGURE["monitoring up"]=$((SECONDS - t0))s
	# Some catalogue traffic: the services were recreated (new settings), and
	# a labelled series exists only once it has been used.
	local path
	for path in /api/movies /api/movies/1 /api/movies/nope; do http GET "$path"; done
}

# prom_query PROMQL [LABEL]: the query's result vector as `LABEL VALUE`
# lines (LABEL: job unless given).
prom_query() {
	curl -fsS -m 5 --get "$PROM/api/v1/query" --data-urlencode "query=$1" |
		python3 -c 'import json,sys
for x in json.load(sys.stdin)["data"]["result"]:
    print(x["metric"].get(sys.argv[1], "-"), x["value"][1])' "${2:-job}"
}

# postgres twice: one exporter per database.
MONITORED_JOBS="alertmanager api-gateway billing-worker inventory-app node postgres postgres prometheus rabbitmq rabbitmq-node"
targets_up() {
	local got
	got=$(prom_query up | sort)
	[[ $(awk '{print $1}' <<<"$got" | tr '\n' ' ') == "$MONITORED_JOBS " ]] &&
		! awk '$2 != 1' <<<"$got" | grep -q .
}
check_targets_up() {
	MP_WAIT_INTERVAL=2 mp::wait_until 120 "every scrape target up" targets_up
	local rc=$?
	prom_query up | sort
	return "$rc"
}

# The BillingQueueNoConsumer alerts Alertmanager holds as active: their count.
no_consumer_alerts() {
	curl -fsS -m 5 --get "$AM/api/v2/alerts" --data-urlencode 'filter=alertname="BillingQueueNoConsumer"' \
		--data-urlencode active=true --data-urlencode silenced=false --data-urlencode inhibited=false |
		python3 -c 'import json,sys; print(sum(a["status"]["state"] == "active" for a in json.load(sys.stdin)))'
}
alert_firing() { (($(no_consumer_alerts) > 0)); }
alert_gone() { [[ $(no_consumer_alerts) == 0 ]]; }

MON_USER=mon-$RUN_ID
orders_stored_3() { [[ $(orders_of "$MON_USER" 2>/dev/null) == 3 ]]; }
# ------------------------------------------------------ the exporters --
PG_EXPORTERS=(inventory-database-exporter billing-database-exporter)
# pg_value INSTANCE: pg_up of that exporter as Prometheus last scraped it.
pg_value() { prom_query "pg_up{instance=\"$1:9187\"}" instance | awk '{print $2}'; }
pg_up_each() {
	local e
	for e in "${PG_EXPORTERS[@]}"; do [[ $(pg_value "$e") == 1 ]] || return 1; done
}
check_pg_up() {
	MP_WAIT_INTERVAL=2 mp::wait_until 60 "pg_up == 1 for both databases" pg_up_each
	local rc=$?
	prom_query pg_up instance
	return "$rc"
}

# The PostgreSQLDown alerts of one exporter that Alertmanager holds as active.
pg_down_alerts() {
	curl -fsS -m 5 --get "$AM/api/v2/alerts" --data-urlencode 'filter=alertname="PostgreSQLDown"' \
		--data-urlencode "filter=instance=\"$1:9187\"" --data-urlencode active=true \
		--data-urlencode silenced=false --data-urlencode inhibited=false |
		python3 -c 'import json,sys; print(sum(a["status"]["state"] == "active" for a in json.load(sys.stdin)))'
}
pg_alert_firing() { (($(pg_down_alerts "$1") > 0)); }
pg_alert_gone() { [[ $(pg_down_alerts "$1") == 0 ]]; }
# pg_value_is INSTANCE WANT: pg_up is WANT; says what Prometheus has (up
# too), kept in the check's output for a failure.
pg_value_is() {
	local got
	got=$(pg_value "$1")
	echo "$(date +%T) pg_up=${got:-none} up=$(prom_query "up{instance=\"$1:9187\"}" instance | awk '{print $2}')" >>"$TMP/pg-watch.log"
	[[ $got == "$2" ]]
}

# Two faults at once, as the alerts are independent (and each waits out its
# rule's `for: 1m`, so together they take the time of one): the worker is
# stopped with 3 orders queued, and inventory-database is stopped. Then
# BillingQueueNoConsumer and PostgreSQLDown (of inventory-database's
# exporter only) must both reach Alertmanager, and inventory-database's
# pg_up drop to 0 on the way.
PG_DOWN_EXPORTER=inventory-database-exporter
# alerts_firing: both active; notes when each was first seen.
alerts_firing() {
	if [[ -z ${FIGURE["alert fired after"]:-} ]] && alert_firing; then
		FIGURE["alert fired after"]=$((SECONDS - ALERTS_T0))s
	fi
	if [[ -z ${FIGURE["PostgreSQLDown fired after"]:-} ]] && pg_alert_firing "$PG_DOWN_EXPORTER"; then
		FIGURE["PostgreSQLDown fired after"]=$((SECONDS - ALERTS_T0))s
	fi
	[[ -n ${FIGURE["alert fired after"]:-} && -n ${FIGURE["PostgreSQLDown fired after"]:-} ]]
}
check_alerts_fire() {
	local i e=$PG_DOWN_EXPORTER
	alert_gone || {
		echo "BillingQueueNoConsumer is active before the worker stopped"
		return 1
	}
	pg_alert_gone "$e" || {
		echo "PostgreSQLDown is active before the database stopped"
		return 1
	}
	docker stop billing-app >/dev/null
	for i in 1 2 3; do
		expect "order $i while the worker is stopped" "$(order "$MON_USER")" 200 || return 1
	done
	ALERTS_T0=$SECONDS
	docker stop inventory-database >/dev/null
	MP_WAIT_INTERVAL=2 mp::wait_until 60 "pg_up == 0 for inventory-database" pg_value_is "$e" 0 || {
		tail -n 8 "$TMP/pg-watch.log" 2>/dev/null || true
		return 1
	}
	FIGURE["pg_up 0 after"]=$((SECONDS - ALERTS_T0))s
	MP_WAIT_INTERVAL=5 mp::wait_until 240 "BillingQueueNoConsumer and PostgreSQLDown in Alertmanager" alerts_firing || return 1
	echo "active in Alertmanager: BillingQueueNoConsumer ${FIGURE["alert fired after"]} after 3 orders waited, PostgreSQLDown ${FIGURE["PostgreSQLDown fired after"]} after the stop (pg_up 0 after ${FIGURE["pg_up 0 after"]})"
}

# Both started again (whatever the check above came to): the 3 orders are
# stored once each, pg_up is 1, both alerts resolve, every container healthy.
alerts_gone() { alert_gone && pg_alert_gone "$PG_DOWN_EXPORTER"; }
check_alerts_resolve() {
	local t0=$SECONDS
	docker start billing-app inventory-database >/dev/null || return 1
	wait_healthy 180 || return 1
	mp::wait_until 60 "the 3 waiting orders stored" orders_stored_3 || return 1
	MP_WAIT_INTERVAL=2 mp::wait_until 120 "pg_up == 1 for inventory-database" pg_value_is "$PG_DOWN_EXPORTER" 1 || return 1
	FIGURE["pg_up 1 after"]=$((SECONDS - t0))s
	MP_WAIT_INTERVAL=5 mp::wait_until 180 "both alerts resolved" alerts_gone || return 1
	FIGURE["alerts resolved after"]=$((SECONDS - t0))s
	echo "started again: the 3 orders stored once each, pg_up 1 after ${FIGURE["pg_up 1 after"]}, both alerts resolved after $((SECONDS - t0)) s"
}

# monitor_psql DB_CONTAINER DATABASE USER PASSWORD SQL: SQL as the monitoring
# role over TCP in the database's container; the password reaches psql in its
# environment (docker exec -e NAME copies it from ours), not on a command line.
monitor_psql() {
	PGPASSWORD=$4 docker exec -e PGPASSWORD "$1" psql -X -qAt -h 127.0.0.1 -U "$3" -d "$2" -c "$5" 2>&1
}

# The exporters' role in each database: member of pg_monitor, no superuser,
# and its reads of the service's table refused, while that table exists and
# the owner reads it. The exporter's password is on no command line of its
# container.
check_monitor_role() {
	local db dbname user pw table out bad=0 e
	for db in inventory billing; do
		if [[ $db == inventory ]]; then
			dbname=$INVENTORY_DB_NAME user=$MONITOR_INVENTORY_DB_USER pw=$MONITOR_INVENTORY_DB_PASSWORD table=movies
		else
			dbname=$BILLING_DB_NAME user=$MONITOR_BILLING_DB_USER pw=$MONITOR_BILLING_DB_PASSWORD table=orders
		fi
		out=$(docker exec "$db-database" psql -X -qAt -d "$dbname" -c "SELECT count(*) >= 0 FROM $table" 2>&1)
		expect "$db: the owner reads $table" "$out" t || bad=1
		out=$(monitor_psql "$db-database" "$dbname" "$user" "$pw" \
			"SELECT rolsuper, pg_has_role(current_user, 'pg_monitor', 'member') FROM pg_roles WHERE rolname = current_user")
		expect "$db: $user superuser|pg_monitor" "$out" "f|t" || bad=1
		out=$(monitor_psql "$db-database" "$dbname" "$user" "$pw" "SELECT count(*) FROM $table")
		echo "$db: $user: SELECT count(*) FROM $table: $out"
		[[ $out == *"permission denied for table $table"* ]] || bad=1
		e=$db-database-exporter
		if [[ $(docker exec "$e" cat /proc/1/cmdline | tr '\0' ' ') == *"$pw"* ]]; then
			echo "$e: the password is on its command line"
			bad=1
		fi
	done
	return "$bad"
}

# node_exporter in its container: the host's root file system as / (through
# /host), with its size; every file system it reports, listed.
check_node_filesystems() {
	local got
	got=$(prom_query 'node_filesystem_size_bytes{job="node"}' mountpoint | sort)
	printf '%s\n' "$got"
	awk '$1 == "/" && $2 > 0' <<<"$got" | grep -q . || return 1
	# DiskNearlyFull's expression evaluates on these series (empty unless a
	# disk is under 10 % free).
	prom_query 'node_filesystem_avail_bytes{job="node",mountpoint="/"} / node_filesystem_size_bytes{job="node",mountpoint="/"}' mountpoint
}

# Published: the gateway and the two UIs, each on loopback only, and nothing
# else of the eleven (the same inspection as the six's).
check_monitoring_published() {
	# shellcheck disable=SC2016 # a Go template, for docker
	expect_inspect bindings '{{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostIp}}:{{.HostPort}}->{{$p}} {{end}}{{end}}' "" \
		api-gateway-app="127.0.0.1:$CONTAINERS_GATEWAY_PORT->8080/tcp " \
		prometheus="127.0.0.1:$CONTAINERS_PROMETHEUS_PORT->9090/tcp " \
		alertmanager="127.0.0.1:$CONTAINERS_ALERTMANAGER_PORT->9093/tcp " || return 1
	# The metrics listeners are on no published port: the gateway's public
	# port answers /metrics with its JSON 404.
	http GET /metrics
	expect "GET /metrics on the gateway's published port" "$STATUS" 404
}

# The overview console (deploy/prometheus/consoles/movie-platform.html):
# Prometheus renders its table from live queries, and a real headless
# Chromium runs its graph scripts (Debian's rickshaw and d3, served by
# Prometheus, offline) and takes the screenshot docs/observability.md shows.
# Chromium's own background traffic is switched off; its one target is
# Prometheus on loopback.
CHROMIUM_FLAGS=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run
	--disable-background-networking --disable-component-update --disable-sync --disable-default-apps
	--disable-domain-reliability --disable-breakpad --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
	"--window-size=1400,2400" --virtual-time-budget=20000)
check_console() {
	local url=$PROM/consoles/movie-platform.html html svgs
	html=$(curl -fsS -m 10 "$url") || return 1
	# Server side: the queue and stored-orders cells hold numbers.
	python3 - "$html" <<-'PY' || return 1
		import re, sys
		html = sys.argv[1]
		for cell in ("mp-queue", "mp-stored"):
		    m = re.search(r'id="%s">\s*<a[^>]*>\s*([0-9.]+)' % cell, html)
		    print(cell, m.group(1) if m else None)
		    if not m:
		        sys.exit(1)
	PY
	mp::pkg::install chromium
	chromium "${CHROMIUM_FLAGS[@]}" --dump-dom "$url" >"$TMP/console.dom" 2>"$TMP/chromium.err" || {
		tail -n 5 "$TMP/chromium.err"
		return 1
	}
	# The page's scripts built its 8 graphs, and drew an SVG in each one
	# that has data: all but the p99 latencies may be empty this early, and
	# nothing but "No timeseries returned" may stand in for a graph.
	local built svgs empty
	built=$(grep -o 'class="rickshaw_graph"' "$TMP/console.dom" | wc -l)
	svgs=$(grep -o '<svg' "$TMP/console.dom" | wc -l)
	empty=$(grep -o 'class="prom_graph_error">[^<]*' "$TMP/console.dom" | sort | uniq -c)
	echo "graphs built: $built, drawn: $svgs; empty: ${empty:-none}"
	((built == 8 && svgs >= 6)) || return 1
	! grep -o 'class="prom_graph_error">[^<]*' "$TMP/console.dom" | grep -qv 'No timeseries returned' || return 1
	chromium "${CHROMIUM_FLAGS[@]}" --screenshot="$DOCKER_STATE/console.png" "$url" >/dev/null 2>&1 || return 1
	[[ -s $DOCKER_STATE/console.png ]] || return 1
	FIGURE["console screenshot"]=$DOCKER_STATE/console.png
}

check_dashboards_live() { python3 "$MP_ROOT/scripts/dashboards-check.py" --prometheus "$PROM"; }

monitoring_checks() {
	local failed=$MP_CHECKS_FAILED
	mp::check "monitoring.yaml: Prometheus, Alertmanager and the exporters built from Debian's packages and healthy beside the six" monitoring_up
	# Nothing else can pass without them.
	((MP_CHECKS_FAILED == failed)) || return 0
	mp::check "Prometheus: every scrape target up == 1 ($MONITORED_JOBS)" check_targets_up
	mp::check "the worker stopped with orders queued and inventory-database stopped: pg_up drops to 0, BillingQueueNoConsumer and PostgreSQLDown fire in Alertmanager" check_alerts_fire
	mp::check "both started again: the orders are stored, pg_up is 1 and both alerts resolve" check_alerts_resolve
	mp::check "postgres exporters: pg_up == 1 for inventory-database and billing-database" check_pg_up
	mp::check "the exporters' role: pg_monitor only, its reads of movies/orders refused, no password on argv" check_monitor_role
	mp::check "node exporter: the host's root file system as /, with its size" check_node_filesystems
	mp::check "the Grafana dashboard and the console query only metrics Prometheus scrapes" check_dashboards_live
	mp::check "the overview console: live values from Prometheus, its graphs drawn in headless Chromium, a screenshot" check_console
	mp::check "Prometheus and Alertmanager published on loopback only; no metrics on the gateway's port" check_monitoring_published
	mp::check "all eleven containers: no capability, no-new-privileges, read-only root, memory and pids limits" check_hardened
	mp::check "no container of the eleven runs as root" check_non_root
	# What observing costs, in memory (docs/observability.md): each container's
	# use as its cgroup counts it (RSS and page cache), after the alert cycle.
	local name use
	while read -r name use; do
		FIGURE["memory $name"]=$use
	done < <(docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' | awk '{print $1, $2}')
}

record_sizes() {
	local img
	for img in "${IMAGES[@]}"; do
		FIGURE["image $img"]=$(docker image inspect -f '{{.Size}}' "$img" | awk '{printf "%.1f MB", $1 / 1e6}')
	done
}

# The timings and sizes, one `figure:` line each (the memory of the monitoring
# run's containers among them).
print_figures() {
	local k
	for k in "${!FIGURE[@]}"; do printf 'figure: %-32s %s\n' "$k" "${FIGURE[$k]}"; done | sort
}

main() {
	local t0=$SECONDS
	make_test_env
	mp::env::load "$TEST_ENV"
	preflight
	mp::check "a clone without symlinks: Compose reads every variable from the root .env (--env-file .env)" check_compose_reads_root_env
	build_images
	mp::check "every Dockerfile starts FROM debian:bookworm-slim" check_base_images
	mp::check "the *-change-me placeholders: refused with one message, run with MP_ALLOW_DEFAULT_PASSWORDS=1" check_placeholders_refused
	argv_watch_start
	mp::check "first up: all six containers healthy" up_timed "first up (empty volumes)"
	mp::check "no password on any command line during the first start (/proc/*/cmdline sampled; the canary caught)" check_argv_clean
	if [[ ${CONTAINERS_TEST_ONLY_MONITORING:-0} == 1 ]]; then
		monitoring_checks
		print_figures
		echo "containers (monitoring only): $MP_CHECKS_PASSED passed, $MP_CHECKS_FAILED failed"
		((MP_CHECKS_FAILED == 0))
		return
	fi
	mp::check "docker ps: the six names, only the gateway's port" check_ps
	mp::check "docker inspect: restart policy {on-failure 0}" check_restart_policy
	mp::check "docker volume ls / docker images: the expected names" check_names
	mp::check "only the gateway is published, on $CONTAINERS_GATEWAY_ADDRESS:$CONTAINERS_GATEWAY_PORT" check_only_gateway_published
	mp::check "networks split as the VMs' firewalls: six, each container on its own" check_networks
	mp::check "reachability: only the allowed pairs connect (gateway reaches no database, inventory no broker)" check_reachability
	mp::check "every container: no capability, no-new-privileges, read-only root, memory and pids limits" check_hardened
	mp::check "no container runs as root" check_non_root
	mp::check "billing worker health on 8080 in its container" check_worker_health_port
	mp::walk::run docker "$RUN_ID"
	mp::check "GET /api/movies/ID through the gateway is in the access log on the api-gateway-app volume" check_access_log
	mp::check "SIGKILLed service processes are restarted by the policy" check_killed_services_restart
	mp::check "RabbitMQ restart: orders accepted and stored again" check_rabbitmq_restart
	mp::check "database restarts: movies and orders work again" check_database_restart
	mp::check "Postman collection (newman) against the containerised gateway" check_newman
	mp::check "down, then up: every movie and order kept" check_down_up_keeps_data
	mp::check "down -v, then up: starts empty" check_down_v_starts_empty
	mp::check "no secret in any image (inspect, history, layers)" check_no_secret_in_images
	mp::check "a code change rebuilds only the last layer" check_code_change_rebuilds_last_layer
	monitoring_checks
	record_sizes
	FIGURE[total]=$((SECONDS - t0))s
	print_figures
	echo "containers: $MP_CHECKS_PASSED passed, $MP_CHECKS_FAILED failed"
	((MP_CHECKS_FAILED == 0))
}

main "$@"
