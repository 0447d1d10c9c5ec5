#!/usr/bin/env bash
# Provisions one VM of the high-availability topology (MP_TOPOLOGY=ha vagrant
# up; docs/ha.md): the design scripts/ha-test.sh proves in namespaces, on
# three VMs alike (.env's HA_VM1..HA_VM3):
#   - a node of the 3-node RabbitMQ cluster (deploy/rabbitmq/ha.conf.in:
#     classic_config peer discovery, pause_minority, net_ticktime from .env; nodes
#     named rabbit@<address>), billing_queue a quorum queue;
#   - pg_auto_failover: on the first two VMs a node of each database (movies,
#     orders), on the third the monitor of both (a monitor must not share a
#     VM with a node it watches: losing that VM would take the primary and
#     the only one who can promote the standby);
#   - api-gateway, inventory-app and billing-worker, each knowing every
#     broker node (its own first) and both nodes of its database (libpq's
#     multi-host string with target_session_attrs=read-write);
#   - keepalived holding the gateways' shared address HA_VIP (VRRP).
# The VMs may be provisioned in any order, in parallel or one after the
# other: each step that needs another VM waits for it (the Vagrantfile brings
# up the monitor's VM first, for providers that start VMs one at a time).
# A VM that comes back rejoins by itself: RabbitMQ's node keeps its cluster
# membership on disk, pg_autoctl's keeper re-attaches its node as standby,
# keepalived becomes a backup (nopreempt).
# Run as root inside the VM, any number of times. Env: as setup_billing.sh.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Vagrant runs this script alone from /tmp/vagrant-shell: the library is then
# in PROJECT_DIR (see resolve_paths in provision/common.sh).
[[ -r $SCRIPT_DIR/provision/common.sh ]] || SCRIPT_DIR=${PROJECT_DIR:-/vagrant}/scripts
# shellcheck source=provision/common.sh
. "$SCRIPT_DIR/provision/common.sh"
provision_init "$SCRIPT_DIR" ha "RabbitMQ node, pg_auto_failover, api-gateway, inventory-app, billing-worker, keepalived"

# --- who is who --------------------------------------------------------------------
# ME: this VM's number (1..3), by its host name (.env's HA_VMn_NAME).
ME=""
for i in 1 2 3; do
	key=HA_VM${i}_NAME
	[[ $(hostname) == "${!key}" ]] && ME=$i
done
[[ -n $ME ]] || mp::die "host name $(hostname) is none of HA_VM1_NAME..HA_VM3_NAME of .env"
ip_key=HA_VM${ME}_IP
MY_IP=${!ip_key}
read -r -a PEERS <<<"$(ha_peers)"
ip -o -4 addr show | grep -q " $MY_IP/" || mp::die "$MY_IP ($ip_key) is not an address of this VM"
# The database nodes live on the first two VMs, the monitor on the third.
DATA_VMS=(1 2)
MONITOR_IP=$HA_VM3_IP
FORMATIONS=(movies orders)
declare -A PG_PORT=([movies]=$HA_PG_MOVIES_PORT [orders]=$HA_PG_ORDERS_PORT)
declare -A PG_DB=([movies]=$INVENTORY_DB_NAME [orders]=$BILLING_DB_NAME)
declare -A PG_USER=([movies]=$INVENTORY_DB_USER [orders]=$BILLING_DB_USER)
declare -A PG_OWNER=([movies]=$INVENTORY_DB_MIGRATION_USER [orders]=$BILLING_DB_MIGRATION_USER)
declare -A PG_PREFIX=([movies]=INVENTORY_ [orders]=BILLING_)
PGAF_ROOT=/var/lib/postgresql/movie-platform
PG_BIN=/usr/lib/postgresql/15/bin
MONITOR_URI="$(pgaf_monitor_uri "$MONITOR_IP" "$HA_PG_MONITOR_PORT")"
# Under emulation (vm-test's TCG) or on a loaded laptop the other VMs may
# take long to come up: how long a step waits for them.
HA_WAIT=${HA_WAIT_SECONDS:-1800}
mp::log::detail "this is VM $ME of 3 ($MY_IP); peers ${PEERS[*]}; shared address $HA_VIP"

