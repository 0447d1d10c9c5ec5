# shellcheck shell=bash
# xtask_exec NAME TASK [ARGS...]: `cargo xtask TASK ARGS` from the project
# root, for the thin host-side wrappers (scripts/build.sh, scripts/upgrade.sh)
# of the tasks that also run on macOS and Windows hosts without bash. Kept to
# bash 3.2 (macOS's own) and POSIX tools: these run on the user's host.
xtask_exec() {
	local name=$1 task=$2
	shift 2
	cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
	if ! command -v cargo >/dev/null 2>&1; then
		printf '%s: ERROR: cargo not found. Install Rust with rustup (https://rustup.rs), open a new shell, then run scripts/%s.sh again.\n' \
			"$name" "$name" >&2
		exit 1
	fi
	exec cargo xtask "$task" "$@"
}
