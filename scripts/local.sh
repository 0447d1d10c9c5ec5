#!/usr/bin/env bash
# Runs the whole movie-platform on one machine, without systemd or VMs:
# two PostgreSQL servers and RabbitMQ as plain processes on loopback, and the
# three services, all with their data and logs under .state/ in the checkout.
#
#   scripts/local.sh up              install what is missing, start everything, wait until ready
#   scripts/local.sh infra           start only PostgreSQL and RabbitMQ
#   scripts/local.sh down            stop everything this script started
#   scripts/local.sh status          what runs where
#   scripts/local.sh stop|start|restart NAME
#                                    one piece, like systemctl: inventory-app, api-gateway,
#                                    billing-worker, pg-inventory, pg-billing, rabbitmq
#   scripts/local.sh kill NAME       SIGKILL a service (crash simulation)
#   scripts/local.sh logs NAME [-f]  its log
#   scripts/local.sh psql DB [ARGS]  psql on the local server holding DB (movies or orders)
#   scripts/local.sh queue           depth of billing_queue and of its dead-letter queue
#   scripts/local.sh rabbitmqctl ARGS rabbitmqctl on the local node (e.g. set_disk_free_limit 1000GB)
#   scripts/local.sh env             the variables the local services run with (secrets masked)
#   scripts/local.sh metrics NAME    a service's current Prometheus metrics (docs/observability.md)
#
# Ports (override with the variables in brackets): gateway 127.0.0.1:8080
# [LOCAL_GATEWAY_PORT], inventory 8081 [LOCAL_INVENTORY_PORT], billing-worker
# health and metrics 8082 [LOCAL_BILLING_HEALTH_PORT], metrics of the gateway
# 9101 [LOCAL_GATEWAY_METRICS_PORT] and of inventory 9102
# [LOCAL_INVENTORY_METRICS_PORT], PostgreSQL 55432/55433
# [LOCAL_PG_INVENTORY_PORT/LOCAL_PG_BILLING_PORT], RabbitMQ 55672, management
# 55673 [LOCAL_RABBITMQ_PORT/LOCAL_RABBITMQ_MGMT_PORT].
#
# Each service runs with only its own settings and, when this runs as root,
# as an unprivileged uid of its own: 61301-61303 [LOCAL_INVENTORY_UID,
# LOCAL_GATEWAY_UID, LOCAL_BILLING_UID] (docs/security.md, "The local run").
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

STATE=${MP_STATE_DIR:-$MP_ROOT/.state}
LOGS=$STATE/logs
RUN=$STATE/run
BIN_DIR=${MP_BIN_DIR:-$(dist_dir)}
PG_BIN=${MP_PG_BIN:-/usr/lib/postgresql/15/bin}

LOCAL_GATEWAY_PORT=${LOCAL_GATEWAY_PORT:-8080}
LOCAL_INVENTORY_PORT=${LOCAL_INVENTORY_PORT:-8081}
LOCAL_BILLING_HEALTH_PORT=${LOCAL_BILLING_HEALTH_PORT:-8082}
LOCAL_GATEWAY_METRICS_PORT=${LOCAL_GATEWAY_METRICS_PORT:-9101}
LOCAL_INVENTORY_METRICS_PORT=${LOCAL_INVENTORY_METRICS_PORT:-9102}
LOCAL_PG_INVENTORY_PORT=${LOCAL_PG_INVENTORY_PORT:-55432}
LOCAL_PG_BILLING_PORT=${LOCAL_PG_BILLING_PORT:-55433}
LOCAL_RABBITMQ_PORT=${LOCAL_RABBITMQ_PORT:-55672}
LOCAL_RABBITMQ_MGMT_PORT=${LOCAL_RABBITMQ_MGMT_PORT:-55673}
LOCAL_RABBITMQ_DIST_PORT=${LOCAL_RABBITMQ_DIST_PORT:-55674}
LOCAL_EPMD_PORT=${LOCAL_EPMD_PORT:-55675}