ensure_hostname_resolves
FILE_CHANGED=0
copy_if_changed "$DEPLOY_DIR/sysctl/60-movie-platform.conf" /etc/sysctl.d/60-movie-platform.conf 0644
[[ "$FILE_CHANGED" -eq 0 ]] || sysctl -q -p /etc/sysctl.d/60-movie-platform.conf

mp::pkg::install rabbitmq-server postgresql postgresql-15-auto-failover pg-auto-failover-cli keepalived curl

# --- RabbitMQ: one node of the cluster ------------------------------------------------
mp::log::info "RabbitMQ: node rabbit@$MY_IP of the 3-node cluster"
# The same settings as scripts/ha-test.sh's nodes (deploy/rabbitmq/ha.conf.in),
# then what the VMs add (loopback, management on loopback, who logs in where).
rabbit_conf() {
	local tmp
	tmp=$(mktemp -d)
	NODE_IP=$MY_IP RABBITMQ_HA_NODE_1=$HA_VM1_IP RABBITMQ_HA_NODE_2=$HA_VM2_IP RABBITMQ_HA_NODE_3=$HA_VM3_IP \
		render_template "$DEPLOY_DIR/rabbitmq/ha.conf.in" "$tmp/a" 0600 >/dev/null
	render_template "$DEPLOY_DIR/rabbitmq/ha-vm.conf.in" "$tmp/b" 0600 >/dev/null
	cat "$tmp/a" "$tmp/b"
	rm -rf "$tmp"
}
# Nodes named by address (as in ha-test.sh): no name resolution between the
# VMs is needed; the distribution port fixed, so the firewall can name it.
# Its text is compared with the file's (below): changed, it restarts the node.
rabbit_env() {
	printf '%s\n' "# Managed by scripts/setup_ha.sh (HA topology); overwritten by the next provisioning." \
		"NODENAME=rabbit@$MY_IP" "USE_LONGNAME=true" "DIST_PORT=$HA_RABBITMQ_DIST_PORT" \
		"# rabbitmqctl is an Erlang node too: with the nodes' tick, a call that waits" \
		"# (await_startup) is not dropped as a silent peer." \
		"CTL_ERL_ARGS=\"$(ha_rabbit_ctl_erl_args)\"" \
		"# No busy-waiting schedulers: idle, they would spin on CPU that this VM's" \
		"# gateway, worker and databases need (as scripts/ha-test.sh's nodes; docs/ha.md)." \
		"SERVER_ADDITIONAL_ERL_ARGS=\"$(ha_rabbit_server_erl_args)\""
}
COOKIE=/var/lib/rabbitmq/.erlang.cookie
# A node whose name or cookie changes must be stopped with the old ones
# (rabbitmqctl, which the unit's stop runs, would no longer reach it).
if systemctl is-active --quiet rabbitmq-server.service &&
	{ ! cmp -s <(rabbit_env) /etc/rabbitmq/rabbitmq-env.conf ||
		! cmp -s <(printf '%s' "$RABBITMQ_HA_COOKIE_PASSWORD") "$COOKIE"; }; then
	mp::log::detail "stopping RabbitMQ to change its node name or cookie"
	systemctl stop rabbitmq-server.service
fi
FILE_CHANGED=0
write_if_changed /etc/rabbitmq/rabbitmq.conf 0644 < <(rabbit_conf)
write_if_changed /etc/rabbitmq/rabbitmq-env.conf 0644 < <(rabbit_env)
copy_if_changed "$DEPLOY_DIR/rabbitmq/ha-enabled_plugins" /etc/rabbitmq/enabled_plugins 0644
install -d -o rabbitmq -g rabbitmq -m 0750 /var/lib/rabbitmq
write_if_changed "$COOKIE" 0400 rabbitmq:rabbitmq < <(printf '%s' "$RABBITMQ_HA_COOKIE_PASSWORD")
rabbit_changed=$FILE_CHANGED
FILE_CHANGED=0
copy_if_changed "$DEPLOY_DIR/systemd/rabbitmq-server.service.d/movie-platform.conf" \
	/etc/systemd/system/rabbitmq-server.service.d/movie-platform.conf 0644
