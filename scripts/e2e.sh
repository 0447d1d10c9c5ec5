#!/usr/bin/env bash
# End-to-end check of the RUNNING system, with curl: every route and every
# error of inventory (through the gateway and directly), billing through the
# gateway, health/readiness of the three services, the request id round trip,
# and the gateway's answers when inventory is down (502) or too slow (504).
#
#   scripts/e2e.sh
#
# Targets the system scripts/local.sh runs: $GATEWAY_URL (default
# http://127.0.0.1:8080), inventory on 127.0.0.1:$LOCAL_INVENTORY_PORT (8081),
# the worker's health port $LOCAL_BILLING_HEALTH_PORT (8082); scripts/test.sh
# exports its test ports in the same variables.
#
# Prints `ok - ...` / `not ok - ... (expected ..., got ...)` per check and
# `e2e: N passed, M failed` at the end; exits 1 if anything failed.
#
# Side effects: DELETE /api/movies (delete-all) is one of the routes checked,
# so every movie in the instance is gone afterwards (run it on a test
# instance). Orders it places (user_id e2e-*) stay in the orders table.
# inventory-app is stopped and started again for the 502/504 checks.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL_SH=$ROOT/scripts/local.sh
GW=${GATEWAY_URL:-http://127.0.0.1:${LOCAL_GATEWAY_PORT:-8080}}
GW=${GW%/}
INV=http://127.0.0.1:${LOCAL_INVENTORY_PORT:-8081}
INV_PORT=${LOCAL_INVENTORY_PORT:-8081}
WORKER=http://127.0.0.1:${LOCAL_BILLING_HEALTH_PORT:-8082}
TIMEOUT=${E2E_TIMEOUT:-20}
# The system interpreter: a pyenv/asdf shim costs ~0.4 s per call, and this
# script calls Python for every check.
if [[ -z ${PYTHON:-} ]]; then
	if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
RUN_ID=$$-$RANDOM

TMP=$(mktemp -d)
BODY=$TMP/body
HDRS=$TMP/headers
CERR=$TMP/curl-stderr
PASSED=0
FAILED=0
STATUS=000
CTYPE=
RID=
FAKE_PID=
INVENTORY_STOPPED=0

cleanup() {
	if [[ -n $FAKE_PID ]]; then
		kill "$FAKE_PID" 2>/dev/null || true
		wait "$FAKE_PID" 2>/dev/null || true
	fi
	if ((INVENTORY_STOPPED)); then
		"$LOCAL_SH" start inventory-app >/dev/null 2>&1 || echo "# could not restart inventory-app" >&2
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# ------------------------------------------------------------------ helpers --

# JSON helpers in Python (stdlib): `j` is the last response body, `a` the
# extra arguments, `movies(j)` the list in a list response (a bare array or
# an object holding one).
PY_HELPERS=$(
	cat <<'PY'
import json, re, sys
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
def movies(j):
    if isinstance(j, list):
        return j
    if isinstance(j, dict):
        for k in ("movies", "items", "data", "results"):
            if isinstance(j.get(k), list):
                return j[k]
    raise ValueError("no list of movies in the response")
def ids(j):
    return [str(m["id"]) for m in movies(j)]
def titles(j):
    return [m["title"] for m in movies(j)]
mode, path, expr, a = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
try:
    with open(path, "rb") as f:
        j = json.loads(f.read().decode("utf-8"))
except Exception as e:
    print(f"body is not JSON: {e}")
    sys.exit(1)
if mode == "get":
    try:
        v = eval(expr)
    except Exception as e:
        print(f"<{type(e).__name__}: {e}>")
        sys.exit(1)
    print(v if isinstance(v, str) else json.dumps(v))
elif mode == "test":
    try:
        ok = bool(eval(expr))
    except Exception as e:
        print(f"{type(e).__name__}: {e}")
        sys.exit(1)
    if not ok:
        print(f"condition false: {expr}")
        sys.exit(1)
elif mode == "error":
    # expr: the field the error must name ("" = any); a[0] = "names" to
    # accept the name in the message instead of in `field`.
    err = j.get("error") if isinstance(j, dict) else None
    if not isinstance(err, dict):
        print("body has no error object")
        sys.exit(1)
    if not isinstance(err.get("code"), str) or not re.fullmatch(r"[a-z][a-z0-9_]*", err["code"]):
        print(f"error.code is not a snake_case string: {err.get('code')!r}")
        sys.exit(1)
    if not isinstance(err.get("message"), str) or not err["message"]:
        print("error.message is missing")
        sys.exit(1)
    if expr:
        named = err.get("field") == expr
        if a and a[0] == "names":
            named = named or expr in err["message"]
        if not named:
            print(f"error names field {err.get('field')!r}, not {expr!r} (message: {err['message']!r})")
            sys.exit(1)
PY
)

py() { "$PYTHON" -c "$PY_HELPERS" "$@"; }
# jget EXPR [ARGS...]: a value from the last response body.
jget() { py get "$BODY" "$@"; }

snippet() { head -c 300 "$BODY" 2>/dev/null | tr '\n' ' '; }

pass() {
	PASSED=$((PASSED + 1))
	printf 'ok - %s\n' "$1"
}
fail() {
	FAILED=$((FAILED + 1))
	printf 'not ok - %s (%s)\n' "$1" "$2"
}

# req METHOD URL [CURL ARGS...]: sets STATUS, CTYPE, RID; body in $BODY.
req() {
	local method=$1 url=$2 out
	shift 2
	: >"$BODY"
	: >"$HDRS"
	out=$(curl -sS -X "$method" -o "$BODY" -D "$HDRS" -w '%{http_code} %{content_type}' \
		--max-time "$TIMEOUT" "$@" "$url" 2>"$CERR") || true
	STATUS=${out%% *}
	CTYPE=${out#* }
	[[ $out == *' '* ]] || CTYPE=
	RID=$(tr -d '\r' <"$HDRS" | grep -i '^x-request-id:' | tail -n 1 | cut -d: -f2- | sed 's/^ *//') || true
}

# send METHOD URL JSON [CURL ARGS...]: a request with a JSON body.
send() {
	local method=$1 url=$2 data=$3
	shift 3
	req "$method" "$url" -H 'Content-Type: application/json' --data-binary "$data" "$@"
}

got() {
	if [[ $STATUS == 000 ]]; then
		printf 'no response: %s' "$(head -c 200 "$CERR" | tr '\n' ' ')"
	else
		printf '%s %s' "$STATUS" "$(snippet)"
	fi
}

is_json_ctype() { [[ ${CTYPE,,} == application/json* ]]; }

# expect DESC STATUSES [PY-CONDITION [ARGS...]]: STATUSES is a regex like
# 200|201; the condition is Python over `j` (the JSON body) and `a`.
expect() {
	local desc=$1 codes=$2 why
	shift 2
	if [[ ! $STATUS =~ ^($codes)$ ]]; then
		fail "$desc" "expected $codes, got $(got)"
		return 1
	fi
	if (($#)); then
		if ! is_json_ctype; then
			fail "$desc" "expected a JSON content type, got '${CTYPE}'"
			return 1
		fi
		if ! why=$(py test "$BODY" "$@"); then
			fail "$desc" "$why; got $(got)"
			return 1
		fi
	fi
	pass "$desc"
}

# expect_error DESC STATUS [FIELD [names]]: a JSON error in the project's
# format, naming FIELD (in `field`; with "names", in `field` or the message).
expect_error() {
	local desc=$1 code=$2 field=${3:-} mode=${4:-} why
	if [[ $STATUS != "$code" ]]; then
		fail "$desc" "expected $code${field:+ naming $field}, got $(got)"
		return 1
	fi
	if ! is_json_ctype; then
		fail "$desc" "expected a JSON content type, got '${CTYPE}' with $(snippet)"
		return 1
	fi
	if ! why=$(py error "$BODY" "$field" "$mode"); then
		fail "$desc" "expected a JSON error${field:+ naming $field}: $why; got $(got)"
		return 1
	fi
	pass "$desc"
}

check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc" "expected success of: $*"; fi
}

repeat_char() { "$PYTHON" -c 'import sys; sys.stdout.write(sys.argv[1] * int(sys.argv[2]))' "$1" "$2"; }

new_uuid() { "$PYTHON" -c 'import uuid; print(uuid.uuid4())'; }

wait_ok() { # URL SECONDS: until URL answers 2xx
	local deadline=$((SECONDS + $2))
	until curl -fsS -o /dev/null -m 3 "$1" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
}

# ------------------------------------------------------------------- health --

check_health() {
	local name=$1 base=$2
	req GET "$base/health"
	expect "$name: GET /health is 200" 200 || true
	req GET "$base/ready"
	expect "$name: GET /ready is 200 (all its dependencies up)" 200 || true
}

# ---------------------------------------------------------------- inventory --

# The inventory routes and errors against BASE (the gateway or inventory
# itself); LABEL prefixes the descriptions.
inventory_suite() {
	local base=$1 label=$2 tag id1 id2 id3 missing big t i p
	local -a page_ids=()
	tag="e2e-$label-$RUN_ID"
	local m=$base/api/movies

	# create
	send POST "$m" "{\"title\":\"$tag first\",\"description\":\"first description\"}"
	expect "$label: POST /api/movies creates a movie" '200|201' \
		'j["title"] == a[0] and j["description"] == a[1] and j.get("id") is not None' \
		"$tag first" "first description" || true
	id1=$(jget 'j["id"]' 2>/dev/null || echo missing-id)
	if [[ $id1 =~ ^[0-9]+$ ]]; then missing=2147483000; else missing=$(new_uuid); fi

	send POST "$m/" "{\"title\":\"$tag second\"}"
	expect "$label: POST /api/movies/ (trailing slash) creates a movie without description" '200|201' \
		'j["title"] == a[0] and str(j["id"]) != a[1]' "$tag second" "$id1" || true
	id2=$(jget 'j["id"]' 2>/dev/null || echo missing-id)

	t="$tag Amélie — «ünïcødé» ✓"
	send POST "$m" "$("$PYTHON" -c 'import json,sys; print(json.dumps({"title": sys.argv[1]}, ensure_ascii=False))' "$t")"
	expect "$label: POST /api/movies keeps a non-ASCII title" '200|201' 'j["title"] == a[0]' "$t" || true
	id3=$(jget 'j["id"]' 2>/dev/null || echo missing-id)
	req GET "$m/$id3"
	expect "$label: GET returns the non-ASCII title byte for byte" 200 'j["title"] == a[0]' "$t" || true

	# read
	req GET "$m/$id1"
	expect "$label: GET /api/movies/{id} returns the movie" 200 \
		'str(j["id"]) == a[0] and j["title"] == a[1] and j["description"] == a[2]' \
		"$id1" "$tag first" "first description" || true
	req GET "$m/$id1/"
	expect "$label: GET /api/movies/{id}/ (trailing slash)" 200 'str(j["id"]) == a[0]' "$id1" || true
	req GET "$m"
	expect "$label: GET /api/movies lists movies" 200 'isinstance(movies(j), list) and len(movies(j)) >= 1' || true
	req GET "$m/"
	expect "$label: GET /api/movies/ (trailing slash) lists movies" 200 'isinstance(movies(j), list)' || true

	# search: case-insensitive contains; % _ ' \ are literal characters
	for t in "100% pure" "100x pure" "a_b" "axb" 'back\slash' "backslash" "O'Brien"; do
		send POST "$m" "$("$PYTHON" -c 'import json,sys; print(json.dumps({"title": sys.argv[1]}))' "$tag $t")"
		[[ $STATUS =~ ^20[01]$ ]] || fail "$label: create search fixture '$tag $t'" "expected 201, got $(got)"
	done
	req GET "$m" -G --data-urlencode "title=${tag^^}"
	expect "$label: ?title= is a case-insensitive contains search" 200 \
		'len(movies(j)) == 10 and all(a[0] in t for t in titles(j))' "$tag" || true
	req GET "$m/" -G --data-urlencode "title=$tag FIRST"
	expect "$label: GET /api/movies/?title= (trailing slash) searches" 200 'titles(j) == [a[0]]' "$tag first" || true
	req GET "$m" -G --data-urlencode "title=$tag 100%"
	expect "$label: ?title= treats % literally" 200 'titles(j) == [a[0]]' "$tag 100% pure" || true
	req GET "$m" -G --data-urlencode "title=%"
	expect "$label: ?title=% finds only titles containing %" 200 \
		'len(movies(j)) >= 1 and all("%" in t for t in titles(j))' || true
	req GET "$m" -G --data-urlencode "title=$tag a_b"
	expect "$label: ?title= treats _ literally" 200 'titles(j) == [a[0]]' "$tag a_b" || true
	req GET "$m" -G --data-urlencode "title=$tag back\\slash"
	expect "$label: ?title= treats \\ literally" 200 'titles(j) == [a[0]]' "$tag back\\slash" || true
	req GET "$m" -G --data-urlencode "title=$tag o'brien"
	expect "$label: ?title= with a quote" 200 'titles(j) == [a[0]]' "$tag O'Brien" || true
	req GET "$m?title=a%00b"
	expect "$label: ?title= with a NUL character is an empty list or a 400, never a 500" '200|400' \
		'(movies(j) == []) if "error" not in j else j["error"].get("field") == "title" or "title" in j["error"]["message"]' || true
	req GET "$m" -G --data-urlencode "title=$(repeat_char z 5000)"
	expect "$label: ?title= with 5000 characters is an empty list or a 400" '200|400' \
		'(movies(j) == []) if "error" not in j else True' || true
	req GET "$m" -G --data-urlencode "title=$tag no such movie"
	expect "$label: ?title= with no match is an empty list" 200 'movies(j) == []' || true

	# paging
	for i in 1 2 3 4 5; do
		send POST "$m" "{\"title\":\"$tag page $i\"}"
		[[ $STATUS =~ ^20[01]$ ]] || fail "$label: create paging fixture $i" "expected 201, got $(got)"
	done
	for p in "0 2" "2 2" "4 2"; do
		req GET "$m" -G --data-urlencode "title=$tag page" --data-urlencode "offset=${p% *}" --data-urlencode "limit=${p#* }"
		expect "$label: ?limit=${p#* }&offset=${p% *} returns one page" 200 \
			'len(movies(j)) == (1 if a[0] == "4" else 2)' "${p% *}" || true
		page_ids+=("$(jget 'ids(j)' 2>/dev/null || echo '[]')")
	done
	if "$PYTHON" -c 'import json,sys; ids=[i for p in sys.argv[1:] for i in json.loads(p)]; sys.exit(0 if len(ids)==5 and len(set(ids))==5 else 1)' "${page_ids[@]}"; then
		pass "$label: the pages hold the 5 movies exactly once"
	else
		fail "$label: the pages hold the 5 movies exactly once" "expected 5 distinct ids, got ${page_ids[*]}"
	fi
	req GET "$m" -G --data-urlencode "title=$tag page" --data-urlencode "offset=100"
	expect "$label: an offset past the end is an empty list" 200 'movies(j) == []' || true
	for p in limit=abc limit=-1 offset=-1 offset=abc limit=1.5; do
		req GET "$m?$p"
		expect_error "$label: GET /api/movies?$p is 400 naming ${p%=*}" 400 "${p%=*}" names || true
	done

	# validation on create
	send POST "$m" '{}'
	expect_error "$label: POST without title is 400 naming title" 400 title || true
	send POST "$m" '{"title":""}'
	expect_error "$label: POST with empty title is 400 naming title" 400 title || true
	send POST "$m" '{"title":"   "}'
	expect_error "$label: POST with blank title is 400 naming title" 400 title || true
	send POST "$m" '{"title":null}'
	expect_error "$label: POST with null title is 400 naming title" 400 title || true
	send POST "$m" '{"title":42}'
	expect_error "$label: POST with numeric title is 400 naming title" 400 title || true
	send POST "$m" "{\"title\":\"$(repeat_char x 256)\"}"
	expect_error "$label: POST with a 256-char title is 400 naming title" 400 title || true
	send POST "$m" "{\"title\":\"$(repeat_char é 255)\"}"
	expect "$label: POST with a 255-char (non-ASCII) title is accepted" '200|201' 'len(j["title"]) == 255' || true
	send POST "$m" "{\"title\":\"$tag long\",\"description\":\"$(repeat_char d 10001)\"}"
	expect_error "$label: POST with a 10001-char description is 400 naming description" 400 description || true
	send POST "$m" "{\"title\":\"$tag long\",\"description\":\"$(repeat_char d 10000)\"}"
	expect "$label: POST with a 10000-char description is accepted" '200|201' 'len(j["description"]) == 10000' || true
	send POST "$m" "{\"title\":\"$tag\",\"description\":42}"
	expect_error "$label: POST with numeric description is 400 naming description" 400 description || true
	send POST "$m" '{"title":"a\u0000b"}'
	expect_error "$label: POST with a NUL character in the title is 400 naming title" 400 title || true
	send POST "$m" '{"title":"ok","description":"a\u0000b"}'
	expect_error "$label: POST with a NUL character in the description is 400 naming description" 400 description || true
	send POST "$m" "{\"title\":$(repeat_char '[' 300)$(repeat_char ']' 300)}"
	expect_error "$label: POST with a deeply nested title is 400" 400 || true
	printf '{"title":"bad \xff\xfe utf-8"}' >"$TMP/bad-utf8.json"
	req POST "$m" -H 'Content-Type: application/json' --data-binary "@$TMP/bad-utf8.json"
	expect_error "$label: POST with invalid UTF-8 is 400" 400 || true
	req POST "$m" -H 'Content-Type: application/json; charset=utf-8' --data-binary "{\"title\":\"$tag charset\"}"
	expect "$label: POST with Content-Type application/json; charset=utf-8 is accepted" '200|201' 'j["title"] == a[0]' "$tag charset" || true
	send POST "$m" '{"title":"x",'
	expect_error "$label: POST with a body that is not JSON is 400" 400 || true
	send POST "$m" '[{"title":"x"}]'
	expect_error "$label: POST with a JSON array (not an object) is 400" 400 || true
	send POST "$m" '"x"'
	expect_error "$label: POST with a JSON string (not an object) is 400" 400 || true
	send POST "$m" ''
	expect_error "$label: POST with an empty body is 400" 400 || true
	req POST "$m" -H 'Content-Type: text/plain' --data-binary "{\"title\":\"$tag\"}"
	expect_error "$label: POST with Content-Type text/plain is 415" 415 || true
	req POST "$m" --data-binary "title=$tag"
	expect_error "$label: POST with a form body is 415" 415 || true
	req POST "$m" -H 'Content-Type:' --data-binary "{\"title\":\"$tag\"}"
	expect_error "$label: POST without Content-Type is 415" 415 || true
	big=$TMP/big-movie.json
	"$PYTHON" -c 'import sys; sys.stdout.write("{\"title\":\"" + "x" * (2 * 1024 * 1024) + "\"}")' >"$big"
	req POST "$m" -H 'Content-Type: application/json' --data-binary "@$big"
	expect_error "$label: POST with a 2 MiB body is 413" 413 || true

	# update
	send PUT "$m/$id1" "{\"title\":\"$tag first updated\",\"description\":\"updated\"}"
	expect "$label: PUT /api/movies/{id} updates the movie" 200 \
		'str(j["id"]) == a[0] and j["title"] == a[1] and j["description"] == a[2]' \
		"$id1" "$tag first updated" "updated" || true
	req GET "$m/$id1"
	expect "$label: GET after PUT shows the update" 200 'j["title"] == a[0] and j["description"] == a[1]' \
		"$tag first updated" "updated" || true
	send PUT "$m/$id1/" "{\"title\":\"$tag first again\"}"
	expect "$label: PUT /api/movies/{id}/ (trailing slash)" 200 'j["title"] == a[0]' "$tag first again" || true
	send PUT "$m/$id1" '{"title":""}'
	expect_error "$label: PUT with empty title is 400 naming title" 400 title || true
	send PUT "$m/$id1" "{\"title\":\"$tag\",\"description\":\"$(repeat_char d 10001)\"}"
	expect_error "$label: PUT with a 10001-char description is 400 naming description" 400 description || true
	send PUT "$m/$id1" '[1]'
	expect_error "$label: PUT with a JSON array is 400" 400 || true
	req PUT "$m/$id1" -H 'Content-Type: text/plain' --data-binary '{"title":"x"}'
	expect_error "$label: PUT with Content-Type text/plain is 415" 415 || true
	send PUT "$m/$missing" '{"title":"nobody"}'
	expect_error "$label: PUT of a missing movie is 404" 404 || true
	send PUT "$m/abc" '{"title":"x"}'
	expect_error "$label: PUT /api/movies/abc is 400" 400 || true

	# bad ids, unknown routes, wrong methods
	req GET "$m/$missing"
	expect_error "$label: GET of a missing movie is 404" 404 || true
	req GET "$m/abc"
	expect_error "$label: GET /api/movies/abc is 400" 400 || true
	req GET "$m/99999999999999999999999"
	expect_error "$label: GET /api/movies/<id too large> is 400" 400 || true
	req GET "$m/-1"
	expect "$label: GET /api/movies/-1 is a JSON 400 or 404" '400|404' '"error" in j' || true
	req GET "${m}x"
	expect_error "$label: GET /api/moviesx is 404" 404 || true
	req GET "$m/$id1/extra"
	expect_error "$label: GET /api/movies/{id}/extra is 404" 404 || true
	req DELETE "$m/$missing"
	expect_error "$label: DELETE of a missing movie is 404" 404 || true
	req DELETE "$m/abc"
	expect_error "$label: DELETE /api/movies/abc is 400" 400 || true
	req PATCH "$m" -H 'Content-Type: application/json' --data-binary '{}'
	expect_error "$label: PATCH /api/movies is 405" 405 || true
	req PUT "$m" -H 'Content-Type: application/json' --data-binary '{"title":"x"}'
	expect_error "$label: PUT /api/movies is 405" 405 || true
	req POST "$m/$id1" -H 'Content-Type: application/json' --data-binary '{"title":"x"}'
	expect_error "$label: POST /api/movies/{id} is 405" 405 || true
	req PATCH "$m/$id1" -H 'Content-Type: application/json' --data-binary '{"title":"x"}'
	expect_error "$label: PATCH /api/movies/{id} is 405" 405 || true

	# delete one, then all
	req DELETE "$m/$id1"
	expect "$label: DELETE /api/movies/{id} deletes it" '200|204' || true
	req GET "$m/$id1"
	expect_error "$label: GET after DELETE is 404" 404 || true
	req DELETE "$m/$id2/"
	expect "$label: DELETE /api/movies/{id}/ (trailing slash) deletes it" '200|204' || true
	req DELETE "$m/$id2"
	expect_error "$label: DELETE twice is 404" 404 || true
	if [[ $label == gateway ]]; then
		req DELETE "$m"
		expect "$label: DELETE /api/movies deletes all movies" '200|204' || true
	else
		req DELETE "$m/"
		expect "$label: DELETE /api/movies/ (trailing slash) deletes all movies" '200|204' || true
	fi
	req GET "$m"
	expect "$label: the list is empty after delete-all" 200 'movies(j) == []' || true
	req GET "$m/$id3"
	expect_error "$label: GET of a movie removed by delete-all is 404" 404 || true
}

# ------------------------------------------------------------------ billing --

billing_suite() {
	local b=$GW/api/billing user="e2e-$RUN_ID" body field rows big i
	local -a bad=(
		'{"number_of_items":1,"total_amount":1}|user_id'
		'{"user_id":"","number_of_items":1,"total_amount":1}|user_id'
		'{"user_id":"   ","number_of_items":1,"total_amount":1}|user_id'
		'{"user_id":1.5,"number_of_items":1,"total_amount":1}|user_id'
		'{"user_id":true,"number_of_items":1,"total_amount":1}|user_id'
		'{"user_id":{},"number_of_items":1,"total_amount":1}|user_id'
		'{"user_id":"a\u0001b","number_of_items":1,"total_amount":1}|user_id'
		'{"user_id":"a\u0000b","number_of_items":1,"total_amount":1}|user_id'
		"{\"user_id\":\"$(repeat_char u 65)\",\"number_of_items\":1,\"total_amount\":1}|user_id"
		'{"user_id":1,"total_amount":1}|number_of_items'
		'{"user_id":1,"number_of_items":0,"total_amount":1}|number_of_items'
		'{"user_id":1,"number_of_items":-3,"total_amount":1}|number_of_items'
		'{"user_id":1,"number_of_items":1.5,"total_amount":1}|number_of_items'
		'{"user_id":1,"number_of_items":"abc","total_amount":1}|number_of_items'
		'{"user_id":1,"number_of_items":1000001,"total_amount":1}|number_of_items'
		'{"user_id":1,"number_of_items":99999999999999999999999,"total_amount":1}|number_of_items'
		'{"user_id":1,"number_of_items":1}|total_amount'
		'{"user_id":1,"number_of_items":1,"total_amount":null}|total_amount'
		'{"user_id":1,"number_of_items":1,"total_amount":-1}|total_amount'
		'{"user_id":1,"number_of_items":1,"total_amount":1.234}|total_amount'
		'{"user_id":1,"number_of_items":1,"total_amount":"1e3"}|total_amount'
		'{"user_id":1,"number_of_items":1,"total_amount":"NaN"}|total_amount'
		'{"user_id":1,"number_of_items":1,"total_amount":"abc"}|total_amount'
		'{"user_id":1,"number_of_items":1,"total_amount":100000000}|total_amount'
	)
	local ok_cond='j.get("status") == "queued" and j.get("message") == "Order queued for processing" and bool(UUID.match(str(j.get("order_id"))))'

	send POST "$b" "{\"user_id\":\"$user\",\"number_of_items\":\"99\",\"total_amount\":\"250\"}"
	expect "billing: POST /api/billing with string values is queued with a UUID order_id" 200 "$ok_cond" || true
	send POST "$b" "{\"user_id\":20,\"number_of_items\":3,\"total_amount\":12.5}"
	expect "billing: POST /api/billing with numeric values is queued" 200 "$ok_cond" || true
	send POST "$b/" "{\"user_id\":\"$user\",\"number_of_items\":1,\"total_amount\":\"0.10\"}"
	expect "billing: POST /api/billing/ (trailing slash) is queued" 200 "$ok_cond" || true
	send POST "$b" "{\"user_id\":\"$user\",\"number_of_items\":1,\"total_amount\":\"99999999.99\"}"
	expect "billing: the largest amount (99999999.99) is queued" 200 "$ok_cond" || true

	# the first order above must reach the orders table, exactly as sent
	rows=
	for ((i = 0; i < 60; i++)); do
		rows=$("$LOCAL_SH" psql orders -tAc \
			"SELECT number_of_items || ' ' || total_amount FROM orders WHERE user_id = '$user' ORDER BY total_amount" 2>/dev/null | tr '\n' ',') || true
		[[ $rows == '1 0.10,99 250.00,1 99999999.99,' ]] && break
		sleep 0.5
	done
	if [[ $rows == '1 0.10,99 250.00,1 99999999.99,' ]]; then
		pass "billing: the queued orders are stored once each with exact values"
	else
		fail "billing: the queued orders are stored once each with exact values" \
			"expected rows '1 0.10,99 250.00,1 99999999.99,' for user_id $user, got '$rows'"
	fi

	for i in "${bad[@]}"; do
		body=${i%|*}
		field=${i##*|}
		send POST "$b" "$body"
		expect_error "billing: $(printf '%.70s' "$body") is 400 naming $field" 400 "$field" || true
	done
	req POST "$b" -H 'Content-Type: application/json; charset=utf-8' --data-binary "{\"user_id\":\"$user-cs\",\"number_of_items\":1,\"total_amount\":1}"
	expect "billing: Content-Type application/json; charset=utf-8 is accepted" 200 "$ok_cond" || true
	printf '{"user_id":"\xff\xfe","number_of_items":1,"total_amount":1}' >"$TMP/bad-utf8-order.json"
	req POST "$b" -H 'Content-Type: application/json' --data-binary "@$TMP/bad-utf8-order.json"
	expect_error "billing: invalid UTF-8 is 400" 400 || true
	send POST "$b" "{\"user_id\":$(repeat_char '[' 300)$(repeat_char ']' 300),\"number_of_items\":1,\"total_amount\":1}"
	expect_error "billing: a deeply nested value is 400" 400 || true
	req POST "$b" -H 'Content-Type:' --data-binary '{"user_id":1,"number_of_items":1,"total_amount":1}'
	expect_error "billing: no Content-Type is 415" 415 || true
	send POST "$b" '{"user_id":'
	expect_error "billing: a body that is not JSON is 400" 400 || true
	send POST "$b" '[1,2]'
	expect_error "billing: a JSON array (not an object) is 400" 400 || true
	send POST "$b" '42'
	expect_error "billing: a JSON number (not an object) is 400" 400 || true
	send POST "$b" ''
	expect_error "billing: an empty body is 400" 400 || true
	req POST "$b" -H 'Content-Type: text/plain' --data-binary '{"user_id":1,"number_of_items":1,"total_amount":1}'
	expect_error "billing: Content-Type text/plain is 415" 415 || true
	req POST "$b" --data-binary 'user_id=1&number_of_items=1&total_amount=1'
	expect_error "billing: a form body is 415" 415 || true
	big=$TMP/big-order.json
	"$PYTHON" -c 'import sys; sys.stdout.write("{\"user_id\":\"" + "u" * (2 * 1024 * 1024) + "\",\"number_of_items\":1,\"total_amount\":1}")' >"$big"
	req POST "$b" -H 'Content-Type: application/json' --data-binary "@$big"
	expect_error "billing: a 2 MiB body is 413" 413 || true
	req GET "$b"
	expect_error "billing: GET /api/billing is 405" 405 || true
	req DELETE "$b"
	expect_error "billing: DELETE /api/billing is 405" 405 || true
}

# ------------------------------------------------------------------ gateway --

gateway_suite() {
	local rid="e2e-rid-$RUN_ID"
	check_health gateway "$GW"
	req GET "$GW/api/openapi.yaml"
	if [[ $STATUS == 200 ]] && grep -q '^openapi:' "$BODY" && grep -q '/api/billing' "$BODY" && grep -q '/api/movies' "$BODY"; then
		pass "gateway: GET /api/openapi.yaml serves the OpenAPI document"
	else
		fail "gateway: GET /api/openapi.yaml serves the OpenAPI document" "expected 200 with openapi:, /api/movies and /api/billing, got $(got)"
	fi
	req GET "$GW/api/nope"
	expect_error "gateway: GET /api/nope is 404" 404 || true
	req GET "$GW/nope"
	expect_error "gateway: GET /nope is 404" 404 || true
	req POST "$GW/health" -H 'Content-Type: application/json' --data-binary '{}'
	expect_error "gateway: POST /health is 405" 405 || true

	req GET "$GW/api/movies" -H "X-Request-Id: $rid-1"
	if [[ $STATUS == 200 && $RID == "$rid-1" ]]; then pass "gateway: X-Request-Id is returned unchanged (proxied GET /api/movies)"; else fail "gateway: X-Request-Id is returned unchanged (proxied GET /api/movies)" "expected 200 with X-Request-Id $rid-1, got $STATUS with '$RID'"; fi
	local i seen=0
	for ((i = 0; i < 10; i++)); do
		seen=$("$LOCAL_SH" logs inventory-app 2>/dev/null | grep -cF -- "$rid-1") || true
		((seen > 0)) && break
		sleep 0.3
	done
	if ((seen > 0)); then pass "gateway: the request id reaches inventory (in its log)"; else fail "gateway: the request id reaches inventory (in its log)" "expected $rid-1 in scripts/local.sh logs inventory-app, found none"; fi
	send POST "$GW/api/billing" '{"user_id":"e2e-rid","number_of_items":1,"total_amount":1}' -H "X-Request-Id: $rid-2"
	if [[ $STATUS == 200 && $RID == "$rid-2" ]]; then pass "gateway: X-Request-Id is returned unchanged (POST /api/billing)"; else fail "gateway: X-Request-Id is returned unchanged (POST /api/billing)" "expected 200 with X-Request-Id $rid-2, got $STATUS with '$RID'"; fi
	send POST "$GW/api/billing" '{}' -H "X-Request-Id: $rid-3"
	if [[ $STATUS == 400 && $RID == "$rid-3" ]]; then pass "gateway: X-Request-Id is returned on an error too"; else fail "gateway: X-Request-Id is returned on an error too" "expected 400 with X-Request-Id $rid-3, got $STATUS with '$RID'"; fi
	req GET "$GW/api/movies"
	local first=$RID
	req GET "$GW/api/movies"
	if [[ -n $first && -n $RID && $first != "$RID" ]]; then pass "gateway: a missing X-Request-Id is generated (unique per request)"; else fail "gateway: a missing X-Request-Id is generated (unique per request)" "expected two different ids, got '$first' and '$RID'"; fi
}

# ---------------------------------------------- inventory down / too slow --

dependency_suite() {
	if ! "$LOCAL_SH" stop inventory-app >/dev/null 2>&1; then
		fail "gateway: stop inventory-app for the 502 check" "scripts/local.sh stop inventory-app failed"
		return 0
	fi
	INVENTORY_STOPPED=1
	req GET "$GW/api/movies"
	expect_error "gateway: GET /api/movies with inventory down is 502" 502 || true
	send POST "$GW/api/movies" '{"title":"x"}'
	expect_error "gateway: POST /api/movies with inventory down is 502" 502 || true
	req GET "$GW/ready"
	expect "gateway: /ready with inventory down is 503 naming inventory" 503 'a[0] in json.dumps(j).lower()' inventory || true
	req GET "$GW/health"
	expect "gateway: /health with inventory down is still 200 (the process is alive)" 200 || true
	send POST "$GW/api/billing" '{"user_id":"e2e-indep","number_of_items":1,"total_amount":1}'
	expect "gateway: billing still works with inventory down" 200 'bool(UUID.match(str(j.get("order_id"))))' || true

	# A fake inventory that accepts connections and never answers.
	"$PYTHON" - "$INV_PORT" <<-'PY' &
		import socket, sys, time
		s = socket.socket()
		s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		s.bind(("127.0.0.1", int(sys.argv[1])))
		s.listen(64)
		s.settimeout(1)
		held, deadline = [], time.time() + 90
		while time.time() < deadline:
		    try:
		        held.append(s.accept()[0])
		    except socket.timeout:
		        pass
	PY
	FAKE_PID=$!
	local i
	for ((i = 0; i < 50; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$INV_PORT") 2>/dev/null && break
		sleep 0.1
	done
	req GET "$GW/api/movies"
	expect_error "gateway: GET /api/movies with inventory not answering is 504" 504 || true
	kill "$FAKE_PID" 2>/dev/null || true
	wait "$FAKE_PID" 2>/dev/null || true
	FAKE_PID=

	if "$LOCAL_SH" start inventory-app >/dev/null 2>&1; then
		INVENTORY_STOPPED=0
	fi
	check "inventory-app restarts" [ "$INVENTORY_STOPPED" = 0 ]
	local deadline=$((SECONDS + 30))
	while :; do
		req GET "$GW/api/movies"
		[[ $STATUS == 200 || $SECONDS -ge $deadline ]] && break
		sleep 0.5
	done
	expect "gateway: proxies again once inventory is back (no gateway restart)" 200 'isinstance(movies(j), list)' || true
}

# --------------------------------------------------------------------- main --

echo "# e2e against gateway $GW, inventory $INV, worker $WORKER (run $RUN_ID)"
wait_ok "$GW/health" 30 || echo "# warning: $GW/health does not answer 2xx" >&2

gateway_suite
check_health inventory "$INV"
check_health billing-worker "$WORKER"
req GET "$INV/nope"
expect_error "inventory: GET /nope is 404" 404 || true
req GET "$WORKER/nope"
expect_error "billing-worker: GET /nope is 404" 404 || true
billing_suite
inventory_suite "$GW" gateway
inventory_suite "$INV" inventory
dependency_suite
check_health gateway "$GW"

echo "e2e: $PASSED passed, $FAILED failed"
((FAILED == 0))
