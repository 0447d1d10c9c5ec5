#!/usr/bin/env bash
# vm-test, qemu mode. Runs INSIDE the network namespace that scripts/vm-test.sh
# created (never call it directly): builds the bridge, boots the three VMs under qemu
# TCG, provisions them with the real scripts/setup_*.sh over ssh, as Vagrant would,
# then runs the demo checks (scripts/vm/checks.sh).
# VM_STOCK=1 (scripts/vm-test.sh stock): the stock-box image (nothing of ours
# installed, ifupdown, apt timers on), a NAT that reaches the Debian mirror, and a
# dpkg lock held during the first provisioning, which must be waited for.
set -euo pipefail
# shellcheck source=scripts/vm/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
# As the Vagrantfile does: strong passwords instead of .env's *-change-me
# placeholders (which provisioning refuses), generated once per run.
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

VMS=(gateway inventory billing)
declare -A VM_IP=([gateway]=$VM_GATEWAY_IP [inventory]=$VM_INVENTORY_IP [billing]=$VM_BILLING_IP)
# Memory and vCPUs as the Vagrantfile gives them.
declare -A VM_MEM=([gateway]=768 [inventory]=1024 [billing]=1536)
declare -A VM_CPUS=([gateway]=1 [inventory]=1 [billing]=${VM_TEST_BILLING_CPUS:-2})
declare -A SSH_PORT=([gateway]=2210 [inventory]=2211 [billing]=2212)
declare -A QEMU_PID=()
# Services the VM does not use stay installed (one image for all) but masked, so
# they cost no CPU under TCG: the same set of running services as a real deployment.
declare -A VM_MASK=(
	[gateway]="postgresql.service postgresql@15-main.service rabbitmq-server.service epmd.service epmd.socket"
	[inventory]="rabbitmq-server.service epmd.service epmd.socket"
	[billing]=""
)
STOCK=${VM_STOCK:-0}
# The stock image has none of them: provisioning installs only what each VM needs.
((STOCK)) && VM_MASK=([gateway]="" [inventory]="" [billing]="")
# VM_ARCH=arm64 (scripts/vm-test.sh arm64): the arm64 image under qemu-system-aarch64,
# the "virt" board with the kernel booted directly (no firmware needed). cortex-a72
# rather than "max": TCG emulates max's pointer authentication slowly.
case ${VM_ARCH:-amd64} in
amd64)
	QEMU_SYSTEM=(qemu-system-x86_64 -accel tcg -machine pc)
	CONSOLE=ttyS0
	;;
arm64)
	QEMU_SYSTEM=(qemu-system-aarch64 -accel tcg -machine virt -cpu cortex-a72)
	CONSOLE=ttyAMA0
	;;
*) mp::die "VM_ARCH must be amd64 or arm64" ;;
esac
SSH_KEY=$RUN_DIR/id_ed25519
BRIDGE=br-mp
# The host side of the private network, like the host-only adapter Vagrant creates.
BRIDGE_IP=${VM_GATEWAY_IP%.*}.1

