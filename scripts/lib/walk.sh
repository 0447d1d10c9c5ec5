# shellcheck shell=bash
# The audit walk: the user's demo as checks, written once. Post a movie and find
# it (API and database), change and delete it, post an order and see it stored;
# stop billing-worker, post orders, see them wait in billing_queue; start it, see
# each stored exactly once and the queue drained.
#
# It runs over a transport the caller names: mp::walk::run TRANSPORT TAG calls
# four functions named after TRANSPORT, which say how this deployment is reached
# (local processes, network namespaces, ssh into VMs, docker exec):
#   TRANSPORT::http METHOD PATH [JSON]  a request to the gateway, from where a user
#                                       sends it; sets WALK_STATUS (000 when no
#                                       answer) and WALK_BODY
#   TRANSPORT::sql inventory|billing SQL  prints the one value SQL selects, from
#                                       that service's database (movies, orders)
#   TRANSPORT::queued                   prints the messages in billing_queue
#   TRANSPORT::worker stop|start        stop: billing-worker stopped as an operator
#                                       does (SIGTERM) and gone; start: started again
#                                       (the walk then waits for the backlog itself)
# Callers: scripts/test.sh e2e (local), scripts/three-host-test.sh (netns),
# scripts/vm/checks.sh (ssh into the VMs), scripts/containers-test.sh (docker exec),
# scripts/swarm-test.sh (docker exec into the stack's tasks).
#
# TAG makes this walk's movies and orders its own (user_id walk-TAG-*), so a
# walk can run again on the same data. MP_WALK_WAIT (default 60) is how many
# seconds to wait for the gateway and for an order to be stored (the VMs under
# TCG need more). Afterwards WALK_MOVIE_ID/WALK_MOVIE_TITLE name a movie that
# stays, and WALK_ORDERS holds the order ids (first the one stored while the
# worker ran, then the ones that waited), for the caller's own checks (logs,
# reboots), with mp::walk::request, ::json, ::is, ::order and ::stored_id
# (below) over the same transport. Checks go through mp::check (scripts/lib/mp.sh); nothing here exits.

[[ -n ${MP_WALK_LOADED:-} ]] && return 0
MP_WALK_LOADED=1

# mp::walk::json EXPR: evaluates the Python expression EXPR on WALK_BODY parsed
# as JSON (bound to j) and prints it; fails when the body is no JSON or EXPR
# raises.
mp::walk::json() {
	python3 -c 'import json, sys
j = json.loads(sys.argv[2])
v = eval(sys.argv[1], {"j": j})
print(v if not isinstance(v, bool) else ("true" if v else "false"))' "$1" "$WALK_BODY" 2>/dev/null
}

# mp::walk::curl BASE [PREFIX...] -- METHOD PATH [JSON]: the http function most
# transports need: curl (run through PREFIX, e.g. a namespace) to BASE.
mp::walk::curl() {
	local base=$1 prefix=() out
	shift
	while [[ $1 != -- ]]; do
		prefix+=("$1")
		shift
	done
	shift
	local args=(-sS -m 30 -w '\n%{http_code}' -X "$1" -H 'Accept: application/json')
	(($# >= 3)) && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	out=$("${prefix[@]}" curl "${args[@]}" "$base$2" 2>&1) || true
	WALK_STATUS=${out##*$'\n'}
	WALK_BODY=${out%$'\n'*}
	[[ $WALK_STATUS =~ ^[0-9]{3}$ ]] || WALK_STATUS=000
}

# mp::walk::db inventory|billing: that service's database name, from .env.
mp::walk::db() {
	case $1 in
	inventory) printf '%s' "$INVENTORY_DB_NAME" ;;
	billing) printf '%s' "$BILLING_DB_NAME" ;;
	*) mp::die "audit walk: no database for $1" ;;
	esac
}

# mp::walk::status WANT: the last answer had status WANT; says what came instead.
mp::walk::status() {
	[[ $WALK_STATUS == "$1" ]] || {
		echo "HTTP $WALK_STATUS, want $1: ${WALK_BODY:0:300}"
		return 1
	}
}

