#!/usr/bin/env bash
# vm-test, ha mode (scripts/vm-test.sh ha). Runs INSIDE the network namespace
# that scripts/vm-test.sh created (never call it directly): boots the
# high-availability topology (ha1-vm, ha2-vm, ha3-vm of .env, 2 GB each, the
# image with pg_auto_failover and keepalived) under qemu TCG, provisions the
# three in parallel with the real scripts/setup_ha.sh, as `vagrant up` would,
# runs the audit walk through the shared address HA_VIP, then powers off one
# VM at a time while orders flow through HA_VIP: the one holding
# billing_queue's leader, the one holding the orders database's primary, the
# one holding HA_VIP. After each: the VM is started again and must rejoin by
# itself, and a verdict (scripts/ha/verdict.py, the orders of
# scripts/ha/load.py) counts orders answered 200 and lost, stored twice,
# non-200 but stored, and the longest time without an accepted order (at
# most VM_TEST_HA_MAX_OUTAGE, default 10 s: issue 24's promise). A total
# verdict ends the run.
# The helpers follow qemu.sh's (disks, seed, ssh, provisioning); the VMs
# differ (three alike, their own names, addresses and ports), and a VM here
# is powered off and booted again on the same disk.
# shellcheck disable=SC2317 # most functions run through mp::wait_until, mp::check or the walk
set -euo pipefail
# shellcheck source=scripts/vm/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
PY=python3
# As the Vagrantfile does: strong passwords (and the Erlang cookie) instead of
# .env's *-change-me placeholders, generated once per run.
(
	umask 077
	while IFS= read -r line || [[ -n $line ]]; do
		if [[ $line =~ ^([A-Z0-9_]*_PASSWORD)=[^$]*change-me ]]; then
			line="${BASH_REMATCH[1]}=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
		fi
		printf '%s\n' "$line"
	done <"$PROJECT_ROOT/.env" >"$RUN_DIR/dotenv"
)
mp::env::load "$RUN_DIR/dotenv"

# ha1 ha2 ha3: the VMs by number; NAME[n] their host names (.env).
VMS=(1 2 3)
declare -A NAME=([1]=$HA_VM1_NAME [2]=$HA_VM2_NAME [3]=$HA_VM3_NAME)
declare -A VM_IP=([1]=$HA_VM1_IP [2]=$HA_VM2_IP [3]=$HA_VM3_IP)
declare -A SSH_PORT=([1]=2221 [2]=2222 [3]=2223)
declare -A QEMU_PID=()
# As scripts/vm/guest.rb gives them (HA_MEMORY_MB, HA_CPUS).
HA_MEM=2048
HA_CPUS=${VM_TEST_HA_CPUS:-2}
MAX_OUTAGE=${VM_TEST_HA_MAX_OUTAGE:-10}
# The load's clients: each posts one order at a time and, when no answer comes
# within LOAD_TIMEOUT s (the gateway answers within its 5 s publish timeout),
# sends it once more with the same Idempotency-Key, which docs/api.md
# makes safe. A request in flight on a VM that dies never gets an answer;
# without the retry, the client's own timeout would be the outage measured.
LOAD_CLIENTS=${VM_TEST_HA_LOAD_CLIENTS:-4}
LOAD_TIMEOUT=${VM_TEST_HA_LOAD_TIMEOUT:-8}
REJOIN_WAIT=${VM_TEST_HA_REJOIN_WAIT:-1800}
SSH_KEY=$RUN_DIR/id_ed25519
BRIDGE=br-mp
# The host side of the private network (as VirtualBox's host-only adapter and
# libvirt's network give the host): from here the client reaches HA_VIP.
BRIDGE_IP=${HA_VM1_IP%.*}.1
VIP_URL=http://$HA_VIP:$GATEWAY_PORT
QEMU_SYSTEM=(qemu-system-x86_64 -accel tcg -machine pc)

