#!/usr/bin/env bash
# shellcheck disable=SC2016 # the bash -c / ruby -e / python3 -c programs are single-quoted on purpose
# Holds every .env reader to the one format (srcs/xtask/src/dotenv.rs) with the
# shared fixture in scripts/testdata/dotenv/: each must give expected.tsv for
# cases.env and cases-bom-crlf.env, refuse every file in errors/ naming
# FILE:LINE, and let the environment win over the file.
#   readers: cargo xtask dotenv (Rust), load_dotenv of scripts/lib/common.sh and
#   of scripts/provision/common.sh (bash), scripts/lib/dotenv.rb (Vagrantfile),
#   scripts/mp_dotenv.py (scenarios.py).
# Usage: scripts/dotenv-test.sh   (needs cargo, bash, ruby, python3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FIX=scripts/testdata/dotenv
# shellcheck source=scripts/lib/mp.sh
source scripts/lib/mp.sh

# Each reader prints FILE resolved as KEY<TAB>VALUE lines, in a clean environment
# (plus the variables given after the file).
read_rust() { env -i PATH="$PATH" HOME="$HOME" ${CARGO_HOME:+CARGO_HOME=$CARGO_HOME} ${RUSTUP_HOME:+RUSTUP_HOME=$RUSTUP_HOME} cargo xtask dotenv "$1"; }
# read_bash LIBRARY FILE [VAR=VALUE...]: the one bash reader (scripts/lib/dotenv.sh)
# as a script gets it by sourcing LIBRARY: the local run's, or provisioning's.
read_bash() {
	local lib=$1 f=$2
	shift 2
	env -i PATH="$PATH" "$@" bash -c 'source "$2"; mp::env::load "$1"; for k in "${DOTENV_KEYS[@]}"; do printf "%s\t%s\n" "$k" "${!k}"; done' _ "$f" "$lib"
}
read_bash_lib() { read_bash scripts/lib/common.sh "$@"; }
read_bash_provision() { read_bash scripts/provision/common.sh "$@"; }
read_ruby() {
	local f=$1
	shift
	env -i PATH="$PATH" "$@" ruby -e 'require_relative "scripts/lib/dotenv"
		env = ENV.to_h.reject { |k, _| k == "PATH" }
		begin
			MovieDotenv.load(ARGV[0], env).each { |k, v| puts "#{k}\t#{v}" }
		rescue MovieDotenv::Error => e
			abort e.message
		end' "$f"
}
read_python() {
	local f=$1
	shift
	env -i PATH="$PATH" "$@" python3 -c 'import os, sys
sys.path.insert(0, "scripts")
import mp_dotenv
env = {k: v for k, v in os.environ.items() if k != "PATH"}
try:
    for k, v in mp_dotenv.load(sys.argv[1], env).items():
        print(f"{k}\t{v}")
except mp_dotenv.DotenvError as e:
    sys.exit(str(e))' "$f"
}
READERS=(rust bash_lib bash_provision ruby python)

same_as_expected() { diff -u "$FIX/expected.tsv" <("read_$1" "$2") >&2; }

refused_at() {
	local reader=$1 file=$2 line=$3 out
	if out=$("read_$reader" "$file" 2>&1); then
		printf '    accepted: %s\n' "$out" >&2
		return 1
	fi
	[[ $out == *"$file:$line:"* ]] || {
		printf '    message does not name %s:%s: %s\n' "$file" "$line" "$out" >&2
		return 1
	}
}

env_wins() {
	local out
	out=$("read_$1" "$FIX/cases.env" PLAIN=from-env)
	grep -qxF "$(printf 'PLAIN\tfrom-env')" <<<"$out" && grep -qxF "$(printf 'REFS\thttp://from-env:80/from-env')" <<<"$out"
}

for r in "${READERS[@]}"; do
	printf '%s\n' "reader $r"
	for f in cases.env cases-bom-crlf.env; do
		mp::check "$f gives expected.tsv" same_as_expected "$r" "$FIX/$f"
	done
	while IFS=$'\t' read -r name line; do
		[[ -z $name || $name == \#* ]] && continue
		mp::check "errors/$name refused at line $line" refused_at "$r" "$FIX/errors/$name" "$line"
	done <"$FIX/errors/expected.tsv"
	[[ $r == rust ]] || mp::check "the environment wins, and \${} follow it" env_wins "$r"
done
printf '%d checks, %d failed\n' "$((MP_CHECKS_PASSED + MP_CHECKS_FAILED))" "$MP_CHECKS_FAILED"
((MP_CHECKS_FAILED == 0))
