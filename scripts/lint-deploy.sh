#!/usr/bin/env bash
# Static checks of everything that deploys the platform, without any VM:
#   - symlinks:    no tracked symlink (Vagrant's upload stops at a dangling one,
#                  and a Windows checkout has none: it gets a text file instead)
#   - shellcheck:  every shell script (scripts/**/*.sh, scripts/** with a shell shebang, deploy/docker/**, .ci/run)
#   - shfmt -d:    the same scripts have the one layout (tabs, .editorconfig)
#   - ruby -c:     the Vagrantfile parses
#   - vagrant:     `vagrant validate --ignore-provider` (Vagrant without VirtualBox)
#   - templates:   .env resolves; env files, PostgreSQL/RabbitMQ configs render
#   - nftables:    each VM's firewall ruleset is accepted by `nft -c` (in a throw-away netns)
#   - units:       `systemd-analyze verify` of every unit in deploy/systemd: ANY output fails
#   - security:    `systemd-analyze security --offline` exposure of each service <= threshold
#   - contract:    the settings every service unit must have (and must not have)
# Exits non-zero if any check fails; prints one ok/FAILED line per check.
# Installs the Debian packages it needs when missing (root or sudo).
#
# Env: SECURITY_THRESHOLD (default 2.0 for the three services: they score
# 1.0-1.2 today, so a weakened sandbox fails here), FIREWALL_UNIT_THRESHOLD (3.0).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib/mp.sh
source "$ROOT/scripts/lib/mp.sh"
SERVICES=(api-gateway inventory-app billing-worker)
SECURITY_THRESHOLD="${SECURITY_THRESHOLD:-2.0}"
FIREWALL_UNIT_THRESHOLD="${FIREWALL_UNIT_THRESHOLD:-3.0}"

# Verdicts count with the one check harness (mp::check, scripts/lib/mp.sh), which
# keeps a check's output and shows its last lines when it fails.
MP_CHECK_TAIL=40
note() { printf '      %s\n' "$*"; }

# need COMMAND PACKAGE: installs PACKAGE (Debian) when COMMAND is missing.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	command -v apt-get >/dev/null 2>&1 || {
		echo "lint-deploy: $1 missing (install $2)" >&2
		exit 1
	}
	mp::pkg::install "$2"
}

need shellcheck shellcheck
need shfmt shfmt
need ruby ruby
need vagrant vagrant
need systemd-analyze systemd
need nft nftables
need unshare util-linux

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- tracked symlinks -----------------------------------------------------------
links=$(git -C "$ROOT" ls-files -s | awk '$1 == "120000" { print $4 }')
if [[ -z $links ]]; then
	mp::check::pass "no tracked symlink"
else
	mp::check::fail "tracked symlinks (Windows checkouts get a text file, Vagrant's upload fails on a dangling one): $(echo "$links" | tr '\n' ' ')"
fi

# --- shellcheck -------------------------------------------------------------
scripts=()
while IFS= read -r -d '' f; do
	case "$f" in
	*.sh) scripts+=("$f") ;;
	*) head -n1 "$f" | grep -Eq '^#!.*\b(ba|da)?sh\b' && scripts+=("$f") ;;
	esac
done < <(find scripts deploy/docker -type f -print0 | sort -z)
[[ -f .ci/run ]] && scripts+=(.ci/run)
MP_CHECK_TAIL=200 mp::check "shellcheck (${#scripts[@]} scripts)" shellcheck -x -f gcc "${scripts[@]}"

# --- shfmt: one layout (tabs, see .editorconfig), so a diff shows only what changed
# On a failure: shfmt -w FILE; first quote array keys that hold a - or a space,
# ["a-b"]: shfmt 3.6 reads [a-b] as arithmetic.
MP_CHECK_TAIL=200 mp::check "shfmt -d (${#scripts[@]} scripts)" shfmt -d "${scripts[@]}"

# --- Vagrantfile ------------------------------------------------------------
mp::check "ruby -c Vagrantfile" ruby -c Vagrantfile
# Its own dot-dir, so validating leaves nothing in the project.
mp::check "vagrant validate --ignore-provider" env VAGRANT_DOTFILE_PATH="$WORK/vagrant-dot" VAGRANT_CHECKPOINT_DISABLE=1 \
	vagrant validate --ignore-provider