# mp::walk::holds ID TITLE: the body is a list holding the movie ID with TITLE.
mp::walk::holds() {
	[[ $(mp::walk::json "any(m.get('id') == $1 and m.get('title') == '''$2''' for m in j)") == true ]] || {
		echo "no movie $1 \"$2\" in: ${WALK_BODY:0:300}"
		return 1
	}
}

# mp::walk::is VALUE WANT: says both when they differ.
mp::walk::is() {
	[[ $1 == "$2" ]] || {
		echo "got [$1], want [$2]"
		return 1
	}
}

# Predicates on the last answer: 201 with a positive id ID; 200 with a list
# holding movie ID titled TITLE; 200 with a movie titled TITLE.
mp::walk::created() { mp::walk::status 201 && mp::walk::is "$(mp::walk::json "j['id']")" "$1" && [[ $1 =~ ^[1-9][0-9]*$ ]]; }
mp::walk::lists() { mp::walk::status 200 && mp::walk::holds "$1" "$2"; }
mp::walk::titled() { mp::walk::status 200 && mp::walk::is "$(mp::walk::json "j['title']")" "$1"; }

# mp::walk::request METHOD PATH [JSON] WANT: one call, checked for its status.
mp::walk::request() {
	local want=${*: -1}
	"$WALK_T::http" "${@:1:$#-1}"
	mp::walk::status "$want"
}

mp::walk::answers() { "$WALK_T::http" GET /api/movies && [[ $WALK_STATUS == 200 ]]; }

mp::walk::sql() { "$WALK_T::sql" "$@" 2>/dev/null | tr -d '[:space:]'; }

# mp::walk::stored USER N: exactly N orders of USER (a regular expression) are stored.
mp::walk::stored() { [[ $(mp::walk::sql billing "SELECT count(*) FROM orders WHERE user_id ~ '^$1\$'") == "$2" ]]; }

# mp::walk::stored_id ORDER_ID N: the order is stored exactly N times.
mp::walk::stored_id() { [[ $(mp::walk::sql billing "SELECT count(*) FROM orders WHERE order_id = '$1'") == "$2" ]]; }

mp::walk::queued_is() { [[ $("$WALK_T::queued" 2>/dev/null | tr -d '[:space:]') == "$1" ]]; }

