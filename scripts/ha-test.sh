#!/usr/bin/env bash
# The high-availability topology in network namespaces on one machine, with
# faults under load. Three namespaces stand for the three broker hosts
# (n1, n2, n3), five for the databases (the pg_auto_failover monitor of both,
# mon; the orders database's two PostgreSQL nodes, o1 and o2; the movies
# database's, m1 and m2) and one for the client, all linked by a bridge in a
# namespace of its own. Each broker host runs:
#   - a node of a 3-node RabbitMQ cluster (Debian's rabbitmq-server:
#     classic_config peer discovery, pause_minority, net_ticktime from .env);
#   - a billing-worker that knows every node (its own first);
#   - n1 and n2 also an inventory-app (the movies database's nodes listed)
#     and an api-gateway that knows every broker node and both inventory
#     replicas.
# billing_queue is a quorum queue (QUEUE_TYPE=quorum, .env's HA values).
# The client posts orders to the gateways (load.py: until the virtual IP is
# set up, to the other gateway when one does not answer at all, as the
# address would move) while faults hit:
#   - kill -9 of everything on the node of billing_queue's leader (repeated
#     HA_TEST_KILLS times, the node started again in between);
#   - one node cut off the network for 30 s, then healed (pause_minority);
#   - a gateway's broker node gone silent (its packets dropped, no RST): a
#     third gateway, in the client's namespace, leaves it within 10 s;
#   - the orders database's primary cut off the network while the workers
#     drain a backlog (as a power-off: no RST; their TCP keepalives end the
#     statements it will never answer), then healed: it rejoins as standby;
#   - kill -9 of the orders database's primary (keeper and PostgreSQL) while
#     the workers drain a backlog: pg_auto_failover promotes the synchronous
#     standby, the workers' libpq multi-host string finds it, and the old
#     primary, started again, rejoins as standby;
#   - kill -9 of the movies database's primary under catalogue writes and
#     reads through the gateways (movies_load.py, movies_verdict.py);
#   - kill -9 of one inventory replica under reads: the gateway sends them
#     to the other, none fails;
#   - kill -9 of the gateway holding the virtual IP (below).
# After each fault the orders are drained and a verdict counts: orders
# answered 200 and lost, stored twice, non-200 but stored, and the longest
# time without an accepted order. Lost or duplicated orders fail the test.
#
# The database nodes have namespaces of their own rather than sharing the
# broker hosts' (docs/ha.md's layout): a leader kill takes everything in its
# namespace, and each fault's verdict should be about one engine.
#
# After those, the gateways are reached through a VRRP virtual IP
# (keepalived on n1 and n2, checking /ready), and the last fault kills the
# gateway that holds it: requests through the address succeed again within
# 10 s.
#
# Usage: scripts/ha-test.sh    (root; needs dist/ from scripts/build.sh)
# Env:   HA_TEST_SUBNET (default 10.204.0, exists only inside the namespaces),
#        HA_TEST_KILLS (leader kills, default 10), HA_TEST_CUT=0 skips the
#        node cut, HA_TEST_HEAL_WAIT (seconds the cut node has to rejoin
#        by itself before the test restarts its broker, default 120; 0
#        exercises that path), HA_TEST_BENCH_ROUNDS (quorum-vs-classic
#        rounds, default 2; 0 skips) and HA_TEST_BENCH_SECONDS (8),
#        HA_TEST_KEEP=1 keeps the work dir (logs), DIST_DIR
#        (default dist/).
set -euo pipefail

# shellcheck source=scripts/lib/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"

NET="${HA_TEST_SUBNET:-10.204.0}"
KILLS="${HA_TEST_KILLS:-10}"
TAG="mpha$$"
NODES=(n1 n2 n3)
GATEWAYS=(n1 n2)
declare -A IP=([n1]="$NET.11" [n2]="$NET.12" [n3]="$NET.13" [mon]="$NET.20" [o1]="$NET.21" [o2]="$NET.22"
	[m1]="$NET.23" [m2]="$NET.24" [client]="$NET.100")
# Each database is a pg_auto_failover formation of two nodes.
FORMATIONS=(orders movies)
declare -A PG_NODES=([orders]="o1 o2" [movies]="m1 m2")
declare -A NS=()
for h in "${!IP[@]}"; do NS[$h]="$TAG-$h"; done
NS_BRIDGE="$TAG-bridge"

mp::netns::preflight ha-test postgresql-15 postgresql-15-auto-failover pg-auto-failover-cli rabbitmq-server nftables \
	keepalived curl python3 iproute2 util-linux

WORK="$(mktemp -d /tmp/mp-ha.XXXXXX)"
chmod 0755 "$WORK"
PG_DIR="$WORK/pg"

