# shellcheck shell=bash
# The one shell library of movie-platform, in the way of kubernetes' hack/lib:
# namespaced helpers (mp::log::*, mp::die, mp::env::load, mp::wait_until,
# mp::pid_alive, mp::stop_pid, mp::check, mp::pkg::installed, mp::pkg::install) that the other libraries
# build on: scripts/lib/common.sh (local run and tests), scripts/lib/docker.sh,
# scripts/provision/common.sh (inside the VMs) and scripts/vm/lib.sh.
# Sourced, never executed. It runs inside the VMs too (the Vagrantfile and
# scripts/vm/qemu.sh upload scripts/lib/ whole), so it needs nothing but bash
# (5 or newer: Debian 12 has 5.2) and coreutils.

# Sourced once: provision/common.sh and lib/common.sh may both pull it in.
[[ -n ${MP_LIB_DIR:-} ]] && return 0
MP_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=scripts/lib/dotenv.sh
source "$MP_LIB_DIR/dotenv.sh"

# --- log ---------------------------------------------------------------------
# Settings (set them before the first message):
#   MP_LOG_TAG      when set, every line is "[TAG HH:MM:SS +   Ns] message",
#                   N counted from MP_LOG_T0 (epoch seconds), as the VM tests
#                   print; otherwise "==> message", "WARNING: ...", "ERROR: ..."
#                   (the form provisioning, xtask and build.sh have always used).
#   MP_LOG_INFO_FD  where info and detail lines go (default 2, stderr, so a
#                   script's stdout stays its result; provisioning uses 1, since
#                   Vagrant paints all stderr red).
# Warnings and errors always go to stderr.
MP_LOG_T0=${MP_LOG_T0:-$(date +%s)}

# mp::log::_line FD PREFIX MESSAGE...
mp::log::_line() {
	local fd=$1 prefix=$2
	shift 2
	if [[ -n ${MP_LOG_TAG:-} ]]; then
		printf '[%s %s +%4ss] %s%s\n' "$MP_LOG_TAG" "$(date +%H:%M:%S)" "$(($(date +%s) - MP_LOG_T0))" "$prefix" "$*" >&"$fd"
	else
		printf '%s%s\n' "$prefix" "$*" >&"$fd"
	fi
}

# mp::log::info MESSAGE...: a step ("==> MESSAGE").
mp::log::info() {
	if [[ -n ${MP_LOG_TAG:-} ]]; then
		mp::log::_line "${MP_LOG_INFO_FD:-2}" '' "$@"
	else
		mp::log::_line "${MP_LOG_INFO_FD:-2}" '==> ' "$@"
	fi
}
# mp::log::detail MESSAGE...: a detail of the step before ("    MESSAGE").
mp::log::detail() { mp::log::_line "${MP_LOG_INFO_FD:-2}" '    ' "$@"; }
mp::log::warn() { mp::log::_line 2 'WARNING: ' "$@"; }
mp::log::error() { mp::log::_line 2 'ERROR: ' "$@"; }

# mp::die MESSAGE...: logs the error and exits 1. When MP_DIE_HOOK names a
# command, it runs first with the message (the VM tests record a FAIL line).
mp::die() {
	mp::log::error "$@"
	[[ -z ${MP_DIE_HOOK:-} ]] || "$MP_DIE_HOOK" "$*" || true
	exit 1
}

# --- .env ----------------------------------------------------------------------
# mp::env::load FILE: sets and exports every key of FILE by the one .env format
# (scripts/lib/dotenv.sh); DOTENV_KEYS holds its keys in file order. Values
# already in the environment win: `GATEWAY_PORT=9000 scripts/local.sh up`, and
# Vagrant hands the provisioners their resolved values that way. Dies, naming
# the file and line, on a line that is not of the format.
mp::env::load() {
	dotenv_load "$1" || mp::die "cannot load $1 (see the line above)"
}

# --- waiting -------------------------------------------------------------------
# mp::now_us: microseconds since the epoch (bash 5's EPOCHREALTIME, whose
# decimal point follows the locale).
mp::now_us() { printf '%s\n' "${EPOCHREALTIME//[!0-9]/}"; }

# mp::wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND (output discarded:
# it is a predicate) every MP_WAIT_INTERVAL seconds (default 0.2) until it
# succeeds. After SECONDS (whole seconds, measured to the microsecond: bash's
# SECONDS would cut a wait short by up to one), warns "timed out after ...s
# waiting for DESCRIPTION" and returns 1.
mp::wait_until() {
	local seconds=$1 what=$2 deadline
	shift 2
	deadline=$(($(mp::now_us) + seconds * 1000000))
	until "$@" >/dev/null 2>&1; do
		if (($(mp::now_us) >= deadline)); then
			mp::log::warn "timed out after ${seconds}s waiting for $what"
			return 1
		fi
		sleep "${MP_WAIT_INTERVAL:-0.2}"
	done
}