# The HA topology's VMs (docs/ha.md), and one message for an unknown topology.
mp::check "MP_TOPOLOGY=ha vagrant validate --ignore-provider" env MP_TOPOLOGY=ha \
	VAGRANT_DOTFILE_PATH="$WORK/vagrant-dot" VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate --ignore-provider
topology_refused() {
	! env MP_TOPOLOGY=nonsense VAGRANT_DOTFILE_PATH="$WORK/vagrant-dot" VAGRANT_CHECKPOINT_DISABLE=1 \
		vagrant validate --ignore-provider >"$WORK/topology.out" 2>&1 &&
		grep -q "MP_TOPOLOGY=nonsense: expected one of default, ha" "$WORK/topology.out"
}
mp::check "MP_TOPOLOGY=nonsense: vagrant stops with the topology's message" topology_refused
for vm in gateway-vm inventory-vm billing-vm; do
	grep -q "name: \"$vm\"" Vagrantfile || mp::check::fail "Vagrantfile does not define $vm"
done

# --- .env and templates (the same code provisioning runs) -------------------
# shellcheck disable=SC2016 # the script is expanded by the inner bash
mp::check ".env resolves; env files and PostgreSQL/RabbitMQ configs render" \
	env -i PATH="$PATH" bash -c '
        set -euo pipefail
        . scripts/provision/common.sh
        mp::env::load .env
        for p in GATEWAY_ INVENTORY_ BILLING_; do
            render_service_env "$p" "$1/$p.env" 0600 >/dev/null
            grep -q "^${p}" "$1/$p.env" || mp::die "no $p variables rendered"
            if grep -v "^#" "$1/$p.env" | grep -v -e "^${p}" -e "^RUST_LOG=" | grep -q .; then
                mp::die "$p env file holds foreign variables"
            fi
        done
        render_template deploy/postgresql/movie-platform.conf.in "$1/pg.conf" >/dev/null
        render_template deploy/rabbitmq/rabbitmq.conf.in "$1/rabbitmq.conf" >/dev/null
        RABBITMQ_DIST_INTERFACE="{127,0,1,1}" render_template deploy/rabbitmq/rabbitmq-env.conf.in "$1/rabbitmq-env.conf" >/dev/null
        for a in gateway worker admin; do [[ "$(rabbitmq_permissions "$a" | wc -l)" == 3 ]] || mp::die "permissions of $a"; done
        for r in gateway inventory billing ha; do firewall_ruleset "$r" >"$1/fw-$r.nft"; done
        # The HA VMs templates, with the values setup_ha.sh computes.
        HA_NODE_NAME=ha1-vm HA_NODE_IP=$HA_VM1_IP VRRP_PEER_1=$HA_VM2_IP VRRP_PEER_2=$HA_VM3_IP \
            VRRP_INTERFACE=eth1 VRRP_PRIORITY=150 \
            render_template deploy/keepalived/keepalived.conf.in "$1/keepalived.conf" >/dev/null
        NODE_IP=$HA_VM1_IP RABBITMQ_HA_NODE_1=$HA_VM1_IP RABBITMQ_HA_NODE_2=$HA_VM2_IP RABBITMQ_HA_NODE_3=$HA_VM3_IP \
            render_template deploy/rabbitmq/ha.conf.in "$1/rabbitmq-ha.conf" >/dev/null
        render_template deploy/rabbitmq/ha-vm.conf.in "$1/rabbitmq-ha-vm.conf" >/dev/null
    ' lint "$WORK"

# --- nftables -----------------------------------------------------------------
for r in gateway inventory billing ha; do
	mp::check "nft -c $r-vm firewall ruleset" unshare --net nft -c -f "$WORK/fw-$r.nft"
done

# --- systemd units ------------------------------------------------------------
# systemd-analyze verify needs the units' dependencies and ExecStart binaries:
# a tree with the system's unit directory, our units and stand-in executables.
tree="$WORK/root"
mkdir -p "$tree/etc/systemd/system" "$tree/usr/local/bin" "$tree/usr/bin" "$tree/usr/sbin" "$tree/lib/systemd"
cp -a /lib/systemd/system "$tree/lib/systemd/"
# /usr/bin/env: pg-autoctl@.service (HA topology) starts pg_autoctl through it.
for exe in "${SERVICES[@]/#//usr/local/bin/}" /usr/sbin/nft /usr/bin/env; do
	printf '#!/bin/sh\nexit 0\n' >"$tree$exe"
	chmod 0755 "$tree$exe"
