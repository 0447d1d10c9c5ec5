# shellcheck shell=bash
# Sourced by the database and broker entrypoints (copied into both images):
# where their passwords come from, and which ones they refuse.

# file_env NAME: NAME from the file NAME_FILE names (a Docker secret), trailing
# newlines removed, as the services read *_PASSWORD_FILE; both set is an error.
file_env() {
	local name=$1 file_var=${1}_FILE
	[[ -n ${!file_var:-} ]] || return 0
	[[ -z ${!name:-} ]] || {
		printf 'entrypoint: %s\n' "$name is set too: set only one of $name and $file_var" >&2
		exit 1
	}
	[[ -r ${!file_var} ]] || {
		printf 'entrypoint: %s\n' "$file_var: cannot read ${!file_var}" >&2
		exit 1
	}
	printf -v "$name" '%s' "$(<"${!file_var}")"
	export "${name?}"
	unset "$file_var"
}

# refuse_default_passwords VAR...: stops the container when one of the named
# variables still holds a committed *-change-me placeholder of .env, which
# everyone can read, unless MP_ALLOW_DEFAULT_PASSWORDS=1, as VM provisioning
# does (scripts/provision/common.sh). Runs on every start: the services keep
# using that password after the first one.
refuse_default_passwords() {
	local name weak=()
	for name in "$@"; do
		[[ ${!name-} == *change-me* ]] && weak+=("$name")
	done
	((${#weak[@]} > 0)) || return 0
	if [[ ${MP_ALLOW_DEFAULT_PASSWORDS:-0} == 1 ]]; then
		printf 'entrypoint: WARNING: MP_ALLOW_DEFAULT_PASSWORDS=1: running with the committed placeholder password of %s\n' "${weak[*]}" >&2
		return 0
	fi
	printf '%s\n' "entrypoint: refusing to start: ${weak[*]} still hold .env's committed *-change-me placeholder, which everyone can read. Put passwords of your own in .env (every *_PASSWORD line that ends in change-me) or in your shell's environment, then run up again; or set MP_ALLOW_DEFAULT_PASSWORDS=1 to run with the placeholders anyway (a throw-away trial on loopback)." >&2
	exit 1
}
