#!/usr/bin/env bash
# The three-VM deployment on one machine: three network namespaces stand for
# gateway-vm, inventory-vm and billing-vm, a fourth for "the host" (the
# client), all linked by a bridge that lives in a fifth namespace. Each runs
# what its VM runs, configured the way provisioning configures the VM:
#   - env files from .env by the SAME code (scripts/provision/common.sh
#     render_service_env), only the host addresses overridden to the test subnet;
#   - PostgreSQL with deploy/postgresql/movie-platform.conf.in, role and
#     database by pg_ensure_db; RabbitMQ with deploy/rabbitmq/rabbitmq.conf.in
#     and enabled_plugins, user by rabbitmq_ensure_user;
#   - each VM's nftables ruleset (firewall_ruleset) loaded in its namespace;
#   - the static binaries from dist/ as an unprivileged user.
# Then, from the client namespace through the gateway, the audit walk
# (scripts/lib/walk.sh): the movies API, orders stored once, the worker stopped
# (orders still accepted, not stored) and started again (all stored exactly
# once); and the security promises:
#   - databases unreachable from other hosts and bound to 127.0.0.1, inventory
#     on its private address and reachable from the gateway only, AMQP from
#     the gateway only, management UI, epmd and Erlang distribution on
#     loopback, ssh closed between the VMs and open on the Vagrant side (a
#     second network, "vagrant", stands for the NAT/management interface);
#   - the RabbitMQ accounts: the gateway's cannot consume, get or purge, the
#     worker's cannot publish, neither can declare outside the topology nor
#     use the management API, guest is gone;
#   - each VM's output policy: a listener of the test's own refused from every
#     VM, https only to root (apt), the other VMs kept from the gateway's port;
#   - the per-source limits on the gateway's port: one client (client) holding
#     its share of connections, or opening them too fast, is refused more, and
#     its neighbour (a fifth namespace, another address) is served meanwhile;
#   - no password on any process's command line while provisioning runs
#     (every /proc/*/cmdline sampled), the committed passwords refused.
#
# Usage: scripts/three-host-test.sh     (root; needs dist/ from scripts/build.sh)
# Env:   THREE_HOST_SUBNET (default 10.203.0, a /24 that exists only inside
#        the namespaces), THREE_HOST_KEEP=1 keeps the work dir (logs) after the run,
#        DIST_DIR (default dist/; the binaries are in its <debian-arch>/ folder).
# Prints ok/FAILED per check (mp::check); exits non-zero if any check fails. Stops every
# process it started and deletes its namespaces, whatever happens.
set -euo pipefail

# shellcheck source=scripts/lib/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"

DEPLOY_DIR="$ROOT/deploy"
NET="${THREE_HOST_SUBNET:-10.203.0}"
TAG="mp3h$$"
# neighbour: a second client, on another address, for the per-source limits.
declare -A IP=([gateway]="$NET.10" [inventory]="$NET.11" [billing]="$NET.12" [client]="$NET.100"
	[neighbour]="$NET.101")
declare -A NS=([gateway]="$TAG-gateway" [inventory]="$TAG-inventory" [billing]="$TAG-billing"
	[client]="$TAG-client" [neighbour]="$TAG-neighbour" [vagrant]="$TAG-vagrant")
# Vagrant's side of each VM (its NAT / management interface), another subnet.
MNET="${NET%.*}.$((${NET##*.} + 1))"
declare -A MIP=([gateway]="$MNET.10" [inventory]="$MNET.11" [billing]="$MNET.12" [vagrant]="$MNET.2")
NS_BRIDGE="$TAG-bridge"
HOSTS=(gateway inventory billing client neighbour)

# --- prerequisites ---------------------------------------------------------
mp::netns::preflight three-host-test postgresql-15 rabbitmq-server nftables curl python3 python3-pika iproute2 util-linux

# --- clean-up ----------------------------------------------------------------
WORK="$(mktemp -d /tmp/mp-three-host.XXXXXX)"
chmod 0755 "$WORK"
declare -A SERVICE_PID=()
PG_DIRS=()

