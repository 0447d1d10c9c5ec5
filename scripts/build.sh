#!/usr/bin/env bash
# Builds the three services as static Linux binaries into dist/<arch>/ (dist/amd64/
# by default): a thin wrapper of `cargo xtask dist` (srcs/xtask), which does the
# same on macOS and Windows hosts. Options are the xtask's:
#   scripts/build.sh [--arch amd64|arm64] [--portable] [--force] [--no-install]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1; then
	printf 'build: ERROR: cargo not found. Install Rust with rustup (https://rustup.rs), open a new shell, then run scripts/build.sh again.\n' >&2
	exit 1
fi
exec cargo xtask dist "$@"
