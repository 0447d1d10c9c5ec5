#!/usr/bin/env bash
# The supply-chain checks of the workspace, with cargo-deny and the policy in
# deny.toml (docs/security.md, "Supply chain"):
#   - licenses, bans, sources: offline, every run (the lint step);
#   - advisories: RustSec's database is a git repository on GitHub, which this
#     check never fetches. Give it a local clone instead:
#         git clone https://github.com/RustSec/advisory-db ~/advisory-db
#         MP_ADVISORY_DB=~/advisory-db scripts/deny.sh
#     Without MP_ADVISORY_DB it says it skipped them.
#   - self-test: the same checks must fail on a policy that bans a crate we
#     use, and on an advisory database (made here, one advisory against a crate
#     we use) whose advisory deny.toml does not ignore; and pass when it does.
#
# cargo-deny itself: $MP_CARGO_DENY, else `cargo-deny` on PATH, else
# `cargo install --locked cargo-deny@$CARGO_DENY_VERSION` (a few minutes, once).
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$MP_ROOT"

CARGO_DENY_VERSION=${CARGO_DENY_VERSION:-0.20.2}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

deny_bin() {
	if [[ -n ${MP_CARGO_DENY:-} ]]; then
		echo "$MP_CARGO_DENY"
	elif command -v cargo-deny >/dev/null; then
		command -v cargo-deny
	else
		mp::log::info "installing cargo-deny $CARGO_DENY_VERSION (cargo install, once)" >&2
		cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION" >&2
		echo "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny"
	fi
}
DENY=$(deny_bin)
# --offline reads the metadata of every crate in Cargo.lock, those of other
# targets too (wasm-bindgen, windows-*), which a build or clippy for this
# host never downloads: on a fresh machine it failed ("failed to download
# `wasm-bindgen`"). cargo fetch gets them all, once.
cargo fetch --locked --quiet

# deny CONFIG CHECKS...: cargo-deny on the locked, offline workspace; errors
# only (the multiple-versions notes are warnings by policy).
deny() {
	local config=$1
	shift
	"$DENY" --offline --locked --log-level error --config "$config" check "$@"
}

# advisory_db_at DB: a db-path directory holding DB under the name cargo-deny
# derives from RustSec's URL, so `--offline` reads it instead of fetching.
advisory_db_at() {
	local dir=$WORK/db-${RANDOM}
	mkdir -p "$dir"
	ln -s "$(cd "$1" && pwd)" "$dir/advisory-db-3157b0e258782691"
	echo "$dir"
}

# with_db CONFIG DBPATH: CONFIG with [advisories] reading DBPATH.
with_db() {
	sed "s|^\[advisories\]\$|[advisories]\ndb-path = \"$2\"|" "$1"
}

mp::check "cargo deny: licenses, bans and sources of every crate pass deny.toml" deny deny.toml licenses bans sources

if [[ -n ${MP_ADVISORY_DB:-} ]]; then
	[[ -d $MP_ADVISORY_DB/crates ]] ||
		mp::die "MP_ADVISORY_DB=$MP_ADVISORY_DB is not a clone of https://github.com/RustSec/advisory-db (no crates/ in it)"
	with_db deny.toml "$(advisory_db_at "$MP_ADVISORY_DB")" >"$WORK/deny-advisories.toml"
	mp::check "cargo deny: no advisory against any crate, but the ignored ones (database $MP_ADVISORY_DB)" \
		deny "$WORK/deny-advisories.toml" advisories
else
	mp::log::info "cargo deny: advisories skipped (no MP_ADVISORY_DB; see scripts/deny.sh)"
fi

# --- the checks can fail --------------------------------------------------------
# A ban of a crate we use must be refused.
sed 's|^deny = \[$|deny = [\n    { name = "uuid", reason = "self-test" },|' deny.toml >"$WORK/deny-ban.toml"
refused() { ! deny "$@" >"$WORK/refused.out" 2>&1; }
mp::check "cargo deny self-test: a policy banning uuid (which we use) fails" refused "$WORK/deny-ban.toml" bans

# A database of our own, one advisory for h2 (which we use): refused unless
# deny.toml's ignore names it, so the ignore list is what lets it pass.
db=$WORK/advisory-db
mkdir -p "$db/crates/h2"
id=$(sed -n 's/^ *{ id = "\(RUSTSEC-[0-9-]*\)".*/\1/p' deny.toml | head -n1)
[[ -n $id ]] || mp::die "deny.toml ignores no advisory: the self-test below needs one"
cat >"$db/crates/h2/$id.md" <<EOF
\`\`\`toml
[advisory]
id = "$id"
package = "h2"
date = "2026-01-01"
url = "https://rustsec.org/advisories/$id.html"

[versions]
patched = [">= 99.0.0"]
\`\`\`

# Self-test advisory

Made by scripts/deny.sh, never published.
EOF
git -C "$db" init -q
git -C "$db" add -A
git -C "$db" -c user.name=deny.sh -c user.email=deny.sh@localhost commit -qm self-test
dbpath=$(advisory_db_at "$db")
with_db deny.toml "$dbpath" >"$WORK/deny-own-db.toml"
mp::check "cargo deny self-test: an advisory deny.toml ignores ($id) passes" deny "$WORK/deny-own-db.toml" advisories
with_db deny.toml "$dbpath" | grep -v "id = \"$id\"" >"$WORK/deny-no-ignore.toml"
mp::check "cargo deny self-test: the same advisory, not ignored, fails" refused "$WORK/deny-no-ignore.toml" advisories

((MP_CHECKS_FAILED == 0)) || mp::die "cargo deny: $MP_CHECKS_FAILED check(s) failed"
