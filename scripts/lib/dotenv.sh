# shellcheck shell=bash
# The .env reader of every shell script (sourced by scripts/lib/mp.sh, hence by
# scripts/lib/common.sh and scripts/provision/common.sh), and the ${NAME}
# expansion of provisioning's config templates. The format is defined once, in
# srcs/xtask/src/dotenv.rs; scripts/dotenv-test.sh holds this reader to the
# shared fixture in scripts/testdata/dotenv/, as the Rust, Ruby and Python ones.

# Keys of the last file loaded, in order of first appearance.
DOTENV_KEYS=()

# dotenv_expand VALUE [KNOWN]: VALUE with every ${NAME} replaced by the value of
# the variable NAME, in DOTENV_EXPANDED (a variable, not stdout: no subshell per
# line, and the caller decides how to report). NAME must be a key of the
# associative array named KNOWN (dotenv_load: the keys above in the file) or,
# without KNOWN, a variable that is set (provisioning's config templates,
# render_template). Otherwise sets DOTENV_ERROR and returns 1: a typo must not
# become an empty host name. (Locals are prefixed _dx_ so no NAME shadows one.)
DOTENV_EXPANDED=''
DOTENV_ERROR=''
dotenv_expand() {
	local _dx_rest=$1 _dx_out='' _dx_name
	[[ -z ${2:-} ]] || local -n _dx_known=$2
	# shellcheck disable=SC2016 # a literal "${" is what we look for
	while [[ $_dx_rest == *'${'* ]]; do
		_dx_out+=${_dx_rest%%\$\{*}
		_dx_rest=${_dx_rest#*\$\{}
		[[ $_dx_rest =~ ^([A-Za-z_][A-Za-z0-9_]*)\}(.*)$ ]] || {
			DOTENV_ERROR="'\${' must start a reference \${NAME}"
			return 1
		}
		_dx_name=${BASH_REMATCH[1]}
		_dx_rest=${BASH_REMATCH[2]}
		if [[ -n ${2:-} ]]; then
			[[ -n ${_dx_known[$_dx_name]+x} ]]
		else
			[[ -n ${!_dx_name+x} ]]
		fi || {
			DOTENV_ERROR="\${$_dx_name} is used before it is defined"
			return 1
		}
		_dx_out+=${!_dx_name}
	done
	DOTENV_EXPANDED=$_dx_out$_dx_rest
}

# dotenv_load FILE: sets and exports every key of FILE. A key already in the
# environment keeps its value, and later ${KEY} references see that value.
# (Its locals are prefixed _de_ so that no .env key can shadow one.)
# On a bad line prints "FILE:LINE: what is wrong" and returns 1.
dotenv_load() {
	local _de_file=$1 _de_line _de_key _de_value _de_n=0
	local -A _de_seen=() _de_from_env=()
	DOTENV_KEYS=()
	[[ -r $_de_file ]] || {
		printf '%s: cannot read the file\n' "$_de_file" >&2
		return 1
	}
	while IFS= read -r _de_line || [[ -n $_de_line ]]; do
		_de_n=$((_de_n + 1))
		((_de_n > 1)) || _de_line=${_de_line#$'\xef\xbb\xbf'}
		_de_line=${_de_line%$'\r'}
		_de_line=${_de_line#"${_de_line%%[!$' \t']*}"}
		[[ -z $_de_line || $_de_line == \#* ]] && continue
		[[ $_de_line =~ ^export[[:blank:]]+(.*)$ ]] && _de_line=${BASH_REMATCH[1]}
		[[ $_de_line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || {
			printf '%s:%d: not a KEY=VALUE line\n' "$_de_file" "$_de_n" >&2
			return 1
		}
		_de_key=${BASH_REMATCH[1]}
		_de_value=${BASH_REMATCH[2]}
		_de_value=${_de_value#"${_de_value%%[!$' \t']*}"}
		_de_value=${_de_value%"${_de_value##*[!$' \t']}"}
		if [[ $_de_value == [\"\']* ]]; then
			if ((${#_de_value} < 2)) || [[ ${_de_value: -1} != "${_de_value:0:1}" ]]; then
				printf '%s:%d: %s: the quote that opens the value is not closed\n' "$_de_file" "$_de_n" "$_de_key" >&2
				return 1
			fi
		fi
		if [[ $_de_value == \'* ]]; then
			_de_value=${_de_value:1:${#_de_value}-2}
		else
			[[ $_de_value == \"* ]] && _de_value=${_de_value:1:${#_de_value}-2}
			dotenv_expand "$_de_value" _de_seen || {
				printf '%s:%d: %s: %s\n' "$_de_file" "$_de_n" "$_de_key" "$DOTENV_ERROR" >&2
				return 1
			}
			_de_value=$DOTENV_EXPANDED
		fi
		if [[ -z ${_de_seen[$_de_key]+x} ]]; then
			DOTENV_KEYS+=("$_de_key")
			_de_seen[$_de_key]=1
			[[ -n ${!_de_key+x} ]] && _de_from_env[$_de_key]=1
		fi
		[[ -n ${_de_from_env[$_de_key]+x} ]] && continue
		printf -v "$_de_key" '%s' "$_de_value"
		# shellcheck disable=SC2163 # exporting the variable whose name is in $_de_key
		export "$_de_key"
	done <"$_de_file"
}