cleanup() {
	local rc=$? ns pid
	trap - EXIT INT TERM
	set +e
	touch "$WORK/load.stop"
	mp::netns::teardown kill "${HA_TEST_KEEP:-0}" ha-test
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- network -------------------------------------------------------------------
mp::netns::bridge br0
for h in "${!IP[@]}"; do
	mp::netns::attach br0 "v-$h" eth0 "$h" "${IP[$h]}"
done
# cut HOST / heal HOST: the host's link to the bridge goes down (no RST
# reaches anyone: heartbeats and net_ticktime decide), then up again.
cut() { ip -n "$NS_BRIDGE" link set "v-$1" down; }
heal() { ip -n "$NS_BRIDGE" link set "v-$1" up; }
# The client opens a fresh connection per request and closes it first, so
# each leaves a TIME_WAIT socket on the client for 60 s; the faults send up
# to ~1,000 requests/s to one address and port, and Linux's default 28,232
# ephemeral ports (reused in TIME_WAIT only towards loopback) then run out:
# connect() fails with EADDRNOTAVAIL, a status 0 that no server caused (a
# fresh-clone run failed the replica kill with 91 of them). A load generator
# is set up for its rate, as a real one would be.
in_ns client sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1
mp::check::pass "namespaces ${!IP[*]} on $NET.0/24"

# --- settings: .env, with the HA values and the test's addresses ------------------
mp::env::load "$ROOT/.env"
AMQP_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
DB_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
ALL_NODES="${IP[n1]},${IP[n2]},${IP[n3]}"
# The same .env keys provisioning renders, with the HA topology's values
# (read by render_service_env through their names).
# shellcheck disable=SC2034
GATEWAY_RABBITMQ_USER=mp GATEWAY_RABBITMQ_PASSWORD="$AMQP_PASSWORD" GATEWAY_HOST=0.0.0.0
# shellcheck disable=SC2034
BILLING_RABBITMQ_USER=mp BILLING_RABBITMQ_PASSWORD="$AMQP_PASSWORD"
# shellcheck disable=SC2034
GATEWAY_RABBITMQ_QUEUE_TYPE=quorum BILLING_RABBITMQ_QUEUE_TYPE=quorum
# Both inventory replicas (the gateway balances and retries), each knowing
# both nodes of the movies database. An inventory-app shares its host with a
# gateway here, and both default to 8080.
INVENTORY_PORT=$((GATEWAY_PORT + 1))
# shellcheck disable=SC2034
GATEWAY_INVENTORY_URL="http://${IP[n1]}:$INVENTORY_PORT,http://${IP[n2]}:$INVENTORY_PORT"
# shellcheck disable=SC2034
BILLING_HEALTH_HOST=127.0.0.1 RUST_LOG=info INVENTORY_HOST=0.0.0.0
# shellcheck disable=SC2034
BILLING_DB_HOST="${IP[o1]},${IP[o2]}" BILLING_DB_PASSWORD="$DB_PASSWORD"
# shellcheck disable=SC2034
INVENTORY_DB_HOST="${IP[m1]},${IP[m2]}" INVENTORY_DB_PASSWORD="$DB_PASSWORD"
# Stopping, a gateway and an inventory replica first drain for 5 s: their
# /ready and /health answer 503 while they still serve, so keepalived (fall
# 2 at 1 s) moves the address and the gateways (probes every 2 s) leave the
# replica before either closes its port (the rolling upgrade below). Not in
# .env: the default topology has nothing to drain to.
# shellcheck disable=SC2034
GATEWAY_DRAIN_MS=5000 INVENTORY_DRAIN_MS=5000
DOTENV_KEYS+=(GATEWAY_DRAIN_MS INVENTORY_DRAIN_MS)
declare -A PG_DB=([orders]="$BILLING_DB_NAME" [movies]="$INVENTORY_DB_NAME")
declare -A PG_USER=([orders]="$BILLING_DB_USER" [movies]="$INVENTORY_DB_USER")
# node_env HOST PREFIX: the service's env file for HOST, its own broker node
# listed first (the others follow, so it moves on when its node dies).
node_env() {
	local host="$1" prefix="$2" first others=() h
	first="${IP[$host]}"
	for h in "${NODES[@]}"; do [[ $h == "$host" ]] || others+=("${IP[$h]}"); done
	printf -v "${prefix}RABBITMQ_HOST" '%s' "$first,${others[0]},${others[1]}"
	render_service_env "$prefix" "$WORK/$host-$prefix.env" 0600 >/dev/null
}
for h in "${NODES[@]}"; do node_env "$h" BILLING_; done
for h in "${GATEWAYS[@]}"; do
	node_env "$h" GATEWAY_
	render_service_env INVENTORY_ "$WORK/$h-INVENTORY_.env" 0600 >/dev/null
done
grep -q "^GATEWAY_RABBITMQ_QUEUE_TYPE=quorum$" "$WORK/n1-GATEWAY_.env" ||
	abort "the gateway's env file asks for a quorum queue"
mp::check::pass "env files rendered from .env: every service knows the nodes $ALL_NODES, quorum queue"

# --- the RabbitMQ cluster ----------------------------------------------------------
RMQ_HOME="$WORK/rabbitmq-home"
install -d -o rabbitmq -g rabbitmq -m 0700 "$RMQ_HOME"
head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$RMQ_HOME/.erlang.cookie"
chown rabbitmq:rabbitmq "$RMQ_HOME/.erlang.cookie"
chmod 0400 "$RMQ_HOME/.erlang.cookie"
for h in "${NODES[@]}"; do
	d="$WORK/rabbitmq-$h"
	install -d -o rabbitmq -g rabbitmq -m 0750 "$d" "$d/mnesia" "$d/log"
	# The cluster's settings: deploy/rabbitmq/ha.conf.in, rendered per node.
	NODE_IP="${IP[$h]}" RABBITMQ_HA_NODE_1="${IP[n1]}" RABBITMQ_HA_NODE_2="${IP[n2]}" \
		RABBITMQ_HA_NODE_3="${IP[n3]}" render_template "$ROOT/deploy/rabbitmq/ha.conf.in" "$d/rabbitmq.conf" 0644 \
		rabbitmq:rabbitmq >/dev/null
	# The test's own account (least privilege is the three-host test's job).
	printf 'default_user = mp\ndefault_pass = %s\nloopback_users = none\n' "$AMQP_PASSWORD" >>"$d/rabbitmq.conf"
	echo '[].' >"$d/enabled_plugins"
done
# rmq_env HOST: the node's environment, with the VMs' Erlang flags
# (scripts/provision/common.sh).
rmq_env() {
	local d="$WORK/rabbitmq-$1"
	printf '%s\n' HOME="$RMQ_HOME" RABBITMQ_USE_LONGNAME=true RABBITMQ_NODENAME="rabbit@${IP[$1]}" \
		RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
		RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PID_FILE="$d/rabbitmq.pid" \
		RABBITMQ_CONF_ENV_FILE=/dev/null RABBITMQ_CTL_ERL_ARGS="$(ha_rabbit_ctl_erl_args)" \
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$(ha_rabbit_server_erl_args)"
}
rmqctl() {
	local host="$1"
	shift
	local env_args
	mapfile -t env_args < <(rmq_env "$host")
	in_ns "$host" runuser -u rabbitmq -- env "${env_args[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl "$@"
}
rmq_start() {
	local env_args
	# A kill -9 leaves the old pid file behind.
	rm -f "$WORK/rabbitmq-$1/rabbitmq.pid"
	mapfile -t env_args < <(rmq_env "$1")
	in_ns "$1" runuser -u rabbitmq -- env "${env_args[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server -detached \
		>>"$WORK/rabbitmq-$1/start.log" 2>&1 || true
}
# rmq_wait HOST: the node takes AMQP connections (its listener opens last
# in the boot). Cheaper than `rabbitmqctl wait`, which starts an Erlang VM
# per call: on a loaded 2-core machine that alone took minutes.
amqp_open() { in_ns "$1" bash -c "exec 3<>/dev/tcp/${IP[$1]}/$RABBITMQ_PORT" 2>/dev/null; }
rmq_wait() { MP_WAIT_INTERVAL=1 mp::wait_until 300 "RabbitMQ on $1" amqp_open "$1"; }
running_nodes() { rmqctl "$1" -q cluster_status --formatter json 2>/dev/null | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))'; }

for h in "${NODES[@]}"; do rmq_start "$h"; done

# --- the databases: pg_auto_failover (one monitor, two nodes per database) --------
# Set up while the RabbitMQ nodes boot. pg_autoctl, run as postgres with
# state and config dirs of its own per host, creates, starts and supervises
# each PostgreSQL; the monitor (on mon) decides which node of each
# formation (orders, movies) is primary.
install -d -o postgres -g postgres -m 0755 "$PG_DIR"
for h in mon o1 o2 m1 m2; do
	install -d -o postgres -g postgres -m 0700 "$PG_DIR/$h" "$PG_DIR/$h/run" "$PG_DIR/$h/config" "$PG_DIR/$h/state"