cleanup() {
	local rc=$? name pid dir ns
	trap - EXIT INT TERM
	set +e
	for name in "${!SERVICE_PID[@]}"; do
		mp::stop_pid "${SERVICE_PID[$name]}" "$name" 30
	done
	for dir in "${PG_DIRS[@]}"; do
		runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
	done
	if [[ -f "$WORK/rabbitmq/rabbitmq.pid" ]]; then
		mp::stop_pid "$(cat "$WORK/rabbitmq/rabbitmq.pid")" rabbitmq 30
	fi
	# Whatever is left in our namespaces (epmd, a stuck child).
	mp::netns::teardown term "${THREE_HOST_KEEP:-0}" three-host-test
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- settings: .env with the test subnet instead of 192.168.56.x ---------------
# Forget any .env variable the caller's environment holds, so only the file
# and the address overrides count (the same precedence as on a VM).
while IFS= read -r key; do
	unset "$key"
done < <(sed -n 's/^[[:space:]]*\(export[[:space:]]\+\)\?\([A-Za-z_][A-Za-z0-9_]*\)=.*/\2/p' .env)
export VM_GATEWAY_IP="${IP[gateway]}" VM_INVENTORY_IP="${IP[inventory]}" VM_BILLING_IP="${IP[billing]}"

# The committed passwords are refused by provisioning unless explicitly allowed.
defaults_refused() {
	local out
	out="$(env -i PATH="$PATH" bash -c '. scripts/provision/common.sh; mp::env::load .env; refuse_default_passwords' 2>&1)" &&
		return 1
	grep -q "RABBITMQ_GATEWAY_PASSWORD.*MP_ALLOW_DEFAULT_PASSWORDS=1" <<<"${out//$'\n'/ }"
}
defaults_allowed_explicitly() {
	env -i PATH="$PATH" MP_ALLOW_DEFAULT_PASSWORDS=1 \
		bash -c '. scripts/provision/common.sh; mp::env::load .env; refuse_default_passwords' >/dev/null 2>&1
}
mp::check "provisioning refuses the committed *-change-me passwords" defaults_refused
mp::check "...unless MP_ALLOW_DEFAULT_PASSWORDS=1 says so" defaults_allowed_explicitly

# Strong passwords instead, as `vagrant up` generates them: every *_PASSWORD of
# .env that is a value (not a ${reference}); the references follow.
SECRET_KEYS=()
while IFS= read -r key; do
	SECRET_KEYS+=("$key")
	printf -v "$key" '%s' "$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
	export "${key?}"
done < <(sed -n 's/^\([A-Z_]*_PASSWORD\)=[^$]*$/\1/p' .env)
mp::env::load "$ROOT/.env"
# The metrics listeners on the private addresses, as provision_init does.
vm_metrics_hosts
mp::check "generated passwords pass the check" refuse_default_passwords
install -m 0600 /dev/null "$WORK/secrets"
for key in "${SECRET_KEYS[@]}"; do printf '%s\n' "${!key}"; done >"$WORK/secrets"
# A canary, put on a command line on purpose: the sampler must catch it.
CANARY="canary-$(head -c 9 /dev/urandom | base64 | tr '+/' '-_')"
printf '%s\n' "$CANARY" >>"$WORK/secrets"

mp::log::info "settings from .env (hosts on $NET.0/24), rendered by scripts/provision/common.sh"
# As on the VMs: env files without the passwords, which are credentials (one
# file each, in a directory only the service's user reads, as systemd's
# LoadCredential= makes it; the services run as nobody here).
declare -A PREFIX=(["api-gateway"]=GATEWAY_ ["inventory-app"]=INVENTORY_ ["billing-worker"]=BILLING_)
for name in "${!PREFIX[@]}"; do
	render_service_env "${PREFIX[$name]}" "$WORK/$name.env" 0600 "" no-passwords >/dev/null
	render_service_credentials "${PREFIX[$name]}" "$WORK/credentials/$name" nobody:nogroup >/dev/null
done
mp::check "gateway env file points at the inventory and RabbitMQ hosts" \
	grep -qx "GATEWAY_INVENTORY_URL=http://${IP[inventory]}:$INVENTORY_PORT" "$WORK/api-gateway.env"
own_variables_only() {
	local f file prefix
	for f in api-gateway:GATEWAY_ inventory-app:INVENTORY_ billing-worker:BILLING_; do
		file="$WORK/${f%%:*}.env" prefix="${f##*:}"
		[[ "$(stat -c %a "$file")" == 600 ]] || return 1
		if grep -v "^#" "$file" | grep -v -e "^$prefix" -e "^RUST_LOG=" | grep -q .; then
			return 1
		fi
	done
}
mp::check "each env file: mode 0600, only its service's variables (and RUST_LOG)" own_variables_only
no_password_in_env_files() {
	local name
	for name in "${!PREFIX[@]}"; do
		! grep -q '_PASSWORD=' "$WORK/$name.env" && ! grep -qF -f "$WORK/secrets" "$WORK/$name.env" || return 1
	done
}
mp::check "no env file holds a password (they are credentials)" no_password_in_env_files
# unit_credentials NAME: the credentials deploy/systemd/NAME.service loads, and
# the *_FILE setting that points at each, as "KEY KEY_FILE=%d/KEY" lines.
unit_credentials() {
	local unit="$DEPLOY_DIR/systemd/$1.service" key
	sed -n 's/^LoadCredential=\([A-Z_]*\):.*/\1/p' "$unit" | sort | while read -r key; do
		grep -qx "LoadCredential=$key:$CREDENTIALS_ROOT/$1/$key" "$unit" &&
			grep -qx "Environment=${key}_FILE=%d/$key" "$unit" && printf '%s\n' "$key"
	done
}
credentials_match() {
	local name
	for name in "${!PREFIX[@]}"; do
		[[ "$(unit_credentials "$name")" == "$(service_credential_keys "${PREFIX[$name]}" | sort)" ]] || {
			echo "$name.service loads [$(unit_credentials "$name" | xargs)], .env has [$(service_credential_keys "${PREFIX[$name]}" | xargs)]"
			return 1
		}
	done
}
mp::check "each unit loads exactly its service's passwords as credentials (LoadCredential=, *_PASSWORD_FILE=%d/...)" credentials_match

# --- network -----------------------------------------------------------------------
mp::log::info "network namespaces: bridge + ${HOSTS[*]}"
mp::netns::bridge br0
for h in "${HOSTS[@]}"; do
	mp::netns::attach br0 "v-$h" eth0 "$h" "${IP[$h]}"
done
# The Vagrant side: a second bridge, one more interface per VM, and a
# namespace for Vagrant itself (where `vagrant ssh` comes from).
mp::netns::bridge br1
for h in gateway inventory billing vagrant; do
	mp::netns::attach br1 "m-$h" eth1 "$h" "${MIP[$h]}"
done
# listening HOST PORT: something in HOST's namespace listens on TCP PORT.
listening() { in_ns "$1" ss -Hltn "sport = :$2" | grep -q .; }

# Vagrant's ssh session is open when provisioning first loads the table, and
# Vagrant sends nothing while it waits for the script's output. conntrack then
# first sees that session in the VM's own packets, as "new" (not a reply): the
# output policy must still let sshd's side out, or provisioning hangs. So each
# VM's stand-in sshd streams a line every 0.1 s to a silent client in Vagrant's
# namespace, and the table is loaded mid-stream.
for h in gateway inventory billing; do
	firewall_ruleset "$h" >"$WORK/firewall-$h.nft"
done
for h in gateway inventory billing; do
	in_ns "$h" "$PY" -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 22)); s.listen(1)
c = s.accept()[0]; s.close()
for i in range(150):
    c.sendall(b"tick\n"); time.sleep(0.1)
c.recv(1)  # the client closes first: no TIME_WAIT left on port 22 here' "${MIP[$h]}" >/dev/null 2>&1 &
	mp::wait_until 10 "the $h-vm session's sshd" listening "$h" 22 ||
		mp::check::fail "$h-vm: the session's sshd on port 22 did not start"
	in_ns vagrant "$PY" -c 'import socket, sys
c = socket.create_connection((sys.argv[1], 22), timeout=15)
with open(sys.argv[2], "wb", buffering=0) as out:
    for _, line in zip(range(150), c.makefile("rb")):
        out.write(line)' "${MIP[$h]}" "$WORK/session-$h.out" >/dev/null 2>&1 &
done
session_lines() { [[ -s $WORK/session-$1.out ]] && wc -l <"$WORK/session-$1.out" || echo 0; }
session_started() { (($(session_lines "$1") >= 3)); }
declare -A SESSION_BEFORE=()
for h in gateway inventory billing; do
	mp::wait_until 10 "the $h-vm session to stream" session_started "$h" ||
		mp::check::fail "$h-vm: the session's client received nothing"
	in_ns "$h" nft -f "$WORK/firewall-$h.nft" || abort "load the $h-vm nftables rules"
	SESSION_BEFORE[$h]="$(session_lines "$h")"
