# shellcheck shell=bash
# Hosts in network namespaces joined by bridges: the machines of the
# three-host test and of the HA test, on one host. The caller declares the
# associative array NS (host -> namespace name) and NS_BRIDGE (the namespace
# that holds the bridges). Their traffic never leaves these namespaces.
# Builds on scripts/lib/mp.sh (mp::stop_pid).

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

# mp::netns::teardown term|kill: stops every process still in the namespaces
# (all started by the test: the namespaces exist only for it), with TERM
# first (mp::stop_pid, 30 s) or SIGKILL at once; then deletes them.
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
	return 0
}

# in_ns HOST COMMAND...: COMMAND in HOST's namespace.
in_ns() {
	local host=$1
	shift
	ip netns exec "${NS[$host]}" "$@"
}