done
# pgaf HOST COMMAND...: COMMAND as postgres in HOST's namespace, with that
# host's pg_autoctl dirs. Every PostgreSQL puts its socket in
# /var/run/postgresql (pg_autoctl ignores other socket directories), so each
# host gets its own there: a bind mount in the mount namespace `ip netns
# exec` makes for each command (it does not reach the machine's own).
pgaf() {
	local h="$1"
	shift
	# shellcheck disable=SC2016 # expanded by the inner bash
	in_ns "$h" bash -c 'mount --bind "$1" /var/run/postgresql && shift && exec "$@"' _ "$PG_DIR/$h/run" \
		runuser -u postgres -- env XDG_CONFIG_HOME="$PG_DIR/$h/config" XDG_DATA_HOME="$PG_DIR/$h/state" \
		XDG_RUNTIME_DIR="$PG_DIR/$h/run" PATH="$PG_BIN:/usr/bin:/bin" "$@"
}
# pgaf_run HOST: the host's keeper (or the monitor), which starts PostgreSQL.
pgaf_run() { pgaf "$1" pg_autoctl run --pgdata "$PG_DIR/$1/data" >>"$PG_DIR/$1/run.log" 2>&1 & }
mon_sql() { pgaf mon psql -X -qtA -p "$POSTGRES_PORT" -d pg_auto_failover -c "$1"; }
pgaf mon pg_autoctl create monitor --pgdata "$PG_DIR/mon/data" --pgport "$POSTGRES_PORT" --hostname "${IP[mon]}" \
	--listen "${IP[mon]}" --auth trust --no-ssl >"$PG_DIR/mon/create.log" 2>&1 || {
	tail -n 20 "$PG_DIR/mon/create.log" >&2
	abort "create the pg_auto_failover monitor"
}
# The monitor's failover timeouts (docs/ha.md; why, in the file).
cat "$ROOT/deploy/pg_auto_failover/monitor.conf" >>"$PG_DIR/mon/data/postgresql.conf"
pgaf_run mon
MONITOR_URI="$(pgaf_monitor_uri "${IP[mon]}" "$POSTGRES_PORT")"
monitor_up() { mon_sql "SELECT 1" >/dev/null 2>&1; }
MP_WAIT_INTERVAL=1 mp::wait_until 60 "the pg_auto_failover monitor" monitor_up || abort "the pg_auto_failover monitor runs"
# pg_states FORMATION: its nodes' reported states, sorted ("primary
# secondary" when both are in sync).
pg_states() {
	mon_sql "SELECT string_agg(reportedstate::text, ' ' ORDER BY reportedstate::text) FROM pgautofailover.node
		WHERE formationid = '$1'"
}
# pg_primary FORMATION: the node that is primary and meant to stay one (a
# killed primary keeps its last reported state; the monitor's goal for it
# changes).
pg_primary() {
	mon_sql "SELECT nodename FROM pgautofailover.node WHERE formationid = '$1'
		AND reportedstate IN ('single', 'wait_primary', 'primary')
		AND goalstate IN ('single', 'wait_primary', 'primary')"
}
pg_in_sync() { [[ "$(pg_states "$1" 2>/dev/null)" == "primary secondary" ]]; }
# psql_node HOST DB SQL: as postgres on HOST's own PostgreSQL.
psql_node() { pgaf "$1" psql -X -qtA -p "$POSTGRES_PORT" -d "$2" -c "$3"; }
# pg_formation_up FORMATION: its two nodes, one after the other (the second
# is a copy of the first), the service's role and database owner; run in
# the background for both formations at once.
pg_formation_up() {
	local f="$1" h hba primary peer
	pgaf mon pg_autoctl create formation --pgdata "$PG_DIR/mon/data" --formation "$f" --kind pgsql \
		--dbname "${PG_DB[$f]}" >"$PG_DIR/mon/formation-$f.log" 2>&1 || return 1
	for h in ${PG_NODES[$f]}; do
		# pg_autoctl writes trust rules for its own roles, from the other
		# nodes' addresses only; the service logs in with a password.
		pgaf "$h" pg_autoctl create postgres --pgdata "$PG_DIR/$h/data" --pgport "$POSTGRES_PORT" \
			--hostname "${IP[$h]}" --listen "${IP[$h]}" --name "$h" --formation "$f" --dbname "${PG_DB[$f]}" \
			--monitor "$MONITOR_URI" --auth trust --no-ssl >"$PG_DIR/$h/create.log" 2>&1 || {
			tail -n 20 "$PG_DIR/$h/create.log" >&2
			return 1
		}
		# Only the service's role: a rule for all would come before those
		# that pg_autoctl adds when the other node registers, and take their
		# logins.
		hba="host ${PG_DB[$f]} ${PG_USER[$f]} $NET.0/24 scram-sha-256"
		grep -qx "$hba" "$PG_DIR/$h/data/pg_hba.conf" || echo "$hba" >>"$PG_DIR/$h/data/pg_hba.conf"
		# pg_rewind, when the old primary rejoins, logs in to the database
		# postgres as pg_autoctl's replication role: pg_autoctl's own rules
		# allow it only the formation's database, and without this rule the
		# rejoin falls back to copying the whole database (pg_basebackup).
		for peer in ${PG_NODES[$f]}; do
			[[ $peer == "$h" ]] && continue
			hba="host postgres pgautofailover_replicator ${IP[$peer]}/32 trust"
			grep -qx "$hba" "$PG_DIR/$h/data/pg_hba.conf" || echo "$hba" >>"$PG_DIR/$h/data/pg_hba.conf"
		done
		# The keepers' side of the monitor's timeouts (above).
		pgaf "$h" pg_autoctl config set --pgdata "$PG_DIR/$h/data" timeout.network_partition_timeout 10 >/dev/null
		pgaf_run "$h"
	done
	MP_WAIT_INTERVAL=1 mp::wait_until 120 "$f database: primary and secondary" pg_in_sync "$f" || return 1
	primary="$(pg_primary "$f")"
	psql_node "$primary" postgres "CREATE ROLE \"${PG_USER[$f]}\" LOGIN PASSWORD '$DB_PASSWORD'" >/dev/null &&
		psql_node "$primary" postgres "ALTER DATABASE \"${PG_DB[$f]}\" OWNER TO \"${PG_USER[$f]}\"" >/dev/null
}
pg_setup_pids=()
for f in "${FORMATIONS[@]}"; do
	pg_formation_up "$f" >"$PG_DIR/formation-$f.log" 2>&1 &
	pg_setup_pids+=($!)
done
for i in "${!FORMATIONS[@]}"; do
	f="${FORMATIONS[$i]}"
	wait "${pg_setup_pids[$i]}" || {
		cat "$PG_DIR/formation-$f.log" >&2
		abort "the $f database: pg_auto_failover formation of two nodes"
	}
	primary="$(pg_primary "$f")"
	sync_names="$(psql_node "$primary" postgres "SHOW synchronous_standby_names")"
	[[ -n $sync_names ]] || abort "the $f primary replicates synchronously (synchronous_standby_names is empty)"
	mp::check::pass "$f database: primary $primary, synchronous standby ($sync_names), monitor on mon"
done
# sql FORMATION SQL: as its service does, through libpq's multi-host string
# (the current primary).
sql() {
	local f="$1" hosts
	hosts="$(for h in ${PG_NODES[$f]}; do printf '%s,' "${IP[$h]}"; done)"
	in_ns client env PGPASSWORD="$DB_PASSWORD" psql -X -qtA -c "$2" "host=${hosts%,} port=$POSTGRES_PORT
		dbname=${PG_DB[$f]} user=${PG_USER[$f]} connect_timeout=2 target_session_attrs=read-write"
}

