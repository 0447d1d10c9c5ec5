#!/usr/bin/env bash
# vm-test, vagrant mode. Runs INSIDE the network namespace that scripts/vm-test.sh
# created (never call it directly). `ip netns exec` gave it a mount namespace of its
# own too, so the libvirt state bind-mounted here (/etc/libvirt, /run/libvirt,
# /var/lib/libvirt, /var/log/libvirt) belongs to this run and vanishes with it.
# Starts virtlogd and libvirtd by hand, adds a local box made from the vm-test image,
# runs `vagrant up --provider=libvirt` with the project's real Vagrantfile, then the
# demo checks (scripts/vm/checks.sh) through `vagrant ssh`.
set -euo pipefail
# shellcheck source=scripts/vm/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
mp::env::load "$PROJECT_ROOT/.env"

VMS=(gateway inventory billing)
# MP_TOPOLOGY=ha (`MP_TOPOLOGY=ha scripts/vm-test.sh vagrant-up`): the
# Vagrantfile's high-availability topology instead, checked as
# scripts/vm/ha.sh checks its own VMs (scripts/vm/ha-cluster.sh).
TOPOLOGY=${MP_TOPOLOGY:-default}
declare -A NAME=() VM_IP=()
if [[ $TOPOLOGY == ha ]]; then
	VMS=(ha1 ha2 ha3)
	NAME=([ha1]=$HA_VM1_NAME [ha2]=$HA_VM2_NAME [ha3]=$HA_VM3_NAME)
	VM_IP=([ha1]=$HA_VM1_IP [ha2]=$HA_VM2_IP [ha3]=$HA_VM3_IP)
	MONITOR_VM=ha3 PY=python3 VIP_URL=http://$HA_VIP:$GATEWAY_PORT