SERVICES=(inventory-app billing-worker api-gateway)
INFRA=(pg-inventory pg-billing rabbitmq)

# The .env values, then what differs on one host: everything on loopback,
# each piece on its own port.
local_env() {
	mp::env::load "$MP_ROOT/.env"
	export INVENTORY_HOST=127.0.0.1 INVENTORY_PORT=$LOCAL_INVENTORY_PORT
	export INVENTORY_DB_HOST=127.0.0.1 INVENTORY_DB_PORT=$LOCAL_PG_INVENTORY_PORT
	export INVENTORY_METRICS_HOST=127.0.0.1 INVENTORY_METRICS_PORT=$LOCAL_INVENTORY_METRICS_PORT
	export GATEWAY_HOST=127.0.0.1 GATEWAY_PORT=$LOCAL_GATEWAY_PORT
	export GATEWAY_METRICS_HOST=127.0.0.1 GATEWAY_METRICS_PORT=$LOCAL_GATEWAY_METRICS_PORT
	export GATEWAY_INVENTORY_URL=http://127.0.0.1:$LOCAL_INVENTORY_PORT
	export GATEWAY_RABBITMQ_HOST=127.0.0.1 GATEWAY_RABBITMQ_PORT=$LOCAL_RABBITMQ_PORT
	export BILLING_HEALTH_HOST=127.0.0.1 BILLING_HEALTH_PORT=$LOCAL_BILLING_HEALTH_PORT
	export BILLING_DB_HOST=127.0.0.1 BILLING_DB_PORT=$LOCAL_PG_BILLING_PORT
	export BILLING_RABBITMQ_HOST=127.0.0.1 BILLING_RABBITMQ_PORT=$LOCAL_RABBITMQ_PORT
}

# ---------------------------------------------------------------- installs --

install_prerequisites() {
	mp::pkg::install postgresql-15 rabbitmq-server curl ca-certificates python3
}

# ------------------------------------------------------------- PostgreSQL --

# The OS user the servers run as: postgres when we are root (initdb refuses
# root), else ourselves.
# setpriv execs (runuser would fork and stay the parent), so $! of a
# backgrounded call is the server's own pid.
run_as_owner() {
	if is_root; then
		setpriv --reuid="$1" --regid="$1" --init-groups -- "${@:2}"
	else
		"${@:2}"
	fi
}

pg_port() { if [[ $1 == pg-inventory ]]; then echo "$LOCAL_PG_INVENTORY_PORT"; else echo "$LOCAL_PG_BILLING_PORT"; fi; }
pg_dir() { echo "$STATE/$1"; }
pg_owner() { if is_root; then echo postgres; else id -un; fi; }

pg_running() { run_as_owner "$(pg_owner)" "$PG_BIN/pg_ctl" -D "$(pg_dir "$1")/data" status >/dev/null 2>&1; }

pg_start() {
	local name=$1 dir port
	dir=$(pg_dir "$name")
	port=$(pg_port "$name")
	if pg_running "$name"; then
		return 0
	fi
	mkdir -p "$dir" "$LOGS"
	# The server's socket lives in $dir: private to the server's owner.
	chmod 0700 "$dir"
	is_root && chown "$(pg_owner)": "$dir"
	if [[ ! -f $dir/data/PG_VERSION ]]; then
		mp::log::info "$name: initdb in $dir/data"
		# Single-user development instance: the postgres superuser needs no
		# password from 127.0.0.1 (the tests create databases with it), so
		# any local user can be superuser here (docs/security.md says so); every
		# other role authenticates with its scram password, as in the VMs.
		# The socket (trust) is in a 0700 directory: its owner only.
		run_as_owner "$(pg_owner)" "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 \
			--locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log"
		run_as_owner "$(pg_owner)" sh -c "cat > '$dir/data/pg_hba.conf'" <<-EOF
			local all all trust
			host all postgres 127.0.0.1/32 trust
			host all all 127.0.0.1/32 scram-sha-256
		EOF
	fi
	mp::log::info "$name: starting PostgreSQL on 127.0.0.1:$port"
	touch "$LOGS/$name.log"
	is_root && chown "$(pg_owner)": "$LOGS/$name.log"
	run_as_owner "$(pg_owner)" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$LOGS/$name.log" -w -t 60 \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
}