for h in "${NODES[@]}"; do
	rmq_wait "$h" || {
		tail -n 30 "$WORK/rabbitmq-$h"/log/*.log >&2 2>/dev/null
		abort "start RabbitMQ on $h"
	}
done
cluster_formed() { [[ "$(running_nodes n1)" == 3 ]]; }
MP_WAIT_INTERVAL=1 mp::wait_until 120 "3 running nodes" cluster_formed || abort "the RabbitMQ cluster formed (3 running nodes)"
mp::check::pass "RabbitMQ cluster of 3 nodes (classic_config, pause_minority)"

# --- the services ------------------------------------------------------------------
svc_start() {
	local host="$1" bin="$2" prefix="$3" env_args
	mapfile -t env_args < <(env_file_args "$WORK/$host-$prefix.env")
	in_ns "$host" runuser -u nobody -- env -i PATH=/usr/bin:/bin "${env_args[@]}" "$BIN_DIR/$bin" \
		>>"$WORK/$host-$bin.log" 2>&1 &
}
node_up() {
	local h="$1"
	svc_start "$h" billing-worker BILLING_
	if [[ " ${GATEWAYS[*]} " == *" $h "* ]]; then
		svc_start "$h" inventory-app INVENTORY_
		svc_start "$h" api-gateway GATEWAY_
	fi
	return 0
}
for h in "${NODES[@]}"; do node_up "$h"; done
GW_URLS=()
for h in "${GATEWAYS[@]}"; do GW_URLS+=("http://${IP[$h]}:$GATEWAY_PORT"); done
accepts_orders() {
	local url="$1"
	[[ "$(in_ns client curl -s -o /dev/null -w '%{http_code}' -m 10 -H 'Content-Type: application/json' \
		-d "{\"user_id\":\"ha-probe-$RANDOM\",\"number_of_items\":1,\"total_amount\":\"1.00\"}" \
		"$url/api/billing")" == 200 ]]
}
for url in "${GW_URLS[@]}"; do
	MP_WAIT_INTERVAL=1 mp::wait_until 120 "$url accepting orders" accepts_orders "$url" || abort "gateway $url accepts orders"
done
serves_catalogue() {
	[[ "$(in_ns client curl -s -o /dev/null -w '%{http_code}' -m 10 "$1/api/movies?limit=1")" == 200 ]]
}
for url in "${GW_URLS[@]}"; do
	MP_WAIT_INTERVAL=1 mp::wait_until 120 "$url serving the catalogue" serves_catalogue "$url" ||
		abort "gateway $url serves the catalogue"
done
replica_healthy() { in_ns client curl -fsS -o /dev/null -m 2 "http://${IP[$1]}:$INVENTORY_PORT/health"; }
for h in "${GATEWAYS[@]}"; do
	MP_WAIT_INTERVAL=1 mp::wait_until 60 "inventory-app on $h" replica_healthy "$h" || abort "inventory-app on $h answers /health"
done
# billing_queue HOST FIELD...: the FIELDs (type, leader, online, messages) of
# billing_queue as HOST's node reports them, space-separated, a list as its
# items joined by commas; fails when the node does not answer.
billing_queue() {
	local h=$1
	shift
	rmqctl "$h" -q list_queues name type leader online messages --formatter json 2>/dev/null | "$PY" -c 'import json,sys
q = [q for q in json.load(sys.stdin) if q["name"] == "billing_queue"][0]
print(" ".join(",".join(v) if isinstance(v, list) else str(v) for v in (q[f] for f in sys.argv[1:])))' "$@" 2>/dev/null
}
leader_host() {
	local h node
	for h in "${NODES[@]}"; do
		node="$(billing_queue "$h" leader)" || continue
		[[ -n $node ]] || continue
		for k in "${NODES[@]}"; do [[ $node == "rabbit@${IP[$k]}" ]] && echo "$k" && return 0; done
	done
	return 1
}
quorum_type="$(billing_queue n1 type)" || quorum_type="no answer from n1"
[[ $quorum_type == quorum ]] || abort "billing_queue is a quorum queue (got $quorum_type)"
mp::check::pass "2 gateways, 2 inventory replicas and 3 workers up, billing_queue is a quorum queue (leader on $(leader_host))"

# all_members_online: every node up, and billing_queue with 3 members online
# (before the next fault: two nodes down would be a lost majority).
all_members_online() {
	local h online
	for h in "${NODES[@]}"; do
		online="$(billing_queue "$h" online)" || continue
		IFS=, read -r -a online <<<"$online"
		((${#online[@]} == 3)) && return 0
	done
	return 1
}
# service_pids HOST NAME: the process NAME running in HOST's namespace.
service_pids() {
	local pid
	for pid in $(ip netns pids "${NS[$1]}"); do
		[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] && echo "$pid"
	done
	return 0
}
# rmq_evidence HOST: why billing_queue's members are not all back, for the
# log: what each node says of the queue and the cluster, and HOST's own log
# lines about partitions and pauses.
rmq_evidence() {
	local h
	for h in "${NODES[@]}"; do
		echo "  $h: billing_queue's leader and members online $(billing_queue "$h" leader online || echo "(no answer)");" \
			"running nodes $(running_nodes "$h" 2>/dev/null || echo "(no answer)")"
	done
	echo "  $1's log (partitions, pauses, errors):"
	grep -hiE "partition|pause|minority|inconsistent|error|crash" "$WORK/rabbitmq-$1/log/"*.log 2>/dev/null |
		tail -n 25 | sed 's/^/    /'
	return 0
}
# stored_counts: user_id and row count of every stored order.
# Tried a few times: during a database failover there is no primary for a
# while (an empty answer then makes every order count as lost).
stored_counts() {
	local out
	for _ in 1 2 3 4 5; do
		out="$(sql orders "SELECT user_id, count(*) FROM orders GROUP BY user_id" 2>/dev/null)" &&
			break
		sleep 2
	done
	[[ -n ${out:-} ]] && tr '|' ' ' <<<"$out"
	return 0
}
# drain LOADFILE: waits until every order answered 200 is stored (or 90 s).
drain() {
	local want got
	want="$(awk '$3 == 200' "$1" | wc -l)"
	for _ in $(seq 1 90); do
		got="$(stored_counts | awk 'NR==FNR { ok[$1]=1; next } ($1 in ok)' <(awk '$3 == 200' "$1") - | wc -l)"
		((got >= want)) && return 0
		sleep 1
	done
	return 0
}
# run_fault NAME FAULT_FN RECOVER_FN: load on, the fault, recovery, load
# off, drain, verdict. FAULT_NOTE, when the recovery sets it, ends the
# verdict line (what this fault measures besides the orders);
# FAULT_MAX_OUTAGE, when set, is the most seconds without an accepted order
# the verdict allows.
FAULT_NOTE="" FAULT_MAX_OUTAGE=""
run_fault() {
	local name="$1" fault="$2" recover="$3" load fault_at
	load="$WORK/load-${name//[^a-z0-9]/_}.txt"
	rm -f "$WORK/load.stop"
	FAULT_NOTE=""
	in_ns client "$PY" "$ROOT/scripts/ha/load.py" "$load" "$WORK/load.stop" 4 "${GW_URLS[@]}" &
	local load_pid=$!
	sleep 3
	fault_at="$("$PY" -c 'import time; print(time.monotonic())')"
	"$fault"
	"$recover"
	sleep 3
	touch "$WORK/load.stop"
	wait "$load_pid" || true
	drain "$load"
	stored_counts >"$WORK/stored.txt"
	if "$PY" "$ROOT/scripts/ha/verdict.py" "$name" "$load" "$WORK/stored.txt" "$fault_at" "$FAULT_NOTE" \
		"$FAULT_MAX_OUTAGE"; then
		mp::check::pass "$name: nothing lost or stored twice"
	else
		mp::check::fail "$name: orders lost or stored twice${FAULT_MAX_OUTAGE:+, or over $FAULT_MAX_OUTAGE s without an accepted order}"
	fi
}

# --- benchmark: confirmed orders/s, 3-node quorum queue vs one classic queue ----------
# BENCHMARKS.md's row, in the same run on the same machine: two more gateways
# on n1, the same binary and settings but for their vhost and queue type,
# each publishing to its own billing_queue on n1's node (its leader there),
# with no consumer: the publishing side alone, which is where the two types
# differ (a quorum queue confirms once 2 of 3 nodes have the order on disk,
# a classic one once its only node has). Alternated, HA_TEST_BENCH_ROUNDS
# (2) rounds of HA_TEST_BENCH_SECONDS (8) each, 4 clients (load.py);
# HA_TEST_BENCH_ROUNDS=0 skips it.
BENCH_ROUNDS="${HA_TEST_BENCH_ROUNDS:-2}" BENCH_SECONDS="${HA_TEST_BENCH_SECONDS:-8}"
declare -A BENCH_PORT=([quorum]=$((GATEWAY_PORT + 10)) [classic]=$((GATEWAY_PORT + 11)))
# bench_gateway_pid TYPE: the pid of the bench gateway listening on its port.
bench_gateway_pid() {
	# (Not `cut`: this script's cut() takes a host off the network.)
	in_ns n1 ss -Hltnp "sport = :${BENCH_PORT[$1]}" | sed -n '1s/.*pid=\([0-9]*\).*/\1/p'
}
# bench_rate LOADFILE: orders answered 200 per second, first sent to last answered.
bench_rate() {
	"$PY" -c 'import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ok = [r for r in rows if r[2] == "200"]
span = max(float(r[4]) for r in ok) - min(float(r[3]) for r in rows) if ok else 0
print(round(len(ok) / span) if span > 0 else 0)' "$1"
}
if ((BENCH_ROUNDS > 0)); then
	declare -A BENCH_RATES=([quorum]="" [classic]="")
	for type in quorum classic; do
		if ! { rmqctl n1 -q add_vhost "mp-bench-$type" >/dev/null 2>&1 &&
			rmqctl n1 -q set_permissions -p "mp-bench-$type" mp '.*' '.*' '.*' >/dev/null 2>&1; }; then
			abort "the benchmark's vhost mp-bench-$type"
		fi
		# svc_start's env file for the prefix GATEWAY_bench_TYPE: the gateway's,
		# these keys replaced.
		f="$WORK/n1-GATEWAY_bench_$type.env"
		grep -vE '^GATEWAY_(PORT|METRICS_PORT|RABBITMQ_HOST|RABBITMQ_VHOST|RABBITMQ_QUEUE_TYPE|DRAIN_MS)=' \
			"$WORK/n1-GATEWAY_.env" >"$f"
		printf "%s='%s'\n" GATEWAY_PORT "${BENCH_PORT[$type]}" GATEWAY_METRICS_PORT "$((BENCH_PORT[$type] + 100))" \
			GATEWAY_RABBITMQ_HOST "${IP[n1]}" GATEWAY_RABBITMQ_VHOST "mp-bench-$type" \
			GATEWAY_RABBITMQ_QUEUE_TYPE "$type" GATEWAY_DRAIN_MS 0 >>"$f"
		svc_start n1 api-gateway "GATEWAY_bench_$type"
		MP_WAIT_INTERVAL=0.5 mp::wait_until 60 "the $type benchmark gateway" accepts_orders \
			"http://${IP[n1]}:${BENCH_PORT[$type]}" || abort "the $type benchmark gateway accepts orders"
	done
	for round in $(seq 1 "$BENCH_ROUNDS"); do
		for type in quorum classic; do
			out="$WORK/bench-$type-$round.txt"
			rm -f "$WORK/bench.stop"
			in_ns client "$PY" "$ROOT/scripts/ha/load.py" "$out" "$WORK/bench.stop" 4 \
				"http://${IP[n1]}:${BENCH_PORT[$type]}" &
			bench_pid=$!
			sleep "$BENCH_SECONDS"
			touch "$WORK/bench.stop"
			wait "$bench_pid" || true
			BENCH_RATES[$type]+="$(bench_rate "$out") "
		done
	done
	for type in quorum classic; do
		pid="$(bench_gateway_pid "$type")"
		[[ -n $pid ]] && mp::stop_pid "$pid" "the $type benchmark gateway" 10
		rmqctl n1 -q delete_vhost "mp-bench-$type" >/dev/null 2>&1 || true
	done
	# The ratio of the sums; it fails when either type confirmed nothing.
	bench_ratio="$("$PY" -c 'import sys
