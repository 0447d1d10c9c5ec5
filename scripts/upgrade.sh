#!/usr/bin/env bash
# Rolling upgrade of the three VMs: the services' new binaries (dist/, built
# first), one VM at a time, each service ready before the next VM begins.
#
#   scripts/upgrade.sh [--no-build] [--restart]
#     --no-build  use dist/ as it is (scripts/build.sh ran already)
#     --restart   restart each service even if its binary did not change (a
#                 rolling restart, e.g. after a change of .env)
#
# Each VM is re-provisioned (`vagrant provision`: the new binary installed,
# the service restarted if it changed, everything else left as it is), then
# its service must answer /ready. The default topology has one of each
# service, so a restart is a short outage that nothing can hide: what each
# step costs the clients is printed before it runs (docs/ha.md, "Rolling
# upgrade"). Order: billing-vm (invisible: orders wait in the queue),
# inventory-vm, gateway-vm.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/mp.sh
source "$ROOT/scripts/lib/mp.sh"
cd "$ROOT"
mkdir -p "$ROOT/.state"

BUILD=1 RESTART=0
for arg in "$@"; do
	case $arg in
	--no-build) BUILD=0 ;;
	--restart) RESTART=1 ;;
	-h | --help)
		sed -n '2,16p' "$0"
		exit 0
		;;
	*) mp::die "unknown option $arg (scripts/upgrade.sh [--no-build] [--restart])" ;;
	esac
done
mp::env::load "$ROOT/.env"
command -v vagrant >/dev/null || mp::die "vagrant not found: this command upgrades the VMs of \`vagrant up\` (docs/vagrant.md)"

VMS=(billing inventory gateway)
declare -A UNIT=([billing]=billing-worker [inventory]=inventory-app [gateway]=api-gateway)
declare -A COST=(
	[billing]="none visible: orders are accepted throughout and wait in billing_queue while billing-worker restarts"
	[inventory]="the catalogue answers 502/503 (JSON) for the second inventory-app takes to restart; orders are not affected"
	[gateway]="connections to port $HOST_GATEWAY_PORT are refused for the second api-gateway takes to restart; requests in flight finish first"
)

# ready VM: the VM's service answers /ready (the worker's health listener
# is on billing-vm's private address, which only gateway-vm may reach, for
# Prometheus: asked from there; inventory and the gateway through the
# gateway's /ready, which needs both, on the host's forwarded port).
ready() {
	case $1 in
	billing) vagrant ssh gateway-vm -c "curl -fsS -o /dev/null -m 3 http://$VM_BILLING_IP:$BILLING_HEALTH_PORT/ready" >/dev/null 2>&1 ;;
	*) curl -fsS -o /dev/null -m 3 "http://127.0.0.1:$HOST_GATEWAY_PORT/ready" ;;
	esac
}

status="$(vagrant status --machine-readable 2>/dev/null)" || mp::die "vagrant status failed: run it from the project folder, after vagrant up"
for vm in "${VMS[@]}"; do
	grep -q "^[0-9]*,$vm-vm,state,running$" <<<"$status" ||
		mp::die "$vm-vm is not running: start the VMs first (vagrant up)"
done
if ((BUILD)); then
	mp::log::info "building the new binaries (scripts/build.sh)"
	"$ROOT/scripts/build.sh"
fi

for vm in "${VMS[@]}"; do
	mp::log::info "$vm-vm: ${UNIT[$vm]}; expected cost: ${COST[$vm]}"
	started="$(mp::now_us)"
	# The build trigger already ran (or --no-build): provisioning installs dist/ as it is.
	MP_SKIP_BUILD=1 vagrant provision "$vm-vm" >"$ROOT/.state/upgrade-$vm.log" 2>&1 ||
		mp::die "vagrant provision $vm-vm failed (log: .state/upgrade-$vm.log)"
	if ((RESTART)); then
		vagrant ssh "$vm-vm" -c "sudo systemctl restart ${UNIT[$vm]}" >/dev/null 2>&1 ||
			mp::die "restarting ${UNIT[$vm]} on $vm-vm failed: vagrant ssh $vm-vm, then journalctl -u ${UNIT[$vm]}"
	fi
	MP_WAIT_INTERVAL=1 mp::wait_until 120 "${UNIT[$vm]} on $vm-vm ready" ready "$vm" ||
		mp::die "${UNIT[$vm]} on $vm-vm is not ready after its upgrade: vagrant ssh $vm-vm, then journalctl -u ${UNIT[$vm]}"
	grep -E 'restarting .*\.service|already running with current' "$ROOT/.state/upgrade-$vm.log" | sed 's/^[^:]*: *//' >&2 || true
	mp::log::info "$vm-vm done in $((($(mp::now_us) - started) / 1000000)) s"
done
mp::log::info "all three VMs upgraded, one at a time"