done
mp::check::pass "namespaces up, each VM's nftables rules loaded"
sleep 2
session_flows() { (($(session_lines "$1") >= SESSION_BEFORE[$1] + 10)); }
for h in gateway inventory billing; do
	mp::check "$h-vm: an ssh session open while the table was loaded still flows (${SESSION_BEFORE[$h]} lines before, $(session_lines "$h") 2 s after)" \
		session_flows "$h"
done

# --- PostgreSQL, as on inventory-vm and billing-vm ------------------------------------
# pg_up HOST DB ROLE PASSWORD OWNER OWNER_PASSWORD: initdb (Debian's defaults:
# peer on the socket, scram on TCP), our config snippet, start inside the
# namespace, roles + database by the provisioning code.
pg_up() {
	local host="$1" db="$2" role="$3" password="$4" owner="$5" owner_password="$6" dir="$WORK/pg-$1"
	install -d -o postgres -g postgres -m 0700 "$dir" "$dir/data" "$dir/sock"
	runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -U postgres \
		--auth-local=peer --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
		{
			cat "$dir/initdb.log" >&2
			abort "initdb for $host-vm"
		}
	render_template "$DEPLOY_DIR/postgresql/movie-platform.conf.in" "$dir/movie-platform.conf" 0644 \
		postgres:postgres >/dev/null
	printf "include '%s'\nunix_socket_directories = '%s'\n" "$dir/movie-platform.conf" "$dir/sock" \
		>>"$dir/data/postgresql.conf"
	PG_DIRS+=("$dir")
	in_ns "$host" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
		>/dev/null || {
		tail -n 20 "$dir/server.log" >&2
		abort "start PostgreSQL on $host-vm"
	}
	pg_target "$host"
	pg_ensure_db "$db" "$role" "$password" 127.0.0.1 "$POSTGRES_PORT" "$owner" "$owner_password" >/dev/null ||
		abort "roles and database on $host-vm"
	mp::check::pass "$host-vm: PostgreSQL up, database $db owned by $owner, served as $role (scram logins over 127.0.0.1)"
}

# pg_target HOST: points pg_ensure_db (provisioning code) at HOST's instance.
# shellcheck disable=SC2034 # PG_SUPER/PG_CLIENT are read by pg_ensure_db
pg_target() {
	PG_SUPER=(ip netns exec "${NS[$1]}" runuser -u postgres -- psql -h "$WORK/pg-$1/sock" -p "$POSTGRES_PORT" -d postgres)
	PG_CLIENT=(ip netns exec "${NS[$1]}")
}

# sql HOST DB QUERY: as the postgres superuser over the socket (the audit's
# `sudo -u postgres psql`), unaligned output.
sql() {
	in_ns "$1" runuser -u postgres -- psql -X -q -h "$WORK/pg-$1/sock" -p "$POSTGRES_PORT" -d "$2" -tAc "$3"
}

# From here until the accounts have been set up (and reset) twice, every
# process's command line is sampled for the passwords.
"$PY" "$ROOT/scripts/lib/argv-watch.py" "$WORK/secrets" "$WORK/argv-watch.stop" >"$WORK/argv-watch.out" 2>&1 &
ARGV_WATCH_PID=$!
sleep 0.5
# A process that forks nothing: a forked child carries its parent's command
# line until it execs, so a bash canary could be seen twice (once under its
# child's pid) and break the "exactly one leak" count below.
"$PY" -c 'import time; time.sleep(1)' "$CANARY" &
CANARY_PID=$!

mp::log::info "PostgreSQL on inventory-vm and billing-vm"
pg_up inventory "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD" \
	"$INVENTORY_DB_MIGRATION_USER" "$INVENTORY_DB_MIGRATION_PASSWORD"
pg_up billing "$BILLING_DB_NAME" "$BILLING_DB_USER" "$BILLING_DB_PASSWORD" \
	"$BILLING_DB_MIGRATION_USER" "$BILLING_DB_MIGRATION_PASSWORD"

# --- RabbitMQ, as on billing-vm ---------------------------------------------------------
mp::log::info "RabbitMQ on billing-vm"
RMQ="$WORK/rabbitmq"
install -d -o rabbitmq -g rabbitmq -m 0750 "$RMQ" "$RMQ/mnesia" "$RMQ/log"
render_template "$DEPLOY_DIR/rabbitmq/rabbitmq.conf.in" "$RMQ/rabbitmq.conf" 0644 rabbitmq:rabbitmq >/dev/null
install -o rabbitmq -g rabbitmq -m 0644 "$DEPLOY_DIR/rabbitmq/enabled_plugins" "$RMQ/enabled_plugins"
# rabbitmq-env.conf as on billing-vm (Erlang distribution on the loopback
# address the node's host name resolves to); ERL_EPMD_ADDRESS stands in for
# the epmd.socket drop-in (here the node starts its own epmd).
RABBITMQ_DIST_INTERFACE="{$(rabbitmq_node_address localhost | tr . ,)}"
export RABBITMQ_DIST_INTERFACE
render_template "$DEPLOY_DIR/rabbitmq/rabbitmq-env.conf.in" "$RMQ/rabbitmq-env.conf" 0644 rabbitmq:rabbitmq >/dev/null
RMQ_ENV=(HOME=/var/lib/rabbitmq RABBITMQ_NODENAME=rabbit@localhost ERL_EPMD_ADDRESS=127.0.0.1
	RABBITMQ_CONFIG_FILE="$RMQ/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ/enabled_plugins"
	RABBITMQ_CONF_ENV_FILE="$RMQ/rabbitmq-env.conf" RABBITMQ_MNESIA_BASE="$RMQ/mnesia"
	RABBITMQ_LOG_BASE="$RMQ/log" RABBITMQ_PID_FILE="$RMQ/rabbitmq.pid")
RABBITMQCTL=(ip netns exec "${NS[billing]}" runuser -u rabbitmq -- env "${RMQ_ENV[@]}"
	/usr/lib/rabbitmq/bin/rabbitmqctl)
in_ns billing runuser -u rabbitmq -- env "${RMQ_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server -detached \
	>"$RMQ/start.log" 2>&1 || true
