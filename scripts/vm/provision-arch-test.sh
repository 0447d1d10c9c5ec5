#!/usr/bin/env bash
# Host-side test of what provisioning says about the binaries' architecture:
# binary_path (scripts/provision/common.sh) on a VM of each Debian architecture
# (dpkg --print-architecture, faked on PATH) against dist/ folders that lack
# the VM's architecture, hold the other one's binaries, or are right. Each case
# pins the exact message (or path) a user sees. No VM, no root.
#   usage: scripts/vm/provision-arch-test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=scripts/lib/mp.sh
source scripts/lib/mp.sh

# elf FILE MACHINE: the first 20 bytes of an ELF file whose e_machine is
# MACHINE (two little-endian bytes, as \x escapes): all that provisioning reads.
elf() { printf '\177ELF\2\1\1\0\0\0\0\0\0\0\0\0\2\0%b' "$2" >"$1"; }

mkdir -p "$WORK/bin"
# provisioning IN_ARCH DIST NAME: binary_path NAME on a VM of IN_ARCH; stdout+stderr and status.
provisioning() {
	printf '#!/bin/sh\necho %s\n' "$1" >"$WORK/bin/dpkg"
	chmod +x "$WORK/bin/dpkg"
	# shellcheck disable=SC2016 # expanded by the inner bash
	env -i PATH="$WORK/bin:$PATH" DIST_DIR="$2" bash -c '. scripts/provision/common.sh; binary_path "$1"' _ "$3" 2>&1
}

# expect WHAT STATUS OUTPUT IN_ARCH DIST NAME
expect() {
	local what=$1 want_rc=$2 want=$3 out rc=0
	shift 3
	out=$(provisioning "$@") || rc=$?
	if [[ $rc == "$want_rc" && $out == "$want" ]]; then
		mp::check::pass "$what"
	else
		mp::check::fail "$what"
		printf '       want (exit %s): %s\n       got  (exit %s): %s\n' "$want_rc" "$want" "$rc" "$out"
	fi
}

D=$WORK/dist
mkdir -p "$D/amd64" "$D/arm64" "$WORK/only-amd64/amd64"
elf "$D/amd64/api-gateway" '\x3e\x00'
elf "$D/arm64/api-gateway" '\xb7\x00'
elf "$WORK/only-amd64/amd64/api-gateway" '\x3e\x00'
# A build of the wrong CPU in the right folder (e.g. copied by hand).
mkdir -p "$WORK/swapped/arm64"
elf "$WORK/swapped/arm64/api-gateway" '\x3e\x00'
mkdir -p "$WORK/riscv/arm64"
elf "$WORK/riscv/arm64/api-gateway" '\xf3\x00'
printf '#!/bin/sh\n' >"$D/arm64/inventory-app"

expect "an amd64 VM takes dist/amd64/" 0 "$D/amd64/api-gateway" amd64 "$D" api-gateway
expect "an arm64 VM takes dist/arm64/" 0 "$D/arm64/api-gateway" arm64 "$D" api-gateway
expect "an arm64 VM without dist/arm64/ names the build command" 1 \
	"ERROR: $WORK/only-amd64/arm64/ is missing: no binaries were built for this VM's architecture (arm64). On the host run: cargo xtask dist --arch arm64 (then vagrant provision)" \
	arm64 "$WORK/only-amd64" api-gateway
expect "an arm64 VM given amd64 binaries refuses them" 1 \
	"ERROR: $WORK/swapped/arm64/api-gateway is built for amd64, but this VM is arm64: on the host run: cargo xtask dist --arch arm64 --force" \
	arm64 "$WORK/swapped" api-gateway
expect "a binary of a third CPU is named by its e_machine" 1 \
	"ERROR: $WORK/riscv/arm64/api-gateway is built for unknown (e_machine f300), but this VM is arm64: on the host run: cargo xtask dist --arch arm64 --force" \
	arm64 "$WORK/riscv" api-gateway
expect "a missing binary in the right folder" 1 \
	"ERROR: $D/arm64/billing-worker is missing: on the host run: cargo xtask dist --arch arm64 (then vagrant provision)" \
	arm64 "$D" billing-worker
expect "a file that is no ELF binary" 1 \
	"ERROR: $D/arm64/inventory-app is built for not-elf, but this VM is arm64: on the host run: cargo xtask dist --arch arm64 --force" \
	arm64 "$D" inventory-app

printf '%s checks, %s failed\n' "$((MP_CHECKS_PASSED + MP_CHECKS_FAILED))" "$MP_CHECKS_FAILED"
((MP_CHECKS_FAILED == 0))
