#!/usr/bin/env bash
# Tests of the one shell library, scripts/lib/mp.sh: what each helper prints,
# returns and does to real processes (no mocks: sleep, a TERM-ignoring shell,
# a zombie). Each check pins one answer; the last line is
# `lib-test: N passed, M failed` and the exit status is 1 if any failed.
#
#   scripts/lib-test.sh        (scripts/test.sh scripts runs it; ~5 s)
# shellcheck disable=SC2016 # the single-quoted scripts are for the inner bash
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The checks below count with the library's own harness (mp::check), whose
# lines are pinned by the checks of it in an inner bash (--- checks ---).
# shellcheck source=scripts/lib/mp.sh
source scripts/lib/mp.sh

# lib SCRIPT: runs SCRIPT in a clean bash that sourced LIB (default
# scripts/lib/common.sh); stdout, stderr and the exit status go to
# $TMP/out, $TMP/err, $TMP/rc.
lib() {
	local rc=0
	env -i PATH="$PATH" ${MP_LOG_TAG:+MP_LOG_TAG=$MP_LOG_TAG} bash -c 'set -euo pipefail; source "$1"; eval "$2"' \
		_ "${LIB:-scripts/lib/common.sh}" "$1" >"$TMP/out" 2>"$TMP/err" || rc=$?
	echo "$rc" >"$TMP/rc"
}
# matches FILE REGEX: FILE's whole text matches the extended REGEX.
matches() {
	local got
	got=$(cat "$TMP/$1")
	[[ $got =~ $2 ]] || {
		printf '       %s: got [%s], want /%s/\n' "$1" "$got" "$2"
		return 1
	}
}
# is FILE TEXT: FILE (out, err or rc) holds exactly TEXT.
is() {
	local got
	got=$(cat "$TMP/$1")
	[[ $got == "$2" ]] || {
		printf '       %s: got [%s], want [%s]\n' "$1" "$got" "$2"
		return 1
	}
}

# --- log -----------------------------------------------------------------------
lib 'mp::log::info step; mp::log::detail more; mp::log::warn careful; mp::log::error bad'
mp::check "log: info, detail, warn and error on stderr, in their forms" is err $'==> step\n    more\nWARNING: careful\nERROR: bad'
mp::check "log: nothing on stdout" is out ""
LIB=scripts/provision/common.sh lib 'mp::log::info step; mp::log::detail more; mp::log::warn careful'
mp::check "log, provisioning: steps and details on stdout (Vagrant paints stderr red)" is out $'==> step\n    more'
mp::check "log, provisioning: warnings on stderr" is err "WARNING: careful"
MP_LOG_TAG=t lib 'MP_LOG_T0=$(($(date +%s) - 7)); mp::log::info hello; mp::log::error bad'
mp::check "log with MP_LOG_TAG: [TAG HH:MM:SS +Ns] lines, N from MP_LOG_T0" \
	matches err $'^\\[t [0-9:]{8} \\+   [78]s\\] hello\n\\[t [0-9:]{8} \\+   [78]s\\] ERROR: bad$'

# --- die -----------------------------------------------------------------------
lib 'mp::die "it broke"; echo after'
mp::check "die: exit status 1" is rc 1
mp::check "die: error line, nothing after it runs" is err "ERROR: it broke"
lib 'hook() { echo "hook: $1"; }; MP_DIE_HOOK=hook; mp::die "it broke"'
mp::check "die: MP_DIE_HOOK runs first, with the message" is out "hook: it broke"