"${RABBITMQCTL[@]}" -q --timeout 120 wait "$RMQ/rabbitmq.pid" >/dev/null 2>&1 ||
	{
		tail -n 30 "$RMQ/start.log" "$RMQ"/log/*.log >&2 2>/dev/null
		abort "start RabbitMQ on billing-vm"
	}
rabbitmq_accounts >/dev/null || abort "RabbitMQ accounts"
mp::check::pass "billing-vm: RabbitMQ up (deploy/rabbitmq config), accounts $RABBITMQ_GATEWAY_USER, $RABBITMQ_WORKER_USER, $RABBITMQ_ADMIN_USER on vhost $RABBITMQ_VHOST"
# accounts_again: provisioning's account steps once more, on every host; prints
# what they did.
accounts_again() {
	rabbitmq_accounts
	pg_target inventory
	pg_ensure_db "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD" 127.0.0.1 "$POSTGRES_PORT" \
		"$INVENTORY_DB_MIGRATION_USER" "$INVENTORY_DB_MIGRATION_PASSWORD"
	pg_target billing
	pg_ensure_db "$BILLING_DB_NAME" "$BILLING_DB_USER" "$BILLING_DB_PASSWORD" 127.0.0.1 "$POSTGRES_PORT" \
		"$BILLING_DB_MIGRATION_USER" "$BILLING_DB_MIGRATION_PASSWORD"
}
# Provisioning is idempotent: a second run creates nothing, resets nothing.
setup_again() {
	local out
	out="$(accounts_again)" || return 1
	! grep -e created -e "set from" -e "now owned" <<<"$out"
}
mp::check "user/database set-up run again: nothing created or reset" setup_again
# Passwords changed behind provisioning's back are set again from .env (the
# reset paths: rabbitmqctl change_password, psql ALTER ROLE).
reset_again() {
	local out
	"${RABBITMQCTL[@]}" -q change_password "$RABBITMQ_GATEWAY_USER" not-the-one-from-env >/dev/null || return 1
	sql inventory postgres "ALTER ROLE \"$INVENTORY_DB_USER\" PASSWORD 'not-the-one-from-env'" >/dev/null || return 1
	out="$(accounts_again)" || return 1
	grep -q "password of $RABBITMQ_GATEWAY_USER set from .env" <<<"$out" &&
		grep -q "password of role $INVENTORY_DB_USER set from .env" <<<"$out"
}
mp::check "passwords changed by hand are set again from .env" reset_again
touch "$WORK/argv-watch.stop"
argv_clean() {
	local rc=0
	wait "$ARGV_WATCH_PID" || rc=$?
	sed 's/^/      /' "$WORK/argv-watch.out"
	# Exactly one leak: the canary's.
	[[ "$rc" -eq 2 ]] && grep -q '^samples=[1-9]' "$WORK/argv-watch.out" &&
		[[ "$(grep -c '^LEAK' "$WORK/argv-watch.out")" == 1 ]] &&
		grep -q "^LEAK pid $CANARY_PID:" "$WORK/argv-watch.out"
}
mp::check "no password on any command line (/proc/*/cmdline sampled while accounts were created, checked and reset; the canary caught)" argv_clean

# --- services ------------------------------------------------------------------------------
# start_service HOST NAME: the binary from dist/, its env file and nothing else
# in its environment, as nobody, log in the work dir.
start_service() {
	local host="$1" name="$2" envargs creds
	creds="$WORK/credentials/$name"
	mapfile -t envargs < <(env_file_args "$WORK/$name.env")
	# The unit's own Environment= lines, %d being the credentials directory.
	mapfile -t -O "${#envargs[@]}" envargs < <(sed -n "s|^Environment=||; T; s|%d|$creds|g; p" \
		"$DEPLOY_DIR/systemd/$name.service")
	envargs+=("CREDENTIALS_DIRECTORY=$creds")
	# A plain command (not a function) in the background: $! is then the
	# service itself (ip netns exec, setpriv and env all exec), the pid the
	# worker test stops.
	ip netns exec "${NS[$host]}" setpriv --reuid=65534 --regid=65534 --clear-groups -- \
		env -i PATH=/usr/bin:/bin "${envargs[@]}" "$BIN_DIR/$name" >>"$WORK/$name.log" 2>&1 &
	SERVICE_PID[$name]=$!
}

# listening HOST PORT: something listens on PORT in HOST's namespace.

service_up() {
	local host="$1" name="$2" port="$3"
	if mp::wait_until 60 "$name to listen on $host:$port" listening "$host" "$port" && kill -0 "${SERVICE_PID[$name]}" 2>/dev/null; then
		mp::check::pass "$host-vm: $name running (pid ${SERVICE_PID[$name]}), listening on port $port"
	else
		tail -n 30 "$WORK/$name.log" >&2
		abort "$host-vm: $name did not start (log above)"
	fi
}

mp::log::info "migrations, as provisioning runs them: <service> migrate as the owner role"
for pair in inventory:inventory-app:INVENTORY_ billing:billing-worker:BILLING_; do
	IFS=: read -r host name prefix <<<"$pair"
	pg_target "$host"
	MIGRATE_RUNNER=(ip netns exec "${NS[$host]}")
	run_migrations "$BIN_DIR/$name" "$WORK/$name.env" "$prefix" >"$WORK/$name.migrate.log" 2>&1 || {
		cat "$WORK/$name.migrate.log" >&2
		abort "$name migrate on $host-vm"
	}
	mp::check::pass "$host-vm: $name migrate as the owner role ($(grep -o '[0-9]* migration(s) applied as [a-z_]*' "$WORK/$name.migrate.log"))"
done

mp::log::info "services from $BIN_DIR"
start_service inventory inventory-app
start_service billing billing-worker
start_service gateway api-gateway
service_up inventory inventory-app "$INVENTORY_PORT"
service_up billing billing-worker "$BILLING_HEALTH_PORT"
service_up gateway api-gateway "$GATEWAY_PORT"
# The passwords reached each service (it connected: the audit walk below) as
# files; none is in its environment, which its children would inherit and
# /proc/PID/environ shows to root and to the process's own user.
environ_clean() {
	local name
	for name in api-gateway inventory-app billing-worker; do
		tr '\0' '\n' <"/proc/${SERVICE_PID[$name]}/environ" >"$WORK/$name.environ" || return 1
		grep -q '_PASSWORD_FILE=' "$WORK/$name.environ" || return 1
		! grep -qF -f "$WORK/secrets" "$WORK/$name.environ" || return 1
	done
}
mp::check "no password in any service's /proc/PID/environ (each reads its *_PASSWORD_FILE)" environ_clean

