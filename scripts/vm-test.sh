#!/usr/bin/env bash
# Proves the deployment in real VMs: three Debian 12 VMs (gateway-vm, inventory-vm,
# billing-vm) on an isolated bridge inside a network namespace of their own, the real
# scripts/setup_*.sh and systemd units, then the user's demo as checks that can fail.
#
#   scripts/vm-test.sh qemu      VMs under qemu TCG, provisioned over ssh as Vagrant would
#   scripts/vm-test.sh vagrant   the real Vagrantfile: vagrant-libvirt, libvirtd in the namespace
#   scripts/vm-test.sh vagrant-up  the same `vagrant up`, then only the audit walk through the
#                                forwarded port and `vagrant destroy` (scripts/test.sh vagrant)
#   scripts/vm-test.sh stock     qemu mode on an image made like debian/bookworm64 (nothing of
#                                ours installed, ifupdown, apt timers on), first provisioning
#                                from the Debian mirror through the VMs' NAT, a held dpkg lock
#   scripts/vm-test.sh arm64     qemu mode with three Debian 12 arm64 VMs under qemu-system-aarch64
#                                TCG and the aarch64 binaries (dist/arm64/): slow, on demand
#   scripts/vm-test.sh ha        the high-availability topology (ha1-vm..ha3-vm, MP_TOPOLOGY=ha),
#                                qemu TCG, the walk through the shared address, then one VM
#                                powered off at a time under orders: verdict of issue 24's promise
#   MP_TOPOLOGY=ha scripts/vm-test.sh vagrant-up
#                                the real Vagrantfile's HA topology: `vagrant up` of the three,
#                                the cluster formed by itself, the walk through the shared address
#   scripts/vm-test.sh image     only build (or find in the cache) the VM image
#   scripts/vm-test.sh clean     remove the image cache (.cache/vm)
#
# Needs root, and the network only for Debian packages (host tools, the image build).
# The image is cached in .cache/vm/image-HASH, rebuilt when its inputs change.
# Environment: VM_TEST_KEEP=1 keeps the run directory (disks, logs) afterwards;
# VM_TEST_SKIP_BUILD=1 uses dist/ as it is instead of running scripts/build.sh;
# VM_ARCH=arm64 with `image` builds the arm64 image;
# VM_TEST_BILLING_CPUS (default 2, as in the Vagrantfile) vCPUs for billing-vm (qemu mode).
# See docs/vm-test.md.
set -euo pipefail

# shellcheck source=scripts/vm/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/vm/lib.sh"

usage() {
	sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

MODE=${1:-}
case $MODE in
qemu | vagrant | vagrant-up | stock | arm64 | ha | image | clean) ;;
*) usage ;;
esac
[[ $(id -u) -eq 0 ]] || mp::die "run as root (network namespaces, qemu, libvirtd)"

if [[ $MODE == clean ]]; then
	rm -rf "$VM_CACHE"
	log "removed $VM_CACHE"
	exit 0
fi

export VM_T0
RUN_DIR=$VM_CACHE/runs/$MODE-$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$RUN_DIR"
export RUN_DIR PHASE_FILE=$RUN_DIR/phases.tsv CHECK_FILE=$RUN_DIR/checks.tsv
NETNS=mpvm-$$
NETNS_CREATED=0
INNER_PID=""
SLIRP_PID=""
if [[ $MODE == stock ]]; then
	export VM_IMAGE_FLAVOR=stock VM_STOCK=1
fi
[[ $MODE == arm64 ]] && export VM_ARCH=arm64
# The HA image: the test image plus pg_auto_failover and keepalived (ha mode,
# and the Vagrantfile's HA topology).
if [[ $MODE == ha || ($MODE == vagrant* && ${MP_TOPOLOGY:-default} == ha) ]]; then
	export VM_IMAGE_FLAVOR=ha