[[ "$FILE_CHANGED" -eq 0 ]] || systemctl daemon-reload
systemctl enable --quiet rabbitmq-server.service
# As setup_billing.sh: a broker still in its boot's start is let finish.
rabbit_settled() { [[ "$(systemctl is-active rabbitmq-server.service)" != activating ]]; }
MP_WAIT_INTERVAL=2 mp::wait_until 600 "RabbitMQ's boot start to end" rabbit_settled || true
if [[ $rabbit_changed -eq 1 ]] && systemctl is-active --quiet rabbitmq-server.service; then
	mp::log::detail "restarting RabbitMQ (configuration changed; takes a while)"
	systemctl restart rabbitmq-server.service
else
	systemctl start rabbitmq-server.service
fi || {
	journalctl -u rabbitmq-server.service -n 30 --no-pager >&2 || true
	mp::die "RabbitMQ did not start (above: why); after fixing it run: vagrant provision $(hostname)"
}
rabbitmqctl --timeout "${RABBITMQ_WAIT_SECONDS:-600}" await_startup >/dev/null
# running_nodes: how many nodes this node sees running (the cluster forms by
# itself: classic_config; a VM brought up alone first forms it, the others join).
running_nodes() {
	rabbitmqctl -q cluster_status --formatter json 2>/dev/null |
		python3 -c 'import json, sys; print(len(json.load(sys.stdin)["running_nodes"]))' 2>/dev/null
}
mp::log::detail "RabbitMQ is running; nodes running in its cluster: $(running_nodes || echo '?') of 3"
# The accounts are the cluster's, made once by the monitor's VM (the first one
# up with a sequential `vagrant up`): three VMs creating them at the same
# time would race. The other VMs' services retry until they exist.
if ((ME == 3)); then
	rabbitmq_accounts
fi

# --- PostgreSQL: pg_auto_failover -------------------------------------------------------
# Debian's own cluster (15/main, port 5432) is not used here: pg_autoctl runs
# the topology's servers, one per instance (pg-autoctl@.service).
if [[ -f /etc/postgresql/15/main/start.conf ]]; then
	FILE_CHANGED=0
	write_if_changed /etc/postgresql/15/main/start.conf 0644 postgres:postgres < <(printf 'manual\n')
	systemctl stop postgresql@15-main.service 2>/dev/null || true
fi
FILE_CHANGED=0
# (A template unit: one per instance, pg-autoctl@monitor, @movies, @orders.)
PGAF_UNIT=pg-autoctl@.service
copy_if_changed "$DEPLOY_DIR/systemd/$PGAF_UNIT" "/etc/systemd/system/$PGAF_UNIT" 0644
[[ "$FILE_CHANGED" -eq 0 ]] || systemctl daemon-reload

# pgaf INSTANCE COMMAND...: COMMAND as postgres with INSTANCE's pg_autoctl
# directories (the unit's environment).
pgaf() {
	local inst=$1
	shift
	install -d -o postgres -g postgres -m 0700 "$PGAF_ROOT" "$PGAF_ROOT/$inst" "$PGAF_ROOT/$inst/config" \
		"$PGAF_ROOT/$inst/state" "/run/pg-autoctl-$inst"
	runuser -u postgres -- env PGDATA="$PGAF_ROOT/$inst/data" XDG_CONFIG_HOME="$PGAF_ROOT/$inst/config" \
		XDG_DATA_HOME="$PGAF_ROOT/$inst/state" XDG_RUNTIME_DIR="/run/pg-autoctl-$inst" \
		PATH="$PG_BIN:/usr/bin:/bin" "$@"
}
# monitor_sql SQL: on the monitor, as pg_autoctl's own role (trusted from the
# private network by the monitor's pg_hba.conf), from any VM.
monitor_sql() { runuser -u postgres -- psql -X -qtA "$MONITOR_URI" -c "$1" 2>/dev/null; }
monitor_up() { [[ "$(monitor_sql 'SELECT 1')" == 1 ]]; }
formation_exists() { [[ "$(monitor_sql "SELECT count(*) FROM pgautofailover.formation WHERE formationid = '$1'")" == 1 ]]; }

