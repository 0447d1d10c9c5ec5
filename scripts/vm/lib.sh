# shellcheck shell=bash
# Shared helpers for scripts/vm-test.sh and scripts/vm/*.sh (sourced, not run).

VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_ROOT=$(cd "$VM_LIB_DIR/../.." && pwd)
VM_CACHE=${VM_CACHE:-$PROJECT_ROOT/.cache/vm}

# --- output, phase timing and check results -----------------------------------------
# The outer script (vm-test.sh) and the inner one (run in the namespace) append to the
# same files in the run directory, so the summary covers both.
VM_T0=${VM_T0:-$(date +%s)}
PHASE_FILE=${PHASE_FILE:-/dev/null}
CHECK_FILE=${CHECK_FILE:-/dev/null}
PHASE_CURRENT=""
PHASE_START=0
PHASE_FAILED=0

# Messages, mp::die, mp::env::load, mp::wait_until: the one shell library, whose
# lines here carry the run's clock; a fatal error is a failed check too.
MP_LOG_TAG=vm-test MP_LOG_T0=$VM_T0 MP_DIE_HOOK=record_die
MP_CHECK_FILE=$CHECK_FILE MP_CHECK_FAIL_HOOK=phase_failed
# Polling a VM under TCG more often than every 2 s only loads it.
MP_WAIT_INTERVAL=${MP_WAIT_INTERVAL:-2}
# shellcheck source=scripts/lib/mp.sh
source "$PROJECT_ROOT/scripts/lib/mp.sh"
log() { mp::log::info "$@"; }
record_die() { printf 'FAIL\t%s\n' "$*" >>"$CHECK_FILE"; }

# phase NAME: closes the running phase and starts the next one.
phase() {
	phase_end ok
	PHASE_CURRENT=$1
	PHASE_START=$(date +%s)
	PHASE_FAILED=0
	log "=== phase: $1"
}

# phase_end [RESULT]: records the running phase (if any): ok, or FAIL when a check of
# it failed or RESULT says so.
phase_end() {
	local result=${1:-ok}
	[[ -n $PHASE_CURRENT ]] || return 0
	((PHASE_FAILED == 0)) || result=FAIL
	printf '%s\t%s\t%s\n' "$PHASE_CURRENT" "$(($(date +%s) - PHASE_START))" "$result" >>"$PHASE_FILE"
	PHASE_CURRENT=""
}

print_summary() {
	local name secs result passed=0 failed=0
	printf '\n%-56s %8s  %s\n' "phase" "seconds" "result" >&2
	printf '%-56s %8s  %s\n' "--------------------------------------------------------" "-------" "------" >&2
	if [[ -f $PHASE_FILE ]]; then
		while IFS=$'\t' read -r name secs result; do
			printf '%-56s %8s  %s\n' "$name" "$secs" "$result" >&2
		done <"$PHASE_FILE"
	fi
	printf '%-56s %8s\n' "total (wall clock)" "$(($(date +%s) - VM_T0))" >&2
	if [[ -f $CHECK_FILE ]]; then
		passed=$(grep -c '^PASS' "$CHECK_FILE" || true)
		failed=$(grep -c '^FAIL' "$CHECK_FILE" || true)
	fi
	printf '\nchecks: %s passed, %s failed\n' "$passed" "$failed" >&2
	if ((failed)); then
		sed -n 's/^FAIL\t/  failed: /p' "$CHECK_FILE" >&2
	fi
}

# Checks: the one harness (mp::check, mp::check::pass, mp::check::fail) records each
# verdict in CHECK_FILE (the summary above counts it across processes) and a failure
# fails the running phase.
phase_failed() { PHASE_FAILED=1; }
# check_logged DESCRIPTION LOG COMMAND...: a check of a COMMAND that writes
# its long output (provisioning) to LOG itself; a failure names LOG and shows
# its last lines. Returns COMMAND's status.
check_logged() {
	local what=$1 log=$2 rc=0
	shift 2
	"$@" || rc=$?
	if ((rc == 0)); then
		mp::check::pass "$what"
	else
		mp::check::fail "$what (log: $log)"
		tail -n 25 "$log" >&2 || true
	fi
	return "$rc"
}
checks_failed() { [[ -f $CHECK_FILE ]] && grep -q '^FAIL' "$CHECK_FILE"; }

