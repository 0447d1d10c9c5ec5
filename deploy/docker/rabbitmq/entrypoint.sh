#!/bin/bash
# RabbitMQ as the rabbitmq user. On the first start (empty data volume) it
# creates the accounts the services use, from the run-time environment (.env),
# each with only the permissions its job needs, and deletes guest. Later starts
# change nothing. The health check passes only once the accounts exist.
set -euo pipefail

ready_marker=/var/lib/rabbitmq/movie-platform-accounts

say() { printf 'entrypoint: %s\n' "$*" >&2; }

# shellcheck source=deploy/docker/default-passwords.sh
source /usr/local/lib/movie-platform/default-passwords.sh

# The queue topology (srcs/common/src/topology.rs) and the same permissions
# as on the VMs (rabbitmq_permissions in scripts/provision/common.sh): both
# accounts may declare billing_queue, its dead-letter exchange
# billing_queue.dlx and queue billing_queue.dlq (configure). Creating
# billing_queue with its x-dead-letter-exchange argument needs read on it and
# write on the exchange, which would let the gateway consume or purge it; so
# the worker creates it (the gateway starts after the worker is healthy) and
# the gateway only re-declares it. The gateway publishes through the default
# exchange (write amq.default); the worker consumes (read billing_queue) and
# cannot publish to billing_queue. One account doing both jobs gets both sets.
CONFIGURE='^billing_queue(\.dlx|\.dlq)?$'
GATEWAY_WRITE='^(amq\.default|billing_queue\.dlq)$'
GATEWAY_READ='^billing_queue\.dlx$'
WORKER_WRITE='^billing_queue\.(dlx|dlq)$'
WORKER_READ='^billing_queue(\.dlx)?$'
BOTH_WRITE='^(amq\.default|billing_queue\.dlx|billing_queue\.dlq)$'

# ensure_user USER PASSWORD WRITE READ
ensure_user() {
	if ! rabbitmqctl -q list_users | awk '{print $1}' | grep -qxF -- "$1"; then
		# The password on rabbitmqctl's standard input (printf is a builtin),
		# never in an argument: every process on the host can read those (ps).
		printf '%s\n' "$2" | rabbitmqctl -q add_user "$1" >/dev/null
	fi
	rabbitmqctl -q set_permissions -p "$RABBITMQ_VHOST" "$1" "$CONFIGURE" "$3" "$4" >/dev/null
}

create_accounts() {
	local deadline=$((SECONDS + 300))
	until rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1; do
		((SECONDS < deadline)) || {
			say "RabbitMQ did not start in 300 s; accounts not created"
			return 1
		}
		sleep 1
	done
	if [[ $RABBITMQ_VHOST != / ]] && ! rabbitmqctl -q list_vhosts | grep -qxF -- "$RABBITMQ_VHOST"; then
		rabbitmqctl -q add_vhost "$RABBITMQ_VHOST" >/dev/null
	fi
	if [[ $GATEWAY_USER == "$WORKER_USER" ]]; then
		[[ $GATEWAY_PASSWORD == "$WORKER_PASSWORD" ]] || {
			say "GATEWAY_RABBITMQ_USER and BILLING_RABBITMQ_USER are both $GATEWAY_USER but their passwords differ"
			return 1
		}
		ensure_user "$GATEWAY_USER" "$GATEWAY_PASSWORD" "$BOTH_WRITE" "$WORKER_READ"
	else
		ensure_user "$GATEWAY_USER" "$GATEWAY_PASSWORD" "$GATEWAY_WRITE" "$GATEWAY_READ"
		ensure_user "$WORKER_USER" "$WORKER_PASSWORD" "$WORKER_WRITE" "$WORKER_READ"
	fi
	if rabbitmqctl -q list_users | awk '{print $1}' | grep -qx guest; then
		rabbitmqctl -q delete_user guest >/dev/null
	fi
	touch "$ready_marker"
	say "accounts ready: $GATEWAY_USER (publish), $WORKER_USER (consume) on vhost $RABBITMQ_VHOST"
}

# A password from a Docker secret is checked like one from the environment.
file_env GATEWAY_PASSWORD
file_env WORKER_PASSWORD
refuse_default_passwords GATEWAY_PASSWORD WORKER_PASSWORD
if [[ ! -e $ready_marker ]]; then
	for name in GATEWAY_USER GATEWAY_PASSWORD WORKER_USER WORKER_PASSWORD RABBITMQ_VHOST; do
		[[ -n ${!name:-} ]] || {
			say "$name is empty: set it in .env (the compose file passes it)"
			exit 1
		}
	done
	# In the background: the accounts need the running node.
	create_accounts &
fi
# The server script replaces this shell and keeps pid 1; it stops the node
# cleanly on SIGTERM (docker stop). Not /usr/sbin/rabbitmq-server: that
# wrapper runs it as a child and, as pid 1, would ignore SIGTERM.
exec /usr/lib/rabbitmq/bin/rabbitmq-server
