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
# shellcheck source=scripts/lib/xtask.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/xtask.sh"
xtask_exec upgrade upgrade "$@"