if ((ME == 3)); then
	mp::log::info "pg_auto_failover: the monitor of both databases (port $HA_PG_MONITOR_PORT)"
	if [[ ! -f $PGAF_ROOT/monitor/created ]]; then
		pgaf monitor pg_autoctl create monitor --pgdata "$PGAF_ROOT/monitor/data" --pgport "$HA_PG_MONITOR_PORT" \
			--hostname "$MY_IP" --listen "$MY_IP" --auth trust --no-ssl ||
			mp::die "pg_autoctl create monitor failed (above)"
		# The failover timeouts of docs/ha.md (and of scripts/ha-test.sh).
		cat "$DEPLOY_DIR/pg_auto_failover/monitor.conf" >>"$PGAF_ROOT/monitor/data/postgresql.conf"
		touch "$PGAF_ROOT/monitor/created"
	fi
	unit_converge pg-autoctl@monitor.service 0 "data"
	MP_WAIT_INTERVAL=2 mp::wait_until 300 "the pg_auto_failover monitor" monitor_up || mp::die "the monitor does not answer"
	for f in "${FORMATIONS[@]}"; do
		formation_exists "$f" && continue
		pgaf monitor pg_autoctl create formation --pgdata "$PGAF_ROOT/monitor/data" --formation "$f" \
			--kind pgsql --dbname "${PG_DB[$f]}" || mp::die "pg_autoctl create formation $f failed"
		mp::log::detail "formation $f created on the monitor"
	done
fi

# node_state FORMATION: this VM's node's reported and goal state, "a/b".
node_state() {
	monitor_sql "SELECT reportedstate || '/' || goalstate FROM pgautofailover.node
		WHERE formationid = '$1' AND nodehost = '$MY_IP'"
}
# node_settled FORMATION: the node has reached a stable role.
node_settled() {
	case "$(node_state "$1")" in
	single/single | wait_primary/wait_primary | primary/primary | secondary/secondary) return 0 ;;
	*) return 1 ;;
	esac
}
node_is_primary() { [[ "$(node_state "$1")" =~ ^(single|wait_primary|primary)/ ]]; }
# hba_line FILE LINE: LINE in FILE once.
hba_line() { grep -qxF "$2" "$1" || echo "$2" >>"$1"; }