# shellcheck disable=SC2317 # run by the EXIT trap
on_exit() {
	local rc=$? n pid
	trap - EXIT INT TERM
	phase_end FAIL
	touch "$RUN_DIR/load.stop"
	for n in "${!QEMU_PID[@]}"; do
		pid=${QEMU_PID[$n]}
		kill -TERM "$pid" 2>/dev/null || continue
		timeout 20 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
		log "stopped ${NAME[$n]} (qemu pid $pid)"
	done
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- disks and VMs (as qemu.sh) -------------------------------------------------------
make_disks() {
	local n=$1 name=${NAME[$1]} dir=$RUN_DIR/project-$1 size_mb seed=$RUN_DIR/seed-$1
	qemu-img create -q -f qcow2 -F qcow2 -b "$IMAGE_DIR/base.qcow2" "$RUN_DIR/$n.qcow2"
	ruby "$VM_LIB_DIR/stage.rb" "$name" "$dir" "$RUN_DIR/settings/$n.env" "$RUN_DIR/dotenv" ||
		mp::die "staging $name's files failed"
	size_mb=$(($(du -sm "$dir" | cut -f1) * 2 + 64))
	truncate -s "${size_mb}M" "$RUN_DIR/project-$n.img"
	mkfs.ext4 -q -L vagrant -d "$dir" "$RUN_DIR/project-$n.img"
	mkdir -p "$seed"
	cat >"$seed/apply.sh" <<EOF
set -eu
echo $name >/etc/hostname
hostname $name
cat >/etc/hosts <<'HOSTS'
127.0.0.1	localhost
127.0.1.1	$name $name
::1	localhost ip6-localhost ip6-loopback
HOSTS
mkdir -p /etc/systemd/network
cat >/etc/systemd/network/10-private.network <<'NET'
[Match]
MACAddress=52:54:00:56:00:2$n

[Network]
Address=${VM_IP[$n]}/24
NET
cat >/home/vagrant/.ssh/authorized_keys <<'KEYS'
$(cat "$SSH_KEY.pub")
KEYS
chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
chmod 600 /home/vagrant/.ssh/authorized_keys
mkdir -p /vagrant
mountpoint -q /vagrant || mount /dev/vdb /vagrant
EOF
	truncate -s 8M "$RUN_DIR/seed-$n.img"
	mkfs.ext4 -q -L vmseed -d "$seed" "$RUN_DIR/seed-$n.img"
}

# boot_vm N: starts VM N on its disks (again after a power-off). The first
# VM carries the host's port forward, as the Vagrantfile gives it to ha1-vm.
boot_vm() {
	local n=$1 fwd
	fwd=hostfwd=tcp:127.0.0.1:${SSH_PORT[$n]}-:22
	((n == 1)) && fwd+=,hostfwd=tcp:127.0.0.1:$HOST_GATEWAY_PORT-:$GATEWAY_PORT
	"${QEMU_SYSTEM[@]}" -name "${NAME[$n]}" -nodefaults -display none -smp "$HA_CPUS" -m "$HA_MEM" \
		-kernel "$IMAGE_DIR/vmlinuz" -initrd "$IMAGE_DIR/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 no_timer_check systemd.hostname=${NAME[$n]} vmseed" \
		-drive "file=$RUN_DIR/$n.qcow2,if=virtio,format=qcow2,cache=unsafe" \
		-drive "file=$RUN_DIR/project-$n.img,if=virtio,format=raw,cache=unsafe" \
		-drive "file=$RUN_DIR/seed-$n.img,if=virtio,format=raw,readonly=on" \
		-netdev "user,id=nat,restrict=on,$fwd" -device "virtio-net-pci,netdev=nat,mac=52:54:00:00:00:2$n" \
		-netdev "tap,id=priv,ifname=tap-ha$n,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=priv,mac=52:54:00:56:00:2$n" \
		-device virtio-rng-pci -serial "file:$RUN_DIR/$n.console.log" -monitor none \
		</dev/null >>"$RUN_DIR/$n.qemu.log" 2>&1 &
	QEMU_PID[$n]=$!
	log "started ${NAME[$n]} (qemu pid ${QEMU_PID[$n]}, $HA_CPUS vCPU, $HA_MEM MiB, ssh 127.0.0.1:${SSH_PORT[$n]})"
}

# power_off N: pulls the plug (SIGKILL of qemu): no shutdown, no RST from
# the guest; the peers learn it from timeouts, as when a machine dies.
power_off() {
	local n=$1 pid=${QEMU_PID[$1]}
	kill -KILL "$pid" 2>/dev/null || true
	timeout 20 tail --pid="$pid" -f /dev/null || true
	unset "QEMU_PID[$n]"
	rm -f "$RUN_DIR/ssh-${SSH_PORT[$n]}.sock"
	log "powered off ${NAME[$n]} (SIGKILL of qemu pid $pid)"
}

SSH_OPTS=(-i "$SSH_KEY" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
	-o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=6
	-o ControlMaster=auto -o "ControlPath=$RUN_DIR/ssh-%p.sock" -o ControlPersist=900)
# vm N SCRIPT: SCRIPT with bash in VM N as the vagrant user.
vm() {
	local n=$1
	shift
	timeout "${VM_CMD_TIMEOUT:-300}" ssh "${SSH_OPTS[@]}" -p "${SSH_PORT[$n]}" vagrant@127.0.0.1 "bash -c $(printf '%q' "$*")"
}
vm_up() { [[ -n ${QEMU_PID[$1]:-} ]] && kill -0 "${QEMU_PID[$1]}" 2>/dev/null; }
ssh_ok() { VM_CMD_TIMEOUT=30 vm "$1" true >/dev/null 2>&1; }

# provision N LOGFILE: as qemu.sh's (the Vagrantfile's way), setup_ha.sh.
PROVISION_TIMEOUT=${VM_TEST_PROVISION_TIMEOUT:-3600}
provision() {
	local n=$1 logfile=$2
	VM_CMD_TIMEOUT=$PROVISION_TIMEOUT vm "$n" "rm -rf /tmp/movie-platform-settings && mkdir -m 0700 /tmp/movie-platform-settings &&
		cat >/tmp/movie-platform-settings/settings.env && sudo install -m 0755 /vagrant/scripts/setup_ha.sh /tmp/vagrant-shell &&
		sudo -H env PROJECT_DIR=/vagrant DIST_DIR=/vagrant/dist ENV_FILE=/tmp/movie-platform-settings/settings.env MP_SETTINGS_ONCE=1 /tmp/vagrant-shell </dev/null" \
		<"$RUN_DIR/settings/$n.env" >"$logfile" 2>&1
}

# The cluster's state and the walk's transport (shared with vagrant.sh's HA
# mode), through the vm function above.
MONITOR_VM=3
# shellcheck source=scripts/vm/ha-cluster.sh
source "$VM_LIB_DIR/ha-cluster.sh"

# --- faults: power-off under orders -------------------------------------------------------
# stored_counts: user_id and count of every stored order (tried a few times:
# during a failover there is no primary for a while).
stored_counts() {
	local out
	for _ in 1 2 3 4 5 6; do
		out=$(db_psql orders "SELECT user_id, count(*) FROM orders GROUP BY user_id" 2>/dev/null) && [[ -n $out ]] && break
		sleep 10
	done
	[[ -n ${out:-} ]] && tr '|' ' ' <<<"$out"
	return 0
}
# drained LOADFILE: every order answered 200 is stored.
drained() {
	local want got
	want=$(awk '$3 == 200' "$1" | wc -l)
	got=$(stored_counts | awk 'NR == FNR { ok[$1] = 1; next } ($1 in ok)' <(awk '$3 == 200' "$1") - | wc -l)
	((got >= want))
}
# rejoined N: VM N back in every piece: billing_queue's 3 members online, its
# database nodes (first two VMs) the synchronous standbys again, its
# services and keepalived active, one holder of the shared address.
rejoined() {
	local n=$1 f
	ssh_ok "$n" || return 1
	members_online || return 1
	if ((n != 3)); then
		for f in movies orders; do in_sync "$f" || return 1; done
	fi
	# shellcheck disable=SC2016 # expanded in the VM
	vm "$n" 'for u in rabbitmq-server api-gateway inventory-app billing-worker keepalived; do systemctl is-active --quiet $u || exit 1; done' ||
		return 1
	one_vip_holder
}
TOTAL_LOADS=()
POWER_OFFS=0 REJOINED=0
# fault NAME WHAT: orders through HA_VIP, VM (WHAT: leader, orders-primary or
# vip) powered off, 60 s down, started again; it must rejoin; verdict.
fault() {
	local name=$1 what=$2 n load fault_at rejoin_from load_pid since
	load=$RUN_DIR/load-$what.txt
	rm -f "$RUN_DIR/load.stop"
	since=$(date -u '+%Y-%m-%d %H:%M:%S')
	HA_LOAD_TIMEOUT=$LOAD_TIMEOUT "$PY" "$PROJECT_ROOT/scripts/ha/load.py" "$load" "$RUN_DIR/load.stop" \
		"$LOAD_CLIENTS" "$VIP_URL" "$VIP_URL" &
	load_pid=$!
	sleep 20
	case $what in
	leader) n=$(leader_vm) || n=1 ;;
	orders-primary) n=$(primary_vm orders) || n=1 ;;
	vip) n=$(vip_holders | awk 'NR == 1') && [[ -n $n ]] || n=1 ;;
	esac
	log "$name: powering off ${NAME[$n]} (leader $(leader_vm || echo '?'), orders primary $(primary_vm orders || echo '?'), VIP on $(vip_holders | tr '\n' ' '))"
	fault_at=$("$PY" -c 'import time; print(time.monotonic())')
	power_off "$n"
	POWER_OFFS=$((POWER_OFFS + 1))
	sleep 60
	boot_vm "$n"
	rejoin_from=$SECONDS
	if MP_WAIT_INTERVAL=10 mp::wait_until "$REJOIN_WAIT" "${NAME[$n]} to rejoin (queue members, database standbys, services, one VIP holder)" rejoined "$n"; then
		mp::check::pass "$name: ${NAME[$n]} rejoined by itself $((SECONDS - rejoin_from)) s after its start"
		REJOINED=$((REJOINED + 1))
	else
		mp::check::fail "$name: ${NAME[$n]} rejoined by itself within $REJOIN_WAIT s (queue online: $(any_queue_field online || echo '?'))"
	fi
	sleep 10
	touch "$RUN_DIR/load.stop"
	wait "$load_pid" || true
	MP_WAIT_INTERVAL=10 mp::wait_until 300 "every order answered 200 to be stored" drained "$load" || true
	stored_counts >"$RUN_DIR/stored-$what.txt"
	if "$PY" "$PROJECT_ROOT/scripts/ha/verdict.py" "$name" "$load" "$RUN_DIR/stored-$what.txt" "$fault_at" \
		"${NAME[$n]} powered off 60 s" "$MAX_OUTAGE" | tee -a "$RUN_DIR/verdicts.txt"; then
		mp::check::pass "$name: nothing lost or stored twice, orders accepted again within $MAX_OUTAGE s"
	else
		mp::check::fail "$name: orders lost, stored twice, or longer than $MAX_OUTAGE s without an accepted order"
	fi
	evidence "$what" "$since"
	TOTAL_LOADS+=("$load")
}

