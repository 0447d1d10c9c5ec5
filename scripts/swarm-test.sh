#!/usr/bin/env bash
# The Swarm stack (deploy/swarm/stack.yaml) on this machine's dockerd in
# single-node swarm mode, with the images of the containers path built
# locally (no registry). Checks, each counted:
#   1. docker stack deploy, then an audit walk through HAProxy's published port;
#   2. inventory-app scaled 2 -> 3 under a steady read load: 0 failed requests,
#      and the new task gets requests (the gateways re-resolve the dnsrr name);
#   3. one inventory task's container killed under load: Swarm replaces it, and
#      0 requests fail (the gateways retry a request that failed before any
#      response byte on another inventory task);
#   4. the three services rolled to a new tag (same code) under read + order
#      load: 0 failed requests, every accepted order stored exactly once; then
#      the single-task data services and HAProxy (stop-first: a volume or a
#      host port has one holder): failed requests counted, orders exactly once;
#   5. docker stack rm leaves no container, network or secret (volumes are
#      removed by this test, by choice).
# Starts dockerd when none answers (and stops it), inits the swarm when the
# daemon is not in one (and leaves it at the end only then).
#
#   flock /work/locks/docker.lock scripts/swarm-test.sh   (scripts/test.sh swarm)
#
# Env: SWARM_GATEWAY_PORT (default 21080 + MP_TEST_PORT_OFFSET).
# Last line: `swarm: N passed, M failed`.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/walk.sh
source "$MP_ROOT/scripts/lib/walk.sh"
# shellcheck source=scripts/lib/docker.sh
source "$MP_ROOT/scripts/lib/docker.sh"
mp::env::load "$MP_ROOT/.env"

STACK=mpswarm
STACK_FILE=$MP_ROOT/deploy/swarm/stack.yaml
DIST=${CONTAINERS_DIST_DIR:-$MP_ROOT/dist/amd64}
export SWARM_GATEWAY_PORT=${SWARM_GATEWAY_PORT:-$((21080 + ${MP_TEST_PORT_OFFSET:-0}))}
GW=http://127.0.0.1:$SWARM_GATEWAY_PORT
IMAGES=(inventory-database billing-database rabbitmq inventory-app billing-app api-gateway-app movie-platform-haproxy)
SERVICES=(inventory-database billing-database rabbitmq inventory-app billing-app api-gateway-app haproxy)
TMP=$(mktemp -d)
export SWARM_SECRETS_DIR=$TMP/secrets MP_IMAGE_TAG=latest
SWARM_CREATED=
DEPLOYED=
# Checks count with the one harness, mp::check (scripts/lib/mp.sh): a
# check's output is kept and its last lines shown when it fails.
MP_CHECK_TAIL=20
MP_CHECK_TAIL_OK=5