# Set below: the services whose database's primary is on another VM, whose
# migrations that VM runs (install_service, MIGRATIONS_ELSEWHERE).
MIGRATIONS_ELSEWHERE="INVENTORY_ BILLING_"
if [[ " ${DATA_VMS[*]} " == *" $ME "* ]]; then
	MP_WAIT_INTERVAL=5 mp::wait_until "$HA_WAIT" "the pg_auto_failover monitor on $MONITOR_IP" monitor_up ||
		mp::die "the monitor on $MONITOR_IP does not answer (is $HA_VM3_NAME up?)"
	for f in "${FORMATIONS[@]}"; do
		port=${PG_PORT[$f]}
		data=$PGAF_ROOT/$f/data
		mp::log::info "pg_auto_failover: the $f database's node on $MY_IP:$port"
		MP_WAIT_INTERVAL=5 mp::wait_until "$HA_WAIT" "formation $f on the monitor" formation_exists "$f" ||
			mp::die "the monitor has no formation $f"
		if [[ ! -f $PGAF_ROOT/$f/created ]]; then
			# The first node registered becomes primary; the second copies it
			# (pg_basebackup) and becomes its synchronous standby.
			pgaf "$f" pg_autoctl create postgres --pgdata "$data" --pgport "$port" --hostname "$MY_IP" \
				--listen "$MY_IP" --name "$(hostname)" --formation "$f" --dbname "${PG_DB[$f]}" \
				--monitor "$MONITOR_URI" --auth trust --no-ssl || mp::die "pg_autoctl create postgres ($f) failed (above)"
			# The keepers' side of the monitor's timeouts (above).
			pgaf "$f" pg_autoctl config set --pgdata "$data" timeout.network_partition_timeout 10 >/dev/null
			touch "$PGAF_ROOT/$f/created"
		fi
		# A node made by an earlier version has the monitor's URI without
		# the keepalives (pgaf_monitor_uri): set it; pg_autoctl reloads it.
		if [[ "$(pgaf "$f" pg_autoctl config get --pgdata "$data" pg_autoctl.monitor 2>/dev/null)" != "$MONITOR_URI" ]]; then
			pgaf "$f" pg_autoctl config set --pgdata "$data" pg_autoctl.monitor "$MONITOR_URI" >/dev/null ||
				mp::die "pg_autoctl config set pg_autoctl.monitor ($f) failed (above)"
			mp::log::detail "the $f keeper's monitor URI updated (TCP keepalives)"
		fi
		# pg_autoctl writes trust rules for its own roles, from the other
		# node only. The services (from any of the three VMs) log in with a
		# password; pg_rewind, when an old primary rejoins, logs in to the
		# database postgres as pg_autoctl's replication role (ha-test.sh: else
		# the rejoin falls back to a full copy).
		hba=$data/pg_hba.conf
		for peer in "${PEERS[@]}"; do
			hba_line "$hba" "host ${PG_DB[$f]} ${PG_USER[$f]} $peer/32 scram-sha-256"
			hba_line "$hba" "host ${PG_DB[$f]} ${PG_OWNER[$f]} $peer/32 scram-sha-256"
		done
		for i in "${DATA_VMS[@]}"; do
			key=HA_VM${i}_IP
			[[ ${!key} == "$MY_IP" ]] || hba_line "$hba" "host postgres pgautofailover_replicator ${!key}/32 trust"
		done
		chown postgres:postgres "$hba"
		unit_converge "pg-autoctl@$f.service" 0 "data"
		runuser -u postgres -- psql -X -qtA -p "$port" -d postgres -c 'SELECT pg_reload_conf()' >/dev/null 2>&1 || true
		MP_WAIT_INTERVAL=5 mp::wait_until "$HA_WAIT" "the $f node to be primary or standby" node_settled "$f" ||
			mp::die "the $f node did not settle (state $(node_state "$f"); journalctl -u pg-autoctl@$f)"
		if node_is_primary "$f"; then
			mp::log::detail "the $f node here is primary ($(node_state "$f")): roles, database, migrations"
			PG_SUPER=(runuser -u postgres -- psql -p "$port" -d postgres)
			pw_key=${PG_PREFIX[$f]}DB_PASSWORD owner_pw_key=${PG_PREFIX[$f]}DB_MIGRATION_PASSWORD
			pg_ensure_db "${PG_DB[$f]}" "${PG_USER[$f]}" "${!pw_key}" "$MY_IP" "$port" "${PG_OWNER[$f]}" "${!owner_pw_key}"
			MIGRATIONS_ELSEWHERE=${MIGRATIONS_ELSEWHERE/${PG_PREFIX[$f]}/}
		else
			mp::log::detail "the $f node here is the standby ($(node_state "$f"))"
		fi
	done
fi