# mp::walk::order USER: POST /api/billing; appends the order id to WALK_ORDERS.
mp::walk::order() {
	"$WALK_T::http" POST /api/billing "{\"user_id\":\"$1\",\"number_of_items\":2,\"total_amount\":\"19.90\"}"
	mp::walk::status 200 || return 1
	local id
	id=$(mp::walk::json "j['order_id']") || id=""
	[[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || {
		echo "no order_id UUID in: ${WALK_BODY:0:300}"
		return 1
	}
	WALK_ORDERS+=("$id")
}

# mp::walk::movies TAG: the movies API through the gateway, and the database behind it.
mp::walk::movies() {
	local tag=$1 title id wait=${MP_WALK_WAIT:-60}
	title="walk $tag"
	mp::check "walk: GET /api/movies answers 200 (gateway -> inventory -> PostgreSQL)" \
		mp::wait_until "$wait" "GET /api/movies to answer 200" mp::walk::answers
	"$WALK_T::http" POST /api/movies "{\"title\":\"$title\",\"description\":\"made by the audit walk\"}"
	id=$(mp::walk::json "j['id']") || id=""
	mp::check "walk: POST /api/movies is 201 with a new id ($id)" mp::walk::created "$id"
	[[ $id =~ ^[0-9]+$ ]] || return 0
	"$WALK_T::http" GET /api/movies
	mp::check "walk: GET /api/movies lists movie $id" mp::walk::lists "$id" "$title"
	"$WALK_T::http" GET "/api/movies?title=walk%20${tag}"
	mp::check "walk: GET /api/movies?title= finds movie $id" mp::walk::lists "$id" "$title"
	mp::check "walk: the movies database holds movie $id" \
		mp::walk::is "$(mp::walk::sql inventory "SELECT title FROM movies WHERE id = $id" | tr -d '[:space:]')" "${title// /}"
	mp::check "walk: PUT /api/movies/$id is 200" mp::walk::request PUT "/api/movies/$id" \
		"{\"title\":\"$title (changed)\",\"description\":\"changed by the audit walk\"}" 200
	"$WALK_T::http" GET "/api/movies/$id"
	mp::check "walk: GET /api/movies/$id shows the change" mp::walk::titled "$title (changed)"
	mp::check "walk: DELETE /api/movies/$id is 200" mp::walk::request DELETE "/api/movies/$id" 200
	mp::check "walk: GET /api/movies/$id is then 404" mp::walk::request GET "/api/movies/$id" 404
	mp::check "walk: the movies database no longer holds movie $id" \
		mp::walk::is "$(mp::walk::sql inventory "SELECT count(*) FROM movies WHERE id = $id")" 0

	# One that stays, for the caller (after a reboot, in the access log).
	"$WALK_T::http" POST /api/movies "{\"title\":\"$title kept\",\"description\":\"stays after the audit walk\"}"
	WALK_MOVIE_ID=$(mp::walk::json "j['id']") || WALK_MOVIE_ID=""
	# shellcheck disable=SC2034 # for the caller
	WALK_MOVIE_TITLE="$title kept"
	mp::check "walk: a movie that stays is 201 ($WALK_MOVIE_ID)" mp::walk::created "$WALK_MOVIE_ID"
	mp::check "walk: ...and in the movies database" mp::walk::is \
		"$(mp::walk::sql inventory "SELECT count(*) FROM movies WHERE id = ${WALK_MOVIE_ID:-0}")" 1
}

# mp::walk::orders TAG: orders through the gateway, RabbitMQ and billing-worker,
# with the worker stopped and started.
mp::walk::orders() {
	local user="walk-$1" wait=${MP_WALK_WAIT:-60} i ok=1
	WALK_ORDERS=()
	mp::check "walk: POST /api/billing is 200 with an order_id" mp::walk::order "$user-a"
	mp::check "walk: the order is stored once in the orders database" \
		mp::wait_until "$wait" "order $user-a to be stored" mp::walk::stored "$user-a" 1
	# What was stored is acknowledged right after its commit: let the queue empty.
	mp::wait_until 15 "billing_queue to be empty" mp::walk::queued_is 0 >/dev/null 2>&1 || true

	mp::check "walk: billing-worker stopped (SIGTERM)" "$WALK_T::worker" stop
	for i in 1 2 3; do
		mp::walk::order "$user-b$i" >/dev/null || ok=0
	done
	mp::check "walk: 3 orders while the worker is stopped: all 200 with an order_id" test "$ok" = 1
	sleep 2
	mp::check "walk: ...none of them is stored" mp::walk::stored "$user-b[123]" 0
	mp::check "walk: ...all 3 wait in billing_queue" mp::walk::is "$("$WALK_T::queued" 2>&1 | tr -d '[:space:]')" 3

	mp::check "walk: billing-worker started again" "$WALK_T::worker" start
	mp::check "walk: the backlog is stored: all 3 orders" \
		mp::wait_until "$((wait * 2))" "the 3 waiting orders to be stored" mp::walk::stored "$user-b[123]" 3
	mp::check "walk: billing_queue drained" mp::wait_until 30 "billing_queue to be empty" mp::walk::queued_is 0
	mp::check "walk: every order stored exactly once (4 rows, 4 distinct order ids)" mp::walk::is \
		"$(mp::walk::sql billing "SELECT count(*) || '/' || count(DISTINCT order_id) FROM orders WHERE user_id ~ '^$user-'")" 4/4
	local stored
	stored=$(mp::walk::sql billing "SELECT string_agg(order_id::text, ' ' ORDER BY user_id) FROM orders WHERE user_id ~ '^$user-'")
	mp::check "walk: the stored order ids are the ones the gateway answered" \
		mp::walk::is "$stored" "$(printf '%s' "${WALK_ORDERS[*]}" | tr -d ' ')"
}

# mp::walk::run TRANSPORT TAG: the whole walk.
mp::walk::run() {
	WALK_T=${1:?usage: mp::walk::run TRANSPORT TAG}
	local tag=${2:?usage: mp::walk::run TRANSPORT TAG} f
	for f in http sql queued worker; do
		declare -F "$WALK_T::$f" >/dev/null || mp::die "audit walk: transport $WALK_T defines no $WALK_T::$f"
	done
	mp::walk::movies "$tag"
	mp::walk::orders "$tag"
}