q, c = (sum(map(int, rates.split())) for rates in sys.argv[1:])
print(round(q / max(c, 1), 2))
sys.exit(0 if q > 0 and c > 0 else 1)' "${BENCH_RATES[quorum]}" "${BENCH_RATES[classic]}")" ||
		mp::check::fail "benchmark: both queue types confirmed orders"
	mp::log::info "benchmark, confirmed orders/s through one gateway, 4 clients, ${BENCH_SECONDS} s rounds:" \
		"quorum queue (3 nodes) ${BENCH_RATES[quorum]% }, classic queue (1 node) ${BENCH_RATES[classic]% };" \
		"quorum / classic $bench_ratio"
fi

# --- fault: kill -9 of the leader's node, repeated -------------------------------------
KILLED=""
kill_leader_node() {
	local pid
	KILLED="$(leader_host)" || KILLED=n1
	mp::log::info "kill -9 of everything on $KILLED (billing_queue's leader)"
	for pid in $(ip netns pids "${NS[$KILLED]}"); do kill -9 "$pid" 2>/dev/null || true; done
	sleep 8
}
restart_killed_node() {
	rmq_start "$KILLED"
	rmq_wait "$KILLED" || mp::check::fail "RabbitMQ on $KILLED started again"
	node_up "$KILLED"
	MP_WAIT_INTERVAL=1 mp::wait_until 120 "3 members online" all_members_online || {
		mp::check::fail "billing_queue has 3 members online again after $KILLED came back"
		rmq_evidence "$KILLED" >&2
	}
}
for i in $(seq 1 "$KILLS"); do
	run_fault "leader kill $i/$KILLS" kill_leader_node restart_killed_node
done

# --- fault: one node cut off for 30 s, then healed ------------------------------------
CUT=n3
cut_node() {
	CUT="$(leader_host)" || CUT=n3
	mp::log::info "cutting $CUT off the network for 30 s"
	cut "$CUT"
	sleep 30
}
# A paused node that has not resumed 120 s after the heal: one fresh-clone
# CI run of 2026-12-05 (the runs before it had passed the cut) saw n1 stay
# out for minutes, while its peers and the orders went on (0 lost, 0 twice). The
# test then prints what each node says, and does what an operator does
# (docs/ha.md): restarts that node's broker; the check fails only if the
# restarted node does not rejoin either.
heal_node() {
	local pid
	heal "$CUT"
	if ((${HA_TEST_HEAL_WAIT:-120} > 0)) &&
		MP_WAIT_INTERVAL=1 mp::wait_until "${HA_TEST_HEAL_WAIT:-120}" "3 members online" all_members_online; then
		return 0
	fi
	mp::log::warn "billing_queue's member on $CUT is not back ${HA_TEST_HEAL_WAIT:-120} s after the heal (RabbitMQ did not resume the paused node); what the nodes say:"
	rmq_evidence "$CUT" >&2
	mp::log::warn "restarting RabbitMQ on $CUT, as an operator would (docs/ha.md, \"A paused node that does not resume\")"
	for pid in $(service_pids "$CUT" beam.smp); do kill -9 "$pid" 2>/dev/null || true; done
	rmq_start "$CUT"
	rmq_wait "$CUT" || true
	MP_WAIT_INTERVAL=1 mp::wait_until 120 "3 members online" all_members_online ||
		mp::check::fail "billing_queue has 3 members online again after $CUT was healed and its RabbitMQ restarted"
}
[[ ${HA_TEST_CUT:-1} == 0 ]] || run_fault "node cut 30 s" cut_node heal_node

# --- fault: a gateway's broker node goes silent ---------------------------------------
# A gateway connected to another host's node, which then vanishes without a
# RST (that host loses power or its cable): the fifth VM run saw the gateway
# holding the shared address answer no order for 21 s, until two missed AMQP
# heartbeats ended its connection. Here a third gateway, in the client's
# namespace, lists n1's node first; the fault drops every packet between it
# and that node (nft), n1 itself carrying on. Its socket's TCP_USER_TIMEOUT
# (5 s, srcs/common/src/amqp.rs) ends the connection, the reconnect leaves
# the silent node after 1 s without a SYN answer, and n2's node takes it:
# orders through it must be accepted again within 10 s.
SILENT_GW_LOG="$WORK/client-api-gateway.log"
# Its ports above the client's ephemeral range (1024-65000, set above): the
# load's own connections may hold 8080 or 9101 as their local port, and a
# listener cannot bind it then (a run saw "Address in use").
SILENT_GW_PORT=65080
SILENT_GW_URL="http://${IP[client]}:$SILENT_GW_PORT"
silent_node_connected() { [[ "$(grep "connected to RabbitMQ node" "$SILENT_GW_LOG" | tail -n 1)" == *" ${IP[n1]}:"* ]]; }
silence_broker_node() {
	mp::log::info "dropping every packet between the client's gateway and n1's RabbitMQ node"
	in_ns client nft -f - <<-EOF
		table inet mp_silent {
			chain out { type filter hook output priority 0; ip daddr ${IP[n1]} tcp dport $RABBITMQ_PORT drop; }
			chain in { type filter hook input priority 0; ip saddr ${IP[n1]} tcp sport $RABBITMQ_PORT drop; }
		}
	EOF
	# Longer than the heartbeat's 20 s: the outage must not be its doing.
	sleep 25
}
unsilence_broker_node() {
	in_ns client nft delete table inet mp_silent
	FAULT_NOTE="$(grep -cE "RabbitMQ connection lost" "$SILENT_GW_LOG") connection(s) lost; then $(grep "connected to RabbitMQ node" "$SILENT_GW_LOG" | tail -n 1 | sed 's/.*: connected/connected/')"
}
GATEWAY_RABBITMQ_HOST="$ALL_NODES" GATEWAY_PORT=$SILENT_GW_PORT GATEWAY_METRICS_PORT=$((SILENT_GW_PORT + 1)) render_service_env GATEWAY_ "$WORK/client-GATEWAY_.env" 0600 >/dev/null
svc_start client api-gateway GATEWAY_
MP_WAIT_INTERVAL=1 mp::wait_until 60 "the client's gateway accepting orders" accepts_orders "$SILENT_GW_URL" ||
	mp::check::fail "the client's gateway accepts orders"
if silent_node_connected; then
	SAVED_URLS=("${GW_URLS[@]}")
	GW_URLS=("$SILENT_GW_URL")
	FAULT_MAX_OUTAGE=10
	run_fault "broker node silent" silence_broker_node unsilence_broker_node
	FAULT_MAX_OUTAGE=""
	GW_URLS=("${SAVED_URLS[@]}")
else
	mp::check::fail "the client's gateway connected to n1's node first ($(grep "RabbitMQ node" "$SILENT_GW_LOG" | tail -n 2))"
fi
for pid in $(service_pids client api-gateway); do mp::stop_pid "$pid" "the client's api-gateway" 15; done

