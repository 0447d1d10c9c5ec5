# shellcheck shell=bash
# The user's demo as checks that can fail, shared by the qemu and vagrant modes
# (sourced). The mode provides, before calling run_demo_checks:
#   VMS                 (gateway inventory billing)
#   vm NAME SCRIPT      runs SCRIPT with bash in the VM as the vagrant user, prints its stdout
#   provision_all TAG   runs every VM's provisioning again (as `vagrant provision` does)
#   reboot_vm NAME      asks the VM to reboot
# Everything here runs inside the test's network namespace; the gateway's port is
# forwarded to 127.0.0.1:$HOST_GATEWAY_PORT there, as the Vagrantfile forwards it.
# Sourced by the modes' inner scripts (qemu.sh, vagrant.sh), which vm-test.sh runs.
# shellcheck source=scripts/vm/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${RUN_DIR:?run by scripts/vm-test.sh}" "${IMAGE_DIR:?run by scripts/vm-test.sh}"

# Units each VM must run: ours first, then the infrastructure ones they need.
declare -A VM_UNITS=(
	[gateway]="api-gateway.service prometheus.service prometheus-alertmanager.service prometheus-node-exporter.service"
	[inventory]="inventory-app.service postgresql.service prometheus-node-exporter.service prometheus-postgres-exporter.service"
	[billing]="billing-worker.service postgresql.service rabbitmq-server.service prometheus-node-exporter.service prometheus-postgres-exporter.service"
)
declare -A VM_MAIN_UNIT=([gateway]=api-gateway.service [inventory]=inventory-app.service [billing]=billing-worker.service)
# What the state snapshot (re-provisioning must not change it) watches per VM.
SNAPSHOT_UNITS="api-gateway.service inventory-app.service billing-worker.service movie-platform-firewall.service postgresql@15-main.service rabbitmq-server.service prometheus.service prometheus-alertmanager.service prometheus-node-exporter.service prometheus-postgres-exporter.service"

# The audit walk (scripts/lib/walk.sh) over this test's transport: curl to the
# forwarded port, psql and rabbitmqctl and systemctl in the VMs over ssh.
# shellcheck source=scripts/lib/walk.sh
source "$PROJECT_ROOT/scripts/lib/walk.sh"
gateway_base() { printf '%s' "${API_BASE:-http://127.0.0.1:$HOST_GATEWAY_PORT}"; }
vm::http() {
	mp::walk::curl "$(gateway_base)" -- "$@"
	printf '%s %s -> %s %s\n' "$1" "$2" "$WALK_STATUS" "$WALK_BODY" >>"$RUN_DIR/api.log"
}
vm::sql() { # as the user would ask: sudo -i -u postgres psql
	vm "$1" "sudo -i -u postgres psql -d $(mp::walk::db "$1") -v ON_ERROR_STOP=1 -Atc $(printf '%q' "$2")"
}
vm::queued() { # messages in billing_queue, from rabbitmqctl list_queues
	vm billing "sudo rabbitmqctl list_queues -q --no-table-headers -p $(printf '%q' "$RABBITMQ_VHOST") name messages" |
		awk '$1 == "billing_queue" { print $2 }'
}
vm::worker() { # sudo systemctl stop|start billing-worker, as the demo says
	local want=active out
	[[ $1 == stop ]] && want=inactive
	out=$(vm billing "sudo systemctl $1 billing-worker; systemctl is-active billing-worker" 2>&1) || true
	[[ $(tail -n 1 <<<"$out") == "$want" ]] || {
		echo "systemctl $1 billing-worker: $out"
		return 1
	}
}
# The VMs run under TCG: orders take longer to be stored (lib.sh also polls
# every 2 s, since a poll is an ssh round trip).
MP_WALK_WAIT=${MP_WALK_WAIT:-180}

