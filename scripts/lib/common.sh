# shellcheck shell=bash
# Shared by the local-run and test scripts: paths, .env loading, logging,
# privilege helpers. Sourced, never executed.

MP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export MP_ROOT

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# shellcheck source=scripts/lib/dotenv.sh
source "$MP_ROOT/scripts/lib/dotenv.sh"

# Loads .env into the environment (exported), by the one .env format
# (scripts/lib/dotenv.sh). Values already set in the environment win, so
# `GATEWAY_PORT=9000 scripts/local.sh up` works.
load_dotenv() {
	dotenv_load "${1:-$MP_ROOT/.env}" || die "cannot load ${1:-$MP_ROOT/.env} (see the line above)"
}

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

# Installs the Debian packages that are missing; does nothing (and needs no
# network) when all are there.
apt_install() {
	local missing=() pkg
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	say "installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		((SECONDS < deadline)) || {
			warn "timed out after waiting for $what"
			return 1
		}
		sleep 0.2
	done
}

# True when PID is a live process (not a zombie).
pid_alive() {
	[[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

pid_gone() { ! pid_alive "$1"; }

# Sends TERM to PID, waits up to SECONDS, then KILL.
stop_pid() {
	local pid=$1 seconds=${2:-15}
	pid_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	wait_until "$seconds" "pid $pid to exit" pid_gone "$pid" || {
		warn "pid $pid did not stop in ${seconds}s, killing it"
		kill -KILL "$pid" 2>/dev/null || true
	}
}
