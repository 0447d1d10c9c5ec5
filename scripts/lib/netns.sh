# shellcheck shell=bash
# Hosts in network namespaces joined by bridges: the machines of the
# three-host test and of the HA test, on one host. The caller declares the
# associative array NS (host -> namespace name) and NS_BRIDGE (the namespace
# that holds the bridges). Their traffic never leaves these namespaces.
# Builds on scripts/provision/common.sh (the VMs' own provisioning code, and
# through it scripts/lib/mp.sh), which it sources.

# The scripts that source it run from the repository's root, ROOT.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
# shellcheck source=scripts/provision/common.sh
. "$ROOT/scripts/provision/common.sh"

# What the hosts run: the host build's binaries of this machine's
# architecture (as provisioning picks them), Debian's PostgreSQL 15.
DIST_DIR="${DIST_DIR:-$ROOT/dist}"
# shellcheck disable=SC2034 # BIN_DIR and PG_BIN: read by the scripts that source this file
BIN_DIR="$DIST_DIR/$(dpkg --print-architecture)"
# shellcheck disable=SC2034
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck disable=SC2034
PY=/usr/bin/python3

# mp::netns::preflight TEST PACKAGE...: root (namespaces, runuser), the
# Debian packages installed, the host build's binaries there.
mp::netns::preflight() {
	local name=$1 b
	shift
	[[ $(id -u) -eq 0 ]] || mp::die "$name needs root (network namespaces, runuser)"
	mp::pkg::install "$@"
	for b in api-gateway inventory-app billing-worker; do
		[[ -x $BIN_DIR/$b ]] || mp::die "$BIN_DIR/$b missing: run scripts/build.sh (cargo xtask dist) first"
	done
}

# abort DESCRIPTION: a set-up step failed (a failed check: mp::check), nothing
# after it can be meaningful.
abort() {
	mp::check::fail "$*"
	exit 1
}

# mp::netns::bridge NAME: a bridge NAME in NS_BRIDGE (made, with lo up, on
# first use).
mp::netns::bridge() {
	[[ -e /run/netns/$NS_BRIDGE ]] || {
		ip netns add "$NS_BRIDGE"
		ip -n "$NS_BRIDGE" link set lo up
	}
	ip -n "$NS_BRIDGE" link add "$1" type bridge
	ip -n "$NS_BRIDGE" link set "$1" up
}

# mp::netns::attach BRIDGE PORT IFACE HOST ADDRESS: HOST's namespace (made,
# with lo up, on first use) gets the interface IFACE with ADDRESS/24, a veth
# whose other end, PORT, is on BRIDGE.
mp::netns::attach() {
	local bridge=$1 port=$2 iface=$3 ns=${NS[$4]} address=$5
	[[ -e /run/netns/$ns ]] || {
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	}
	ip -n "$NS_BRIDGE" link add "$port" type veth peer name "$iface" netns "$ns"
	ip -n "$NS_BRIDGE" link set "$port" master "$bridge" up
	ip -n "$ns" addr add "$address/24" dev "$iface"
	ip -n "$ns" link set "$iface" up
}

# mp::netns::teardown term|kill KEEP NAME: stops every process still in the
# namespaces (all started by the test: the namespaces exist only for it),
# with TERM first (mp::stop_pid, 30 s) or SIGKILL at once; deletes them; then
# removes the test's WORK folder, unless KEEP is 1 (its logs stay).
mp::netns::teardown() {
	local ns pid
	for ns in "${NS[@]}" "$NS_BRIDGE"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			if [[ $1 == kill ]]; then
				kill -9 "$pid" 2>/dev/null
			else
				mp::stop_pid "$pid" "$ns process" 30
			fi
		done
		ip netns delete "$ns" 2>/dev/null
	done
	if [[ $2 == 1 ]]; then
		echo "$3: kept $WORK"
	else
		rm -rf "$WORK"
	fi
	return 0
}

# in_ns HOST COMMAND...: COMMAND in HOST's namespace.
in_ns() {
	local host=$1
	shift
	ip netns exec "${NS[$host]}" "$@"
}