fi
# (image-HASH, or ha-image-HASH for MP_TOPOLOGY=ha)
IMAGE_HASH=${IMAGE_DIR##*image-}
LV=$RUN_DIR/libvirt
# Kept across runs: Vagrant's boxes, and libvirt's copy of the box in its pool.
export VAGRANT_HOME=$VM_CACHE/vagrant.d
POOL_DIR=$VM_CACHE/libvirt-images
export VAGRANT_DOTFILE_PATH=$RUN_DIR/dot-vagrant
export VAGRANT_DEFAULT_PROVIDER=libvirt VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1
[[ ${VM_TEST_SKIP_BUILD:-0} == 1 ]] && export MP_SKIP_BUILD=1
# Three emulated (TCG) VMs booting at once on a busy host can take longer than
# Vagrant's 300 s: a first run here timed out at boot with a load average of 20.
export MP_VAGRANT_BOOT_TIMEOUT=${MP_VAGRANT_BOOT_TIMEOUT:-1200}
LIBVIRTD_PID="" VIRTLOGD_PID="" VAGRANT_UP_DONE=0

# shellcheck disable=SC2317 # run by the EXIT trap
daemon_stop() { # PIDFILE
	local pid
	[[ -f $1 ]] || return 0
	pid=$(cat "$1")
	kill -TERM "$pid" 2>/dev/null || return 0
	timeout 20 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317 # the EXIT trap
on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	phase_end FAIL
	if ((VAGRANT_UP_DONE)) || [[ -d $VAGRANT_DOTFILE_PATH/machines ]]; then
		log "vagrant destroy -f"
		(cd "$PROJECT_ROOT" && timeout 600 vagrant destroy -f) >"$RUN_DIR/vagrant-destroy.log" 2>&1 ||
			log "vagrant destroy failed (log: $RUN_DIR/vagrant-destroy.log); the namespace sweep stops qemu"
	fi
	[[ -n $LIBVIRTD_PID ]] && daemon_stop "$LV/libvirtd.pid"
	[[ -n $VIRTLOGD_PID ]] && daemon_stop "$LV/virtlogd.pid"
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- libvirt, private to this run ---------------------------------------------------
start_libvirt() {
	local d
	mkdir -p "$LV/etc" "$LV/run" "$LV/lib" "$LV/log" "$POOL_DIR"
	[[ -d /etc/libvirt ]] && cp -a /etc/libvirt/. "$LV/etc/"
	# qemu as root without a security driver: the namespace is the isolation here,
	# and the box's kernel/initrd stay readable where they are.
	cat >"$LV/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
EOF
	for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt; do mkdir -p "$d"; done
	mount --bind "$LV/etc" /etc/libvirt
	mount --bind "$LV/run" /run/libvirt
	mount --bind "$LV/lib" /var/lib/libvirt
	mount --bind "$LV/log" /var/log/libvirt
	mkdir -p /var/lib/libvirt/images
	mount --bind "$POOL_DIR" /var/lib/libvirt/images
	# Disks of machines from an earlier run that died before `vagrant destroy`.
	find "$POOL_DIR" -maxdepth 1 -type f ! -name "${BOX_NAME}_vagrant_box_image_*" -delete

	export LIBVIRT_LOG_OUTPUTS="3:file:$LV/libvirtd.log"
	virtlogd -d -p "$LV/virtlogd.pid"
	mp::wait_until 30 "virtlogd" test -s "$LV/virtlogd.pid"
	VIRTLOGD_PID=$(cat "$LV/virtlogd.pid")
	libvirtd -d -p "$LV/libvirtd.pid"
	# The first start probes qemu's capabilities: slow under load.
	mp::wait_until 300 "libvirtd" virsh -c qemu:///system version
	LIBVIRTD_PID=$(cat "$LV/libvirtd.pid")
	log "libvirtd pid $LIBVIRTD_PID, virtlogd pid $VIRTLOGD_PID (state under $LV)"
}

# --- the box ------------------------------------------------------------------------
# box.img (the image as qcow2) + metadata.json + a Vagrantfile that boots the image's
# own kernel and initrd directly (the image has no boot loader) under plain qemu.
box_vagrantfile() {
	cat <<EOF
# vm-test box: Debian 12 from Debian packages (scripts/vm/build-image.sh), TCG.
Vagrant.configure("2") do |config|
  # Three VMs under TCG on a shared 2-core host boot far slower than Vagrant's
  # default 300 s allows for.
  config.vm.boot_timeout = 1800
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
    lv.cpu_mode = "custom"
    lv.cpu_model = "qemu64"
    lv.kernel = "$IMAGE_DIR/vmlinuz"
    lv.initrd = "$IMAGE_DIR/initrd.img"
    lv.cmd_line = "root=/dev/vda rw console=ttyS0"
    lv.disk_bus = "virtio"
    lv.graphics_type = "none"
    lv.video_type = "none"
  end
end
EOF
}
# The box's name follows the image and its Vagrantfile: change either, get a new box.
BOX_NAME=movie-platform-vmtest-$IMAGE_HASH-$(box_vagrantfile | sha256sum | cut -c1-8)
# The project's Vagrantfile takes its box from here (default debian/bookworm64).
export MP_VAGRANT_BOX=$BOX_NAME

ensure_box() {
	local dir=$RUN_DIR/box size_gb
	if [[ $'\n'$(vagrant box list 2>/dev/null) == *$'\n'"$BOX_NAME "* ]]; then
		log "box $BOX_NAME already added ($VAGRANT_HOME)"
		return 0
	fi
	# Boxes of older images are useless now.
	vagrant box list 2>/dev/null | awk '$1 ~ /^movie-platform-vmtest-/ { print $1 }' | sort -u |
		while read -r old; do vagrant box remove --force --all "$old" >>"$RUN_DIR/vagrant-box-add.log" 2>&1 || true; done
	find "$POOL_DIR" -maxdepth 1 -type f -delete
	mkdir -p "$dir"
	size_gb=$(($(qemu-img info --output=json "$IMAGE_DIR/base.qcow2" | jq '."virtual-size"') / 1024 / 1024 / 1024))
	printf '{"provider":"libvirt","format":"qcow2","virtual_size":%s}\n' "$size_gb" >"$dir/metadata.json"
	box_vagrantfile >"$dir/Vagrantfile"
	ln -f "$IMAGE_DIR/base.qcow2" "$dir/box.img" 2>/dev/null || cp "$IMAGE_DIR/base.qcow2" "$dir/box.img"
	log "packing and adding box $BOX_NAME"
	tar -C "$dir" -cf "$RUN_DIR/vmtest.box" metadata.json Vagrantfile box.img
	timeout 1200 vagrant box add --force --name "$BOX_NAME" "$RUN_DIR/vmtest.box" >"$RUN_DIR/vagrant-box-add.log" 2>&1 ||
		mp::die "vagrant box add failed: see $RUN_DIR/vagrant-box-add.log"
	rm -rf "$RUN_DIR/vmtest.box" "$dir"
}

# --- what checks.sh needs -----------------------------------------------------------
vm() {
	local name=$1
	shift
	(cd "$PROJECT_ROOT" && timeout "${VM_CMD_TIMEOUT:-600}" vagrant ssh "${NAME[$name]:-$name-vm}" -c "bash -c $(printf '%q' "$*")" 2>>"$RUN_DIR/vagrant-ssh.log")
}

# vagrant_provision VM LOG: `vagrant provision` of VM-vm, its output in LOG.
# MP_SKIP_BUILD=1: the Vagrantfile's build trigger would rebuild dist/ if a source
# changed since `vagrant up` (other work on the tree); re-provisioning must see
# the same inputs to show that it changes nothing.
# shellcheck disable=SC2317 # invoked through check_logged
vagrant_provision() {
	(cd "$PROJECT_ROOT" && MP_SKIP_BUILD=1 timeout 1800 vagrant provision "$1-vm") >"$2" 2>&1
}
provision_all() {
	local tag=$1 vm rc=0
	for vm in "${VMS[@]}"; do
		check_logged "vagrant provision $vm-vm ($tag) exits 0" "$RUN_DIR/$vm.provision-$tag.log" \
			vagrant_provision "$vm" "$RUN_DIR/$vm.provision-$tag.log" || rc=1
	done
	return "$rc"
}

# vagrant-libvirt forwards the gateway's port with an ssh -L process, which dies with
# the guest's sshd on a reboot from inside (a `vagrant reload` would start it again):
# after the reboot the checks use the gateway's private address, from the namespace.
API_BASE_AFTER_REBOOT=http://$VM_GATEWAY_IP:$GATEWAY_PORT

reboot_vm() {
	vm "$1" 'sudo systemctl reboot' >/dev/null 2>&1 || true
}

# The passwords the Vagrantfile generated (every *-change-me of .env): none may be in
# `VAGRANT_LOG=info vagrant up`'s output (commands, environments), and each VM's
# settings file, which held its own, must be gone once provisioning read it.
check_vagrant_secrets() {
	local secrets=$VAGRANT_DOTFILE_PATH/movie-platform-secrets.env key value found=() vm out
	mp::check "the Vagrantfile generated the passwords ($secrets)" test -s "$secrets"
	while IFS='=' read -r key value; do
		[[ $key =~ ^[A-Z0-9_]+$ && -n $value ]] || continue
		grep -qF -- "$value" "$RUN_DIR/vagrant-up.log" && found+=("$key")
	done <"$secrets"
	mp::check "no generated password in VAGRANT_LOG=info vagrant up's output (found: ${found[*]:-none})" test "${#found[@]}" = 0
	mp::check "VAGRANT_LOG=info output has the provisioners' commands (the check above saw them)" \
		grep -q 'ENV_FILE=' "$RUN_DIR/vagrant-up.log"
	for vm in "${VMS[@]}"; do
		out=$(vm "$vm" 'test -e /tmp/movie-platform-settings && echo present || echo absent' 2>&1) || true
		mp::check "$vm-vm: its settings file is gone after provisioning" grep -qx absent <<<"$out"
	done
}

# The user's rolling upgrade, scripts/upgrade.sh, under a trickle of orders
# through the forwarded port (before the demo checks: their reboot of
# gateway-vm ends vagrant-libvirt's port forward). --restart: dist/ is the
# build `vagrant up` installed, so every service is restarted as a new
# binary would restart it. The verdict counts what was lost, duplicated,
# refused and how long the upgrade took.
upgrade_orders() { # OUT STOPFILE: one order per 0.1 s, "user status" per line
	local n=0 code
	while [[ ! -e $2 ]]; do
		n=$((n + 1))
		code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -H 'Content-Type: application/json' \
			-H "Idempotency-Key: $UPGRADE_TAG-$n" \
			-d "{\"user_id\":\"$UPGRADE_TAG-$n\",\"number_of_items\":1,\"total_amount\":\"9.99\"}" \
			"$(gateway_base)/api/billing") || true
		printf '%s %s\n' "$UPGRADE_TAG-$n" "${code:-000}" >>"$1"
		sleep 0.1
	done
}
upgrade_stored() { # the test's orders, "user count" per line
	vm::sql billing "SELECT user_id, count(*) FROM orders WHERE user_id LIKE '$UPGRADE_TAG-%' GROUP BY user_id" | tr '|' ' '
}
# shellcheck disable=SC2317 # invoked through mp::wait_until
all_accepted_stored() { [[ $(awk '$2 == 200' "$RUN_DIR/upgrade-orders.txt" | wc -l) -le $(upgrade_stored | wc -l) ]]; }
check_upgrade() {
	local load_pid started seconds ok refused lost twice
	UPGRADE_TAG="upg$$"
	rm -f "$RUN_DIR/upgrade.stop" "$RUN_DIR/upgrade-orders.txt"
	upgrade_orders "$RUN_DIR/upgrade-orders.txt" "$RUN_DIR/upgrade.stop" &
	load_pid=$!
	sleep 2
	started=$SECONDS
	check_logged "scripts/upgrade.sh --no-build --restart exits 0" "$RUN_DIR/upgrade.log" \
		bash -c "cd $(printf '%q' "$PROJECT_ROOT") && scripts/upgrade.sh --no-build --restart >$(printf '%q' "$RUN_DIR/upgrade.log") 2>&1" ||
		true
	seconds=$((SECONDS - started))
	sleep 2
	touch "$RUN_DIR/upgrade.stop"
	wait "$load_pid" || true
	MP_WAIT_INTERVAL=1 mp::wait_until 120 "the accepted orders stored" all_accepted_stored || true
	upgrade_stored >"$RUN_DIR/upgrade-stored.txt"
	ok=$(awk '$2 == 200' "$RUN_DIR/upgrade-orders.txt" | wc -l)
	refused=$(awk '$2 != 200' "$RUN_DIR/upgrade-orders.txt" | wc -l)
	lost=$(awk 'NR == FNR { s[$1] = $2; next } $2 == 200 && !($1 in s)' "$RUN_DIR/upgrade-stored.txt" "$RUN_DIR/upgrade-orders.txt" | wc -l)
	twice=$(awk '$2 > 1' "$RUN_DIR/upgrade-stored.txt" | wc -l)
	log "rolling upgrade: $seconds s; orders: $ok answered 200, $refused not (the gateway's restart), lost $lost, stored twice $twice"
	mp::check "rolling upgrade: orders answered 200 during it ($ok)" test "$ok" -gt 0
	mp::check "rolling upgrade: no order answered 200 lost ($lost), none stored twice ($twice)" test "$((lost + twice))" = 0
	for vm in billing inventory gateway; do
		mp::check "rolling upgrade: $vm-vm's service restarted and ready" grep -q "$vm-vm done in" "$RUN_DIR/upgrade.log"
	done
}

# -----------------------------------------------------------------------------------
phase "vagrant: libvirtd in the namespace"
start_libvirt

phase "vagrant: box from the image"
ensure_box

phase "vagrant up --provider=libvirt (boot + provisioning)"
VAGRANT_UP_DONE=1
up_rc=0
# At info level Vagrant logs every command it runs in a VM: the log must hold no secret.
(cd "$PROJECT_ROOT" && VAGRANT_LOG=info timeout 3600 vagrant up --provider=libvirt) >"$RUN_DIR/vagrant-up.log" 2>&1 || up_rc=$?
grep -E '^==> [a-z-]+: (Running provisioner|Machine booted|Setting hostname|Configuring and enabling network|Rsyncing folder)' \
	"$RUN_DIR/vagrant-up.log" >&2 || true
if ((up_rc == 0)); then
	mp::check::pass "vagrant up --provider=libvirt exits 0"
else
	mp::check::fail "vagrant up --provider=libvirt exits 0 (exit $up_rc, log: $RUN_DIR/vagrant-up.log)"
	tail -n 40 "$RUN_DIR/vagrant-up.log" >&2
	exit 1
fi
(cd "$PROJECT_ROOT" && vagrant status) >&2 || true

phase "secrets: none in Vagrant's log, each VM only its own"
check_vagrant_secrets

if [[ $TOPOLOGY == ha ]]; then
	# shellcheck source=scripts/vm/ha-cluster.sh
	source "$VM_LIB_DIR/ha-cluster.sh"
	# shellcheck disable=SC2317 # called by ha-cluster.sh's functions
	vm_up() { true; }
	# The passwords as the Vagrantfile made them (the admin's, for the
	# management API). dotenv_load keeps a value already set, and .env's
	# placeholders are: unset first (a run that skipped this got 401s).
	secrets=$VAGRANT_DOTFILE_PATH/movie-platform-secrets.env
	while IFS='=' read -r key _; do
		[[ $key =~ ^[A-Z0-9_]+$ ]] && unset "$key"
	done <"$secrets"
	mp::env::load "$secrets"
	phase "HA: the cluster formed by itself"
	# Every 5 s: each look is a `vagrant ssh`.
	MP_WAIT_INTERVAL=5 check_cluster_formed 300 120 120
	mp::check "the gateway answers on the forwarded port 127.0.0.1:$HOST_GATEWAY_PORT" \
		mp::wait_until 120 "the forwarded port" curl -fsS -m 10 "http://127.0.0.1:$HOST_GATEWAY_PORT/api/movies"
	phase "the audit walk through the shared address $HA_VIP"
	run=$(cat /proc/sys/kernel/random/uuid)
	mp::walk::run havm "vha-${run:0:8}"
	phase_end
	checks_failed && exit 1
	exit 0
fi

phase "network across the bridge"
check_network

phase "scripts/upgrade.sh under orders"
check_upgrade

run_demo_checks "${VM_TEST_SCOPE:-all}"
phase_end
checks_failed && exit 1
exit 0
