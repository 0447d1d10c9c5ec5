#!/bin/bash
# PostgreSQL of one movie-platform database, as the postgres user. On the
# first start (empty data volume) it creates the cluster, the role and the
# database from POSTGRES_DB, POSTGRES_USER and POSTGRES_PASSWORD (given at run
# time from .env, never baked into the image); on every later start it
# changes nothing and just runs the server. With POSTGRES_MONITOR_USER and
# POSTGRES_MONITOR_PASSWORD it also creates, once, the login role of
# prometheus-postgres-exporter: pg_monitor and CONNECT on this database,
# no table right, and pg_hba.conf admits it from the network to this database
# only. Once means also on a volume made before that role existed: it has
# its own marker.
set -euo pipefail

: "${PGDATA:?PGDATA is not set}"
done_marker=$PGDATA/movie-platform-initialized
monitor_marker=$PGDATA/movie-platform-monitor-initialized

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
	# The monitoring role: TCP logins to this database only.
	local mon_line
	if [[ -n ${POSTGRES_MONITOR_USER:-} ]]; then
		mon_line=$(printf 'host %s %s all scram-sha-256' "$POSTGRES_DB" "$POSTGRES_MONITOR_USER")
		grep -qxF "$mon_line" "$PGDATA/pg_hba.conf" || printf '%s\n' "$mon_line" >>"$PGDATA/pg_hba.conf"
	fi
	# A private socket and no TCP listener: nobody (not the health check)
	# sees this server until the role and database exist.
	local sock
	sock=$(mktemp -d)
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $sock" -w start >/dev/null
	# The superuser's session on that socket, for both roles. Passwords reach
	# psql through its environment (\getenv), never its arguments, which
	# every process on the host can read (ps).
	admin_psql() { psql -X -q -h "$sock" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
	admin_psql -v role="$POSTGRES_USER" -v db="$POSTGRES_DB" <<-'SQL'
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
	if [[ -n ${POSTGRES_MONITOR_USER:-} && ! -e $monitor_marker ]]; then
		# pg_monitor reads the statistics views and settings only; PUBLIC
		# loses CONNECT and TEMPORARY on the database (its owner keeps
		# them), so the role's one other right is the CONNECT granted here.
		# Its tables grant nothing to PUBLIC: reading one is refused.
		admin_psql -v mon="$POSTGRES_MONITOR_USER" -v db="$POSTGRES_DB" <<-'SQL'
			\getenv pw POSTGRES_MONITOR_PASSWORD
			SET password_encryption = 'scram-sha-256';
			SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'mon') AS need_mon \gset
			\if :need_mon
			CREATE ROLE :"mon" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'pw';
			\endif
			GRANT pg_monitor TO :"mon";
			REVOKE CONNECT, TEMPORARY ON DATABASE :"db" FROM PUBLIC;
			GRANT CONNECT ON DATABASE :"db" TO :"mon";
		SQL
		touch "$monitor_marker"
		say "created the monitoring role $POSTGRES_MONITOR_USER (pg_monitor, CONNECT on $POSTGRES_DB)"
	fi
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	rmdir "$sock"
	[[ -e $done_marker ]] || say "created role $POSTGRES_USER and database $POSTGRES_DB"
	touch "$done_marker"
}

# A password from a Docker secret is checked like one from the environment.
file_env POSTGRES_PASSWORD
file_env POSTGRES_MONITOR_PASSWORD
if [[ -n ${POSTGRES_MONITOR_USER:-} && -z ${POSTGRES_MONITOR_PASSWORD:-} ]]; then
	say "POSTGRES_MONITOR_USER is set but POSTGRES_MONITOR_PASSWORD is empty: set both in .env, or neither"
	exit 1
fi
refuse_default_passwords POSTGRES_PASSWORD POSTGRES_MONITOR_PASSWORD
if [[ ! -e $done_marker ]] || [[ -n ${POSTGRES_MONITOR_USER:-} && ! -e $monitor_marker ]]; then
	first_start
fi
unset POSTGRES_PASSWORD POSTGRES_MONITOR_PASSWORD
exec postgres -D "$PGDATA" -c listen_addresses='*' -c password_encryption=scram-sha-256 "$@"
