#!/usr/bin/env bash
# Rolling upgrade of the three VMs of `vagrant up`: a thin wrapper of
# `cargo xtask upgrade` (srcs/xtask/src/upgrade.rs), which does the same on
# macOS and Windows hosts. Options are the xtask's:
#   scripts/upgrade.sh [--no-build] [--restart]
#     --no-build  use dist/ as it is
#     --restart   restart each service even if nothing changed (a rolling
#                 restart, e.g. after a change of .env)
# One VM at a time (billing-vm, inventory-vm, gateway-vm): `vagrant
# provision`, then the service must answer /ready before the next VM begins;
# what each step costs the clients is printed before it runs (docs/vagrant.md,
# "A rolling upgrade").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1; then
	printf 'upgrade: ERROR: cargo not found. Install Rust with rustup (https://rustup.rs), open a new shell, then run scripts/upgrade.sh again.\n' >&2
	exit 1
fi
exec cargo xtask upgrade "$@"