# --- phases ------------------------------------------------------------------------
check_network() {
	local vm ip out
	for vm in "${VMS[@]}"; do
		# shellcheck disable=SC2016 # expanded in the VM
		out=$(vm "$vm" 'hostname; grep -c "^127.0.1.1[[:space:]]\+$(hostname)\b" /etc/hosts; ip -4 -o addr show' 2>&1) || true
		if [[ $(sed -n 1p <<<"$out") == "$vm-vm" && $(sed -n 2p <<<"$out") == 1 ]]; then
			mp::check::pass "$vm-vm: hostname $vm-vm, 127.0.1.1 in /etc/hosts"
		else
			mp::check::fail "$vm-vm: hostname/hosts: $(head -n 2 <<<"$out" | tr '\n' ' ')"
		fi
		for ip in "$VM_GATEWAY_IP" "$VM_INVENTORY_IP" "$VM_BILLING_IP"; do
			MP_CHECK_TAIL=5 mp::check "$vm-vm reaches $ip across the bridge" vm "$vm" "ping -c 2 -W 5 $ip"
		done
	done
}

# check_units TAG: every unit of every VM is active and enabled.
check_units() {
	local tag=$1 vm out unit state enabled
	for vm in "${VMS[@]}"; do
		out=$(vm "$vm" "for u in ${VM_UNITS[$vm]}; do printf '%s %s %s\n' \"\$u\" \"\$(systemctl is-active \$u)\" \"\$(systemctl is-enabled \$u 2>/dev/null)\"; done; \
			for u in $(cd "$PROJECT_ROOT/deploy/systemd" && echo ./*.service | sed 's|\./||g'); do [ -e /etc/systemd/system/\$u ] || continue; \
			case ' ${VM_UNITS[$vm]} ' in *\" \$u \"*) continue;; esac; \
			printf '%s %s %s\n' \"\$u\" \"\$(systemctl is-active \$u)\" \"\$(systemctl is-enabled \$u 2>/dev/null)\"; done" 2>&1) || true
		while read -r unit state enabled; do
			[[ -n $unit ]] || continue
			if [[ $state == active && $enabled == enabled ]]; then
				mp::check::pass "$tag: $vm-vm $unit active and enabled"
			else
				mp::check::fail "$tag: $vm-vm $unit is $state/$enabled (want active/enabled)"
			fi
		done <<<"$out"
		grep -q "^${VM_MAIN_UNIT[$vm]} " <<<"$out" || mp::check::fail "$tag: $vm-vm: cannot read the state of ${VM_MAIN_UNIT[$vm]}: $out"
	done
}

# wait_units_active SECS: after boot or provisioning, until every unit is active.
wait_units_active() {
	local secs=$1 vm deadline
	deadline=$(($(date +%s) + secs))
	for vm in "${VMS[@]}"; do
		until vm "$vm" "for u in ${VM_UNITS[$vm]}; do systemctl is-active --quiet \$u || exit 1; done" >/dev/null 2>&1; do
			(($(date +%s) < deadline)) || {
				log "$vm-vm: units not all active after ${secs}s"
				return 1
			}
			sleep 5
		done
	done
}

check_security() {
	local vm unit line
	for vm in "${VMS[@]}"; do
		unit=${VM_MAIN_UNIT[$vm]}
		line=$(vm "$vm" "systemd-analyze security --no-pager $unit | tail -n 1" 2>&1 | tail -n 1) || true
		# "→ Overall exposure level for X.service: 1.9 OK 🙂"; better levels: SAFE.
		if [[ $line =~ exposure\ level\ for\ [^:]+:\ ([0-9.]+)\ (SAFE|OK) ]]; then
			mp::check::pass "$vm-vm: systemd-analyze security $unit: ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
		else
			mp::check::fail "$vm-vm: systemd-analyze security $unit is not OK or better: $line"
		fi
	done
}

# probe_from VM TARGETS...: from inside VM, TCP connections to every IP:PORT
# of TARGETS at once (3 s each); prints "IP:PORT open|closed" per target.
probe_from() {
	local from=$1 script=""
	shift
	local t
	for t in "$@"; do
		script+="(timeout 3 bash -c '</dev/tcp/${t%:*}/${t##*:}' 2>/dev/null && echo '$t open' || echo '$t closed') & "
	done
	vm "$from" "$script wait" 2>/dev/null
}