# --- the services -----------------------------------------------------------------------
# node_list FIRST: the three VMs' addresses, FIRST first (a service starts on
# its own VM's node and moves on in turn when it dies), comma-separated.
node_list() {
	local out=$1 ip
	for ip in "${PEERS[@]}"; do [[ $ip == "$1" ]] || out+=",$ip"; done
	printf '%s' "$out"
}
# The HA values of the services' .env keys, as scripts/ha-test.sh sets them.
GATEWAY_RABBITMQ_HOST=$(node_list "$MY_IP")
BILLING_RABBITMQ_HOST=$GATEWAY_RABBITMQ_HOST
GATEWAY_RABBITMQ_QUEUE_TYPE=quorum
BILLING_RABBITMQ_QUEUE_TYPE=quorum
INVENTORY_HOST=$MY_IP
INVENTORY_PORT=$HA_INVENTORY_PORT
GATEWAY_INVENTORY_URL=""
for ip in $(node_list "$MY_IP" | tr , ' '); do GATEWAY_INVENTORY_URL+="${GATEWAY_INVENTORY_URL:+,}http://$ip:$HA_INVENTORY_PORT"; done
INVENTORY_DB_HOST=$HA_VM1_IP,$HA_VM2_IP
INVENTORY_DB_PORT=$HA_PG_MOVIES_PORT
BILLING_DB_HOST=$HA_VM1_IP,$HA_VM2_IP
BILLING_DB_PORT=$HA_PG_ORDERS_PORT
GATEWAY_DRAIN_MS=$HA_DRAIN_MS
INVENTORY_DRAIN_MS=$HA_DRAIN_MS
DOTENV_KEYS+=(GATEWAY_DRAIN_MS INVENTORY_DRAIN_MS)
export GATEWAY_RABBITMQ_HOST BILLING_RABBITMQ_HOST GATEWAY_RABBITMQ_QUEUE_TYPE BILLING_RABBITMQ_QUEUE_TYPE \
	INVENTORY_HOST INVENTORY_PORT GATEWAY_INVENTORY_URL INVENTORY_DB_HOST INVENTORY_DB_PORT BILLING_DB_HOST \
	BILLING_DB_PORT GATEWAY_DRAIN_MS INVENTORY_DRAIN_MS
export MIGRATIONS_ELSEWHERE

PG_SUPER=(runuser -u postgres -- psql -p "$HA_PG_MOVIES_PORT" -d postgres)
install_service inventory-app INVENTORY_ "$HA_INVENTORY_PORT"
PG_SUPER=(runuser -u postgres -- psql -p "$HA_PG_ORDERS_PORT" -d postgres)
install_service billing-worker BILLING_ "$BILLING_HEALTH_PORT"
install_service api-gateway GATEWAY_ "$GATEWAY_PORT"

# --- keepalived: the gateways' shared address -----------------------------------------------
mp::log::info "keepalived: $HA_VIP on the VM whose gateway is ready"
VRRP_INTERFACE=$(ip -o -4 addr show | awk -v ip="$MY_IP" 'index($4, ip "/") == 1 { print $2; exit }')
[[ -n $VRRP_INTERFACE ]] || mp::die "no interface holds $MY_IP"
# The first VM is preferred at the start; after that nobody takes the address
# back (nopreempt).
declare -A VRRP_PRIORITIES=([1]=150 [2]=100 [3]=50)
VRRP_PRIORITY=${VRRP_PRIORITIES[$ME]}
others=()
for ip in "${PEERS[@]}"; do [[ $ip == "$MY_IP" ]] || others+=("$ip"); done
HA_NODE_NAME=$(hostname) HA_NODE_IP=$MY_IP VRRP_PEER_1=${others[0]} VRRP_PEER_2=${others[1]}
export HA_NODE_NAME HA_NODE_IP VRRP_PEER_1 VRRP_PEER_2 VRRP_INTERFACE VRRP_PRIORITY
FILE_CHANGED=0
render_template "$DEPLOY_DIR/keepalived/keepalived.conf.in" /etc/keepalived/keepalived.conf 0644
unit_converge keepalived.service "$FILE_CHANGED" "configuration"

mp::log::info "$(hostname) ready: gateway http://$HA_VIP:$GATEWAY_PORT/ (shared), RabbitMQ node rabbit@$MY_IP ($(running_nodes || echo '?') of 3 running)"