# pg_kill_primary FORMATION [NODE]: kill -9 of everything in the namespace
# of the formation's primary, its keeper and PostgreSQL (NODE: the primary,
# when the caller looked it up already); sets DB_KILLED and
# DB_KILLED_AT (wall clock, as the database's created_at).
DB_KILLED="" DB_KILLED_AT=""
pg_kill_primary() {
	local pid
	DB_KILLED="${2:-$(pg_primary "$1")}"
	mp::log::info "kill -9 of the $1 database's primary on $DB_KILLED (keeper and PostgreSQL)"
	for pid in $(ip netns pids "${NS[$DB_KILLED]}"); do kill -9 "$pid" 2>/dev/null || true; done
	# Taken once every process is killed: a transaction that started while
	# the loop ran may have committed on the old primary.
	DB_KILLED_AT="$(date +%s.%N)"
}
# first_write_after FORMATION TABLE EPOCH: seconds from EPOCH to the first
# row of TABLE committed after it (created_at is the inserting
# transaction's start, on the same clock; nothing starts on a killed server).
first_write_after() {
	sql "$1" "SELECT round((extract(epoch FROM min(created_at)) - $3)::numeric, 1)
		FROM $2 WHERE created_at > to_timestamp($3)" 2>/dev/null
}
wrote_after() { [[ -n "$(first_write_after "$@")" ]]; }
# pg_first_write FORMATION TABLE WHAT FAULT WITHIN: waits WITHIN seconds for
# a row written after DB_KILLED_AT (the standby promoted and found by the
# service), and notes how long it took in FAULT_NOTE.
pg_first_write() {
	local took
	MP_WAIT_INTERVAL=1 mp::wait_until "$5" "a committed $3 after the $4" wrote_after "$1" "$2" "$DB_KILLED_AT" ||
		mp::check::fail "${3}s are stored again within $5 s of the $1 primary's $4"
	took="$(first_write_after "$1" "$2" "$DB_KILLED_AT")"
	FAULT_NOTE="first committed $3 ${took:-never} s after the $4, new primary $(pg_primary "$1")"
}
# pg_recover FORMATION TABLE WHAT: pg_first_write after a kill, then starts
# the old primary's keeper again. Whether it rejoins is checked at the end
# (pg_check_rejoined): when pg_rewind fails, the keeper copies the whole
# database instead, which on a loaded machine took 2 minutes, and the next
# faults need not wait for it.
declare -A REJOINING=() REJOIN_FROM=()
pg_recover() {
	pg_first_write "$1" "$2" "$3" kill 90
	pgaf_run "$DB_KILLED"
	REJOINING[$1]="$DB_KILLED"
	REJOIN_FROM[$1]="$SECONDS"
}
# pg_rejoin_step FORMATION NODE PRIMARY: true once NODE is in sync. A
# keeper whose pg_rewind failed copies the database with pg_basebackup,
# which first waits for a spread checkpoint on PRIMARY (up to
# checkpoint_timeout x checkpoint_completion_target: 4.5 min; 98 s in one
# run, for a copy of 2 s): the test asks for an immediate one instead, as an
# operator would.
pg_rejoin_step() {
	pg_in_sync "$1" && return 0
	grep -q "waiting for checkpoint to complete" "$PG_DIR/$2/run.log" &&
		psql_node "$3" postgres "CHECKPOINT" >/dev/null 2>&1
	return 1
}
# pg_check_rejoined FORMATION: the old primary, started again, is the
# synchronous standby of the new one within 300 s of its start.
pg_check_rejoined() {
	local f="$1" node="${REJOINING[$1]}" left primary sync_names how=pg_rewind
	left=$((REJOIN_FROM[$f] + 300 - SECONDS))
	((left > 0)) || left=1
	primary="$(pg_primary "$f")"
	if MP_WAIT_INTERVAL=1 mp::wait_until "$left" "$node back as standby" pg_rejoin_step "$f" "$node" "$primary" &&
		primary="$(pg_primary "$f")" && [[ $primary != "$node" ]] &&
		sync_names="$(psql_node "$primary" postgres "SHOW synchronous_standby_names")" && [[ -n $sync_names ]]; then
		grep -q "Failed to rewind" "$PG_DIR/$node/run.log" && how="a full copy (pg_rewind failed)"
		mp::check::pass "the old $f primary $node rejoined as the synchronous standby of $primary by $how (checked $((SECONDS - REJOIN_FROM[$f])) s after it was started)"
	else
		mp::check::fail "the old $f primary $node rejoined as standby within 300 s (states: $(pg_states "$f"))"
	fi
}

# --- the gateways' shared address: keepalived (VRRP) -------------------------------
# From here on the client reaches the gateways through one virtual IP, as a
# real client would: keepalived on n1 and n2 holds it on the host whose
# gateway answers /ready (the VMs' file, checked every second), and moves it when that
# stops. The faults above keep the client-side failover (load.py goes to
# the other gateway): they kill every process of a host, keepalived and the
# address with it, which the VM test covers.
VIP="$NET.10"
declare -A VRRP_PRIORITY=([n1]=150 [n2]=100)
for h in "${GATEWAYS[@]}"; do
	# The VMs' file (deploy/keepalived/keepalived.conf.in), unicast to the
	# two other hosts (n3 runs no keepalived: its adverts are dropped).
	peers=()
	for p in n1 n2 n3; do [[ $p == "$h" ]] || peers+=("${IP[$p]}"); done
	HA_NODE_NAME=$h HA_NODE_IP=${IP[$h]} VRRP_PEER_1=${peers[0]} VRRP_PEER_2=${peers[1]} VRRP_INTERFACE=eth0 \
		VRRP_PRIORITY=${VRRP_PRIORITY[$h]} HA_VIP=$VIP HA_VRRP_ROUTER_ID=51 \
		render_template "$ROOT/deploy/keepalived/keepalived.conf.in" "$WORK/keepalived-$h.conf" 0644 >/dev/null
	in_ns "$h" keepalived --dont-fork --log-console --log-detail --use-file "$WORK/keepalived-$h.conf" \
		--pid "$WORK/keepalived-$h.pid" --vrrp_pid "$WORK/keepalived-$h-vrrp.pid" \
		--checkers_pid "$WORK/keepalived-$h-checkers.pid" >>"$WORK/keepalived-$h.log" 2>&1 &
done
# vip_holder: the gateway host(s) holding the virtual IP. (Not `| grep -q`:
# grep's early exit can make ip fail on a closed pipe, and pipefail then
# hides a holder.)
vip_holder() {
	local h
	for h in "${GATEWAYS[@]}"; do
		[[ "$(ip -n "${NS[$h]}" -o addr show dev eth0)" == *" $VIP/"* ]] && echo "$h"
	done
	return 0
}
one_holder() { [[ "$(vip_holder | wc -l)" == 1 ]]; }
MP_WAIT_INTERVAL=0.5 mp::wait_until 60 "one gateway holding $VIP" one_holder || {
	tail -n 20 "$WORK"/keepalived-*.log >&2
	abort "keepalived: one gateway holds the virtual IP $VIP"
}
GW_URLS=("http://$VIP:$GATEWAY_PORT")
MP_WAIT_INTERVAL=1 mp::wait_until 30 "orders through $VIP" accepts_orders "${GW_URLS[0]}" ||
	abort "orders accepted through the virtual IP $VIP"
mp::check::pass "keepalived: the virtual IP $VIP on $(vip_holder)'s gateway; the client uses it from here on"

# Memory: the proportional set size (PSS: shared pages split among their
# users, so PostgreSQL's shared buffers count once) of every process of each
# host, after the faults above (caches warm, the queue drained). A VM of the HA topology is one
# broker host with its database nodes: vm1 = n1 + m1 + o1, vm2 = n2 + m2 +
# o2, vm3 = n3 + mon (docs/ha.md).
host_rss_mib() {
	local pid kib=0 rss
	for pid in $(ip netns pids "${NS[$1]}"); do
		rss=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null) || rss=0
		kib=$((kib + ${rss:-0}))
	done
	echo $((kib / 1024))
}
declare -A RSS
for h in n1 n2 n3 m1 m2 o1 o2 mon; do RSS[$h]=$(host_rss_mib "$h"); done
mp::log::info "memory (PSS, MiB): vm1 $((RSS[n1] + RSS[m1] + RSS[o1])) (n1 ${RSS[n1]}, m1 ${RSS[m1]}, o1 ${RSS[o1]})," \
	"vm2 $((RSS[n2] + RSS[m2] + RSS[o2])) (n2 ${RSS[n2]}, m2 ${RSS[m2]}, o2 ${RSS[o2]})," \
	"vm3 $((RSS[n3] + RSS[mon])) (n3 ${RSS[n3]}, mon ${RSS[mon]})"

# --- the orders database's faults ----------------------------------------------------
orders_count() { sql orders "SELECT count(*) FROM orders" 2>/dev/null; }
count_grew() { [[ "$(orders_count)" -gt "$1" ]] 2>/dev/null; }
# queue_messages: billing_queue's length, as the first node that answers
# tells it ("?" when none does).
queue_messages() {
	local h
	for h in "${NODES[@]}"; do
		billing_queue "$h" messages && return 0
	done
	echo "?"
}
# orders_backlog: a backlog, and the workers draining it: they stop (TERM:
# they finish what they hold) while the orders keep coming, then start
# again. Sets ORDERS_PRIMARY, looked up before they start: they drain a
# backlog of 10 s in a few seconds, and the fault must come while they do.
ORDERS_PRIMARY=""
orders_backlog() {
	local h pid before
	for h in "${NODES[@]}"; do
		for pid in $(service_pids "$h" billing-worker); do mp::stop_pid "$pid" "billing-worker on $h" 30; done
	done
	sleep 10
	ORDERS_PRIMARY="$(pg_primary orders)"
	before="$(orders_count)" || before=0
	for h in "${NODES[@]}"; do svc_start "$h" billing-worker BILLING_; done
	MP_WAIT_INTERVAL=0.1 mp::wait_until 60 "the workers storing the backlog" count_grew "$before" ||
		mp::check::fail "the workers started storing the backlog"
}