# check_reachability: each forbidden port is closed from each VM that must not
# reach it, each allowed one open (the port table of docs/vagrant.md; nftables, the
# input rules of the VM reached and the output rules of the VM reaching, plus the
# services' own bind addresses). The metrics ports: check_metrics_reachability.
check_reachability() {
	# "to:port:who may" — who may: a list of VMs, or "all".
	# The gateway's port is open to every address, but the other VMs' output
	# policy keeps them from it: they have no business there.
	check_ports \
		"gateway:$GATEWAY_PORT:" \
		"inventory:$INVENTORY_PORT:gateway" \
		"billing:$RABBITMQ_PORT:gateway" \
		"inventory:$POSTGRES_PORT:" \
		"billing:$POSTGRES_PORT:" \
		"billing:$RABBITMQ_MANAGEMENT_PORT:" \
		"billing:4369:" \
		"billing:25672:" \
		"gateway:22:" "inventory:22:" "billing:22:"
}

# check_metrics_reachability: every metrics listener and exporter is reached
# from gateway-vm (where Prometheus runs) and refused from the other VMs;
# Prometheus' and Alertmanager's own ports from no other VM.
check_metrics_reachability() {
	check_ports \
		"gateway:$GATEWAY_METRICS_PORT:" "gateway:$NODE_EXPORTER_PORT:" \
		"gateway:$PROMETHEUS_PORT:" "gateway:$ALERTMANAGER_PORT:" \
		"inventory:$INVENTORY_METRICS_PORT:gateway" "inventory:$NODE_EXPORTER_PORT:gateway" \
		"inventory:$POSTGRES_EXPORTER_PORT:gateway" \
		"billing:$BILLING_HEALTH_PORT:gateway" "billing:$RABBITMQ_PROMETHEUS_PORT:gateway" \
		"billing:$NODE_EXPORTER_PORT:gateway" "billing:$POSTGRES_EXPORTER_PORT:gateway"
}

# check_ports RULE...: each RULE "to:port:who may" probed from every other VM.
check_ports() {
	local from to ip port want got out key
	declare -A IPOF=([gateway]=$VM_GATEWAY_IP [inventory]=$VM_INVENTORY_IP [billing]=$VM_BILLING_IP)
	local rules=("$@")
	for from in "${VMS[@]}"; do
		local targets=()
		for key in "${rules[@]}"; do
			IFS=: read -r to port _ <<<"$key"
			[[ $to == "$from" ]] || targets+=("${IPOF[$to]}:$port")
		done
		out=$(probe_from "$from" "${targets[@]}")
		for key in "${rules[@]}"; do
			IFS=: read -r to port want <<<"$key"
			[[ $to == "$from" ]] && continue
			ip=${IPOF[$to]}
			if [[ $want == all || " $want " == *" $from "* ]]; then want=open; else want=closed; fi
			got=$(awk -v t="$ip:$port" '$1 == t { print $2 }' <<<"$out")
			if [[ $got == "$want" ]]; then
				mp::check::pass "$from-vm -> $to-vm:$port $want"
			else
				mp::check::fail "$from-vm -> $to-vm:$port is ${got:-unknown}, want $want"
			fi
		done
	done
}

# listeners_on VM PORT: the addresses something listens on for PORT, sorted.
listeners_on() {
	vm "$1" "sudo ss -Hltn 'sport = :$2'" 2>/dev/null | awk '{ a = $4; sub(/:[0-9]+$/, "", a); print a }' | sort -u | paste -sd' '
}

