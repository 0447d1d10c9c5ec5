# shellcheck shell=bash
# Shared by the local-run and test scripts: paths and privilege helpers, on
# top of the one library scripts/lib/mp.sh (logging, mp::die, mp::env::load,
# mp::wait_until, mp::stop_pid, mp::pkg::install). Sourced, never executed.

MP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export MP_ROOT

# shellcheck source=scripts/lib/mp.sh
source "$MP_ROOT/scripts/lib/mp.sh"

# This machine's architecture as Debian names it, which is the folder of dist/
# holding its binaries (cargo xtask dist writes dist/amd64/, dist/arm64/).
host_deb_arch() {
	if command -v dpkg >/dev/null 2>&1; then
		dpkg --print-architecture
	else
		case $(uname -m) in
		x86_64) echo amd64 ;;
		aarch64 | arm64) echo arm64 ;;
		*) uname -m ;;
		esac
	fi
}

# dist_dir: the folder of this machine's binaries.
dist_dir() { printf '%s/dist/%s' "$MP_ROOT" "$(host_deb_arch)"; }

is_root() { [[ $(id -u) -eq 0 ]]; }

# Runs a command as root (directly, or through sudo).
as_root() {
	if is_root; then
		"$@"
	else
		sudo "$@"
	fi
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
