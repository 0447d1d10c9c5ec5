#!/usr/bin/env bash
# Proves scripts/ha-migrate-queue.sh on the running local system (scripts/local.sh):
# it refuses while billing_queue.dlq holds an order; then billing_queue is moved from a classic to a quorum queue and back while a client
# keeps ordering, with a backlog in the queue when each migration starts. Ends in a
# verdict: every order answered 200 is stored exactly once (lost 0, duplicated 0),
# the queue has the asked type after each move, and orders flow after each.
# Run by `scripts/test.sh chaos`, after the resilience scenarios, on the test ports.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$MP_ROOT"
mp::env::load .env
: "${GATEWAY_URL:?the gateway of the running local system, e.g. http://127.0.0.1:8080}"

RUN=migrate-$$-$RANDOM
WORK=$(mktemp -d)
CLIENT_PID=
cleanup() {
	local rc=$?
	touch "$WORK/stop"
	[[ -z $CLIENT_PID ]] || wait "$CLIENT_PID" 2>/dev/null || true
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

# The migration's hooks: this machine's local run. MIGRATE_START passes the new
# type to both services, as an operator edits it in their env files.
export MIGRATE_STOP_PUBLISHERS="scripts/local.sh stop api-gateway"
export MIGRATE_STOP_CONSUMERS="scripts/local.sh stop billing-worker"
export MIGRATE_RABBITMQCTL="scripts/local.sh rabbitmqctl"
export MIGRATE_DRAIN_TIMEOUT=120
# start_with TYPE [SERVICE...]: the command that starts SERVICE (default: the
# worker, then the gateway) with billing_queue of TYPE.
start_with() {
	local type=$1 s cmd=""
	shift
	(($#)) || set -- billing-worker api-gateway
	for s in "$@"; do cmd+="${cmd:+ && }scripts/local.sh start $s"; done
	printf 'export GATEWAY_RABBITMQ_QUEUE_TYPE=%s BILLING_RABBITMQ_QUEUE_TYPE=%s; %s' "$type" "$type" "$cmd"
}

queue_type() {
	scripts/local.sh rabbitmqctl -q list_queues -p "$RABBITMQ_VHOST" --no-table-headers name type |
		awk '$1 == "billing_queue" { print $2 }'
}

# client: orders until $WORK/stop exists; the order id of each 200 goes to
# $WORK/accepted, any other status (the gateway is stopped for a moment during
# a migration) to $WORK/refused.
client() {
	local i=0 out
	while [[ ! -e $WORK/stop ]]; do
		i=$((i + 1))
		out=$(curl -sS -m 15 -w '\n%{http_code}' -H 'Content-Type: application/json' \
			--data "{\"user_id\":\"$RUN\",\"number_of_items\":1,\"total_amount\":\"$i.00\"}" \
			"$GATEWAY_URL/api/billing" 2>/dev/null) || true
		if [[ ${out##*$'\n'} == 200 ]]; then
			python3 -c 'import json, sys; print(json.loads(sys.argv[1])["order_id"])' "${out%$'\n'*}" >>"$WORK/accepted" || true
		else
			echo "${out##*$'\n'}" >>"$WORK/refused"
			sleep 0.2
		fi
	done
}

accepted() { touch "$WORK/accepted" && wc -l <"$WORK/accepted"; }
# Orders accepted since the last mark, for "orders flow again" checks.
flowing() { (($(accepted) > $1)); }

# migrate FROM TO: a backlog first (the worker stopped for a moment while the
# client orders, then started again with the queue type it runs with), then the
# migration, whose step 5 starts the services with the new type.
migrate() {
	local from=$1 type=$2 before
	scripts/local.sh stop billing-worker >/dev/null
	sleep 3
	bash -c "$(start_with "$from" billing-worker)" >/dev/null
	mp::check "scripts/ha-migrate-queue.sh $type exits 0" \
		env MIGRATE_START="$(start_with "$type")" scripts/ha-migrate-queue.sh "$type"
	mp::check "billing_queue is a $type queue afterwards" test "$(queue_type)" = "$type"
	before=$(accepted)
	mp::check "orders are accepted again after the move to $type" \
		mp::wait_until 60 "an order accepted after the move" flowing "$before"
}

dlq_held() {
	scripts/local.sh rabbitmqctl -q list_queues -p "$RABBITMQ_VHOST" --no-table-headers name messages |
		awk '$1 == "billing_queue.dlq" { print $2 }'
}
dead_lettered() { (($(dlq_held) > 0)); }

# A dead-lettered order waits for a human: the migration must stop before it
# deletes anything. One message that is no order, published straight into the
# queue (through the management API, scripts/lib/mp_rabbitmq.py), is
# dead-lettered by the worker.
poison() {
	PYTHONPATH=scripts/lib python3 - "${LOCAL_RABBITMQ_MGMT_PORT:-55673}" "$RABBITMQ_VHOST" <<-'PY'
		import sys, mp_rabbitmq
		sys.exit(0 if mp_rabbitmq.Management(sys.argv[1], sys.argv[2]).publish("billing_queue", "not an order", {"delivery_mode": 2}) else 1)
	PY
}
dead_letter_one() { poison && mp::wait_until 30 "a dead-lettered message" dead_lettered; }
refused_with_dlq() {
	local out
	! out=$(MIGRATE_START="$(start_with classic)" scripts/ha-migrate-queue.sh quorum 2>&1) &&
		grep -q "billing_queue.dlq holds .* dead-lettered order" <<<"$out"
}
mp::check "billing_queue starts as a classic queue (.env)" test "$(queue_type)" = classic
mp::check "a message that is no order lands in billing_queue.dlq" dead_letter_one
mp::check "the migration stops, naming billing_queue.dlq, while it holds an order" refused_with_dlq
mp::check "...and deleted nothing: billing_queue is still classic" test "$(queue_type)" = classic
# What the operator does next: look at the dead-lettered messages, move or drop
# them, start the services again.
scripts/local.sh rabbitmqctl -q purge_queue -p "$RABBITMQ_VHOST" billing_queue.dlq >/dev/null
bash -c "$(start_with classic)" >/dev/null
client &
CLIENT_PID=$!
mp::wait_until 30 "the client's first accepted order" flowing 0 || true
migrate classic quorum
sleep 3
migrate quorum classic
sleep 3
touch "$WORK/stop"
wait "$CLIENT_PID" || true
CLIENT_PID=

# The verdict: what was answered 200 against what is stored.
sort -u "$WORK/accepted" >"$WORK/accepted.sorted"
stored_all() {
	scripts/local.sh psql "$BILLING_DB_NAME" -XAtqc "SELECT order_id FROM orders WHERE user_id = '$RUN'" | sort
}
all_stored() { [[ -z $(comm -23 "$WORK/accepted.sorted" <(stored_all | sort -u)) ]]; }
mp::wait_until 60 "every accepted order stored" all_stored || true
stored_all >"$WORK/stored"
n_accepted=$(wc -l <"$WORK/accepted.sorted")
n_lost=$(comm -23 "$WORK/accepted.sorted" <(sort -u "$WORK/stored") | wc -l)
n_dup=$(($(wc -l <"$WORK/stored") - $(sort -u "$WORK/stored" | wc -l)))
n_extra=$(comm -13 "$WORK/accepted.sorted" <(sort -u "$WORK/stored") | wc -l)
touch "$WORK/refused"
n_refused=$(wc -l <"$WORK/refused")
echo "verdict: $n_accepted accepted, $n_lost lost, $n_dup duplicated, $n_extra stored although not answered 200, $n_refused refused while the gateway was stopped"
mp::check "orders were accepted around the migrations ($n_accepted)" test "$n_accepted" -gt 0
mp::check "no accepted order lost ($n_lost)" test "$n_lost" = 0
mp::check "no order stored twice ($n_dup)" test "$n_dup" = 0
echo "ha-migrate-test: $MP_CHECKS_PASSED passed, $MP_CHECKS_FAILED failed"
((MP_CHECKS_FAILED == 0))