# evidence WHAT SINCE: what each VM's services said from SINCE (UTC, the
# fault's start) on, into RUN_DIR/evidence-WHAT.txt; the VIP's moves also
# into the log.
evidence() {
	local out=$RUN_DIR/evidence-$1.txt since=$2 n
	: >"$out"
	for n in "${VMS[@]}"; do
		{
			echo "=== ${NAME[$n]}"
			VM_CMD_TIMEOUT=120 vm "$n" "sudo journalctl -q --no-pager --since '$since UTC' -u keepalived |
				grep -E 'Entering|VRRP_Script'
				sudo journalctl -q --no-pager --since '$since UTC' -u api-gateway -u billing-worker |
				grep -E 'WARN|ERROR' | grep -v 'publishing it again' | tail -n 80
				sudo grep -hiE 'partition|paus|nodedown|node down|down: |leader|election' /var/log/rabbitmq/*.log |
				tail -n 60
				sudo journalctl -q --no-pager --since '$since UTC' -u 'pg-autoctl@*' |
				grep -vE ' (DEBUG|TRACE) ' | tail -n 80" 2>&1 || echo "(no answer from ${NAME[$n]})"
		} >>"$out"
	done
	# What the databases' monitor decided, and what the keepers logged (the
	# fourth run saw no failover of the orders database when its primary's
	# VM was powered off).
	{
		echo "=== pg_auto_failover events since the fault (monitor on ${NAME[3]})"
		monitor_sql "SELECT eventtime, formationid, nodeid, reportedstate, goalstate, description
			FROM pgautofailover.event WHERE eventtime >= '$since UTC' ORDER BY eventid" ||
			echo "(no answer from the monitor)"
		echo "=== pg_auto_failover nodes now"
		monitor_sql "SELECT formationid, nodeid, nodehost, reportedstate, goalstate, health, healthchecktime,
			reporttime, reportedlsn, candidatepriority FROM pgautofailover.node ORDER BY formationid, nodeid" ||
			echo "(no answer from the monitor)"
	} >>"$out"
	grep -E '^===|Entering [A-Z]+ STATE|VRRP_Script.*(failed|succeeded)' "$out" | sed 's/^/  /' || true
}

# -----------------------------------------------------------------------------------------
phase "qemu: bridge, disks, boot the 3 HA VMs"
ip link add "$BRIDGE" type bridge
ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
ssh-keygen -q -t ed25519 -N '' -C "vm-test-$$" -f "$SSH_KEY"
for n in "${VMS[@]}"; do
	ip tuntap add dev "tap-ha$n" mode tap
	ip link set "tap-ha$n" master "$BRIDGE" up
	make_disks "$n"
	boot_vm "$n"
done

phase "qemu: wait for ssh"
for n in "${VMS[@]}"; do
	if MP_WAIT_INTERVAL=5 mp::wait_until "${VM_TEST_SSH_WAIT:-900}" "${NAME[$n]} to answer ssh" ssh_ok "$n"; then
		mp::check::pass "${NAME[$n]} boots and answers ssh"
	else
		mp::check::fail "${NAME[$n]} boots and answers ssh"
		exit 1
	fi
done

phase "provisioning (setup_ha.sh, the three in parallel)"
declare -A PIDS=()
for n in "${VMS[@]}"; do
	provision "$n" "$RUN_DIR/$n.provision-first.log" &
	PIDS[$n]=$!
done
ok=1
for n in "${VMS[@]}"; do
	check_logged "provisioning of ${NAME[$n]} exits 0" "$RUN_DIR/$n.provision-first.log" wait "${PIDS[$n]}" || ok=0
done
((ok)) || exit 1

phase "the cluster formed by itself"
check_cluster_formed 900 300 600

phase "the audit walk through the shared address $HA_VIP"
run=$(cat /proc/sys/kernel/random/uuid)
mp::walk::run havm "ha-${run:0:8}"

phase "power-off of the queue leader's VM, under orders"
fault "power-off: queue leader's VM" leader
phase "power-off of the orders primary's VM, under orders"
fault "power-off: orders primary's VM" orders-primary
phase "power-off of the shared address's VM, under orders"
fault "power-off: VIP holder's VM" vip

phase "verdict over every power-off"
cat "${TOTAL_LOADS[@]}" >"$RUN_DIR/load-all.txt"
stored_counts >"$RUN_DIR/stored-all.txt"
if "$PY" "$PROJECT_ROOT/scripts/ha/verdict.py" "all power-offs" "$RUN_DIR/load-all.txt" "$RUN_DIR/stored-all.txt" 0 |
	tee -a "$RUN_DIR/verdicts.txt"; then
	mp::check::pass "all power-offs: nothing lost or stored twice"
else
	mp::check::fail "all power-offs: orders lost or stored twice"
fi
echo "VMs powered off $POWER_OFFS, recovered (rejoined by themselves) $REJOINED" | tee -a "$RUN_DIR/verdicts.txt"
((REJOINED == POWER_OFFS)) || mp::check::fail "every VM powered off rejoined ($REJOINED of $POWER_OFFS)"
log "verdicts (also in $RUN_DIR/verdicts.txt):"
sed 's/^/  /' "$RUN_DIR/verdicts.txt" >&2
phase_end
checks_failed && exit 1
exit 0