pg_stop() {
	local name=$1
	pg_running "$name" || return 0
	mp::log::info "$name: stopping PostgreSQL"
	run_as_owner "$(pg_owner)" "$PG_BIN/pg_ctl" -D "$(pg_dir "$name")/data" -m fast -w -t 60 stop >/dev/null
}

# psql as the superuser on the server of NAME.
pg_super() {
	local name=$1
	shift
	PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(pg_port "$name")" -U postgres "$@"
}

# Creates the role (with its password) and the database it owns; idempotent,
# and re-applies the password so a changed .env takes effect.
pg_ensure_db() {
	local name=$1 db=$2 user=$3 password=$4
	pg_super "$name" -d postgres -v user="$user" -v password="$password" <<-'EOF'
		SELECT format('CREATE ROLE %I LOGIN', :'user')
		WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
		ALTER ROLE :"user" WITH LOGIN PASSWORD :'password';
	EOF
	pg_super "$name" -d postgres -v db="$db" -v user="$user" <<-'EOF'
		SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
		WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
	EOF
}

# --------------------------------------------------------------- RabbitMQ --

RMQ_DIR=$STATE/rabbitmq
RMQ_PIDFILE=$RMQ_DIR/rabbitmq.pid
if is_root; then RMQ_OWNER=rabbitmq; else RMQ_OWNER=$(id -un); fi

# The node's environment: its own ports, data and logs, everything bound to
# loopback (the Erlang distribution port too, which otherwise listens on all
# addresses), and its own epmd.
RMQ_ENV=(
	HOME="$RMQ_DIR"
	RABBITMQ_NODENAME="movieplatform@localhost"
	RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
	RABBITMQ_NODE_PORT="$LOCAL_RABBITMQ_PORT"
	RABBITMQ_DIST_PORT="$LOCAL_RABBITMQ_DIST_PORT"
	ERL_EPMD_PORT="$LOCAL_EPMD_PORT"
	ERL_EPMD_ADDRESS=127.0.0.1
	RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia"
	RABBITMQ_LOG_BASE="$RMQ_DIR/log"
	RABBITMQ_PID_FILE="$RMQ_PIDFILE"
	RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf"
	RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins"
)

rabbitmq_pid() { [[ -f $RMQ_PIDFILE ]] && cat "$RMQ_PIDFILE"; }
rabbitmq_running() { mp::pid_alive "$(rabbitmq_pid 2>/dev/null || true)"; }

mgmt_api() {
	local method=$1 path=$2
	shift 2
	curl -fsS -u guest:guest -X "$method" -H 'content-type: application/json' \
		"http://127.0.0.1:$LOCAL_RABBITMQ_MGMT_PORT/api$path" "$@"
}

rabbitmq_ready() {
	port_open "$LOCAL_RABBITMQ_PORT" && mgmt_api GET /overview >/dev/null 2>&1
}

epmd_start() {
	local pidfile=$RMQ_DIR/epmd.pid
	mp::pid_alive "$(cat "$pidfile" 2>/dev/null || true)" && return 0
	# Started by us (not by the node's -daemon fork) so we know its pid; a
	# plain command, not a function, so $! is epmd itself (setsid, setpriv
	# and env all exec).
	local as_owner=()
	is_root && as_owner=(setpriv --reuid="$RMQ_OWNER" --regid="$RMQ_OWNER" --init-groups --)
	setsid "${as_owner[@]}" env ERL_EPMD_ADDRESS=127.0.0.1 \
		epmd -port "$LOCAL_EPMD_PORT" >>"$LOGS/epmd.log" 2>&1 &
	echo $! >"$pidfile"
	mp::wait_until 10 "epmd" port_open "$LOCAL_EPMD_PORT"
}