fi
ARCH=${VM_ARCH:-amd64}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$? pids pid
	trap - EXIT INT TERM
	phase_end FAIL
	PHASE_CURRENT=cleanup
	PHASE_START=$(date +%s)
	log "=== phase: cleanup"
	if [[ -n $INNER_PID ]] && kill -0 "$INNER_PID" 2>/dev/null; then
		kill -TERM "$INNER_PID" 2>/dev/null || true
		timeout 120 tail --pid="$INNER_PID" -f /dev/null || true
	fi
	if [[ -n $SLIRP_PID ]]; then
		kill -TERM "$SLIRP_PID" 2>/dev/null || true
		log "stopped slirp4netns (pid $SLIRP_PID)"
	fi
	rm -rf "/etc/netns/$NETNS"
	if ((NETNS_CREATED)); then
		# Whatever still runs in our namespace was started by this run (qemu, libvirtd,
		# vagrant's ssh port forwards...): stop it by pid before removing the namespace.
		pids=$(ip netns pids "$NETNS" 2>/dev/null || true)
		if [[ -n $pids ]]; then
			log "stopping leftover processes in $NETNS: $(echo "$pids" | tr '\n' ' ')"
			for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
			sleep 3
			for pid in $(ip netns pids "$NETNS" 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
		fi
		ip netns delete "$NETNS" 2>/dev/null || true
		log "removed network namespace $NETNS"
	fi
	if [[ ${VM_TEST_KEEP:-0} == 1 ]]; then
		log "kept $RUN_DIR"
	else
		find "$RUN_DIR" -maxdepth 2 \( -name '*.qcow2' -o -name '*.img' -o -name '*.box' -o -name project -o -name box \) -exec rm -rf {} + 2>/dev/null || true
		log "logs kept in $RUN_DIR (disks removed)"
	fi
	phase_end ok
	print_summary
	if ((rc == 0)) && checks_failed; then rc=1; fi
	if ((rc == 0)); then log "RESULT: PASS ($MODE)"; else log "RESULT: FAIL ($MODE, exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

phase "host tools"
ensure_host_tools "${MODE%-up}"

phase "image (build or cache)"
IMAGE_DIR=$("$VM_LIB_DIR/build-image.sh" | tail -n 1)
[[ -f $IMAGE_DIR/done ]] || mp::die "image build failed"
export IMAGE_DIR
if [[ $MODE == image ]]; then
	phase_end
	exit 0
fi

phase "binaries (scripts/build.sh --arch $ARCH)"
if [[ ${VM_TEST_SKIP_BUILD:-0} == 1 ]]; then
	log "VM_TEST_SKIP_BUILD=1: using dist/ as it is"
else
	[[ -x $PROJECT_ROOT/scripts/build.sh ]] || mp::die "scripts/build.sh not found"
	"$PROJECT_ROOT/scripts/build.sh" --arch "$ARCH" >"$RUN_DIR/build.log" 2>&1 || {
		tail -n 30 "$RUN_DIR/build.log" >&2
		mp::die "scripts/build.sh failed (log: $RUN_DIR/build.log)"
	}
fi
for bin in api-gateway inventory-app billing-worker; do
	[[ -x $PROJECT_ROOT/dist/$ARCH/$bin ]] || mp::die "dist/$ARCH/$bin missing: run scripts/build.sh --arch $ARCH"
done

phase "network namespace"
ip netns add "$NETNS"
NETNS_CREATED=1
export NETNS
ip -n "$NETNS" link set lo up
log "created network namespace $NETNS"
if [[ $MODE == stock ]]; then
	# The VMs' NAT must reach the Debian mirror, as a user's VMs do. slirp4netns
	# gives the namespace a user-mode NAT of its own (tap0, 10.0.2.100; DNS at
	# 10.0.2.3), without touching this machine's routes or firewall; and the
	# namespace lets only DNS and HTTP(S) out of it.
	slirp4netns --configure --mtu=65520 --disable-host-loopback --netns-type=path \
		"/run/netns/$NETNS" tap0 >"$RUN_DIR/slirp4netns.log" 2>&1 &
	SLIRP_PID=$!
	mp::wait_until 30 "slirp4netns's tap0 in $NETNS" ip -n "$NETNS" addr show tap0 || mp::die "slirp4netns failed (log: $RUN_DIR/slirp4netns.log)"
	ip netns exec "$NETNS" nft -f - <<'NFT' || mp::die "cannot install the namespace's egress filter"
table inet mpvm_egress {
	chain out {
		type filter hook output priority filter; policy accept;
		oifname "tap0" ip daddr 10.0.2.3 meta l4proto { tcp, udp } th dport 53 accept
		oifname "tap0" tcp dport { 80, 443 } accept
		oifname "tap0" drop
	}
}
NFT
	# qemu's own NAT (inside the namespace) forwards the guests' DNS to this.
	mkdir -p "/etc/netns/$NETNS"
	printf 'nameserver 10.0.2.3\n' >"/etc/netns/$NETNS/resolv.conf"
	log "namespace NAT: slirp4netns pid $SLIRP_PID, out: DNS and tcp 80/443 only"
fi
phase_end

# Everything that talks to the VMs runs inside the namespace: qemu (or libvirtd and
# vagrant), ssh, curl. `ip netns exec` also gives it a mount namespace of its own.
INNER=qemu
[[ $MODE == vagrant* ]] && INNER=vagrant
[[ $MODE == ha ]] && INNER=ha
[[ $MODE == vagrant-up ]] && export VM_TEST_SCOPE=walk
ip netns exec "$NETNS" "$VM_LIB_DIR/$INNER.sh" &
INNER_PID=$!
rc=0
wait "$INNER_PID" || rc=$?
INNER_PID=""
exit "$rc"