# --- processes -----------------------------------------------------------------
# mp::pid_alive PID: PID is a live process (a zombie, which kill -0 still
# reaches, is not).
mp::pid_alive() {
	[[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}
mp::pid_gone() { ! mp::pid_alive "$1"; }

# mp::stop_pid PID [NAME [SECONDS]]: sends TERM to PID, waits up to SECONDS
# (default 15) for it to exit, then sends KILL and waits for it to be gone.
# Only ever the one PID given.
mp::stop_pid() {
	local pid=$1 name=${2:-pid $1} seconds=${3:-15}
	mp::pid_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	MP_WAIT_INTERVAL=0.2 mp::wait_until "$seconds" "$name to exit" mp::pid_gone "$pid" && return 0
	mp::log::warn "$name (pid $pid) did not stop in ${seconds}s, killing it"
	kill -KILL "$pid" 2>/dev/null || return 0
	MP_WAIT_INTERVAL=0.2 mp::wait_until 10 "$name to die of SIGKILL" mp::pid_gone "$pid" || true
}

# --- checks --------------------------------------------------------------------
# The one check harness of the test scripts (three-host, containers, swarm, HA,
# the VM tests, the .env readers, this library's test): every check is counted
# and printed alike, "ok     DESCRIPTION" or "FAILED DESCRIPTION", on stdout,
# or through mp::log::info when MP_LOG_TAG is set (the VM tests' timestamps).
#   mp::check DESCRIPTION COMMAND...  the verdict is COMMAND's exit status;
#                                     always returns 0 (a failed check is counted,
#                                     not fatal)
#   mp::check::pass DESCRIPTION, mp::check::fail DESCRIPTION
#                                     a verdict reached otherwise
#   MP_CHECKS_PASSED, MP_CHECKS_FAILED  the counts in this shell
# Settings:
#   MP_CHECK_TAIL=N     keep COMMAND's output (stdout and stderr) and show its last
#                       N lines, indented, when the check fails (unset: the output
#                       flows as it comes); MP_CHECK_TAIL_OK=N the same on success
#   MP_CHECK_FILE       also append "PASS<TAB>DESCRIPTION" or "FAIL<TAB>..." there:
#                       the record across processes (the VM tests run phases in
#                       several)
#   MP_CHECK_FAIL_HOOK  a command run with the description after each failure
MP_CHECKS_PASSED=0
MP_CHECKS_FAILED=0

mp::check::_verdict() {
	local verdict=$1 what=$2 line
	if [[ $verdict == PASS ]]; then
		MP_CHECKS_PASSED=$((MP_CHECKS_PASSED + 1))
		line="ok     $what"
	else
		MP_CHECKS_FAILED=$((MP_CHECKS_FAILED + 1))
		line="FAILED $what"
	fi
	[[ -z ${MP_CHECK_FILE:-} ]] || printf '%s\t%s\n' "$verdict" "$what" >>"$MP_CHECK_FILE"
	if [[ -n ${MP_LOG_TAG:-} ]]; then
		mp::log::info "  $line"
	else
		printf '%s\n' "$line"
	fi
}
mp::check::pass() { mp::check::_verdict PASS "$*"; }
mp::check::fail() {
	mp::check::_verdict FAIL "$*"
	[[ -z ${MP_CHECK_FAIL_HOOK:-} ]] || "$MP_CHECK_FAIL_HOOK" "$*" || true
}
mp::check() {
	local what=$1 out="" rc=0 show
	shift
	if [[ -n ${MP_CHECK_TAIL:-} ]]; then
		out=$(mktemp)
		"$@" >"$out" 2>&1 || rc=$?
	else
		"$@" || rc=$?
	fi
	if ((rc == 0)); then
		mp::check::pass "$what"
		show=${MP_CHECK_TAIL_OK:-0}
	else
		mp::check::fail "$what"
		show=${MP_CHECK_TAIL:-0}
	fi
	if [[ -n $out ]]; then
		((show == 0)) || tail -n "$show" "$out" | sed 's/^/       | /'
		rm -f "$out"
	fi
	return 0
}

# --- packages ------------------------------------------------------------------
# mp::pkg::installed PACKAGE: dpkg has PACKAGE installed.
mp::pkg::installed() {
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

# mp::pkg::install PACKAGE...: installs the Debian packages of the list that are
# missing, non-interactively, keeping the configuration files there are; does
# nothing (and needs no network) when all are there, so a pre-built VM image or
# a prepared host installs nothing. It tries the current package lists first
# (cached .debs install offline) and runs apt-get update once, only if that
# fails. apt-get's own output goes where the info lines go (MP_LOG_INFO_FD):
# a caller's stdout stays its result. MP_APT_INSTALL_OPTS: more words for
# `apt-get install` (e.g. --allow-downgrades); MP_APT_TIMEOUT bounds each apt-get.
mp::pkg::install() {
	local missing=() p
	for p in "$@"; do
		mp::pkg::installed "$p" || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		mp::log::detail "already installed: $*"
		return 0
	fi
	mp::log::info "installing packages: ${missing[*]}"
	local extra
	read -r -a extra <<<"${MP_APT_INSTALL_OPTS:-}"
	local install=(install -y --no-install-recommends "${extra[@]}"
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}")
	if ! mp::pkg::apt_get "${install[@]}" >&"${MP_LOG_INFO_FD:-2}"; then
		mp::log::detail "refreshing package lists (apt-get update)"
		mp::pkg::apt_get update -q >&"${MP_LOG_INFO_FD:-2}"
		mp::pkg::apt_get "${install[@]}" >&"${MP_LOG_INFO_FD:-2}"
	fi
}

# mp::pkg::apt_get ARGS...: apt-get as root (through sudo otherwise) that waits up to
# APT_LOCK_TIMEOUT seconds (10 min) for the dpkg lock another apt holds (apt-daily or
# unattended-upgrades on a fresh host or VM, a second script of ours) instead of
# failing on it at once. MP_APT_TIMEOUT=SECONDS bounds the whole command (timeout(1)).
mp::pkg::apt_get() {
	local apt_cmd=(${MP_APT_TIMEOUT:+timeout "$MP_APT_TIMEOUT"} env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="${APT_LOCK_TIMEOUT:-600}" "$@")
	if [[ $(id -u) -eq 0 ]]; then "${apt_cmd[@]}"; else sudo "${apt_cmd[@]}"; fi
}