rabbitmq_start() {
	if rabbitmq_running; then
		return 0
	fi
	mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log" "$LOGS"
	cat >"$RMQ_DIR/rabbitmq.conf" <<-EOF
		listeners.tcp.default = 127.0.0.1:$LOCAL_RABBITMQ_PORT
		management.tcp.ip = 127.0.0.1
		management.tcp.port = $LOCAL_RABBITMQ_MGMT_PORT
		loopback_users.guest = true
		# A dev machine's disk may be small; don't block publishers at 50 MB free.
		disk_free_limit.absolute = 10MB
		# As deploy/rabbitmq/rabbitmq.conf.in: new classic queues use the v2 store.
		classic_queue.default_version = 2
	EOF
	echo '[rabbitmq_management].' >"$RMQ_DIR/enabled_plugins"
	# The Erlang cookie lives in HOME; keep it private as Erlang requires.
	[[ -f $RMQ_DIR/.erlang.cookie ]] || {
		head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RMQ_DIR/.erlang.cookie"
		chmod 400 "$RMQ_DIR/.erlang.cookie"
	}
	is_root && chown -R "$RMQ_OWNER": "$RMQ_DIR"
	epmd_start
	mp::log::info "rabbitmq: starting on 127.0.0.1:$LOCAL_RABBITMQ_PORT (management 127.0.0.1:$LOCAL_RABBITMQ_MGMT_PORT)"
	touch "$LOGS/rabbitmq.log"
	is_root && chown "$RMQ_OWNER": "$LOGS/rabbitmq.log"
	run_as_owner "$RMQ_OWNER" env "${RMQ_ENV[@]}" \
		/usr/lib/rabbitmq/bin/rabbitmq-server -detached >>"$LOGS/rabbitmq.log" 2>&1 || true
	mp::wait_until 120 "RabbitMQ to accept connections" rabbitmq_ready || {
		tail -n 30 "$LOGS/rabbitmq.log" "$RMQ_DIR/log/"*.log >&2 2>/dev/null || true
		mp::die "RabbitMQ did not start; see $LOGS/rabbitmq.log and $RMQ_DIR/log/"
	}
}

rabbitmq_stop() {
	local pid
	pid=$(rabbitmq_pid 2>/dev/null || true)
	if mp::pid_alive "$pid"; then
		mp::log::info "rabbitmq: stopping (pid $pid)"
		mp::stop_pid "$pid" rabbitmq 60
	fi
	rm -f "$RMQ_PIDFILE"
}

epmd_stop() {
	local pidfile=$RMQ_DIR/epmd.pid
	[[ -f $pidfile ]] || return 0
	mp::stop_pid "$(cat "$pidfile")" epmd 5
	rm -f "$pidfile"
}