# The role each service serves with reads and writes rows, and can change
# nothing else: no DROP, ALTER, TRUNCATE or CREATE (every statement in a
# transaction that is rolled back, should it pass).
# as_role HOST DB ROLE PASSWORD SQL: SQL as ROLE over TCP, the service's way.
as_role() {
	PGPASSWORD="$4" in_ns "$1" psql -X -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$3" -d "$2" \
		-v ON_ERROR_STOP=1 -c BEGIN -c "$5" -c ROLLBACK >/dev/null 2>&1
}
refused_as() { ! as_role "$@"; }
for pair in inventory:INVENTORY_:movies billing:BILLING_:orders; do
	IFS=: read -r host prefix table <<<"$pair"
	db_key=${prefix}DB_NAME user_key=${prefix}DB_USER pw_key=${prefix}DB_PASSWORD owner_key=${prefix}DB_MIGRATION_USER
	who=("$host" "${!db_key}" "${!user_key}" "${!pw_key}")
	mp::check "$host-vm: table $table owned by the owner role ${!owner_key}" \
		test "$(sql "$host" "${!db_key}" "SELECT tableowner FROM pg_tables WHERE tablename = '$table'")" = "${!owner_key}"
	mp::check "$host-vm: ${!user_key} may read and write rows of $table" \
		as_role "${who[@]}" "UPDATE $table SET id = id WHERE false; SELECT count(*) FROM $table"
	mp::check "$host-vm: ${!user_key} may not DROP TABLE $table" refused_as "${who[@]}" "DROP TABLE $table"
	mp::check "$host-vm: ${!user_key} may not ALTER TABLE $table" refused_as "${who[@]}" "ALTER TABLE $table ADD COLUMN x int"
	mp::check "$host-vm: ${!user_key} may not TRUNCATE $table" refused_as "${who[@]}" "TRUNCATE $table"
	mp::check "$host-vm: ${!user_key} may not CREATE TABLE" refused_as "${who[@]}" "CREATE TABLE mp_probe (x int)"
	mp::check "$host-vm: ${!user_key} may not touch the migrations' bookkeeping" \
		refused_as "${who[@]}" "SELECT 1 FROM __diesel_schema_migrations"
	# The PostgreSQL exporter's role, by the provisioning code (after the
	# migrations, as on the VMs): statistics yes, rows no.
	mon_key=MONITOR_${prefix}DB_USER mon_pw_key=MONITOR_${prefix}DB_PASSWORD
	pg_target "$host"
	pg_ensure_monitor "${!db_key}" "${!mon_key}" "${!mon_pw_key}" 127.0.0.1 "$POSTGRES_PORT" >/dev/null ||
		abort "the monitoring role on $host-vm"
	mon=("$host" "${!db_key}" "${!mon_key}" "${!mon_pw_key}")
	mp::check "$host-vm: the exporter's role ${!mon_key} logs in and reads pg_stat_database" \
		as_role "${mon[@]}" "SELECT count(*) FROM pg_stat_database"
	mp::check "$host-vm: ${!mon_key} may not read $table" refused_as "${mon[@]}" "SELECT count(*) FROM $table"
	mp::check "$host-vm: ${!mon_key} is a pg_monitor member and no superuser" \
		test "$(sql "$host" postgres "SELECT pg_has_role(rolname, 'pg_monitor', 'MEMBER') AND NOT rolsuper FROM pg_roles WHERE rolname = '${!mon_key}'")" = t
done

# --- the audit walk through the gateway, from the client ----------------------------------
# scripts/lib/walk.sh over this test's transport: curl in the client namespace,
# psql and rabbitmqctl in the hosts' namespaces, the worker stopped by its pid.
# shellcheck source=scripts/lib/walk.sh
. "$ROOT/scripts/lib/walk.sh"
GW="http://${IP[gateway]}:$GATEWAY_PORT"
netns::http() { mp::walk::curl "$GW" in_ns client -- "$@"; }
netns::sql() { sql "$1" "$(mp::walk::db "$1")" "$2"; }
netns::queued() {
	"${RABBITMQCTL[@]}" -s list_queues -p "$RABBITMQ_VHOST" name messages 2>/dev/null |
		awk '$1 == "billing_queue" { print $2 }'
}
no_worker_left() { ! in_ns billing ps -o comm= -p "$(ip netns pids "${NS[billing]}" | paste -sd,)" | grep -qx billing-worker; }
netns::worker() {
	local pid
	case $1 in
	stop)
		pid=${SERVICE_PID["billing-worker"]}
		mp::log::info "billing-worker stopped (SIGTERM to pid $pid)"
		mp::stop_pid "$pid" billing-worker 30
		wait "$pid" 2>/dev/null || true
		unset 'SERVICE_PID[billing-worker]'
		# Nothing of it is left on billing-vm.
		mp::pid_gone "$pid" && no_worker_left
		;;
	start)
		start_service billing billing-worker
		service_up billing billing-worker "$BILLING_HEALTH_PORT"
		;;
	esac
}
mp::walk::run netns "$TAG"

# --- network promises ----------------------------------------------------------------------
mp::log::info "who can reach what"
# reach HOST IP PORT: a TCP connection from HOST's namespace succeeds within 2 s.
reach() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	in_ns "$1" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null
}
reachable() { mp::check "$1 -> $2:$3 reachable${4:+ ($4)}" reach "$1" "${IP[$2]}" "$3"; }
unreachable() { ! reach "$@"; }
blocked() { mp::check "$1 -> $2:$3 unreachable${4:+ ($4)}" unreachable "$1" "${IP[$2]}" "$3"; }

