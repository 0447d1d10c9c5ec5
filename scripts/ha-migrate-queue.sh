#!/usr/bin/env bash
# Moves an existing deployment's billing_queue from a classic queue to a
# quorum queue (or back) without losing an order. RabbitMQ cannot change a
# queue's type in place (the redeclaration fails with 406), and the audit
# fixes the queue's name, so the queue is drained, deleted and declared again:
#
#   1. stop the publishers (the gateways): orders get 503 from here until
#      step 5, nothing accepted is in flight;
#   2. wait until the workers have stored and acked every order
#      (billing_queue: 0 ready, 0 unacked);
#   3. stop the workers;
#   4. delete billing_queue and billing_queue.dlq, each only if empty
#      (`delete_queue --if-empty` for a classic queue: RabbitMQ itself refuses to
#      drop a message; quorum queues do not implement it, so their count, taken
#      with every publisher and consumer stopped, decides), and check each is gone;
#      a dead-letter queue that holds orders stops the migration: look at
#      them first (docs/ha.md);
#   5. switch the services' QUEUE_TYPE (the caller's start hook), start the
#      workers, then the gateways: their first declaration creates the
#      queues with the new type.
#
# The stop/start steps run the commands given in the environment, so the
# same script serves the VMs (systemctl over ssh), containers or a test:
#   MIGRATE_STOP_PUBLISHERS  e.g. "vagrant ssh gateway-vm -c 'sudo systemctl stop api-gateway'"
#   MIGRATE_STOP_CONSUMERS   e.g. "vagrant ssh billing-vm -c 'sudo systemctl stop billing-worker'"
#   MIGRATE_START            sets QUEUE_TYPE=quorum in the env files and starts workers, then gateways
#   MIGRATE_RABBITMQCTL      how to run rabbitmqctl against the broker (default: rabbitmqctl)
#   MIGRATE_DRAIN_TIMEOUT    seconds to wait for step 2 (default 300)
#
# Usage: scripts/ha-migrate-queue.sh quorum|classic
set -euo pipefail

# shellcheck source=lib/mp.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/mp.sh"

TARGET="${1:-}"
[[ $TARGET == quorum || $TARGET == classic ]] || mp::die "usage: $0 quorum|classic"
for v in MIGRATE_STOP_PUBLISHERS MIGRATE_STOP_CONSUMERS MIGRATE_START; do
	[[ -n ${!v:-} ]] || mp::die "$v is not set (see the comment at the top of $0)"
done
read -r -a CTL <<<"${MIGRATE_RABBITMQCTL:-rabbitmqctl}"
DRAIN_TIMEOUT="${MIGRATE_DRAIN_TIMEOUT:-300}"

# queue_field NAME FIELD: one field of one queue ("" when it does not exist).
queue_field() {
	"${CTL[@]}" -q list_queues name type messages_ready messages_unacknowledged --formatter json |
		python3 -c 'import json, sys
name, field = sys.argv[1], sys.argv[2]
for q in json.load(sys.stdin):
    if q["name"] == name:
        print(q[field])' "$1" "$2"
}

current="$(queue_field billing_queue type)"
if [[ $current == "$TARGET" ]]; then
	mp::log::info "billing_queue is a $TARGET queue already: nothing to do"
	exit 0
fi
mp::log::info "billing_queue: ${current:-absent} -> $TARGET"

mp::log::info "1/5 stopping the publishers"
bash -c "$MIGRATE_STOP_PUBLISHERS"

mp::log::info "2/5 waiting until the workers have stored every order (at most ${DRAIN_TIMEOUT}s)"
drained() {
	[[ -z $current ]] && return 0
	[[ "$(queue_field billing_queue messages_ready)" == 0 &&
	"$(queue_field billing_queue messages_unacknowledged)" == 0 ]]
}
deadline=$((SECONDS + DRAIN_TIMEOUT))
until drained; do
	((SECONDS < deadline)) || mp::die "billing_queue not drained within ${DRAIN_TIMEOUT}s: are the workers running? Nothing was deleted; start the publishers again"
	sleep 1
done

mp::log::info "3/5 stopping the workers"
bash -c "$MIGRATE_STOP_CONSUMERS"

mp::log::info "4/5 deleting the empty queues"
dlq="$(queue_field billing_queue.dlq messages_ready)"
if [[ -n $dlq && $dlq != 0 ]]; then
	mp::die "billing_queue.dlq holds $dlq dead-lettered order(s): look at them and move them first (docs/ha.md). billing_queue is drained; nothing was deleted"
fi
for q in billing_queue billing_queue.dlq; do
	type="$(queue_field "$q" type)"
	[[ -n $type ]] || continue
	held=$(($(queue_field "$q" messages_ready) + $(queue_field "$q" messages_unacknowledged)))
	((held == 0)) || mp::die "$q holds $held message(s) after the drain: nothing was deleted; start the services again and rerun"
	# --if-empty: should an order have arrived after all, RabbitMQ refuses. Quorum
	# queues do not implement it; the count above, taken with every publisher and
	# consumer stopped, stands in for it there.
	flags=(--if-empty)
	[[ $type == quorum ]] && flags=()
	"${CTL[@]}" -q delete_queue "${flags[@]}" "$q" >/dev/null ||
		mp::die "deleting $q refused (not empty?): nothing lost, start the services again and rerun"
	# rabbitmqctl exits 0 even when the broker refuses (it prints the refusal):
	# the queue must be gone.
	[[ -z "$(queue_field "$q" type)" ]] ||
		mp::die "$q is still there after delete_queue (refused by the broker): nothing lost, start the services again and rerun"
done

mp::log::info "5/5 starting the services with QUEUE_TYPE=$TARGET"
bash -c "$MIGRATE_START"
declared() { [[ -n "$(queue_field billing_queue type)" ]]; }
MP_WAIT_INTERVAL=1 mp::wait_until 120 "billing_queue declared again" declared || true
now="$(queue_field billing_queue type)"
[[ $now == "$TARGET" ]] || mp::die "billing_queue is ${now:-absent} after the restart (expected $TARGET): check the services' QUEUE_TYPE"
mp::log::info "billing_queue is a $TARGET queue; orders flow again"