# The accounts of .env with the same tags and permissions as on billing-vm
# (rabbitmq_permissions in scripts/provision/common.sh, the one definition):
# the gateway's may declare and publish, the worker's declare and consume,
# the admin has the management UI. Passwords go to curl on stdin. guest stays
# here, on loopback only: the test suites make their own vhosts with it.
rabbitmq_ensure_user() {
	local user=$1 password=$2 account=$3 tags=$4 perms body
	mapfile -t perms < <(bash -c '. "$1"; rabbitmq_permissions "$2"' _ \
		"$MP_ROOT/scripts/provision/common.sh" "$account")
	((${#perms[@]} == 3)) || mp::die "no RabbitMQ permissions for $account"
	body=$(printf '{"password":"%s","tags":"%s"}' "$(json_escape "$password")" "$tags")
	mgmt_api PUT "/users/$(urlencode "$user")" --data-binary @- <<<"$body" >/dev/null
	body=$(printf '{"configure":"%s","write":"%s","read":"%s"}' \
		"$(json_escape "${perms[0]}")" "$(json_escape "${perms[1]}")" "$(json_escape "${perms[2]}")")
	mgmt_api PUT "/permissions/$(urlencode "$RABBITMQ_VHOST")/$(urlencode "$user")" --data-binary @- <<<"$body" >/dev/null
}

rabbitmq_accounts() {
	mgmt_api PUT "/vhosts/$(urlencode "$RABBITMQ_VHOST")" >/dev/null
	rabbitmq_ensure_user "$RABBITMQ_GATEWAY_USER" "$RABBITMQ_GATEWAY_PASSWORD" gateway ""
	rabbitmq_ensure_user "$RABBITMQ_WORKER_USER" "$RABBITMQ_WORKER_PASSWORD" worker ""
	rabbitmq_ensure_user "$RABBITMQ_ADMIN_USER" "$RABBITMQ_ADMIN_PASSWORD" admin management
}

json_escape() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	printf '%s' "$s"
}

urlencode() {
	local s=$1 out='' c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case $c in
		[a-zA-Z0-9._~-]) out+=$c ;;
		*) out+=$(printf '%%%02X' "'$c") ;;
		esac
	done
	printf '%s' "$out"
}

# --------------------------------------------------------------- services --

service_port() {
	case $1 in
	inventory-app) echo "$LOCAL_INVENTORY_PORT" ;;
	api-gateway) echo "$LOCAL_GATEWAY_PORT" ;;
	billing-worker) echo "$LOCAL_BILLING_HEALTH_PORT" ;;
	esac
}

service_pid() { cat "$RUN/$1.pid" 2>/dev/null || true; }
service_running() { mp::pid_alive "$(service_pid "$1")"; }
service_ready() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$(service_port "$1")/ready"; }

# Each service gets what systemd gives it on a VM: only its own settings (the
# keys of its prefix, RUST_LOG and a plain PATH, as its EnvironmentFile= holds),
# so no service holds another's password; and, when we are root, a uid of its
# own with no groups (DynamicUser= on the VMs), so none runs as root and none
# can read another's /proc/PID/environ. The uids need no passwd entry.
declare -A SERVICE_PREFIX=(["inventory-app"]=INVENTORY_ ["api-gateway"]=GATEWAY_ ["billing-worker"]=BILLING_)
declare -A SERVICE_UID=(["inventory-app"]=${LOCAL_INVENTORY_UID:-61301} ["api-gateway"]=${LOCAL_GATEWAY_UID:-61302} ["billing-worker"]=${LOCAL_BILLING_UID:-61303})

# as_service NAME CMD...: CMD as NAME's uid when we are root, else as ourselves.
as_service() {
	local uid=${SERVICE_UID[$1]}
	if is_root; then
		setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "${@:2}"
	else
		"${@:2}"
	fi
}

service_start() {
	local name=$1 bin=$BIN_DIR/$1
	service_running "$name" && return 0
	[[ -x $bin ]] || mp::die "$bin not found: run scripts/build.sh (or set MP_BIN_DIR)"
	as_service "$name" test -x "$bin" ||
		mp::die "$bin cannot be run by uid ${SERVICE_UID[$name]} (the unprivileged user $name runs as): a directory above it is not open to others. Clone the repository where others may read it (not under /root), or set MP_BIN_DIR to such a copy of $BIN_DIR"
	mkdir -p "$RUN" "$LOGS"
	mp::log::info "$name: starting on 127.0.0.1:$(service_port "$name")"
	# The settings reach the service as the subshell's exported variables,
	# never as arguments (`env K=V` would show every password in ps until it
	# execs). setsid, setpriv and the exec keep $! the service's own pid.
	local drop=() prefix=${SERVICE_PREFIX[$name]} uid=${SERVICE_UID[$name]}
	is_root && drop=(setpriv --reuid="$uid" --regid="$uid" --clear-groups --)
	(
		while IFS= read -r v; do
			[[ $v == "$prefix"* || $v == RUST_LOG ]] || unset "$v" 2>/dev/null || true
		done < <(compgen -e)
		export PATH=/usr/bin:/bin
		exec setsid "${drop[@]}" "$bin"
	) >>"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/$name.pid"
}