blocked gateway inventory "$POSTGRES_PORT" "inventory's PostgreSQL"
blocked gateway billing "$POSTGRES_PORT" "billing's PostgreSQL"
blocked client inventory "$POSTGRES_PORT" "inventory's PostgreSQL"
blocked client billing "$POSTGRES_PORT" "billing's PostgreSQL"
blocked billing inventory "$POSTGRES_PORT" "inventory's PostgreSQL"
blocked inventory billing "$POSTGRES_PORT" "billing's PostgreSQL"
reachable gateway inventory "$INVENTORY_PORT" "inventory-app"
blocked client inventory "$INVENTORY_PORT" "inventory-app is for the gateway only"
blocked billing inventory "$INVENTORY_PORT" "inventory-app is for the gateway only"
reachable gateway billing "$RABBITMQ_PORT" "AMQP"
blocked client billing "$RABBITMQ_PORT" "AMQP is for the gateway only"
blocked inventory billing "$RABBITMQ_PORT" "AMQP is for the gateway only"
blocked client billing 4369 "epmd"
blocked gateway billing 4369 "epmd"
blocked client billing 25672 "Erlang distribution"
blocked gateway billing 25672 "Erlang distribution"
# The metrics listeners (the worker's is its health port) and RabbitMQ's
# Prometheus plugin: gateway-vm (Prometheus) only.
reachable gateway billing "$BILLING_HEALTH_PORT" "worker metrics, for Prometheus"
blocked client billing "$BILLING_HEALTH_PORT" "worker metrics are for gateway-vm only"
blocked inventory billing "$BILLING_HEALTH_PORT" "worker metrics are for gateway-vm only"
reachable gateway inventory "$INVENTORY_METRICS_PORT" "inventory metrics, for Prometheus"
blocked client inventory "$INVENTORY_METRICS_PORT" "inventory metrics are for gateway-vm only"
blocked billing inventory "$INVENTORY_METRICS_PORT" "inventory metrics are for gateway-vm only"
reachable gateway billing "$RABBITMQ_PROMETHEUS_PORT" "RabbitMQ metrics, for Prometheus"
blocked client billing "$RABBITMQ_PROMETHEUS_PORT" "RabbitMQ metrics are for gateway-vm only"
blocked inventory billing "$RABBITMQ_PROMETHEUS_PORT" "RabbitMQ metrics are for gateway-vm only"
blocked client gateway "$GATEWAY_METRICS_PORT" "gateway metrics are not public"
# What Prometheus scrapes, scraped from gateway-vm as it does.
# The page is read whole first: `curl | grep -q` fails under pipefail when
# grep's early exit cuts curl off mid-page (curl: (23) Failed writing body).
scrape_has() {
	local page
	page=$(in_ns gateway curl -fsS -m 10 "http://${IP[$1]}:$2$3") && grep -q "^$4" <<<"$page"
}
mp::check "gateway-vm scrapes billing-worker's /metrics (billing_orders_stored_total)" \
	scrape_has billing "$BILLING_HEALTH_PORT" /metrics billing_orders_stored_total
mp::check "gateway-vm scrapes inventory-app's /metrics (http_requests_total)" \
	scrape_has inventory "$INVENTORY_METRICS_PORT" /metrics http_requests_total
mp::check "gateway-vm scrapes RabbitMQ's per-queue metrics (rabbitmq_queue_messages of billing_queue)" \
	scrape_has billing "$RABBITMQ_PROMETHEUS_PORT" /metrics/per-object 'rabbitmq_queue_messages{.*queue="billing_queue"'
reachable client gateway "$GATEWAY_PORT" "api-gateway"
blocked client billing "$RABBITMQ_MANAGEMENT_PORT" "management UI is on loopback"
blocked gateway billing "$RABBITMQ_MANAGEMENT_PORT" "management UI is on loopback"

# ssh: a stand-in sshd on port 22 of every VM. Closed from the private network
# (the other VMs, the host's side of it), open from Vagrant's interface.
for h in gateway inventory billing; do
	in_ns "$h" "$PY" -c 'import socket, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 22)); s.listen(64); time.sleep(3600)' >/dev/null 2>&1 &
done
for h in gateway inventory billing; do
	mp::wait_until 10 "the stand-in sshd of $h-vm" listening "$h" 22 || mp::check::fail "$h-vm: stand-in sshd on port 22 did not start"
done
for pair in gateway:inventory gateway:billing inventory:gateway inventory:billing billing:gateway \
	billing:inventory client:gateway client:inventory client:billing; do
	blocked "${pair%%:*}" "${pair##*:}" 22 "ssh between the VMs"
done
for h in gateway inventory billing; do
	mp::check "vagrant -> $h-vm:22 reachable (ssh from Vagrant's interface)" reach vagrant "${MIP[$h]}" 22
done

# --- egress: each VM's output policy ---------------------------------------------------
# A listener of the test's own in the client namespace (which has no rules), on
# a port nothing needs, on https and on DNS. From each VM: the port nothing
# needs is refused to every user; https to a service's user (nobody, as the
# services run here) but not to root (apt); DNS to anyone. Then the other VMs
# may not even reach the gateway's public port: they have no business there.
# The allowed paths (gateway -> inventory-app and AMQP) are checked above and
# walked by the audit walk.
mp::log::info "egress: what each VM may connect to"
in_ns client "$PY" -c 'import socket, threading, time
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        s.accept()[0].close()
for port in (9999, 443, 53):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
time.sleep(3600)' >/dev/null 2>&1 &
for port in 9999 443 53; do
	mp::wait_until 10 "the test's listener on client:$port" listening client "$port" ||
		mp::check::fail "the test's listener on client:$port did not start"
done
# reach_as USER HOST IP PORT: reach, as USER (a name or a uid).
reach_as() {
	local uid
	uid="$(id -u "$1")"
	# shellcheck disable=SC2016 # expanded by the inner bash
	in_ns "$2" setpriv --reuid="$uid" --regid="$uid" --clear-groups -- \
		timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$3" "$4" 2>/dev/null
}
unreachable_as() { ! reach_as "$@"; }
for h in gateway inventory billing; do
	mp::check "$h-vm -> client:9999 refused to root (output policy)" \
		unreachable "$h" "${IP[client]}" 9999
	mp::check "...and as a service's user (nobody)" unreachable_as nobody "$h" "${IP[client]}" 9999
	mp::check "$h-vm -> client:443 refused to a service's user (nobody)" unreachable_as nobody "$h" "${IP[client]}" 443
	mp::check "$h-vm -> client:443 allowed to root (apt, at provisioning)" reach "$h" "${IP[client]}" 443
	mp::check "$h-vm -> client:53 allowed (DNS)" reach_as nobody "$h" "${IP[client]}" 53
done
blocked inventory gateway "$GATEWAY_PORT" "egress: inventory-vm has no business with the gateway"
blocked billing gateway "$GATEWAY_PORT" "egress: billing-vm has no business with the gateway"