# loopback_only ADDRS...: at least one address, and every one a loopback one.
loopback_only() {
	local a
	(($#)) || return 1
	for a in "$@"; do [[ $a == 127.* || $a == "[::1]" ]] || return 1; done
}
# firewall_first SHOW: systemctl show output with Requires= and After= the
# firewall unit, and MemoryMax/TasksMax set to numbers.
firewall_first() {
	grep -q "^Requires=.*movie-platform-firewall.service" <<<"$1" &&
		grep -q "^After=.*movie-platform-firewall.service" <<<"$1" &&
		grep -q "^MemoryMax=[0-9]" <<<"$1" && grep -q "^TasksMax=[0-9]" <<<"$1"
}
# ip_policy SHOW ALLOWED_IP: deny everything, allow exactly localhost and
# ALLOWED_IP. systemd prints each list in an order of its own (seen both ways
# on the same version), so the words are compared as sets.
ip_policy() {
	local deny allow
	deny=$(sed -n 's/^IPAddressDeny=//p' <<<"$1" | tr ' ' '\n' | sort | xargs)
	allow=$(sed -n 's/^IPAddressAllow=//p' <<<"$1" | tr ' ' '\n' | sort | xargs)
	[[ $deny == "0.0.0.0/0 ::/0" ]] || {
		echo "IPAddressDeny=$deny"
		return 1
	}
	[[ $allow == "$(printf '%s\n' 127.0.0.0/8 ::1/128 "$2/32" | sort | xargs)" ]] || {
		echo "IPAddressAllow=$allow"
		return 1
	}
}

check_hardening() {
	local got vm unit pid out
	got=$(listeners_on billing "$RABBITMQ_MANAGEMENT_PORT")
	mp::check "billing-vm: management UI listens on loopback only ($got)" test "$got" = 127.0.0.1
	got=$(listeners_on billing 4369)
	# shellcheck disable=SC2086 # one word per address
	mp::check "billing-vm: epmd listens on loopback only ($got)" loopback_only $got
	got=$(listeners_on billing 25672)
	# shellcheck disable=SC2086 # one word per address
	mp::check "billing-vm: Erlang distribution listens on loopback only ($got)" loopback_only $got
	got=$(listeners_on inventory "$INVENTORY_PORT")
	mp::check "inventory-vm: inventory-app listens on $VM_INVENTORY_IP only ($got)" test "$got" = "$VM_INVENTORY_IP"

	out=$(vm billing "sudo rabbitmqctl -q list_users --no-table-headers" 2>&1 | sort | tr -s ' \t' ' ' | paste -sd';') || true
	mp::check "billing-vm: RabbitMQ users exactly $RABBITMQ_ADMIN_USER [management], $RABBITMQ_GATEWAY_USER [], $RABBITMQ_WORKER_USER [], no guest ($out)" \
		test "$out" = "$(printf '%s\n' "$RABBITMQ_ADMIN_USER [management]" "$RABBITMQ_GATEWAY_USER []" "$RABBITMQ_WORKER_USER []" | sort | paste -sd';')"
	out=$(vm billing "sudo rabbitmqctl -q list_permissions -p $(printf '%q' "$RABBITMQ_VHOST") --no-table-headers" 2>&1 | sort | tr -s ' \t' ' ' | paste -sd';') || true
	# shellcheck disable=SC2016 # regular expressions, not expansions
	mp::check "billing-vm: RabbitMQ permissions exactly as least privilege wants ($out)" test "$out" = "$(printf '%s\n' \
		"$RABBITMQ_ADMIN_USER .* .* .*" \
		"$RABBITMQ_GATEWAY_USER ^billing_queue(\\.dlx|\\.dlq)?\$ ^(amq\\.default|billing_queue\\.dlq)\$ ^billing_queue\\.dlx\$" \
		"$RABBITMQ_WORKER_USER ^billing_queue(\\.dlx|\\.dlq)?\$ ^billing_queue\\.(dlx|dlq)\$ ^billing_queue(\\.dlx)?\$" | sort | paste -sd';')"

	for vm in "${VMS[@]}"; do
		unit=${VM_MAIN_UNIT[$vm]}
		out=$(vm "$vm" "test -e /vagrant/.env && echo present || echo absent; ls /etc/movie-platform/*.env; stat -c '%a %U' /etc/movie-platform/${unit%.service}.env" 2>&1) || true
		mp::check "$vm-vm: no .env in /vagrant" grep -qx absent <<<"$out"
		mp::check "$vm-vm: only ${unit%.service}.env in /etc/movie-platform, mode 600 root" \
			test "$(sed -n '2,$p' <<<"$out" | paste -sd' ')" = "/etc/movie-platform/${unit%.service}.env 600 root"
		pid=$(vm "$vm" "systemctl show -p MainPID --value $unit" 2>/dev/null | tr -d '[:space:]') || true
		# Passwords are credentials (LoadCredential=): the process's environment
		# names their files, never holds one.
		out=$(vm "$vm" "sudo cat /proc/$pid/environ | tr '\\0' '\\n' | sed -n 's/^\\([A-Z_]*PASSWORD[A-Z_]*\\)=.*/\\1/p' | sort | xargs" 2>&1) || true
		mp::check "$vm-vm: $unit has no password in its environment, only *_PASSWORD_FILE settings ($out)" \
			grep -qE '^[A-Z_]+_PASSWORD_FILE( [A-Z_]+_PASSWORD_FILE)*$' <<<"$out"
		out=$(vm "$vm" "sudo find /etc/movie-platform/credentials/${unit%.service} -printf '%m %u\\n' | sort -u | xargs" 2>&1) || true
		mp::check "$vm-vm: its credentials in /etc/movie-platform/credentials/${unit%.service}, root only ($out)" \
			test "$out" = "600 root 700 root"
		out=$(vm "$vm" "sudo nsenter -t $pid -m -- sh -c 'test -e /vagrant/scripts && echo readable || echo hidden'" 2>&1) || true
		mp::check "$vm-vm: $unit cannot see /vagrant (InaccessiblePaths) ($out)" grep -qx hidden <<<"$out"
		out=$(vm "$vm" "systemctl show -p Requires -p After -p MemoryMax -p TasksMax $unit" 2>&1) || true
		mp::check "$vm-vm: $unit Requires= and After= the firewall, MemoryMax/TasksMax set" firewall_first "$out"
	done
	out=$(vm inventory "systemctl show -p IPAddressDeny -p IPAddressAllow inventory-app.service" 2>&1) || true
	mp::check "inventory-vm: inventory-app IPAddressDeny=any, IPAddressAllow localhost + $VM_GATEWAY_IP" ip_policy "$out" "$VM_GATEWAY_IP"
}

# check_ssh: on every VM, a password login is refused and the passwords that
# would allow one are locked. sshd is asked from the VM itself (whatever path
# the mode's own ssh takes): a client that offers no key and will type no
# password (BatchMode) is told which methods remain, which must be publickey
# alone, for vagrant and for root; sshd -T shows the settings in force; passwd -S
# shows both accounts locked. The key login itself works: vm() uses it.
check_ssh() {
	local vm out user
	for vm in "${VMS[@]}"; do
		# shellcheck disable=SC2016 # expanded in the VM
		out=$(vm "$vm" 'for u in vagrant root; do
			printf "refused %s %s\n" "$u" "$(ssh -n -o BatchMode=yes -o PubkeyAuthentication=no -o StrictHostKeyChecking=no \
				-o UserKnownHostsFile=/dev/null -o ConnectTimeout=30 "$u@127.0.0.1" true 2>&1 | grep -o "Permission denied ([a-z,-]*)")"
			printf "status %s\n" "$(sudo passwd -S "$u" | cut -d " " -f 1,2)"
		done
		sudo sshd -T | grep -E "^(passwordauthentication|kbdinteractiveauthentication|permitrootlogin) " | sed "s/^/sshd /"' 2>&1) || true
		printf '%s\n' "$out" >"$RUN_DIR/$vm.ssh-check"
		for user in vagrant root; do
			mp::check "$vm-vm: ssh password login as $user refused, sshd offers only publickey ($(grep "^refused $user " <<<"$out" | cut -d ' ' -f 3-))" \
				grep -qx "refused $user Permission denied (publickey)" <<<"$out"
			mp::check "$vm-vm: password of $user locked (passwd -S: $(grep "^status $user " <<<"$out" | cut -d ' ' -f 3))" \
				grep -qx "status $user L" <<<"$out"
		done
		mp::check "$vm-vm: sshd -T: PasswordAuthentication, KbdInteractiveAuthentication and PermitRootLogin no ($(grep '^sshd ' <<<"$out" | cut -d ' ' -f 2- | paste -sd, -))" \
			test "$(grep '^sshd ' <<<"$out" | sort | paste -sd, -)" = "sshd kbdinteractiveauthentication no,sshd passwordauthentication no,sshd permitrootlogin no"
	done
}

# check_walk RUN: the audit walk, then what only the VMs show: psql as the
# user runs it, and the worker's journal.
check_walk() {
	local run=$1 dbs journal a b
	mp::walk::run vm "vm-$run"
	dbs=$(vm inventory 'sudo -i -u postgres psql -Atc "SELECT datname FROM pg_database"' 2>&1) || true
	mp::check "inventory-vm: sudo -i -u postgres psql lists database $INVENTORY_DB_NAME" grep -qx "$INVENTORY_DB_NAME" <<<"$dbs"

	a=${WALK_ORDERS[0]:-none} b=${WALK_ORDERS[1]:-none}
	journal=$(vm billing 'sudo journalctl -u billing-worker --no-pager -o cat' 2>&1) || true
	printf '%s\n' "$journal" >"$RUN_DIR/billing-worker.journal"
	# The lines' event keys (docs/operations.md), not their sentences.
	mp::check "billing-vm: journalctl -u billing-worker shows the first order stored" grep -qF "event=order_stored order_id=$a " <<<"$journal"
	mp::check "billing-vm: journalctl -u billing-worker shows the stop (SIGTERM)" grep -qF "event=stop_requested signal=SIGTERM" <<<"$journal"
	mp::check "billing-vm: journalctl -u billing-worker shows a waiting order stored" grep -qF "event=order_stored order_id=$b " <<<"$journal"
}

snapshot() { # VM: checksums of /etc and /usr/local, and when each service last started
	vm "$1" "sudo bash -c 'find /etc /usr/local -xdev -type f -print0 | sort -z | xargs -0 sha256sum; \
		for u in $SNAPSHOT_UNITS; do systemctl show -p Id -p ActiveState -p ActiveEnterTimestamp -p MainPID -p NRestarts \$u; done'"
}

check_reprovision() {
	local vm
	for vm in "${VMS[@]}"; do snapshot "$vm" >"$RUN_DIR/$vm.snapshot-before" 2>&1 || true; done
	provision_all again || true
	sleep 5
	for vm in "${VMS[@]}"; do
		snapshot "$vm" >"$RUN_DIR/$vm.snapshot-after" 2>&1 || true
		if [[ -s $RUN_DIR/$vm.snapshot-before ]] && diff -q "$RUN_DIR/$vm.snapshot-before" "$RUN_DIR/$vm.snapshot-after" >/dev/null; then
			mp::check::pass "$vm-vm: re-provisioning changed no file in /etc, /usr/local and restarted no service"
		else
			mp::check::fail "$vm-vm: re-provisioning changed something: $(diff "$RUN_DIR/$vm.snapshot-before" "$RUN_DIR/$vm.snapshot-after" | grep '^[<>]' | head -n 6 | tr '\n' ' ')"
		fi
	done
}

boot_id_of() { VM_CMD_TIMEOUT=30 vm "$1" 'cat /proc/sys/kernel/random/boot_id' 2>/dev/null || true; }

check_reboot() {
	local vm deadline now
	declare -A boot_id=()
	for vm in "${VMS[@]}"; do
		boot_id[$vm]=$(boot_id_of "$vm")
		reboot_vm "$vm"
	done
	log "rebooting ${VMS[*]}"
	deadline=$(($(date +%s) + 900))
	for vm in "${VMS[@]}"; do
		while :; do
			now=$(boot_id_of "$vm")
			[[ $now =~ ^[0-9a-f-]{36}$ && $now != "${boot_id[$vm]}" ]] && break
			(($(date +%s) < deadline)) || break
			sleep 5
		done
		mp::check "$vm-vm rebooted (new boot id)" test "$now" != "${boot_id[$vm]}" -a -n "$now"
	done
	wait_units_active 900 || true
	check_units "after reboot"
	# The mode may have to reach the gateway another way once it rebooted (Vagrant's
	# ssh port forward does not survive a reboot from inside the guest).
	API_BASE=${API_BASE_AFTER_REBOOT:-${API_BASE:-}}
	log "gateway after the reboot: $(gateway_base)"
	mp::wait_until 300 "the gateway answers after the reboot" mp::walk::answers || true
	if [[ -n ${WALK_MOVIE_ID:-} ]]; then
		mp::check "after reboot: movie $WALK_MOVIE_ID still there" mp::walk::request GET "/api/movies/$WALK_MOVIE_ID" 200
		mp::check "after reboot: movie $WALK_MOVIE_ID unchanged" \
			mp::walk::is "$(mp::walk::json "j['title']")" "$WALK_MOVIE_TITLE"
	fi
	mp::check "after reboot: an order accepted" mp::walk::order "vm-after-reboot-$(date +%s)"
	mp::check "after reboot: the order stored once" mp::wait_until 300 "the order to be stored" \
		mp::walk::stored_id "${WALK_ORDERS[-1]:-none}" 1
}

# --- monitoring: Prometheus and Alertmanager on gateway-vm --------------------------
# prom_get PATH [CURL ARGS...]: Prometheus' (or with AM=1, Alertmanager's) API,
# asked inside gateway-vm: neither listens where this test's namespace reaches.
prom_get() {
	local port=$PROMETHEUS_PORT path=$1 quoted=() a
	shift
	[[ ${AM:-0} == 1 ]] && port=$ALERTMANAGER_PORT
	for a in "$@"; do quoted+=("$(printf '%q' "$a")"); done
	vm gateway "curl -fsS -m 20 -G http://127.0.0.1:$port$path ${quoted[*]}"
}
# prom_up: "job instance value" per scrape target, from the query `up`.
prom_up() {
	prom_get /api/v1/query --data-urlencode query=up 2>/dev/null | python3 -c 'import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print(r["metric"].get("job", "-"), r["metric"].get("instance", "-"), r["value"][1])' | sort
}
# The scrape targets of deploy/prometheus/vm/prometheus.yml.in: the three
# services, RabbitMQ twice (per-object and node-wide), two PostgreSQL
# exporters, three node exporters, Prometheus and Alertmanager.
PROM_TARGETS=12
all_targets_up() {
	local out
	out=$(prom_up) || return 1
	[[ $(grep -c . <<<"$out") -eq $PROM_TARGETS ]] && [[ -z $(awk '$3 != "1"' <<<"$out") ]]
}
# alert_active NAME: NAME among Alertmanager's active alerts.
alert_active() {
	AM=1 prom_get /api/v2/alerts --data-urlencode active=true 2>/dev/null |
		python3 -c 'import json, sys
sys.exit(0 if any(a["labels"].get("alertname") == sys.argv[1] for a in json.load(sys.stdin)) else 1)' "$1"
}
alert_gone() { ! alert_active "$1" && AM=1 prom_get /api/v2/alerts >/dev/null 2>&1; }

check_monitoring() {
	local run=$1 out line i t0 took vm
	check_metrics_reachability
	mp::wait_until 300 "every scrape target up" all_targets_up || true
	out=$(prom_up 2>&1) || true
	printf '%s\n' "$out" >"$RUN_DIR/prometheus-up.txt"
	mp::check "Prometheus on gateway-vm has $PROM_TARGETS scrape targets ($(grep -c . <<<"$out"))" \
		test "$(grep -c . <<<"$out")" = "$PROM_TARGETS"
	while read -r line; do
		[[ -n $line ]] || continue
		mp::check "Prometheus: target ${line% *} up == 1 (${line##* })" test "${line##* }" = 1
	done <<<"$out"
	out=$(vm gateway "curl -fsS -m 20 -o /dev/null -w '%{http_code}' http://127.0.0.1:$PROMETHEUS_PORT/consoles/movie-platform.html" 2>&1) || true
	mp::check "Prometheus serves the overview console (/consoles/movie-platform.html: $out)" test "$out" = 200

	# The demo: orders wait with the worker stopped, the alert fires; the
	# worker started, the orders are stored and the alert resolves.
	mp::check "monitoring: systemctl stop billing-worker" vm::worker stop
	for i in 1 2 3; do
		mp::check "monitoring: order $i accepted with the worker stopped" mp::walk::order "vmobs-$run"
	done
	t0=$(date +%s)
	if mp::wait_until 180 "BillingQueueNoConsumer in Alertmanager" alert_active BillingQueueNoConsumer; then
		took=$(($(date +%s) - t0))
		mp::check::pass "monitoring: BillingQueueNoConsumer active in Alertmanager ${took}s after the orders waited (limit 180 s)"
	else
		mp::check::fail "monitoring: BillingQueueNoConsumer not active in Alertmanager within 180 s"
	fi
	mp::check "monitoring: systemctl start billing-worker" vm::worker start
	mp::check "monitoring: the 3 orders stored once each" \
		mp::wait_until "$MP_WALK_WAIT" "the 3 orders to be stored" mp::walk::stored "vmobs-$run" 3
	t0=$(date +%s)
	if mp::wait_until 180 "BillingQueueNoConsumer to resolve" alert_gone BillingQueueNoConsumer; then
		mp::check::pass "monitoring: BillingQueueNoConsumer resolved $(($(date +%s) - t0))s after the worker started"
	else
		mp::check::fail "monitoring: BillingQueueNoConsumer still active 180 s after the worker started"
	fi
	# What each unit costs, as its cgroup counts it (docs/observability.md).
	for vm in "${VMS[@]}"; do
		# Debian's postgresql.service is a wrapper with no process: the
		# cluster's own unit, postgresql@15-main, holds the server. A unit
		# with no number says "n/a", and the loop goes on.
		vm "$vm" "for u in ${VM_UNITS[$vm]//postgresql.service/postgresql@15-main.service}; do m=\$(systemctl show -p MemoryCurrent --value \$u); case \$m in ''|*[!0-9]*) m=n/a ;; *) m=\$((m / 1048576)) ;; esac; echo $vm-vm \$u \$m MiB; done; echo $vm-vm \$(free -m | sed -n 2p)" \
			>>"$RUN_DIR/monitoring-memory.txt" 2>&1 || true
	done
	log "memory after the monitoring checks: $(paste -sd';' "$RUN_DIR/monitoring-memory.txt")"
}

# run_demo_checks [walk]: everything, or only the audit walk (services up, the
# movies API, the orders demo with the worker stopped and started): what
# scripts/test.sh vagrant runs after the real `vagrant up`.
run_demo_checks() {
	local run scope=${1:-all}
	run=$(cat /proc/sys/kernel/random/uuid)
	run=${run:0:8}

	phase "services up (units active and enabled)"
	wait_units_active 600 || true
	check_units "after provisioning"
	if mp::wait_until 300 "the gateway on 127.0.0.1:$HOST_GATEWAY_PORT" curl -fsS -m 10 "http://127.0.0.1:$HOST_GATEWAY_PORT/api/movies"; then
		mp::check::pass "gateway answers on the forwarded port 127.0.0.1:$HOST_GATEWAY_PORT"
	else
		mp::check::fail "gateway answers on the forwarded port 127.0.0.1:$HOST_GATEWAY_PORT"
	fi

	phase "the audit walk: movies and orders through the gateway, worker stopped and started"
	check_walk "$run"

	phase "monitoring: scrape targets up, metrics ports, the no-consumer alert"
	check_monitoring "$run"

	[[ $scope == walk ]] && return 0

	phase "systemd-analyze security"
	check_security

	phase "least privilege: who reaches what, accounts, secrets"
	check_reachability
	check_hardening
	check_ssh

	phase "re-provisioning changes nothing"
	check_reprovision

	phase "reboot: every service comes back"
	check_reboot
}