service_wait_ready() {
	local name=$1
	mp::wait_until "${MP_READY_TIMEOUT:-60}" "$name to be ready" service_ready "$name" || {
		tail -n 20 "$LOGS/$name.log" >&2 || true
		mp::die "$name is not ready; see $LOGS/$name.log"
	}
}

service_stop() {
	local name=$1 pid
	pid=$(service_pid "$name")
	if mp::pid_alive "$pid"; then
		mp::log::info "$name: stopping (pid $pid)"
		mp::stop_pid "$pid" "$name" 20
	fi
	rm -f "$RUN/$name.pid"
}

service_kill() {
	local name=$1 pid
	pid=$(service_pid "$name")
	mp::pid_alive "$pid" || mp::die "$name is not running"
	mp::log::info "$name: SIGKILL (pid $pid)"
	kill -KILL "$pid"
	mp::wait_until 10 "$name to die" mp::pid_gone "$pid"
	rm -f "$RUN/$name.pid"
}

# ---------------------------------------------------------------- commands --

infra_up() {
	install_prerequisites
	pg_start pg-inventory
	pg_start pg-billing
	rabbitmq_start
	pg_ensure_db pg-inventory "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
	pg_ensure_db pg-billing "$BILLING_DB_NAME" "$BILLING_DB_USER" "$BILLING_DB_PASSWORD"
	rabbitmq_accounts
}

cmd_up() {
	infra_up
	[[ ${MP_SKIP_BUILD:-0} == 1 ]] || "$MP_ROOT/scripts/build.sh"
	local s
	for s in "${SERVICES[@]}"; do
		[[ -x $BIN_DIR/$s ]] && service_start "$s"
	done
	for s in "${SERVICES[@]}"; do
		service_running "$s" && service_wait_ready "$s"
	done
	cmd_status
}

cmd_down() {
	local s
	for s in api-gateway billing-worker inventory-app; do service_stop "$s"; done
	rabbitmq_stop
	epmd_stop
	pg_stop pg-billing
	pg_stop pg-inventory
}

cmd_status() {
	local s state
	printf '%-15s %-8s %-8s %s\n' NAME STATE PID ADDRESS
	for s in pg-inventory pg-billing; do
		pg_running "$s" && state=running || state=stopped
		printf '%-15s %-8s %-8s %s\n' "$s" "$state" "$(head -n1 "$(pg_dir "$s")/data/postmaster.pid" 2>/dev/null || echo -)" "127.0.0.1:$(pg_port "$s")"
	done
	rabbitmq_running && state=running || state=stopped
	printf '%-15s %-8s %-8s %s\n' rabbitmq "$state" "$(rabbitmq_pid 2>/dev/null || echo -)" \
		"amqp://127.0.0.1:$LOCAL_RABBITMQ_PORT  http://127.0.0.1:$LOCAL_RABBITMQ_MGMT_PORT (management)"
	for s in "${SERVICES[@]}"; do
		if service_running "$s"; then
			service_ready "$s" && state=ready || state=running
		else
			state=stopped
		fi
		printf '%-15s %-8s %-8s %s\n' "$s" "$state" "$(service_pid "$s" | grep . || echo -)" "http://127.0.0.1:$(service_port "$s")"
	done
}

# cmd_start NAME / cmd_stop NAME: one component (a service is started and
# waited for until it is ready).
cmd_start() { component start "${1:?usage: start NAME}"; }
cmd_stop() { component stop "${1:?usage: stop NAME}"; }