# --- fault: the orders database's primary cut off the network during the drain ---
# What a power-off looks like to its peers: no RST. The statements the
# workers have in flight on it get no answer; the TCP keepalives of their
# connection string (srcs/common/src/db.rs) end those connections about 11 s
# later, and the next connection finds the promoted standby. Without them a
# worker waits for its answer forever (the fourth VM run: 999 orders left
# unstored in the queue), and this fault fails: nothing is stored until the
# heal. The cut primary's keeper demotes it by itself
# (network_partition_timeout); healed, it rejoins as the standby, which the
# kill that follows needs.
cut_orders_primary() {
	orders_backlog
	DB_KILLED="$ORDERS_PRIMARY"
	mp::log::info "cutting the orders database's primary $DB_KILLED off the network"
	cut "$DB_KILLED"
	DB_KILLED_AT="$(date +%s.%N)"
}
# The rejoin is checked here, not with the kills' at the end: the kill that
# follows needs the standby.
heal_orders_primary() {
	pg_first_write orders orders order cut 60
	heal "$DB_KILLED"
	REJOINING[orders]="$DB_KILLED" REJOIN_FROM[orders]="$SECONDS"
	pg_check_rejoined orders
	unset 'REJOINING[orders]'
}
run_fault "orders primary cut" cut_orders_primary heal_orders_primary

# --- the monitor's machine lost while every keeper waits on it ---------------------
# What the sixth and seventh VM runs met: the monitor's VM powered off while
# keepers waited for its answer; with no RST and no keepalives they waited
# for good, and the next primary lost was never replaced. Made here on
# purpose: a transaction on the monitor holds the node table, so every
# keeper's next call (one a second) waits for its answer; then mon is cut
# off, its processes killed and its sockets destroyed (`ss -K`: the resets
# die on the downed link), as a power-off leaves them, and it comes back.
# The keepers' TCP keepalives (pgaf_monitor_uri) end their dead connections
# and they report again; without them this check fails, and the kill of the
# orders primary that follows is never failed over.
keepers_reported() {
	[[ "$(mon_sql "SELECT count(*) FROM pgautofailover.node WHERE reporttime > pg_postmaster_start_time()" 2>/dev/null)" == 4 ]]
}
monitor_lost() {
	local pid left back
	mp::log::info "the monitor's machine lost while every keeper waits on it"
	pgaf mon psql -X -q -p "$POSTGRES_PORT" -d pg_auto_failover \
		-c "BEGIN; LOCK TABLE pgautofailover.node IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)" >/dev/null 2>&1 &
	sleep 3
	cut mon
	for pid in $(ip netns pids "${NS[mon]}"); do kill -9 "$pid" 2>/dev/null || true; done
	in_ns mon ss -K -tan >/dev/null 2>&1 || true
	left="$(in_ns mon ss -Htan | grep -vc LISTEN)" || true
	[[ $left == 0 ]] || abort "mon still has $left TCP sockets after ss -K (a kernel without CONFIG_INET_DIAG_DESTROY?)"
	sleep 2
	heal mon
	pgaf_run mon
	MP_WAIT_INTERVAL=1 mp::wait_until 60 "the pg_auto_failover monitor" monitor_up || abort "the monitor is back"
	back=$SECONDS
	if MP_WAIT_INTERVAL=1 mp::wait_until 30 "every keeper reporting to the monitor again" keepers_reported; then
		mp::check::pass "the 4 keepers report to the monitor again $((SECONDS - back)) s after its return (its machine lost mid-call)"
	else
		mp::check::fail "every keeper reports to the monitor within 30 s of its return ($(mon_sql "SELECT string_agg(nodename || ' ' || reporttime, ', ') FROM pgautofailover.node" 2>/dev/null))"
	fi
}

# --- fault: kill -9 of the orders database's primary during the drain -------------
# After the monitor's loss above: its failover needs keepers that report.
kill_orders_primary() {
	monitor_lost
	orders_backlog
	pg_kill_primary orders "$ORDERS_PRIMARY"
	mp::log::info "billing_queue after the kill: $(queue_messages) orders waiting"
}
rejoin_orders_primary() { pg_recover orders orders order; }
run_fault "orders primary kill" kill_orders_primary rejoin_orders_primary

# --- catalogue faults: movies_load.py through the gateways, movies_verdict.py ------
# stored_movies: title and row count of every movie the test added.
stored_movies() {
	local out
	for _ in 1 2 3 4 5; do
		out="$(sql movies "SELECT title, count(*) FROM movies WHERE title LIKE 'ha-%' GROUP BY title" 2>/dev/null)" &&
			break
		sleep 2
	done
	[[ -n ${out:-} ]] && tr '|' ' ' <<<"$out"
	return 0
}
# run_catalogue_fault NAME WRITERS READERS MAX_FAILED_GETS FAULT_FN RECOVER_FN:
# as run_fault, with catalogue requests; the verdict holds writes and reads
# to the promise (back within 30 s) and the reads to MAX_FAILED_GETS.
run_catalogue_fault() {
	local name="$1" load fault_at load_pid
	load="$WORK/movies-${name//[^a-z0-9]/_}.txt"
	rm -f "$WORK/load.stop"
	FAULT_NOTE=""
	in_ns client "$PY" "$ROOT/scripts/ha/movies_load.py" "$load" "$WORK/load.stop" "$2" "$3" "${GW_URLS[@]}" &
	load_pid=$!
	sleep 3
	fault_at="$("$PY" -c 'import time; print(time.monotonic())')"
	"$5"
	"$6"
	sleep 3
	touch "$WORK/load.stop"
	wait "$load_pid" || true
	stored_movies >"$WORK/movies-stored.txt"
	if "$PY" "$ROOT/scripts/ha/movies_verdict.py" "$name" "$load" "$WORK/movies-stored.txt" "$fault_at" 30 "$4" \
		"$FAULT_NOTE"; then
		mp::check::pass "$name: the promise kept"
	else
		mp::check::fail "$name: the promise broken"
		gateway_evidence
	fi
}
# gateway_evidence: what the gateways logged that explains failed requests
# (the test's folder is removed at the end).
gateway_evidence() {
	local h
	for h in "${GATEWAYS[@]}"; do
		echo "  gateway on $h: $(grep -c 'event=upstream_retry' "$WORK/$h-api-gateway.log") retries," \
			"$(grep -c 'event=response_cut' "$WORK/$h-api-gateway.log") answers cut," \
			"$(grep -c 'panicked' "$WORK/$h-api-gateway.log") panics; last warnings:"
		grep -E ' (WARN|ERROR) |panicked' "$WORK/$h-api-gateway.log" | tail -n 5 | sed 's/^/    /'
	done
	in_ns client ss -Htan state time-wait | wc -l | sed 's/^/  client sockets in TIME_WAIT now: /'
}

# --- fault: kill -9 of the movies database's primary during catalogue writes ------
kill_movies_primary() { pg_kill_primary movies; }
rejoin_movies_primary() { pg_recover movies movies movie; }
run_catalogue_fault "movies primary kill" 2 2 -1 kill_movies_primary rejoin_movies_primary

# --- fault: kill -9 of one inventory replica under reads ---------------------------
INV_KILLED=n1
kill_inventory_replica() {
	local pid
	mp::log::info "kill -9 of the inventory-app on $INV_KILLED"
	for pid in $(service_pids "$INV_KILLED" inventory-app); do kill -9 "$pid" 2>/dev/null || true; done
	sleep 8
}
restart_inventory_replica() {
	svc_start "$INV_KILLED" inventory-app INVENTORY_
	MP_WAIT_INTERVAL=0.5 mp::wait_until 60 "inventory-app on $INV_KILLED" replica_healthy "$INV_KILLED" ||
		mp::check::fail "the inventory-app on $INV_KILLED started again"
	# The gateway takes it back once its /health probe answers (every 2 s).
	sleep 4
}
run_catalogue_fault "inventory replica kill" 0 4 0 kill_inventory_replica restart_inventory_replica