# shellcheck disable=SC2317 # run by the EXIT trap
stop_vms() {
	local vm pid
	for vm in "${!QEMU_PID[@]}"; do
		pid=${QEMU_PID[$vm]}
		kill -TERM "$pid" 2>/dev/null || continue
		timeout 20 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
		log "stopped $vm-vm (qemu pid $pid)"
	done
	QEMU_PID=()
}
# shellcheck disable=SC2317 # the EXIT trap
on_exit() {
	local rc=$? vm
	trap - EXIT INT TERM
	phase_end FAIL
	for vm in "${VMS[@]}"; do
		[[ -S $RUN_DIR/ssh-${SSH_PORT[$vm]}.sock ]] &&
			ssh -o "ControlPath=$RUN_DIR/ssh-${SSH_PORT[$vm]}.sock" -O exit x >/dev/null 2>&1
	done
	stop_vms
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- network -----------------------------------------------------------------------
make_bridge() {
	local i=0 vm
	ip link add "$BRIDGE" type bridge
	ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	for vm in "${VMS[@]}"; do
		ip tuntap add dev "tap-$vm" mode tap
		ip link set "tap-$vm" master "$BRIDGE" up
		i=$((i + 1))
	done
	log "bridge $BRIDGE ($BRIDGE_IP/24) with taps for ${VMS[*]}"
}

# --- disks -----------------------------------------------------------------------
# /vagrant: what the Vagrantfile would upload to this VM (scripts/vm/stage.rb: its
# files and binary, never .env), and beside it, in a 0700 folder, its settings
# file with only its own secrets.
make_project_disk() {
	local vm=$1 dir=$RUN_DIR/project-$1 size_mb
	ruby "$VM_LIB_DIR/stage.rb" "$vm-vm" "$dir" "$RUN_DIR/settings/$vm.env" "$RUN_DIR/dotenv" ||
		mp::die "staging $vm-vm's files failed"
	size_mb=$(($(du -sm "$dir" | cut -f1) * 2 + 64))
	truncate -s "${size_mb}M" "$RUN_DIR/project-$vm.img"
	mkfs.ext4 -q -L vagrant -d "$dir" "$RUN_DIR/project-$vm.img"
	log "$vm-vm's project disk: ${size_mb} MiB ($(du -sh "$dir" | cut -f1) of files)"
}

# The seed disk: an apply.sh the image's vm-seed.service runs at every boot.
make_seed_disk() {
	local vm=$1 dir=$RUN_DIR/seed-$1 host=$1-vm idx=$2
	mkdir -p "$dir"
	cat >"$dir/apply.sh" <<EOF
set -eu
echo $host >/etc/hostname
hostname $host
# As Vagrant writes it: RabbitMQ needs its host name to resolve locally.
cat >/etc/hosts <<'HOSTS'
127.0.0.1	localhost
127.0.1.1	$host $host
::1	localhost ip6-localhost ip6-loopback
HOSTS
$(if ((STOCK)); then
		# As Vagrant configures a Debian guest's private network: an ifupdown stanza.
		printf "mkdir -p /etc/network/interfaces.d\ncat >/etc/network/interfaces.d/vagrant-private <<'NET'\nauto eth1\niface eth1 inet static\n    address %s/24\nNET" "${VM_IP[$vm]}"
	else
		printf "mkdir -p /etc/systemd/network\ncat >/etc/systemd/network/10-private.network <<'NET'\n[Match]\nMACAddress=52:54:00:56:00:1%s\n\n[Network]\nAddress=%s/24\nNET" "$idx" "${VM_IP[$vm]}"
	fi)
cat >/home/vagrant/.ssh/authorized_keys <<'KEYS'
$(cat "$SSH_KEY.pub")
KEYS
chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
chmod 600 /home/vagrant/.ssh/authorized_keys
mkdir -p /vagrant
mountpoint -q /vagrant || mount /dev/vdb /vagrant
EOF
	truncate -s 8M "$RUN_DIR/seed-$vm.img"
	mkfs.ext4 -q -L vmseed -d "$dir" "$RUN_DIR/seed-$vm.img"
}

# --- VMs ---------------------------------------------------------------------------
start_vm() {
	local vm=$1 idx=$2 fwd masks="" unit
	qemu-img create -q -f qcow2 -F qcow2 -b "$IMAGE_DIR/base.qcow2" "$RUN_DIR/$vm.qcow2"
	make_project_disk "$vm"
	make_seed_disk "$vm" "$idx"
	fwd=hostfwd=tcp:127.0.0.1:${SSH_PORT[$vm]}-:22
	# Like the Vagrantfile's forwarded port: the gateway's port on the (namespace's) host.
	[[ $vm == gateway ]] && fwd+=,hostfwd=tcp:127.0.0.1:$HOST_GATEWAY_PORT-:$GATEWAY_PORT
	# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can
	# fail and panic ("IO-APIC + timer doesn't work!"), seen here at a load of 20.
	for unit in ${VM_MASK[$vm]}; do masks+=" systemd.mask=$unit"; done
	local nat="user,id=nat,restrict=on,$fwd"
	if ((STOCK)); then
		# eth0/eth1 as on the box (net.ifnames=0); a NAT with the outside world (the
		# namespace lets only DNS and HTTP(S) out, see vm-test.sh).
		masks+=" net.ifnames=0"
		nat="user,id=nat,$fwd"
	fi
	"${QEMU_SYSTEM[@]}" -name "$vm-vm" -nodefaults -display none \
		-smp "${VM_CPUS[$vm]}" -m "${VM_MEM[$vm]}" \
		-kernel "$IMAGE_DIR/vmlinuz" -initrd "$IMAGE_DIR/initrd.img" \
		-append "root=/dev/vda rw console=$CONSOLE no_timer_check systemd.hostname=$vm-vm vmseed$masks" \
		-drive "file=$RUN_DIR/$vm.qcow2,if=virtio,format=qcow2,cache=unsafe" \
		-drive "file=$RUN_DIR/project-$vm.img,if=virtio,format=raw,cache=unsafe" \
		-drive "file=$RUN_DIR/seed-$vm.img,if=virtio,format=raw,readonly=on" \
		-netdev "$nat" -device "virtio-net-pci,netdev=nat,mac=52:54:00:00:00:1$idx" \
		-netdev "tap,id=priv,ifname=tap-$vm,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=priv,mac=52:54:00:56:00:1$idx" \
		-device virtio-rng-pci -serial "file:$RUN_DIR/$vm.console.log" -monitor none \
		</dev/null >"$RUN_DIR/$vm.qemu.log" 2>&1 &
	QEMU_PID[$vm]=$!
	log "started $vm-vm (qemu pid ${QEMU_PID[$vm]}, ${VM_CPUS[$vm]} vCPU, ${VM_MEM[$vm]} MiB, ssh 127.0.0.1:${SSH_PORT[$vm]})"
}

SSH_OPTS=(-i "$SSH_KEY" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
	-o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=6
	# One ssh connection per VM, reused: a handshake costs seconds under TCG.
	-o ControlMaster=auto -o "ControlPath=$RUN_DIR/ssh-%p.sock" -o ControlPersist=900)

# vm NAME SCRIPT: runs SCRIPT with bash in the VM as the vagrant user (like `vagrant ssh -c`).
vm() {
	local name=$1
	shift
	timeout "${VM_CMD_TIMEOUT:-600}" ssh "${SSH_OPTS[@]}" -p "${SSH_PORT[$name]}" vagrant@127.0.0.1 "bash -c $(printf '%q' "$*")"
}

vm_alive() { [[ -n ${QEMU_PID[$1]:-} ]] && kill -0 "${QEMU_PID[$1]}" 2>/dev/null; }

# wait_ssh NAME SECONDS
wait_ssh() {
	local name=$1 secs=$2 deadline
	deadline=$(($(date +%s) + secs))
	until VM_CMD_TIMEOUT=30 vm "$name" true >/dev/null 2>&1; do
		vm_alive "$name" || {
			log "$name-vm: qemu exited (see $RUN_DIR/$name.qemu.log, $RUN_DIR/$name.console.log)"
			return 1
		}
		(($(date +%s) < deadline)) || {
			log "$name-vm: no ssh after ${secs}s (console: $RUN_DIR/$name.console.log)"
			tail -n 20 "$RUN_DIR/$name.console.log" >&2 || true
			return 1
		}
		sleep 3
	done
}

# How long one provisioning may take. A stock box's first one installs PostgreSQL,
# RabbitMQ and nftables under emulation: 24 min for billing-vm at load ~11, more than
# 30 min with nine emulated VMs on two cores; an arm64 VM emulates another CPU.
PROVISION_TIMEOUT=1800
[[ ${VM_STOCK:-0} == 1 || ${VM_ARCH:-amd64} == arm64 ]] && PROVISION_TIMEOUT=3600
PROVISION_TIMEOUT=${VM_TEST_PROVISION_TIMEOUT:-$PROVISION_TIMEOUT}

# provision NAME LOGFILE: as the Vagrantfile does it: the VM's settings file into a
# folder only the ssh user can enter (on ssh's stdin, never in a command line), the
# setup script alone copied to /tmp/vagrant-shell and run as root with the paths in
# its environment; provisioning deletes the settings once read.
provision() {
	local name=$1 logfile=$2
	VM_CMD_TIMEOUT=$PROVISION_TIMEOUT vm "$name" "rm -rf /tmp/movie-platform-settings && mkdir -m 0700 /tmp/movie-platform-settings &&
		cat >/tmp/movie-platform-settings/settings.env && sudo install -m 0755 /vagrant/scripts/setup_$name.sh /tmp/vagrant-shell &&
		sudo -H env PROJECT_DIR=/vagrant DIST_DIR=/vagrant/dist ENV_FILE=/tmp/movie-platform-settings/settings.env MP_SETTINGS_ONCE=1 /tmp/vagrant-shell </dev/null" \
		<"$RUN_DIR/settings/$name.env" >"$logfile" 2>&1
}

# provision_all TAG: all three in parallel, like `vagrant up` / `vagrant provision`.
provision_all() {
	local tag=$1 vm rc=0
	declare -A pids=()
	for vm in "${VMS[@]}"; do
		provision "$vm" "$RUN_DIR/$vm.provision-$tag.log" &
		pids[$vm]=$!
	done
	for vm in "${VMS[@]}"; do
		check_logged "provisioning ($tag) of $vm-vm exits 0" "$RUN_DIR/$vm.provision-$tag.log" \
			wait "${pids[$vm]}" || rc=1
	done
	return "$rc"
}

# reboot_vm NAME: reboots from inside; qemu restarts the guest with the same disks.
reboot_vm() {
	vm "$1" 'sudo systemctl reboot' >/dev/null 2>&1 || true
}

# -----------------------------------------------------------------------------------
phase "qemu: bridge, disks, boot 3 VMs"
make_bridge
ssh-keygen -q -t ed25519 -N '' -C "vm-test-$$" -f "$SSH_KEY"
idx=0
for vm in "${VMS[@]}"; do
	start_vm "$vm" "$idx"
	idx=$((idx + 1))
done

phase "qemu: wait for ssh"
for vm in "${VMS[@]}"; do
	if wait_ssh "$vm" "${VM_TEST_SSH_WAIT:-900}"; then
		mp::check::pass "$vm-vm boots and answers ssh"
	else
		mp::check::fail "$vm-vm boots and answers ssh"
		exit 1
	fi
done

phase "network across the bridge"
check_network
if [[ ${VM_ARCH:-amd64} == arm64 ]]; then
	for vm in "${VMS[@]}"; do
		# shellcheck disable=SC2016 # expanded in the VM
		mp::check "$vm-vm is an arm64 machine (uname -m aarch64, dpkg arm64)" \
			vm "$vm" '[[ $(uname -m) == aarch64 && $(dpkg --print-architecture) == arm64 ]]'
	done
fi

if [[ ${VM_TEST_ONLY_BOOT:-0} == 1 ]]; then
	phase_end
	checks_failed && exit 1
	exit 0
fi

# hold_dpkg_lock NAME SECONDS: what apt-daily does on a fresh box's first boot:
# dpkg's locks (fcntl, as apt and dpkg take them) held by another process.
# shellcheck disable=SC2317 # called through check
hold_dpkg_lock() {
	vm "$1" "sudo systemd-run --quiet --unit=mp-hold-dpkg-lock --collect perl -MFcntl -e '
		my @held;
		for my \$f (\"/var/lib/dpkg/lock-frontend\", \"/var/lib/dpkg/lock\") {
			open(my \$h, \">>\", \$f) or die \"\$f: \$!\";
			my \$s = pack(\"s s x4 q q i x4\", F_WRLCK, 0, 0, 0, 0);
			fcntl(\$h, F_SETLKW, \$s) or die \"\$f: \$!\";
			push @held, \$h;
		}
		sleep $2;' && sleep 2 && systemctl is-active --quiet mp-hold-dpkg-lock"
}

if ((STOCK)); then
	phase "stock box: as the real one, then a held dpkg lock"
	for vm in "${VMS[@]}"; do
		# shellcheck disable=SC2016 # expanded in the VM
		mp::check "$vm-vm: nothing of ours pre-installed (no postgresql, rabbitmq-server, nftables)" \
			vm "$vm" 'for p in postgresql rabbitmq-server nftables; do dpkg -s "$p" >/dev/null 2>&1 && exit 1; done; exit 0'
		mp::check "$vm-vm: ifupdown networking (networking.service active, systemd-networkd not)" \
			vm "$vm" 'systemctl is-active --quiet networking.service && ! systemctl is-active --quiet systemd-networkd.service'
		mp::check "$vm-vm: apt-daily timers enabled" \
			vm "$vm" 'systemctl is-enabled --quiet apt-daily.timer && systemctl is-enabled --quiet apt-daily-upgrade.timer'
		mp::check "$vm-vm: resolves deb.debian.org (DNS through the NAT)" vm "$vm" 'getent hosts deb.debian.org >/dev/null'
		mp::check "$vm-vm: dpkg lock held (120 s) when provisioning starts" hold_dpkg_lock "$vm" 120
	done
fi

phase "provisioning (setup_*.sh)"
provision_all first || exit 1
if ((STOCK)); then
	for vm in "${VMS[@]}"; do
		mp::check "$vm-vm: first provisioning waited for the held dpkg lock" \
			grep -qE 'Waiting for cache lock|held by process' "$RUN_DIR/$vm.provision-first.log"
		mp::check "$vm-vm: first provisioning installed from the mirror" \
			grep -qE '^(Get|Hit):[0-9]+ http' "$RUN_DIR/$vm.provision-first.log"
	done
fi

run_demo_checks all
phase_end
checks_failed && exit 1
exit 0
