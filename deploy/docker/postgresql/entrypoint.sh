#!/bin/bash
# PostgreSQL of one movie-platform database, as the postgres user. On the
# first start (empty data volume) it creates the cluster, the role and the
# database from POSTGRES_DB, POSTGRES_USER and POSTGRES_PASSWORD (given at run
# time from .env, never baked into the image); on every later start it
# changes nothing and just runs the server.
set -euo pipefail

: "${PGDATA:?PGDATA is not set}"
done_marker=$PGDATA/movie-platform-initialized

say() { printf 'entrypoint: %s\n' "$*" >&2; }

# shellcheck source=deploy/docker/default-passwords.sh
source /usr/local/lib/movie-platform/default-passwords.sh

first_start() {
	local name
	for name in POSTGRES_DB POSTGRES_USER POSTGRES_PASSWORD; do
		[[ -n ${!name:-} ]] || {
			say "$name is empty: set it in .env (the compose file passes it)"
			exit 1
		}
	done
	if [[ ! -s $PGDATA/PG_VERSION ]]; then
		say "empty data volume: creating the cluster"
		initdb -D "$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
			--encoding=UTF8 --locale=C.UTF-8 >/dev/null
		# TCP logins from the compose network, for this role and database
		# only, with a scram password.
		printf 'host %s %s all scram-sha-256\n' "$POSTGRES_DB" "$POSTGRES_USER" >>"$PGDATA/pg_hba.conf"
	fi
	# A private socket and no TCP listener: nobody (not the health check)
	# sees this server until the role and database exist.
	local sock
	sock=$(mktemp -d)
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $sock" -w start >/dev/null
	# The password reaches psql through its environment (\getenv), never
	# its arguments, which every process on the host can read (ps).
	psql -X -q -h "$sock" -U postgres -d postgres -v ON_ERROR_STOP=1 \
		-v role="$POSTGRES_USER" -v db="$POSTGRES_DB" <<-'SQL'
			\getenv pw POSTGRES_PASSWORD
			SET password_encryption = 'scram-sha-256';
			SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') AS need_role \gset
			\if :need_role
			CREATE ROLE :"role" LOGIN PASSWORD :'pw';
			\endif
			SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') AS need_db \gset
			\if :need_db
			CREATE DATABASE :"db" OWNER :"role";
			\endif
		SQL
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	rmdir "$sock"
	touch "$done_marker"
	say "created role $POSTGRES_USER and database $POSTGRES_DB"
}

# A password from a Docker secret is checked like one from the environment.
file_env POSTGRES_PASSWORD
refuse_default_passwords POSTGRES_PASSWORD
[[ -e $done_marker ]] || first_start
unset POSTGRES_PASSWORD
exec postgres -D "$PGDATA" -c listen_addresses='*' -c password_encryption=scram-sha-256 "$@"