# --- per-source limits on the gateway's port (FIREWALL_SOURCE_* of .env) ----------------
# One client takes its share and no more; its neighbour on another address is
# served all along. scripts/lib/conn-limits.py is the client.
mp::log::info "per-source limits on the gateway's port"
LIMITS_PY=("$PY" "$ROOT/scripts/lib/conn-limits.py")
gateway_status() {
	in_ns "$1" curl -s -o /dev/null -w '%{http_code}' --connect-timeout 2 -m 5 "$GW/api/movies" || true
}
served() { [[ "$(gateway_status "$1")" == 200 ]]; }
not_served() { [[ "$(gateway_status "$1")" == 000 ]]; }
# drops SET: how many packets the gateway-vm rule that uses SET has dropped
# (its counter), e.g. gateway_conns_ip: the connections-per-source rule.
drops() {
	in_ns gateway nft list chain inet movie_platform input |
		awk -v set="@$1" '$0 ~ set " " { for (i = 1; i < NF; i++) if ($i == "counter") { print $(i + 2); exit } }'
}
conns_dropped_before="$(drops gateway_conns_ip)"
in_ns client "${LIMITS_PY[@]}" hold "${IP[gateway]}" "$GATEWAY_PORT" "$FIREWALL_SOURCE_CONNECTIONS" 3 \
	"$WORK/hold.stop" >"$WORK/hold.out" 2>&1 &
HOLD_PID=$!
holding() { grep -q '^held ' "$WORK/hold.out"; }
mp::wait_until 120 "the client to open its connections" holding || true
mp::check "a client holding $FIREWALL_SOURCE_CONNECTIONS connections to the gateway: 3 more refused (FIREWALL_SOURCE_CONNECTIONS) ($(grep '^held ' "$WORK/hold.out"))" \
	grep -qx "held $FIREWALL_SOURCE_CONNECTIONS extra_connected 0 extra_refused 3" "$WORK/hold.out"
mp::check "...a request of its own is not served either (no connection)" not_served client
mp::check "...dropped by the connections-per-source rule (its counter: ${conns_dropped_before:-?} -> $(drops gateway_conns_ip))" \
	test "$(drops gateway_conns_ip)" -gt "${conns_dropped_before:-0}"
mp::check "...while its neighbour on another address is served (200)" served neighbour
touch "$WORK/hold.stop"
wait "$HOLD_PID" || true
mp::check "...and the connections it holds are never cut ($(grep '^lost ' "$WORK/hold.out"))" grep -qx "lost 0" "$WORK/hold.out"
mp::check "...once it lets them go, it is served again" mp::wait_until 15 "the client to be served again" served client
# Fast enough to outrun the token bucket whatever the machine's load: BURST at
# once, then twice a second's worth.
# First a pause that fills the client's token bucket again (its connections
# above took some).
burst_count=$((FIREWALL_SOURCE_NEW_BURST + 2 * FIREWALL_SOURCE_NEW_PER_SECOND))
sleep $((FIREWALL_SOURCE_NEW_BURST / FIREWALL_SOURCE_NEW_PER_SECOND + 2))
rate_dropped_before="$(drops gateway_new_ip)"
burst_out="$(in_ns client "${LIMITS_PY[@]}" burst "${IP[gateway]}" "$GATEWAY_PORT" "$burst_count" 2>&1)" || true
# Refused, by the rate rule (its counter rose). The connections-per-source
# rule may strike too: a connection the client closed counts until the
# gateway has closed its side.
tripped() {
	[[ $burst_out =~ ^opened\ ([0-9]+)\ refused\ ([0-9]+)\ first_refused\ ([0-9]+)$ ]] &&
		((BASH_REMATCH[2] > 0)) &&
		(($(drops gateway_new_ip) > ${rate_dropped_before:-0}))
}
mp::check "a client opening $burst_count connections at once: refused by the new-connections rule (burst $FIREWALL_SOURCE_NEW_BURST) (FIREWALL_SOURCE_NEW_PER_SECOND, _BURST) ($burst_out; its counter ${rate_dropped_before:-?} -> $(drops gateway_new_ip))" tripped
mp::check "...while its neighbour on another address is served (200)" served neighbour
mp::check "...and it is served again a moment later" mp::wait_until 15 "the client to be served again" served client

# --- RabbitMQ accounts: least privilege ------------------------------------------------------
mp::log::info "RabbitMQ accounts"
# amqp HOST USER PASSWORD ADDRESS ACTION: scripts/lib/amqp-permissions.py from HOST
# (credentials in its environment); sets AMQP_OUT and AMQP_RC (0 allowed, 3 refused).
amqp() {
	AMQP_RC=0
	AMQP_OUT="$(
		export AMQP_USER="$2" AMQP_PASSWORD="$3"
		in_ns "$1" "$PY" "$ROOT/scripts/lib/amqp-permissions.py" "$4" "$RABBITMQ_PORT" "$RABBITMQ_VHOST" "$5" 2>&1
	)" || AMQP_RC=$?
}
as_gateway() { amqp gateway "$RABBITMQ_GATEWAY_USER" "$RABBITMQ_GATEWAY_PASSWORD" "${IP[billing]}" "$1"; }
as_worker() { amqp billing "$RABBITMQ_WORKER_USER" "$RABBITMQ_WORKER_PASSWORD" 127.0.0.1 "$1"; }
refused() { [[ "$AMQP_RC" == 3 ]] && grep -q "^refused 403" <<<"$AMQP_OUT"; }
allowed() { [[ "$AMQP_RC" == 0 ]] && [[ "$AMQP_OUT" == allowed ]]; }
# Logins from gateway-vm: only the gateway's account may come over the network
# (loopback_users in deploy/rabbitmq/rabbitmq.conf.in).
login_refused() { [[ "$AMQP_RC" == 3 ]] && grep -q "^refused login" <<<"$AMQP_OUT"; }
amqp gateway "$RABBITMQ_ADMIN_USER" "$RABBITMQ_ADMIN_PASSWORD" "${IP[billing]}" login
mp::check "admin's account: AMQP login from gateway-vm refused (loopback only) (${AMQP_OUT:0:80})" login_refused
amqp gateway "$RABBITMQ_WORKER_USER" "$RABBITMQ_WORKER_PASSWORD" "${IP[billing]}" login
mp::check "worker's account: AMQP login from gateway-vm refused (loopback only) (${AMQP_OUT:0:80})" login_refused
as_gateway login
mp::check "gateway's account: AMQP login from gateway-vm allowed (${AMQP_OUT:0:80})" allowed
for action in consume get purge; do
	as_gateway "$action"
	mp::check "gateway's account: $action billing_queue refused (${AMQP_OUT:0:80})" refused