cleanup() {
	local rc=$?
	stop_load 2>/dev/null || true
	if [[ -n $DEPLOYED ]]; then
		docker stack rm "$STACK" >/dev/null 2>&1 || true
		mp::wait_until 60 "the stack's containers to go" no_containers >/dev/null 2>&1 || true
		remove_volumes
	fi
	if [[ -n $SWARM_CREATED ]]; then
		mp::log::info "leaving the swarm this test created"
		docker swarm leave --force >/dev/null 2>&1 || mp::log::warn "docker swarm leave failed"
	fi
	docker_down
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT

# status METHOD PATH [BODY]: prints the HTTP status, the body in $TMP/body.
status() {
	local args=(-sS -m 15 -o "$TMP/body" -w '%{http_code}' -X "$1")
	[[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data "$3")
	curl "${args[@]}" "$GW$2" 2>/dev/null || echo 000
}

expect_status() {
	local got
	got=$(status "${@:2}")
	[[ $got == "$1" ]] || {
		echo "$2 $3: got $got, want $1: $(head -c 300 "$TMP/body" 2>/dev/null)"
		return 1
	}
}

containers_of() { docker ps -q --filter "label=com.docker.stack.namespace=$STACK" "$@"; }
no_containers() { [[ -z $(containers_of -a) ]]; }
task_container() { docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_$1" | awk 'NR == 1'; }

remove_volumes() {
	local v
	for v in $(docker volume ls -q --filter "label=com.docker.stack.namespace=$STACK"); do
		docker volume rm "$v" >/dev/null 2>&1 || mp::log::warn "volume $v not removed"
	done
}

# converged SERVICE: every desired task runs and its container is healthy.
converged() {
	local svc=${STACK}_$1 want running
	want=$(docker service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' "$svc")
	running=$(docker service ps -q --filter desired-state=running "$svc" | xargs -r docker inspect -f '{{.Status.State}}' | grep -c '^running$' || true)
	[[ $running == "$want" ]] || return 1
	[[ $(docker ps -q --filter "label=com.docker.swarm.service.name=$svc" --filter health=healthy | wc -l) -ge $want ]]
}

all_converged() {
	local s
	for s in "${SERVICES[@]}"; do converged "$s" || return 1; done
	[[ $(status GET /health) == 200 ]]
}

# orders_stored USER N: at least N orders of USER are in the orders table.
orders_stored() { (($(sql "SELECT count(*) FROM orders WHERE user_id = '$1'") >= $2)); }
networks_gone() { [[ -z $(docker network ls -q --filter "label=com.docker.stack.namespace=$STACK") ]]; }

sql() { docker exec "$(task_container billing-database)" psql -X -qtA -d "$BILLING_DB_NAME" -c "$1"; }

LOAD_PID=
start_load() {
	rm -f "$TMP/stop" "$TMP/load.json"
	python3 "$MP_ROOT/scripts/swarm_load.py" "$GW" "$TMP/load.json" "$TMP/stop" "$@" &
	LOAD_PID=$!
	sleep 2
}

stop_load() {
	[[ -n $LOAD_PID ]] || return 0
	touch "$TMP/stop"
	wait "$LOAD_PID" || true
	LOAD_PID=
}

load_report() {
	python3 - "$TMP/load.json" <<-'PY'
		import json, sys
		r = json.load(open(sys.argv[1]))
		print(f"{r['requests']} requests, {len(r['failures'])} failed, {len(r['orders'])} orders accepted")
		for f in r["failures"][:10]:
		    print("  " + f)
	PY
}

load_failures() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["failures"]))' "$TMP/load.json"; }

# --- setup ---------------------------------------------------------------------
setup() {
	[[ -x $DIST/api-gateway ]] || mp::die "no binaries in $DIST: run scripts/build.sh"
	mp::pkg::install docker.io docker-compose curl python3
	docker_up
	case $(docker info -f '{{.Swarm.LocalNodeState}}') in
	active) mp::log::info "using the daemon's swarm" ;;
	inactive)
		docker swarm init --advertise-addr 127.0.0.1 >/dev/null
		SWARM_CREATED=1
		mp::log::info "swarm initialised (single node)"
		;;
	*) mp::die "the daemon's swarm is in state $(docker info -f '{{.Swarm.LocalNodeState}}')" ;;
	esac
	[[ -z $(docker stack ls --format '{{.Name}}' | grep -x "$STACK" || true) ]] || mp::die "a stack $STACK already runs"
	docker_base_image
	local t0=$SECONDS
	# The containers path's images, built as scripts/containers-test.sh builds them.
	CONTAINERS_DIST_DIR=$DIST DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0 \
		docker-compose --env-file "$MP_ROOT/.env" -f "$MP_ROOT/deploy/docker/compose.yaml" build >"$TMP/build.log" 2>&1 || {
		tail -n 30 "$TMP/build.log" >&2
		mp::die "image build failed"
	}
	DOCKER_BUILDKIT=0 docker build -q -t movie-platform-haproxy -f "$MP_ROOT/deploy/swarm/haproxy/Dockerfile" "$MP_ROOT/deploy/swarm" >/dev/null
	mp::log::info "images built in $((SECONDS - t0)) s"
	# Passwords of the test's own: the database and broker images refuse .env's
	# committed *-change-me placeholders.
	local v
	for v in INVENTORY_DB_PASSWORD BILLING_DB_PASSWORD GATEWAY_RABBITMQ_PASSWORD BILLING_RABBITMQ_PASSWORD; do
		printf -v "$v" '%s' "$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
	done
	mkdir -p "$SWARM_SECRETS_DIR"
	printf '%s\n' "$INVENTORY_DB_PASSWORD" >"$SWARM_SECRETS_DIR/inventory_db_password"
	printf '%s\n' "$BILLING_DB_PASSWORD" >"$SWARM_SECRETS_DIR/billing_db_password"
	printf '%s\n' "$GATEWAY_RABBITMQ_PASSWORD" >"$SWARM_SECRETS_DIR/gateway_amqp_password"
	printf '%s\n' "$BILLING_RABBITMQ_PASSWORD" >"$SWARM_SECRETS_DIR/worker_amqp_password"
	chmod 600 "$SWARM_SECRETS_DIR"/*
}

# --- checks --------------------------------------------------------------------
check_deploy() {
	DEPLOYED=1
	docker stack deploy -c "$STACK_FILE" "$STACK"
	mp::wait_until 480 "every service converged and healthy" all_converged || {
		docker service ls
		return 1
	}
	docker service ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}} {{.Replicas}}'
}

check_passwords_are_secrets_not_env() {
	local c leaked=0
	for c in $(containers_of); do
		if docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$c" | grep -E '_PASSWORD='; then
			leaked=1
		fi
	done
	((leaked == 0))
	docker secret ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}}'
}

# The audit walk (scripts/lib/walk.sh) over the stack: curl to HAProxy's
# published port, psql and rabbitmqctl in the tasks' containers, the worker
# scaled to 0 (its task gets SIGTERM) and back to 1.
swarm::http() { mp::walk::curl "$GW" -- "$@"; }
swarm::sql() { docker exec "$(task_container "$1-database")" psql -X -qtA -d "$(mp::walk::db "$1")" -c "$2"; }
swarm::queued() {
	docker exec "$(task_container rabbitmq)" rabbitmqctl -q list_queues -p "$RABBITMQ_VHOST" --no-table-headers name messages |
		awk '$1 == "billing_queue" { print $2 }'
}
swarm::worker() {
	case $1 in
	stop) docker service scale "${STACK}_billing-app=0" >/dev/null && mp::wait_until 60 "billing-app to have no task" no_worker_task ;;
	start) docker service scale "${STACK}_billing-app=1" >/dev/null && mp::wait_until 120 "billing-app healthy" converged billing-app ;;
	esac
}
no_worker_task() { [[ -z $(task_container billing-app) ]]; }

check_probes_and_errors() {
	expect_status 200 GET /health
	expect_status 200 GET /ready
	expect_status 400 POST /api/billing '{"user_id":"swarm-walk"}'
}

# Requests a container's inventory-app logged in its access log.
movie_requests_of() { docker logs "$1" 2>&1 | grep -c 'inventory_app::access.* /api/movies' || true; }

check_scale_under_load() {
	local before new served
	before=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_inventory-app" | sort)
	start_load
	docker service scale -d "${STACK}_inventory-app=3" >/dev/null
	mp::wait_until 120 "inventory-app at 3 healthy tasks" converged inventory-app
	sleep 5
	stop_load
	load_report
	# check runs this in an `if`: errexit is off, so each test returns.
	[[ $(load_failures) == 0 ]] || return 1
	new=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_inventory-app" | sort | comm -13 <(echo "$before") -)
	[[ -n $new ]] || {
		echo "no new inventory task container"
		return 1
	}
	served=$(movie_requests_of "$new")
	echo "the new inventory task served $served /api/movies requests"
	((served > 0))
}

check_kill_under_load() {
	local victim
	victim=$(task_container inventory-app)
	start_load
	docker kill "$victim" >/dev/null
	echo "killed inventory task container ${victim:0:12}"
	sleep 3
	mp::wait_until 120 "Swarm to replace it" converged inventory-app
	sleep 3
	stop_load
	load_report
	# The requests in flight on the killed task failed before any response
	# byte: the gateways sent them again to another task (and log each).
	local c retried=0
	for c in $(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_api-gateway-app"); do
		retried=$((retried + $(docker logs "$c" 2>&1 | grep -c 'event=upstream_retry' || true)))
	done
	echo "requests the gateways sent again to another inventory task (since the deploy): $retried"
	[[ $(load_failures) == 0 ]]
}

# update_to_v2 SERVICE...: each service to the :v2 tag of its image (the same
# image, a new tag), one after another, each waited for (`docker service
# update` returns when the update is done or rolled back).
update_to_v2() {
	local s img
	for s in "$@"; do
		img=$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "${STACK}_$s")
		img=${img%%@*}
		docker service update -q --image "${img%:*}:v2" "${STACK}_$s" >/dev/null
		[[ $(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "${STACK}_$s") == "${img%:*}:v2"* ]] || {
			echo "$s was rolled back"
			return 1
		}
		echo "$s -> ${img%:*}:v2"
	done
	mp::wait_until 180 "every service converged" all_converged
}

# orders_exactly_once [ambiguous-ok]: every order the load saw accepted is in
# the orders table once, and (unless ambiguous-ok) the table has no other order
# of that load. During an outage an order may be stored although its answer
# was an error (the broker took it, then the confirm or the connection was
# lost): with ambiguous-ok those are counted, not failed; a client that
# retries such an order sends the same Idempotency-Key.
orders_exactly_once() {
	local user accepted stored dup lost
	user=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["user_id"])' "$TMP/load.json")
	accepted=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["orders"]))' "$TMP/load.json")
	mp::wait_until 60 "every accepted order stored" orders_stored "$user" "$accepted" || true
	python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["orders"]))' "$TMP/load.json" | sort >"$TMP/accepted"
	sql "SELECT order_id FROM orders WHERE user_id = '$user'" | sort >"$TMP/stored"
	stored=$(wc -l <"$TMP/stored")
	dup=$(uniq -d "$TMP/stored" | wc -l)
	lost=$(comm -23 "$TMP/accepted" "$TMP/stored" | wc -l)
	echo "orders: $accepted accepted, $stored stored, $lost lost, $dup duplicated, $((stored - accepted)) stored although answered with an error"
	((accepted > 0 && lost == 0 && dup == 0)) || return 1
	[[ ${1:-} == ambiguous-ok ]] || ((stored == accepted))
}

check_rolling_update_under_load() {
	local img
	for img in "${IMAGES[@]}"; do docker tag "$img:latest" "$img:v2"; done
	start_load --orders
	update_to_v2 inventory-app billing-app api-gateway-app
	sleep 3
	stop_load
	load_report
	orders_exactly_once
	[[ $(load_failures) == 0 ]]
}

# The single-task data services and HAProxy stop first (a volume or a host
# port has one holder), so their update is a short outage: the failed
# requests are counted, not required to be 0; no accepted order may be lost
# or duplicated (an order answered with an error may still be stored).
check_data_update_under_load() {
	start_load --orders
	update_to_v2 inventory-database billing-database rabbitmq haproxy
	sleep 3
	stop_load
	load_report
	echo "failed requests during the stop-first updates: $(load_failures)"
	orders_exactly_once ambiguous-ok
}

check_stack_rm_leaves_nothing() {
	docker stack rm "$STACK" >/dev/null
	mp::wait_until 90 "the stack's containers to go" no_containers
	mp::wait_until 30 "the stack's networks to go" networks_gone
	[[ -z $(docker secret ls -q --filter "label=com.docker.stack.namespace=$STACK") ]]
	[[ -z $(docker service ls -q --filter "label=com.docker.stack.namespace=$STACK") ]]
	echo "no container, service, network or secret left; volumes kept: $(docker volume ls -q --filter "label=com.docker.stack.namespace=$STACK" | wc -l) (removed next, by choice)"
	remove_volumes
	[[ -z $(docker volume ls -q --filter "label=com.docker.stack.namespace=$STACK") ]]
	DEPLOYED=
}

t0=$SECONDS
setup
mp::check "docker stack deploy: every service converged and healthy" check_deploy
mp::check "passwords are Docker secrets, no *_PASSWORD in any environment" check_passwords_are_secrets_not_env
mp::check "/health and /ready 200, a bad order 400, through the published port" check_probes_and_errors
mp::walk::run swarm swarm
mp::check "inventory-app scaled to 3 under read load: 0 failed, the new task serves" check_scale_under_load
mp::check "an inventory task killed under load: replaced, 0 failed" check_kill_under_load
mp::check "rolling update of the three services to a new tag under read + order load: 0 failed, orders once" check_rolling_update_under_load
mp::check "update of the data services and HAProxy (stop-first) under load: failures counted, orders once" check_data_update_under_load
mp::check "docker stack rm leaves nothing behind" check_stack_rm_leaves_nothing
mp::log::info "swarm test: $((SECONDS - t0)) s"
echo "swarm: $MP_CHECKS_PASSED passed, $MP_CHECKS_FAILED failed"
((MP_CHECKS_FAILED == 0))