# --- env -----------------------------------------------------------------------
printf 'A=1\nB="x ${A}"\nnot a line\n' >"$TMP/bad.env"
lib "mp::env::load '$TMP/bad.env'; echo loaded"
mp::check "env::load: a bad line stops with exit 1" is rc 1
mp::check "env::load: ... naming the file and line" is err "$TMP/bad.env:3: not a KEY=VALUE line
ERROR: cannot load $TMP/bad.env (see the line above)"
printf 'A=1\nB="x ${A}"\n' >"$TMP/good.env"
lib "export A=9; mp::env::load '$TMP/good.env'; printf '%s|' \"\${DOTENV_KEYS[@]}\" \"\$A\" \"\$B\"; bash -c 'echo \$B'"
mp::check "env::load: keys in order, the environment wins, \${} follows it, exported" is out "A|B|9|x 9|x 9"

# --- wait_until ----------------------------------------------------------------
lib 'n=0; more() { n=$((n + 1)); echo "poll $n"; ((n >= 3)); }; mp::wait_until 5 "three polls" more; echo "n=$n"'
mp::check "wait_until: returns once the command succeeds (3rd poll), its output discarded" is out "n=3"
mp::check "wait_until: nothing on stderr when it succeeds" is err ""
lib 't0=$(mp::now_us) rc=0; mp::wait_until 1 "never" false || rc=$?; e=$(($(mp::now_us) - t0)); echo "rc=$rc, waited 1 to 3 s: $((e >= 1000000 && e < 3000000))"'
mp::check "wait_until: fails after SECONDS, not before" is out "rc=1, waited 1 to 3 s: 1"
mp::check "wait_until: ... saying what it waited for" is err "WARNING: timed out after 1s waiting for never"

# --- processes -----------------------------------------------------------------
lib 'sleep 60 & p=$!; mp::pid_alive $p && echo alive; mp::stop_pid $p sleeper; mp::pid_alive $p || echo gone'
mp::check "stop_pid: a process that obeys TERM is gone, with no warning" is out $'alive\ngone'
mp::check "stop_pid: ... and nothing on stderr" is err ""
# (python3, one process with no children: KILL leaves nothing behind.)
lib 'python3 -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)" & p=$!; disown; sleep 0.5; t0=$(mp::now_us); mp::stop_pid $p stubborn 2; e=$(($(mp::now_us) - t0)); mp::pid_alive $p || echo "gone, after 2 to 5 s: $((e >= 2000000 && e < 5000000))"'
mp::check "stop_pid: one that ignores TERM is KILLed after SECONDS, not before" is out "gone, after 2 to 5 s: 1"
mp::check "stop_pid: ... and says so" \
	matches err $'^WARNING: timed out after 2s waiting for stubborn to exit\nWARNING: stubborn \\(pid [0-9]+\\) did not stop in 2s, killing it$'
# A zombie (exited, not yet reaped by its parent) answers kill -0.
# bash reaps its own children at once, so the parent here is a sleep that
# does not: (sleep 0.1 &; exec sleep 3).
lib "(sleep 0.1 & echo \$! >'$TMP/zombie'; exec sleep 3) & sleep 0.5; p=\$(cat '$TMP/zombie')"'; kill -0 $p && echo "kill -0 reaches it"; mp::pid_alive $p || echo "not alive"'

mp::check "pid_alive: a zombie is not alive" is out $'kill -0 reaches it\nnot alive'
lib 'mp::pid_alive "" || echo empty; mp::stop_pid 999999999 && echo "no such pid: ok"'
mp::check "pid_alive/stop_pid: no pid, or a pid that does not exist" is out $'empty\nno such pid: ok'

# --- packages ------------------------------------------------------------------
lib 'mp::pkg::installed bash && echo bash; mp::pkg::installed no-such-package-mp || echo none'
mp::check "pkg::installed: bash is, a made-up package is not" is out $'bash\nnone'

