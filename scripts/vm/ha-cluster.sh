#!/usr/bin/env bash
# The HA topology's state and the audit walk's transport, read through the
# VMs themselves: sourced by scripts/vm/ha.sh (VMs booted by qemu, reached by
# ssh) and by scripts/vm/vagrant.sh with MP_TOPOLOGY=ha (VMs made by
# `vagrant up`, reached by `vagrant ssh`). The caller gives the transport:
#   vm N SCRIPT   SCRIPT with bash in VM N as the vagrant user;
#   vm_up N       true while VM N runs;
# and VMS (the VMs' keys: 1 2 3 for ha.sh, ha1 ha2 ha3 for vagrant.sh),
# NAME[N], VM_IP[N], MONITOR_VM (the third VM's key), PY, VIP_URL, RUN_DIR,
# and .env's values with the generated passwords.
# shellcheck disable=SC2317 # most functions run through mp::wait_until, mp::check or the walk

# --- reading the cluster's state --------------------------------------------------------
# queue_field N FIELD: billing_queue's FIELD (leader, members, online,
# messages) from VM N's management API on loopback (the admin's password on
# curl's standard input, never in a command line); a list joined by commas.
queue_field() {
	printf 'user = "%s:%s"\n' "$RABBITMQ_ADMIN_USER" "$RABBITMQ_ADMIN_PASSWORD" |
		VM_CMD_TIMEOUT=60 vm "$1" "curl -fsS -m 30 -K - http://127.0.0.1:$RABBITMQ_MANAGEMENT_PORT/api/queues/%2F/billing_queue" 2>/dev/null |
		"$PY" -c 'import json, sys
v = json.load(sys.stdin).get(sys.argv[1], "")
print(",".join(v) if isinstance(v, list) else v)' "$2" 2>/dev/null
}
# any_queue_field FIELD: from the first live VM that answers.
any_queue_field() {
	local n out
	for n in "${VMS[@]}"; do
		vm_up "$n" || continue
		out=$(queue_field "$n" "$1") && [[ -n $out ]] && echo "$out" && return 0
	done
	return 1
}
# vm_of_ip IP: the VM number holding IP.
vm_of_ip() {
	local n
	for n in "${VMS[@]}"; do [[ ${VM_IP[$n]} == "$1" ]] && echo "$n" && return 0; done
	return 1
}
leader_vm() {
	local node
	node=$(any_queue_field leader) || return 1
	vm_of_ip "${node#rabbit@}"
}
members_online() { [[ "$(any_queue_field online | tr ',' '\n' | grep -c .)" == 3 ]]; }
# monitor_sql SQL: on the pg_auto_failover monitor (VM MONITOR_VM, the third).
monitor_sql() {
	VM_CMD_TIMEOUT=60 vm "$MONITOR_VM" "sudo -u postgres psql -X -qtA 'postgres://autoctl_node@$HA_VM3_IP:$HA_PG_MONITOR_PORT/pg_auto_failover?sslmode=disable&connect_timeout=5' -c $(printf '%q' "$1")" 2>/dev/null
}
# primary_vm FORMATION: the VM of the formation's primary (as ha-test.sh's pg_primary).
primary_vm() {
	local host
	host=$(monitor_sql "SELECT nodehost FROM pgautofailover.node WHERE formationid = '$1'
		AND reportedstate IN ('single', 'wait_primary', 'primary') AND goalstate IN ('single', 'wait_primary', 'primary')") || return 1
	vm_of_ip "$(tr -d '[:space:]' <<<"$host")"
}
in_sync() { [[ "$(monitor_sql "SELECT string_agg(reportedstate::text, ' ' ORDER BY reportedstate::text) FROM pgautofailover.node WHERE formationid = '$1'")" == "primary secondary" ]]; }
vip_holders() {
	local n
	for n in "${VMS[@]}"; do
		vm_up "$n" || continue
		# shellcheck disable=SC2016 # expanded in the VM
		[[ "$(VM_CMD_TIMEOUT=30 vm "$n" "ip -o -4 addr show | grep -c ' $HA_VIP/'" 2>/dev/null)" == 1 ]] && echo "$n"
	done
	return 0
}
one_vip_holder() { [[ "$(vip_holders | wc -l)" == 1 ]]; }
# db_psql FORMATION SQL: as postgres on the VM holding the formation's primary.
db_psql() {
	local f=$1 n port=$HA_PG_ORDERS_PORT db=$BILLING_DB_NAME
	[[ $f == movies ]] && port=$HA_PG_MOVIES_PORT db=$INVENTORY_DB_NAME
	n=$(primary_vm "$f") || return 1
	VM_CMD_TIMEOUT=120 vm "$n" "sudo -u postgres psql -X -qtA -p $port -d $db -v ON_ERROR_STOP=1 -c $(printf '%q' "$2")"
}

# replicas_ready: every VM's inventory-app answers /ready (its pool holds a
# connection to the movies primary), asked from inside each VM.
replicas_ready() {
	local n
	for n in "${VMS[@]}"; do
		VM_CMD_TIMEOUT=30 vm "$n" "curl -fsS -m 5 -o /dev/null http://${VM_IP[$n]}:$HA_INVENTORY_PORT/ready" 2>/dev/null || return 1
	done
}
# check_cluster_formed CLUSTER_WAIT VIP_WAIT API_WAIT: the cluster formed by
# itself: billing_queue's 3 members online and each database in sync (each
# waited for up to CLUSTER_WAIT seconds), one holder of the address
# (VIP_WAIT), every inventory replica ready and the API answering through
# the address (API_WAIT each). (A replica whose first connections failed
# while its database was forming takes a few seconds more: one run's walk,
# started 3 s after the formation was in sync, had its first POST answered
# 503 by a replica whose pool was still empty.)
check_cluster_formed() {
	mp::check "RabbitMQ: billing_queue a quorum queue with 3 members online" \
		mp::wait_until "$1" "billing_queue's 3 members online" members_online
	local f
	for f in movies orders; do
		mp::check "pg_auto_failover: the $f database has a primary and a synchronous standby" \
			mp::wait_until "$1" "$f in sync" in_sync "$f"
	done
	mp::check "keepalived: one VM holds $HA_VIP" mp::wait_until "$2" "one holder of $HA_VIP" one_vip_holder
	mp::check "inventory-app ready on every VM" mp::wait_until "$3" "every inventory replica ready" replicas_ready
	mp::check "orders and the catalogue through $VIP_URL (from the host side of the private network)" \
		mp::wait_until "$3" "GET $VIP_URL/api/movies" curl -fsS -m 20 -o /dev/null "$VIP_URL/api/movies"
}

# --- the audit walk's transport: the shared address, psql and the API in the VMs --------
havm::http() {
	mp::walk::curl "$VIP_URL" -- "$@"
	printf '%s %s -> %s %s\n' "$1" "$2" "$WALK_STATUS" "$WALK_BODY" >>"$RUN_DIR/api.log"
}
havm::sql() {
	case $1 in
	inventory) db_psql movies "$2" ;;
	billing) db_psql orders "$2" ;;
	*) return 1 ;;
	esac
}
havm::queued() { any_queue_field messages; }
# Every worker: with one left running, nothing would wait in the queue.
havm::worker() {
	local n want=active out
	[[ $1 == stop ]] && want=inactive
	for n in "${VMS[@]}"; do
		out=$(vm "$n" "sudo systemctl $1 billing-worker; systemctl is-active billing-worker" 2>&1) || true
		[[ $(tail -n 1 <<<"$out") == "$want" ]] || {
			echo "${NAME[$n]}: systemctl $1 billing-worker: $out"
			return 1
		}
	done
}