done
as_gateway declare-other
mp::check "gateway's account: declaring a queue outside the topology refused (${AMQP_OUT:0:80})" refused
as_gateway declare
mp::check "gateway's account: declaring the topology allowed, arguments as the services' (${AMQP_OUT:0:80})" allowed
as_worker publish
mp::check "worker's account: publishing to billing_queue refused (${AMQP_OUT:0:80})" refused
as_worker declare-other
mp::check "worker's account: declaring a queue outside the topology refused (${AMQP_OUT:0:80})" refused
as_worker declare
mp::check "worker's account: declaring the topology allowed (${AMQP_OUT:0:80})" allowed
queued_in() {
	"${RABBITMQCTL[@]}" -s list_queues -p "$RABBITMQ_VHOST" name messages 2>/dev/null |
		awk -v q="$1" '$1 == q { print $2 }'
}
dlq_before="$(queued_in billing_queue.dlq)"
as_gateway publish-poison
mp::check "gateway's account: publishing (a body that is no order) allowed (${AMQP_OUT:0:80})" allowed
dead_lettered() { [[ "$(queued_in billing_queue.dlq)" == "$((${dlq_before:-0} + 1))" ]]; }
mp::check "...and the worker, with its own account, dead-letters it into billing_queue.dlq" mp::wait_until 30 "the message to be dead-lettered" dead_lettered

# mgmt HOST USER:PASSWORD: HTTP status of the management API's whoami on the
# broker's loopback (curl reads the credentials from stdin, not argv).
mgmt_status() {
	in_ns billing curl -s -m 10 -o /dev/null -w '%{http_code}' -K - \
		"http://127.0.0.1:$RABBITMQ_MANAGEMENT_PORT/api/whoami" <<<"user = \"$1\"" || true
}
mp::check "management API: $RABBITMQ_ADMIN_USER logs in (on billing-vm's loopback)" \
	test "$(mgmt_status "$RABBITMQ_ADMIN_USER:$RABBITMQ_ADMIN_PASSWORD")" = 200
mp::check "management API: $RABBITMQ_GATEWAY_USER is refused (no tags)" \
	test "$(mgmt_status "$RABBITMQ_GATEWAY_USER:$RABBITMQ_GATEWAY_PASSWORD")" = 401
mp::check "management API: $RABBITMQ_WORKER_USER is refused (no tags)" \
	test "$(mgmt_status "$RABBITMQ_WORKER_USER:$RABBITMQ_WORKER_PASSWORD")" = 401
mp::check "management API: guest is refused" test "$(mgmt_status guest:guest)" = 401
users_are() { [[ "$("${RABBITMQCTL[@]}" -s list_users | awk '{ print $1 }' | sort | paste -sd' ')" == "$1" ]]; }
mp::check "rabbitmqctl list_users: exactly the three accounts (no guest)" users_are \
	"$(printf '%s\n' "$RABBITMQ_ADMIN_USER" "$RABBITMQ_GATEWAY_USER" "$RABBITMQ_WORKER_USER" | sort | paste -sd' ')"

# deploy/rabbitmq/rabbitmq.conf.in makes new classic queues v2 (the faster store).
queue_version() {
	local vhost
	vhost=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$RABBITMQ_VHOST")
	in_ns billing curl -s -m 10 -K - "http://127.0.0.1:$RABBITMQ_MANAGEMENT_PORT/api/queues/$vhost/$1" \
		<<<"user = \"$RABBITMQ_ADMIN_USER:$RABBITMQ_ADMIN_PASSWORD\"" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["backing_queue_status"]["version"])' 2>/dev/null || true
}
mp::check "billing_queue is a classic queue v2 (classic_queue.default_version)" \
	test "$(queue_version billing_queue)" = 2

# only_on HOST PORT ADDRESS...: every listener on PORT is bound to one of ADDRESSES.
only_on() {
	local host="$1" port="$2" addrs
	shift 2
	addrs="$(in_ns "$host" ss -Hltn "sport = :$port" | awk '{ a = $4; sub(/:[0-9]+$/, "", a); print a }' | sort -u)"
	[[ -n "$addrs" ]] || return 1
	local a want ok
	while IFS= read -r a; do
		ok=0
		for want in "$@"; do [[ "$a" == "$want" ]] && ok=1; done
		[[ "$ok" == 1 ]] || return 1
	done <<<"$addrs"
}
mp::check "inventory-vm: PostgreSQL listens on 127.0.0.1 only" only_on inventory "$POSTGRES_PORT" 127.0.0.1
mp::check "billing-vm: PostgreSQL listens on 127.0.0.1 only" only_on billing "$POSTGRES_PORT" 127.0.0.1
mp::check "billing-vm: AMQP listens on 127.0.0.1 and ${IP[billing]} only" \
	only_on billing "$RABBITMQ_PORT" 127.0.0.1 "${IP[billing]}"
mp::check "billing-vm: management listens on 127.0.0.1 only" \
	only_on billing "$RABBITMQ_MANAGEMENT_PORT" 127.0.0.1
mp::check "billing-vm: epmd listens on loopback only" only_on billing 4369 127.0.0.1 "[::1]"
mp::check "billing-vm: Erlang distribution listens on 127.0.0.1 only" only_on billing 25672 127.0.0.1
mp::check "inventory-vm: inventory-app listens on ${IP[inventory]} only (INVENTORY_HOST)" \
	only_on inventory "$INVENTORY_PORT" "${IP[inventory]}"
mp::check "billing-vm: worker health and metrics listen on ${IP[billing]} only (provisioning's BILLING_HEALTH_HOST)" \
	only_on billing "$BILLING_HEALTH_PORT" "${IP[billing]}"
mp::check "inventory-vm: inventory metrics listen on ${IP[inventory]} only" \
	only_on inventory "$INVENTORY_METRICS_PORT" "${IP[inventory]}"
mp::check "gateway-vm: gateway metrics listen on ${IP[gateway]} only" \
	only_on gateway "$GATEWAY_METRICS_PORT" "${IP[gateway]}"
mp::check "billing-vm: RabbitMQ's Prometheus plugin listens on ${IP[billing]} only" \
	only_on billing "$RABBITMQ_PROMETHEUS_PORT" "${IP[billing]}"

echo
if ((MP_CHECKS_FAILED > 0)); then
	echo "three-host-test: $MP_CHECKS_FAILED of $((MP_CHECKS_PASSED + MP_CHECKS_FAILED)) checks FAILED (logs: THREE_HOST_KEEP=1 keeps $WORK)"
	exit 1
fi
echo "three-host-test: all $MP_CHECKS_PASSED checks passed"
