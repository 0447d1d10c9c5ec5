#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine (root or sudo):
# installs what it needs, starts its own PostgreSQL and RabbitMQ on loopback
# (on test ports, under .state/test, so a running `scripts/local.sh up` is not
# disturbed), and runs, in order:
#   lint     cargo fmt --check, cargo clippy -D warnings, shellcheck, deployment lints,
#            the docs' links and anchors (scripts/check-links.py and its test)
#   observability  deploy/prometheus/: promtool check rules, promtool test rules, and every
#            alert has a unit test and a runbook
#   unit     the bench program's tests, then cargo test --workspace (integration tests against the real servers)
#   build    scripts/build.sh --portable: static musl binaries in dist/<arch>/, linked by zig;
#            and --arch arm64: dist/arm64/, checked with `file` and run under qemu-aarch64
#   benchci  scripts/bench.sh --ci: the gateway's instructions per proxied GET under
#            callgrind against scripts/bench/ci-baseline.json (fails beyond +-10 %); ~25 s
#   e2e      scripts/e2e.py: the running system through every route and error; then the
#            audit walk (scripts/lib/walk.sh) over the local processes
#   contract schemathesis (openapi.yaml) and newman (Postman collection) against the gateway
#   chaos    the resilience scenarios: orders never lost or duplicated; then
#            scripts/ha-migrate-test.sh: billing_queue moved classic -> quorum -> classic under orders
#   containers  the Docker Compose deployment and its audit (dockerd started if needed);
#            before hosts, so the three-host test proves dockerd's iptables rules do not disturb it
#   hosts    the three-host test in network namespaces
#   swarm    scripts/swarm-test.sh: deploy/swarm/stack.yaml on a single-node swarm (images built
#            from dist/amd64): deploy, audit walk, scale, kill, rolling update under load, stack rm
#   k8s      scripts/k8s-validate.sh: deploy/k8s rendered (kubectl kustomize), schema-validated
#            offline (kubernetes-validate) and held to the policy (deploy/k8s/policy.py); no cluster
#   hostside the host-side build code (cargo xtask) and every .env reader against one fixture;
#            the Vagrantfile's guest arch/box choice, provisioning's dist/<arch>/ messages
#   vagrant  (last) the real Vagrantfile: `vagrant up --provider=libvirt` of the three VMs
#            (qemu TCG, libvirtd in a network namespace, the vm-test image as the box), the
#            audit walk through the forwarded port, `vagrant destroy`: scripts/vm-test.sh vagrant-up
#   ha       scripts/ha-test.sh: the high-availability topology in network namespaces (a
#            3-node RabbitMQ cluster, quorum queue, pg_auto_failover, inventory replicas,
#            keepalived), faults and a rolling upgrade under load (about 7 minutes)
#   vm       scripts/vm-test.sh qemu (only with MP_TEST_VM=1: it takes minutes)
#   shlib    (after hostside, before vm) scripts/lib-test.sh: the one shell library,
#            scripts/lib/mp.sh, on real processes
# Stops everything it started, also when a step fails.
#
#   scripts/test.sh                 everything
#   scripts/test.sh unit e2e        only those steps (the infrastructure is started as needed)
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$MP_ROOT"

# Test ports and state, apart from the ones of a local run.
export MP_STATE_DIR=$MP_ROOT/.state/test
# MP_TEST_PORT_OFFSET moves them all, so two checkouts can test side by side.
# All below Linux's ephemeral range (32768-60999): the scenarios restart the
# servers while thousands of client connections come and go, and an outgoing
# connection that took a server's port as its own would stop it from listening
# again (seen: RabbitMQ's eaddrinuse on a restart).
o=${MP_TEST_PORT_OFFSET:-0}
export LOCAL_GATEWAY_PORT=$((18080 + o)) LOCAL_INVENTORY_PORT=$((18081 + o)) LOCAL_BILLING_HEALTH_PORT=$((18082 + o))
export LOCAL_GATEWAY_METRICS_PORT=$((19101 + o)) LOCAL_INVENTORY_METRICS_PORT=$((19102 + o))
export LOCAL_PG_INVENTORY_PORT=$((26432 + o)) LOCAL_PG_BILLING_PORT=$((26433 + o))
export LOCAL_RABBITMQ_PORT=$((26672 + o)) LOCAL_RABBITMQ_MGMT_PORT=$((26673 + o))
export LOCAL_RABBITMQ_DIST_PORT=$((26674 + o)) LOCAL_EPMD_PORT=$((26675 + o))
export TEST_INVENTORY_PG_PORT=$LOCAL_PG_INVENTORY_PORT TEST_BILLING_PG_PORT=$LOCAL_PG_BILLING_PORT
export TEST_RABBITMQ_PORT=$LOCAL_RABBITMQ_PORT TEST_RABBITMQ_MGMT_PORT=$LOCAL_RABBITMQ_MGMT_PORT
# rabbitmqctl on the test broker (the gateway's alarm test raises a disk alarm).
export TEST_RABBITMQCTL="$MP_ROOT/scripts/local.sh rabbitmqctl"
export GATEWAY_URL=http://127.0.0.1:$LOCAL_GATEWAY_PORT
export MP_SKIP_BUILD=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

