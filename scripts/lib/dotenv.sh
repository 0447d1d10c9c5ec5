# shellcheck shell=bash
# The .env reader of every shell script (sourced by scripts/lib/common.sh and
# scripts/provision/common.sh). The format is defined once, in
# srcs/xtask/src/dotenv.rs; scripts/dotenv-test.sh holds this reader to the
# shared fixture in scripts/testdata/dotenv/, as the Rust, Ruby and Python ones.

# Keys of the last file loaded, in order of first appearance.
DOTENV_KEYS=()

# dotenv_load FILE: sets and exports every key of FILE. A key already in the
# environment keeps its value, and later ${KEY} references see that value.
# (Its locals are prefixed _de_ so that no .env key can shadow one.)
# On a bad line prints "FILE:LINE: what is wrong" and returns 1.
dotenv_load() {
	local _de_file=$1 _de_line _de_key _de_value _de_rest _de_out _de_name _de_n=0
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
			_de_out='' _de_rest=$_de_value
			# shellcheck disable=SC2016 # a literal "${" is what we look for
			while [[ $_de_rest == *'${'* ]]; do
				_de_out+=${_de_rest%%\$\{*}
				_de_rest=${_de_rest#*\$\{}
				[[ $_de_rest =~ ^([A-Za-z_][A-Za-z0-9_]*)\}(.*)$ ]] || {
					printf "%s:%d: %s: '\${' must start a reference \${NAME}\n" "$_de_file" "$_de_n" "$_de_key" >&2
					return 1
				}
				_de_name=${BASH_REMATCH[1]}
				_de_rest=${BASH_REMATCH[2]}
				[[ -n ${_de_seen[$_de_name]+x} ]] || {
					printf '%s:%d: %s: ${%s} is used before it is defined\n' "$_de_file" "$_de_n" "$_de_key" "$_de_name" >&2
					return 1
				}
				_de_out+=${!_de_name}
			done
			_de_value=$_de_out$_de_rest
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