done
# Stand-ins for the Debian units our units and drop-ins refer to (the host
# may not have the packages, and their binaries are not in the tree).
mkdir -p "$tree/usr/lib/rabbitmq/bin"
printf '#!/bin/sh\nexit 0\n' >"$tree/usr/lib/rabbitmq/bin/rabbitmq-server"
chmod 0755 "$tree/usr/lib/rabbitmq/bin/rabbitmq-server"
printf '[Unit]\nDescription=stand-in for Debian'"'"'s rabbitmq-server.service\n[Service]\nType=notify\nExecStart=/usr/lib/rabbitmq/bin/rabbitmq-server\n' \
	>"$tree/lib/systemd/system/rabbitmq-server.service"
if [[ ! -f "$tree/lib/systemd/system/postgresql.service" ]]; then
	printf '[Unit]\nDescription=stand-in for Debian'"'"'s postgresql.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/bin/api-gateway\n' \
		>"$tree/lib/systemd/system/postgresql.service"
fi
cp -a deploy/systemd/. "$tree/etc/systemd/system/"

units=()
for f in deploy/systemd/*.service; do units+=("$(basename "$f")"); done
for d in deploy/systemd/*.d; do
	[[ -d "$d" ]] && units+=("$(basename "$d" .d)")
done
for u in "${units[@]}"; do
	out="$(systemd-analyze verify --root="$tree" --man=no "$u" 2>&1 || echo "(exit status $?)")"
	if [[ -z "$out" ]]; then
		mp::check::pass "systemd-analyze verify $u"
	else
		mp::check::fail "systemd-analyze verify $u"
		printf '%s\n' "$out"
	fi
done

# --- sandbox exposure -----------------------------------------------------------
# --threshold counts in tenths (exposure 2.0 = 20).
security() {
	local unit="$1" limit="$2" out level rc
	out="$(systemd-analyze security --offline=yes --root="$tree" --no-pager \
		--threshold="$(awk -v t="$limit" 'BEGIN { printf "%d", t * 10 + 0.5 }')" "$unit" 2>&1)" &&
		rc=0 || rc=$?
	level="$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: //p')"
	if [[ "$rc" -eq 0 ]] && [[ -n "$level" ]]; then
		mp::check::pass "systemd-analyze security $unit: $level (threshold $limit)"
	else
		mp::check::fail "systemd-analyze security $unit: ${level:-no result} (threshold $limit)"
		printf '%s\n' "$out" | grep -E '✗|Overall|rror' || printf '%s\n' "$out"
	fi
}
for s in "${SERVICES[@]}"; do
	security "$s.service" "$SECURITY_THRESHOLD"
done
security movie-platform-firewall.service "$FIREWALL_UNIT_THRESHOLD"

# --- unit contract ----------------------------------------------------------------
# What the deployment promises and a sloppy edit could silently break.
for s in "${SERVICES[@]}"; do
	f="deploy/systemd/$s.service"
	missing=()
	for want in "SyslogIdentifier=$s" "Restart=on-failure" "KillSignal=SIGTERM" "TimeoutStopSec=" \
		"WantedBy=multi-user.target" "After=network-online.target" "Wants=network-online.target" \
		"EnvironmentFile=/etc/movie-platform/$s.env" "ExecStart=/usr/local/bin/$s" \
		"Requires=movie-platform-firewall.service" "After=movie-platform-firewall.service" \
		"InaccessiblePaths=-/vagrant" "MemoryMax=" "TasksMax="; do
		grep -q "^$want" "$f" || missing+=("$want")
	done
	# The firewall is the one unit a service requires: stopping it must not
	# stop its database or broker.
	if grep -E '^(Requires|BindsTo|PartOf|Requisite)=' "$f" | grep -vqx 'Requires=movie-platform-firewall.service'; then
		missing+=("no Requires=/BindsTo=/PartOf= but the firewall's (stopping $s must not stop its database or broker)")
	fi
	if [[ "${#missing[@]}" -eq 0 ]]; then
		mp::check::pass "$s.service has the required settings"
	else
		mp::check::fail "$s.service lacks: ${missing[*]}"
	fi
done

echo
if ((MP_CHECKS_FAILED > 0)); then
	echo "lint-deploy: $MP_CHECKS_FAILED check(s) FAILED"
	exit 1
fi
echo "lint-deploy: all checks passed"