# --- a rolling upgrade under load -------------------------------------------------------
# Every service replaced one host at a time, the host holding the virtual IP
# last, each stopped with SIGTERM (the worker finishes what it holds; the
# gateway and inventory drain first) and its new binary started and ready
# before the next. The "new" binaries are copies of the build under test in
# a folder of their own, which the upgraded services then run from. Orders
# and catalogue reads flow throughout. A request in flight on the old holder
# just as the address moves gets no answer (its host can no longer send from
# the address, and no TCP state moves with a VRRP address: ha.md); the client
# gives up after 5 s and sends it again (a GET, or an order with its
# Idempotency-Key: the URL is given twice). The verdicts count those
# retries. Catalogue writes, which have no idempotency key, are not part of
# this load: one in flight at the move cannot be known to be stored.
UPGRADE_BIN="$WORK/upgrade-bin"
install -d -m 0755 "$UPGRADE_BIN"
svc_ready() { # HOST NAME: the service answers /ready (the worker /ready on loopback)
	case "$2" in
	billing-worker) in_ns "$1" curl -fsS -o /dev/null -m 2 "http://127.0.0.1:${BILLING_HEALTH_PORT:?}/ready" ;;
	inventory-app) replica_healthy "$1" ;;
	api-gateway) in_ns client curl -fsS -o /dev/null -m 2 "http://${IP[$1]}:$GATEWAY_PORT/ready" ;;
	esac
}
# upgrade_log MESSAGE: MESSAGE after the time since the upgrade began, on
# the loads' clock (the verdicts give their errors' times on it).
upgrade_log() { "$PY" -c "import time, sys; print(f'  {time.monotonic() - $UPGRADE_AT:+.1f} s: {sys.argv[1]}')" "$1"; }
upgrade_service() { # HOST NAME PREFIX
	local pid started
	upgrade_log "stopping $2 on $1"
	for pid in $(service_pids "$1" "$2"); do mp::stop_pid "$pid" "$2 on $1" 30; done
	started="$(mp::now_us)"
	BIN_DIR="$UPGRADE_BIN" svc_start "$1" "$2" "$3"
	MP_WAIT_INTERVAL=0.2 mp::wait_until 60 "$2 on $1 ready" svc_ready "$1" "$2" ||
		mp::check::fail "$2 on $1 ready after its upgrade"
	UPGRADE_NOTE+=" $2@$1 $((($(mp::now_us) - started) / 1000)) ms;"
	upgrade_log "$2 on $1 ready; the address on $(vip_holder)"
}
rolling_upgrade() {
	local h holder order=()
	cp "$BIN_DIR"/api-gateway "$BIN_DIR"/inventory-app "$BIN_DIR"/billing-worker "$UPGRADE_BIN/"
	holder="$(vip_holder)"
	for h in "${NODES[@]}"; do [[ $h == "$holder" ]] || order+=("$h"); done
	order+=("$holder")
	UPGRADE_NOTE="hosts ${order[*]}, ready after start:"
	mp::log::info "rolling upgrade under load: ${order[*]} (the virtual IP on $holder)"
	UPGRADE_AT="$("$PY" -c 'import time; print(time.monotonic())')"
	for h in "${order[@]}"; do
		upgrade_service "$h" billing-worker BILLING_
		if [[ " ${GATEWAYS[*]} " == *" $h "* ]]; then
			upgrade_service "$h" inventory-app INVENTORY_
			# The gateways take the replica back at their next probe (2 s).
			sleep 3
			upgrade_service "$h" api-gateway GATEWAY_
		fi
	done
	[[ "$(vip_holder)" != "$holder" ]] || mp::check::fail "the virtual IP left $holder during its gateway's drain"
}
run_upgrade() {
	local orders movies fault_at orders_pid movies_pid
	orders="$WORK/load-rolling_upgrade.txt" movies="$WORK/movies-rolling_upgrade.txt"
	rm -f "$WORK/load.stop"
	in_ns client env HA_LOAD_TIMEOUT=5 "$PY" "$ROOT/scripts/ha/load.py" "$orders" "$WORK/load.stop" 3 \
		"${GW_URLS[@]}" "${GW_URLS[@]}" &
	orders_pid=$!
	in_ns client env HA_LOAD_TIMEOUT=5 "$PY" "$ROOT/scripts/ha/movies_load.py" "$movies" "$WORK/load.stop" 0 3 \
		"${GW_URLS[@]}" "${GW_URLS[@]}" &
	movies_pid=$!
	sleep 3
	fault_at="$("$PY" -c 'import time; print(time.monotonic())')"
	rolling_upgrade
	sleep 3
	touch "$WORK/load.stop"
	wait "$orders_pid" "$movies_pid" || true
	drain "$orders"
	stored_counts >"$WORK/stored.txt"
	stored_movies >"$WORK/movies-stored.txt"
	if "$PY" "$ROOT/scripts/ha/verdict.py" "rolling upgrade (orders)" "$orders" "$WORK/stored.txt" "$fault_at" \
		"$UPGRADE_NOTE" 10 0; then
		mp::check::pass "rolling upgrade: every order answered 200, nothing lost or stored twice"
	else
		mp::check::fail "rolling upgrade: orders failed, lost or stored twice"
		gateway_evidence
	fi
	if "$PY" "$ROOT/scripts/ha/movies_verdict.py" "rolling upgrade (catalogue)" "$movies" "$WORK/movies-stored.txt" \
		"$fault_at" 10 0; then
		mp::check::pass "rolling upgrade: every catalogue read answered 200"
	else
		mp::check::fail "rolling upgrade: catalogue requests failed"
		gateway_evidence
	fi
}
run_upgrade

# --- fault: kill -9 of the gateway holding the virtual IP -----------------------------
GW_KILLED=""
vip_moved() { [[ "$(vip_holder)" != "$GW_KILLED" ]] && one_holder; }
kill_vip_gateway() {
	local pid killed_at moved_at
	GW_KILLED="$(vip_holder)"
	mp::log::info "kill -9 of the api-gateway on $GW_KILLED, which holds $VIP"
	killed_at="$(mp::now_us)"
	for pid in $(service_pids "$GW_KILLED" api-gateway); do kill -9 "$pid" 2>/dev/null || true; done
	if MP_WAIT_INTERVAL=0.1 mp::wait_until 30 "$VIP to move" vip_moved; then
		moved_at="$(mp::now_us)"
		FAULT_NOTE="$VIP moved to $(vip_holder) $(((moved_at - killed_at) / 1000000)).$((((moved_at - killed_at) / 100000) % 10)) s after the kill"
	else
		mp::check::fail "$VIP moved away from the killed gateway on $GW_KILLED"
	fi
	sleep 5
}
gateway_ready() { in_ns client curl -fsS -o /dev/null -m 2 "http://${IP[$1]}:$GATEWAY_PORT/ready"; }
restart_vip_gateway() {
	svc_start "$GW_KILLED" api-gateway GATEWAY_
	MP_WAIT_INTERVAL=0.5 mp::wait_until 60 "the gateway on $GW_KILLED" gateway_ready "$GW_KILLED" ||
		mp::check::fail "the gateway on $GW_KILLED started again"
}
# The promise: new requests succeed through the address within 10 s.
FAULT_MAX_OUTAGE=10
run_fault "gateway kill (VIP)" kill_vip_gateway restart_vip_gateway
FAULT_MAX_OUTAGE=""

# --- the old database primaries back as standbys ------------------------------------
for f in "${FORMATIONS[@]}"; do
	[[ -z ${REJOINING[$f]:-} ]] || pg_check_rejoined "$f"
done

# --- totals --------------------------------------------------------------------------
stored_counts >"$WORK/stored.txt"
cat "$WORK"/load-*.txt >"$WORK/load-all.txt"
"$PY" "$ROOT/scripts/ha/verdict.py" "all faults" "$WORK/load-all.txt" "$WORK/stored.txt" 0 ||
	mp::check::fail "all faults together: orders lost or stored twice"
if ((MP_CHECKS_FAILED)); then
	echo "ha-test: $MP_CHECKS_FAILED check(s) FAILED"
	exit 1
fi
echo "ha-test: all checks passed in ${SECONDS}s"
