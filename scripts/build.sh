#!/usr/bin/env bash
# Builds the three services as static Linux binaries into dist/<arch>/ (dist/amd64/
# by default): a thin wrapper of `cargo xtask dist` (srcs/xtask), which does the
# same on macOS and Windows hosts. Options are the xtask's:
#   scripts/build.sh [--arch amd64|arm64] [--portable] [--force] [--no-install]
set -euo pipefail
# shellcheck source=scripts/lib/xtask.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/xtask.sh"
xtask_exec build dist "$@"