# A dpkg lock held by another process (here a python fcntl lock, as apt and dpkg take
# it, on a status file of our own so the machine's apt is not touched): plain apt-get
# fails at once, mp::pkg::apt_get waits until it is released, then runs.
hold_lock() {
	python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a"); fcntl.lockf(f, fcntl.LOCK_EX); print("held", flush=True)
time.sleep(2); open(sys.argv[2], "w").write("released")' "$TMP/dpkg/lock-frontend" "$TMP/dpkg/released" >"$TMP/held" &
	HOLDER=$!
	MP_WAIT_INTERVAL=0.1 mp::wait_until 10 "the lock holder" grep -q held "$TMP/held"
}
mkdir -p "$TMP/dpkg"
cp /var/lib/dpkg/status "$TMP/dpkg/status"
hold_lock
env DEBIAN_FRONTEND=noninteractive apt-get -o Dir::State::status="$TMP/dpkg/status" check >/dev/null 2>"$TMP/err" || true
mp::check "pkg::apt_get's reason: plain apt-get fails on a held dpkg lock" \
	matches err "^E: Could not get lock $TMP/dpkg/lock-frontend.*"
wait "$HOLDER"
rm -f "$TMP/dpkg/released"
hold_lock
rc=0
APT_LOCK_TIMEOUT=30 mp::pkg::apt_get -o Dir::State::status="$TMP/dpkg/status" check >/dev/null 2>&1 || rc=$?
echo "rc=$rc, $(cat "$TMP/dpkg/released" 2>/dev/null || echo 'lock still held')" >"$TMP/out"
mp::check "pkg::apt_get: waits for a held dpkg lock, then succeeds" is out "rc=0, released"
wait "$HOLDER"

# --- checks ----------------------------------------------------------------------
LIB=scripts/lib/mp.sh lib 'mp::check "one" true; mp::check "two" false; mp::check::pass "three"; mp::check::fail "four"; echo "$MP_CHECKS_PASSED/$MP_CHECKS_FAILED"'
mp::check "check: one line per verdict, counted; a failed check is not fatal" is out $'ok     one\nFAILED two\nok     three\nFAILED four\n2/2'
LIB=scripts/lib/mp.sh lib 'f() { echo noise; echo "why it failed" >&2; return 1; }; g() { echo quiet; }; MP_CHECK_TAIL=1; mp::check "f" f; mp::check "g" g'
mp::check "check: MP_CHECK_TAIL keeps the output, shows its tail on failure only" is out $'FAILED f\n       | why it failed\nok     g'
LIB=scripts/lib/mp.sh lib "hook() { echo \"hook: \$1\" >&2; }; MP_CHECK_FILE=$TMP/checks.tsv; MP_CHECK_FAIL_HOOK=hook; mp::check::pass a; mp::check b false"
printf 'PASS\ta\nFAIL\tb\n' >"$TMP/checks.want"
recorded() { is out $'ok     a\nFAILED b' && is err "hook: b" && diff "$TMP/checks.want" "$TMP/checks.tsv"; }
mp::check "check: MP_CHECK_FILE records each verdict, the hook runs on failure" recorded
MP_LOG_TAG=t lib 'MP_LOG_T0=0; mp::check::pass "x"'
mp::check "check: with MP_LOG_TAG the verdict is a timestamped log line" matches err '^\[t [0-9:]{8} \+ *[0-9]+s\]   ok     x$'

# --- one library ---------------------------------------------------------------
LIB=scripts/lib/common.sh lib 'source scripts/provision/common.sh; declare -F | grep -c " mp::die$"'
mp::check "common.sh and provision/common.sh share the one library (sourced once)" is out 1
defined_once() {
	local name n
	for name in die stop_pid wait_until check; do
		n=$(grep -rhE "^(mp::)?$name\(\) \{" scripts --include='*.sh' | grep -vc '^[a-z_]*() { mp::' || true)
		[[ $n == 1 ]] || {
			echo "       $name is defined $n times (aliases aside)"
			return 1
		}
	done
}
mp::check "one die, one stop_pid, one wait_until, one check harness in scripts/" defined_once

echo "lib-test: $MP_CHECKS_PASSED passed, $MP_CHECKS_FAILED failed"
((MP_CHECKS_FAILED == 0))