ALL_STEPS=(lint observability k8s unit build benchci e2e contract chaos containers swarm hosts hostside)
ALL_STEPS+=(shlib)
ALL_STEPS+=(ha vagrant)
[[ ${MP_TEST_VM:-0} == 1 ]] && ALL_STEPS+=(vm)
STEPS=("$@")
((${#STEPS[@]})) || STEPS=("${ALL_STEPS[@]}")

# Assigned empty: under set -u, bash 5.2 takes ${#RESULT[@]} of a declared but
# never assigned array for an unbound variable (an interrupt before the first
# step ended in that error instead of the summary).
declare -A RESULT=() TIME=()

cleanup() {
	local rc=$?
	# Steps run in subshells, so stop whatever may have been started.
	mp::log::info "stopping the test infrastructure"
	scripts/local.sh down >/dev/null || true
	summary
	exit "$rc"
}
trap cleanup EXIT

summary() {
	local s
	((${#RESULT[@]})) || return 0
	printf '\n%-10s %-6s %s\n' STEP RESULT SECONDS >&2
	for s in "${STEPS[@]}"; do
		[[ -n ${RESULT[$s]:-} ]] && printf '%-10s %-6s %s\n' "$s" "${RESULT[$s]}" "${TIME[$s]}" >&2
	done
	return 0
}

install_prerequisites() {
	mp::pkg::install build-essential pkg-config musl-tools file curl ca-certificates python3 python3-venv \
		shellcheck postgresql-15 rabbitmq-server
	# newman (Postman's runner) needs node and npm; keep an existing install.
	command -v npm >/dev/null || mp::pkg::install nodejs npm
	command -v cargo >/dev/null || mp::die "cargo not found: install Rust with rustup (https://rustup.rs)"
	rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
	rustup target list --installed | grep -qx x86_64-unknown-linux-musl ||
		rustup target add x86_64-unknown-linux-musl
}

ensure_infra() { scripts/local.sh infra; }

ensure_system() {
	ensure_infra
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	scripts/local.sh up
}

step_lint() {
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	# The gateway without its `telemetry` feature, as the benchmark builds it.
	cargo clippy -p api-gateway --lib --bins --locked --no-default-features -- -D warnings
	scripts/lint-deploy.sh
	# The dependencies' licenses, bans and sources (and advisories with
	# MP_ADVISORY_DB); installs cargo-deny the first time.
	scripts/deny.sh
	# Every relative link and #anchor of the docs resolves, README links every
	# docs/*.md; and the checker itself can fail (its fixtures).
	python3 scripts/check-links.py
	python3 scripts/check-links-test.py
}

# The alert rules: promtool's own checks, then that no rule is left without
# a unit test (an alertname in alerts_test.yml) or a runbook (a `## Name`
# section in runbooks.md).
step_observability() {
	mp::pkg::install prometheus
	local dir=deploy/prometheus name missing=()
	promtool check rules "$dir/alerts.yml"
	(cd "$dir" && promtool test rules alerts_test.yml)
	while read -r name; do
		grep -Eq "alertname: $name\$" "$dir/alerts_test.yml" || missing+=("$name (no unit test)")
		grep -q "^## $name\$" "$dir/runbooks.md" || missing+=("$name (no runbook)")
	done < <(sed -n 's/^ *- alert: *//p' "$dir/alerts.yml")
	((${#missing[@]} == 0)) || mp::die "alert rules without a test or runbook: ${missing[*]}"
	mp::log::info "every alert rule has unit tests and a runbook"
	# The Grafana dashboard and the console: well formed, every query names a
	# metric (the containers step checks those names against a live scrape).
	python3 scripts/dashboards-check.py
}

step_unit() {
	python3 scripts/bench/test_bench.py
	# The metrics tests check each service's page with `promtool check metrics`.
	mp::pkg::install prometheus
	ensure_infra
	cargo test --workspace --locked
}

# The build a macOS or Windows host makes (zig through cargo-zigbuild, not
# Debian's musl-gcc), so every later step proves those binaries. Then the
# aarch64 cross build (Apple Silicon and arm64 VMs, the same zig path) into
# dist/arm64/: static aarch64 as `file` sees it, and each binary started
# under qemu-aarch64 user emulation, where it must get as far as reading its
# configuration and name the first variable an empty environment lacks.
step_build() {
	scripts/build.sh --portable
	scripts/build.sh --arch arm64
	mp::pkg::install file qemu-user-static
	local b desc out rc var
	declare -A first_var=(["api-gateway"]=GATEWAY_HOST ["inventory-app"]=INVENTORY_HOST ["billing-worker"]=BILLING_HEALTH_HOST)
	for b in api-gateway inventory-app billing-worker; do
		desc=$(file -b "$MP_ROOT/dist/arm64/$b")
		[[ $desc == "ELF 64-bit LSB "* && $desc == *"ARM aarch64"* && $desc == *"statically linked"* ]] ||
			mp::die "dist/arm64/$b is not a static aarch64 binary: $desc"
		mp::log::info "dist/arm64/$b: $desc"
		var=${first_var[$b]}
		rc=0
		out=$(env -i qemu-aarch64-static "$MP_ROOT/dist/arm64/$b" 2>&1) || rc=$?
		[[ $rc != 0 && $out == *"configuration error: missing variable $var" ]] ||
			mp::die "dist/arm64/$b under qemu-aarch64: expected a failed start naming $var, got (exit $rc): $out"
		mp::log::info "dist/arm64/$b runs under qemu-aarch64: exit $rc, ${out##*ERROR }"
	done
}

# The audit walk (scripts/lib/walk.sh) over its local transport: the processes
# of scripts/local.sh, reached on loopback.
local::http() { mp::walk::curl "$GATEWAY_URL" -- "$@"; }
local::sql() { scripts/local.sh psql "$(mp::walk::db "$1")" -XAtqc "$2"; }
local::queued() {
	scripts/local.sh rabbitmqctl -q list_queues -p "$RABBITMQ_VHOST" --no-table-headers name messages |
		awk '$1 == "billing_queue" { print $2 }'
}
local::worker() { scripts/local.sh "$1" billing-worker >/dev/null; }
walk_local() {
	# shellcheck source=scripts/lib/walk.sh
	source scripts/lib/walk.sh
	mp::env::load .env
	mp::walk::run local "e2e-$$"
	((MP_CHECKS_FAILED == 0)) || mp::die "the audit walk: $MP_CHECKS_FAILED check(s) failed"
	mp::log::info "the audit walk: $MP_CHECKS_PASSED checks passed"
}

# What each local service holds: only its own settings in its environment (no
# other service's password), and, when the run is root's, an unprivileged uid
# of its own, as on the VMs.
local_env_own() {
	local pid=$1 own=$2 stray
	stray=$(tr '\0' '\n' <"/proc/$pid/environ" | cut -d= -f1 | grep -Ev "^(${own}.*|RUST_LOG|PATH)\$" || true)
	[[ -z $stray ]] || {
		echo "variables not its own: $(echo "$stray" | tr '\n' ' ')" >&2
		return 1
	}
}
local_uid() { awk '/^Uid:/ { print $2 }' "/proc/$1/status"; }
local_isolation() {
	local name pid uid
	declare -A prefix_of=(["inventory-app"]=INVENTORY_ ["api-gateway"]=GATEWAY_ ["billing-worker"]=BILLING_)
	declare -A seen=()
	for name in inventory-app api-gateway billing-worker; do
		pid=$(cat "$MP_STATE_DIR/run/$name.pid")
		mp::check "local run: $name's environment holds only ${prefix_of[$name]}*, RUST_LOG and PATH" local_env_own "$pid" "${prefix_of[$name]}"
		is_root || continue
		uid=$(local_uid "$pid")
		mp::check "local run: $name runs as uid $uid, not root, and no other service shares it" \
			test "$uid" != 0 -a -z "${seen[$uid]:-}"
		seen[$uid]=$name
	done
	((MP_CHECKS_FAILED == 0)) || mp::die "the local run's isolation: $MP_CHECKS_FAILED check(s) failed"
}

# The bench's own instance, on ports of its own moved by the same offset (the
# test instance's may be running): instruction counts do not depend on them.
step_benchci() {
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	BENCH_GATEWAY_PORT=$((28080 + o)) BENCH_INVENTORY_PORT=$((28081 + o)) BENCH_BILLING_HEALTH_PORT=$((28082 + o)) \
		BENCH_NGINX_PORT=$((28090 + o)) BENCH_GATEWAY_METRICS_PORT=$((29101 + o)) BENCH_INVENTORY_METRICS_PORT=$((29102 + o)) \
		BENCH_PG_INVENTORY_PORT=$((27432 + o)) BENCH_PG_BILLING_PORT=$((27433 + o)) \
		BENCH_RABBITMQ_PORT=$((27672 + o)) BENCH_RABBITMQ_MGMT_PORT=$((27673 + o)) \
		BENCH_RABBITMQ_DIST_PORT=$((27674 + o)) BENCH_EPMD_PORT=$((27675 + o)) \
		scripts/bench.sh --ci --no-build
}

step_e2e() {
	ensure_system
	python3 scripts/e2e.py
	walk_local
	local_isolation
}

step_contract() {
	ensure_system
	scripts/api-contract.sh
}

step_chaos() {
	ensure_system
	python3 scripts/scenarios.py
	scripts/ha-migrate-test.sh
}

step_hosts() {
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	scripts/three-host-test.sh
}

step_ha() {
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	scripts/ha-test.sh
}

step_containers() {
	# The images hold the binaries of dist/amd64, the portable build's.
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	scripts/containers-test.sh
}

# The command every user runs first, with the project's own Vagrantfile: on the
# binaries of the build step (MP_SKIP_BUILD=1, so its build trigger uses them).
step_vagrant() {
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	VM_TEST_SKIP_BUILD=1 scripts/vm-test.sh vagrant-up
}

step_swarm() {
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	scripts/swarm-test.sh
}

step_k8s() { scripts/k8s-validate.sh; }

step_vm() {
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	scripts/vm-test.sh qemu
}

# Host-side code: the xtask's tests, every .env reader against the shared
# fixture, and the built binaries as `file` sees them (static x86-64, by zig).
step_hostside() {
	mp::pkg::install ruby vagrant
	cargo test -p xtask --locked
	scripts/dotenv-test.sh
	# The Vagrantfile's guest choice (arch, box, qemu settings), what
	# provisioning says about dist/<arch>/, and the Vagrantfile as each
	# architecture and the installed provider (libvirt) see it.
	ruby scripts/vm/guest_test.rb
	# What the Vagrantfile stages and uploads to each VM (scripts/vm/stage.rb).
	ruby scripts/vm/stage_test.rb
	scripts/vm/provision-arch-test.sh
	local a p dot=$MP_STATE_DIR/vagrant-dot
	for a in amd64 arm64; do
		for p in --ignore-provider libvirt; do
			if [[ $p == libvirt ]]; then
				vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt' || continue
				MP_GUEST_ARCH=$a VAGRANT_DEFAULT_PROVIDER=libvirt VAGRANT_DOTFILE_PATH=$dot VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate >/dev/null
			else
				MP_GUEST_ARCH=$a VAGRANT_DOTFILE_PATH=$dot VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate --ignore-provider >/dev/null
			fi
			mp::log::info "vagrant validate (MP_GUEST_ARCH=$a, ${p#--}): ok"
		done
	done
	rm -rf "$dot"
	[[ -x $(dist_dir)/api-gateway ]] || run_step build
	local b desc
	for b in api-gateway inventory-app billing-worker; do
		desc=$(file -b "$(dist_dir)/$b")
		[[ $desc == *x86-64* && $desc == *"statically linked"* && $desc == *", stripped"* ]] ||
			mp::die "$b is not a static stripped x86-64 binary: $desc"
		mp::log::info "$b: $desc"
	done
	grep -qx 'linker=zig' "$(dist_dir)/.build-stamp" || mp::die "dist/ was not built by the portable (zig) path: scripts/build.sh --portable"
	# A Windows checkout (core.autocrlf=true) must still get LF everywhere but
	# in the CRLF fixture: .gitattributes.
	local clone=$MP_STATE_DIR/crlf-clone crlf
	rm -rf "$clone"
	git clone -q -c core.autocrlf=true "$MP_ROOT" "$clone"
	crlf=$(git -C "$clone" ls-files --eol | awk -F '\t' '{ split($1, f, " ") } f[2] == "w/crlf" && $2 != "scripts/testdata/dotenv/cases-bom-crlf.env" { print $2 }')
	rm -rf "$clone"
	[[ -z $crlf ]] || mp::die "a core.autocrlf=true checkout gets CRLF in: $crlf"
	mp::log::info "a core.autocrlf=true checkout has LF line ends (but the CRLF fixture)"
}

step_shlib() { scripts/lib-test.sh; }

run_step() {
	local s=$1 t0=$SECONDS rc=0
	mp::log::info "step $s"
	# In a subshell that is not part of a condition: bash ignores `set -e`
	# inside anything called from `if`/`||`, which would let a failing
	# command in the middle of a step pass unnoticed.
	set +e
	(
		set -e
		"step_$s"
	)
	rc=$?
	set -e
	TIME[$s]=$((SECONDS - t0))
	if ((rc == 0)); then
		RESULT[$s]=ok
	else
		RESULT[$s]=FAILED
		mp::die "step $s failed"
	fi
}

install_prerequisites
for s in "${STEPS[@]}"; do
	declare -F "step_$s" >/dev/null || mp::die "unknown step $s (steps: ${ALL_STEPS[*]} vm)"
	[[ -n ${RESULT[$s]:-} ]] || run_step "$s"
done
mp::log::info "all steps passed: ${STEPS[*]}"