# component start|stop NAME
component() {
	local verb=$1 name=$2
	case $name in
	pg-inventory | pg-billing) "pg_$verb" "$name" ;;
	rabbitmq) "rabbitmq_$verb" ;;
	inventory-app | api-gateway | billing-worker)
		"service_$verb" "$name"
		[[ $verb == stop ]] || service_wait_ready "$name"
		;;
	*) mp::die "unknown NAME $name (one of: ${SERVICES[*]} ${INFRA[*]})" ;;
	esac
}

cmd_logs() {
	local name=${1:?usage: logs NAME [-f]}
	[[ -f $LOGS/$name.log ]] || mp::die "no log for $name in $LOGS"
	if [[ ${2:-} == -f ]]; then tail -n 50 -F "$LOGS/$name.log"; else cat "$LOGS/$name.log"; fi
}

cmd_psql() {
	local db=${1:?usage: psql DB [ARGS]} server
	shift
	case $db in
	"$INVENTORY_DB_NAME") server=pg-inventory ;;
	"$BILLING_DB_NAME") server=pg-billing ;;
	*) mp::die "unknown database $db ($INVENTORY_DB_NAME or $BILLING_DB_NAME)" ;;
	esac
	exec psql -h 127.0.0.1 -p "$(pg_port "$server")" -U postgres -d "$db" "$@"
}

cmd_queue() {
	mgmt_api GET "/queues/$(urlencode "$RABBITMQ_VHOST")?columns=name,messages,messages_ready,messages_unacknowledged,consumers" |
		python3 -c "$(
			cat <<-'PY'
				import json, sys
				fmt = "%-22s %9s %9s %9s %9s"
				print(fmt % ("QUEUE", "MESSAGES", "READY", "UNACKED", "CONSUMERS"))
				for q in sorted(json.load(sys.stdin), key=lambda q: q["name"]):
				    print(fmt % (q["name"], q.get("messages", 0), q.get("messages_ready", 0),
				                 q.get("messages_unacknowledged", 0), q.get("consumers", 0)))
			PY
		)"
}

# As the node's owner and with its environment (node name, epmd port, cookie).
cmd_rabbitmqctl() {
	run_as_owner "$RMQ_OWNER" env "${RMQ_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl "$@"
}

# The worker serves its metrics on its health listener; the other two on a
# listener of their own, since their main port is (or is proxied to) public.
cmd_metrics() {
	local port
	case ${1:?usage: metrics NAME (api-gateway, inventory-app, billing-worker)} in
	api-gateway) port=$LOCAL_GATEWAY_METRICS_PORT ;;
	inventory-app) port=$LOCAL_INVENTORY_METRICS_PORT ;;
	billing-worker) port=$LOCAL_BILLING_HEALTH_PORT ;;
	*) mp::die "unknown service $1 (api-gateway, inventory-app, billing-worker)" ;;
	esac
	curl -fsS -m 5 "http://127.0.0.1:$port/metrics" || mp::die "$1 does not answer on 127.0.0.1:$port/metrics (scripts/local.sh status)"
}

cmd_env() {
	env | grep -E '^(INVENTORY|GATEWAY|BILLING|RABBITMQ|RUST_LOG)' | sort |
		sed -E 's/^([A-Z_]*PASSWORD)=.*/\1=********/'
}

main() {
	local cmd=${1:-}
	[[ -n $cmd ]] || {
		sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
		exit 2
	}
	shift
	local_env
	case $cmd in
	up) cmd_up ;;
	infra) infra_up ;;
	down) cmd_down ;;
	status) cmd_status ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	restart)
		cmd_stop "$@"
		cmd_start "$@"
		;;
	kill) service_kill "$@" ;;
	logs) cmd_logs "$@" ;;
	psql) cmd_psql "$@" ;;
	queue) cmd_queue ;;
	rabbitmqctl) cmd_rabbitmqctl "$@" ;;
	env) cmd_env ;;
	metrics) cmd_metrics "$@" ;;
	*) mp::die "unknown command $cmd (run without arguments for help)" ;;
	esac
}

main "$@"