# --- apt mirror of this machine ---------------------------------------------------
# Prints the first http(s) URI that serves SUITE (e.g. bookworm, bookworm-security)
# in /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}.
apt_mirror_for() {
	local suite=$1 f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i + 1) == s) { print $i; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" } {
			types = ""; uris = ""; suites = ""; enabled = "yes"
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^Types:/) types = $i
				if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/) }
				if ($i ~ /^Suites:/) suites = " " $i " "
				if ($i ~ /^Enabled:[ \t]*no/) enabled = "no"
			}
			if (enabled == "yes" && types ~ /[ \t]deb([ \t]|$)/ && suites ~ ("[ \t]" s "[ \t]")) { print u[1]; exit }
		}' "$f"
	done | head -n 1
}

# --- host tools --------------------------------------------------------------------
# Installs the Debian packages vm-test needs on the host when a command is missing.
ensure_host_tools() {
	local -a pkgs=()
	command -v debootstrap >/dev/null || pkgs+=(debootstrap)
	command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
	command -v mkfs.ext4 >/dev/null || pkgs+=(e2fsprogs)
	command -v ssh >/dev/null || pkgs+=(openssh-client)
	command -v curl >/dev/null || pkgs+=(curl)
	command -v ip >/dev/null || pkgs+=(iproute2)
	command -v jq >/dev/null || pkgs+=(jq)
	command -v rsync >/dev/null || pkgs+=(rsync)
	# The image's vagrant user gets Vagrant's insecure public key from Debian's package.
	vagrant_insecure_pubkey >/dev/null || pkgs+=(vagrant)
	if [[ ${VM_ARCH:-amd64} == arm64 ]]; then
		command -v qemu-system-aarch64 >/dev/null || pkgs+=(qemu-system-arm)
		# Runs the arm64 image's second debootstrap stage and its maintainer scripts.
		command -v qemu-aarch64-static >/dev/null || pkgs+=(qemu-user-static)
		# A binfmt_misc private to a user namespace: Linux 6.7 or newer.
		[[ -e /proc/filesystems ]] && ! grep -qw binfmt_misc /proc/filesystems &&
			mp::die "this kernel has no binfmt_misc, which the arm64 image build needs"
	fi
	[[ ${1:-} == stock ]] && ! command -v slirp4netns >/dev/null && pkgs+=(slirp4netns)
	[[ ${1:-} == stock ]] && ! command -v nft >/dev/null && pkgs+=(nftables)
	if [[ ${1:-} == vagrant ]]; then
		[[ -d /usr/share/rubygems-integration/all/gems ]] && compgen -G '/usr/share/rubygems-integration/all/gems/vagrant-libvirt-*' >/dev/null || pkgs+=(vagrant-libvirt)
		command -v libvirtd >/dev/null || pkgs+=(libvirt-daemon libvirt-daemon-driver-qemu)
		command -v virsh >/dev/null || pkgs+=(libvirt-clients)
		command -v dnsmasq >/dev/null || pkgs+=(dnsmasq-base)
		command -v iptables >/dev/null || pkgs+=(iptables)
		command -v rsync >/dev/null || pkgs+=(rsync)
	fi
	if [[ ${1:-} == vagrant ]] && ! getent passwd libvirt-qemu >/dev/null; then
		# libvirt's qemu driver resolves its compiled-in user at start, whatever
		# qemu.conf says; Debian's libvirt-daemon-system (not needed here) creates it.
		useradd --system --user-group --no-create-home --home-dir /var/lib/libvirt \
			--shell /usr/sbin/nologin libvirt-qemu
	fi
	((${#pkgs[@]})) || return 0
	# qemu-system-x86 7.2 (bookworm) breaks a newer qemu-utils from backports: take
	# qemu-utils from the same suite so apt can resolve it.
	if [[ " ${pkgs[*]} " == *" qemu-system-x86 "* ]] && dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null | grep -q bpo; then
		pkgs+=(qemu-utils/bookworm)
	fi
	# --allow-downgrades: for qemu-utils/bookworm above. A bound on each apt-get,
	# so a stuck mirror fails the run rather than hanging it.
	MP_APT_INSTALL_OPTS=--allow-downgrades MP_APT_TIMEOUT=900 mp::pkg::install "${pkgs[@]}" >&2
}

vagrant_insecure_pubkey() {
	local f
	for f in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub; do
		[[ -f $f && $f != *vagrant-libvirt* && $f != *vagrant_cloud* ]] && {
			printf '%s\n' "$f"
			return 0
		}
	done
	return 1
}
