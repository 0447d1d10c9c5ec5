#!/usr/bin/env python3
"""End-to-end check of the RUNNING system: every route and every error of
inventory (through the gateway and directly), billing through the gateway,
health/readiness of the three services, the request id round trip, and the
gateway's answers when inventory is down (502) or too slow (504).

    python3 scripts/e2e.py

Targets the system scripts/local.sh runs: $GATEWAY_URL (default
http://127.0.0.1:8080), inventory on 127.0.0.1:$LOCAL_INVENTORY_PORT (8081),
the worker's health port $LOCAL_BILLING_HEALTH_PORT (8082); scripts/test.sh
exports its test ports in the same variables. $E2E_TIMEOUT (20) bounds each
request, in seconds.

Every check pins the one right answer (status, error code, field, and the
whole JSON body where it is known) and prints `ok     ...` or
`FAILED ...: why` (scripts/lib/mp_check.py, the shell harness's format); the
last line is `e2e: N passed, M failed`, and the exit status is 1 if anything
failed.

Side effects: DELETE /api/movies (delete-all) is one of the routes checked,
so every movie in the instance is gone afterwards (run it on a test
instance). Orders it places (user_id e2e-*) stay in the orders table.
inventory-app is stopped and started again for the 502/504 checks.

Python 3 standard library only.
"""

import json
import os
import random
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

import mp_check  # noqa: E402
import mp_http  # noqa: E402
import mp_local  # noqa: E402
from mp_http import with_query  # noqa: E402

GW = mp_local.gateway_url()
INV = mp_local.inventory_url()
INV_PORT = mp_local.inventory_port()
WORKER = mp_local.worker_url()
TIMEOUT = float(mp_local.env("E2E_TIMEOUT", "20"))
RUN_ID = f"{os.getpid()}-{random.randrange(32768)}"
# Inventory's ids are 1..i64::MAX; this one is valid and never issued.
MISSING_ID = 9223372036854775807


def req(method, url, body=None, headers=None):
    return mp_http.request(method, url, body, headers, timeout=TIMEOUT)


def send(method, url, value, headers=None):
    """A request whose body is VALUE as JSON (str/bytes are sent as they are)."""
    if isinstance(value, (str, bytes)):
        return req(method, url, value, {"Content-Type": "application/json", **(headers or {})})
    return mp_http.send_json(method, url, value, headers, timeout=TIMEOUT)


# ---------------------------------------------------------------- report --


# The one check harness of the Python tests: "ok     DESC" / "FAILED DESC: why".
REPORT = mp_check.Checks("e2e")


# -------------------------------------------------------------- matching --


class Is:
    """A value known only by a property (a fresh id, a UUID, a message)."""

    def __init__(self, what, test):
        self.what = what
        self.test = test


ID = Is("a positive integer id", lambda v: type(v) is int and v > 0)
UUID = Is("a UUID", lambda v: isinstance(v, str) and bool(mp_http.UUID_RE.match(v)))
TEXT = Is("a non-empty string", lambda v: isinstance(v, str) and v != "")


def short(value, limit=120):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def mismatch(want, got, at="body"):
    """None when GOT is exactly WANT (objects with the same keys, lists of
    the same length, equal scalars of the same type; Is by its test), else
    where and how they differ."""
    if isinstance(want, Is):
        return None if want.test(got) else f"{at} is {short(got)}, expected {want.what}"
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{at} is {short(got)}, expected an object"
        if set(got) != set(want):
            return f"{at} has keys {sorted(got)}, expected {sorted(want)}"
        for key, value in want.items():
            found = mismatch(value, got[key], f"{at}.{key}")
            if found:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{at} is {short(got)}, expected a JSON array"
        if len(got) != len(want):
            return f"{at} has {len(got)} items, expected {len(want)}: {short(got)}"
        for i, (w, g) in enumerate(zip(want, got)):
            found = mismatch(w, g, f"{at}[{i}]")
            if found:
                return found
        return None
    if type(got) is not type(want) or got != want:
        return f"{at} is {short(got)}, expected {short(want)}"
    return None


def body_of(r):
    """(parsed JSON body, None) or (None, why it is not a JSON answer)."""
    if r.media_type != "application/json":
        return None, f"expected a JSON content type, got {r.header('Content-Type')!r} with {r.describe()}"
    try:
        return r.json(), None
    except ValueError as e:
        return None, f"body is not JSON ({e}): {r.describe()}"


def expect(desc, r, status, body=None, headers=None, then=None):
    """One check of response R: exactly STATUS; then, if given, a JSON body
    matching BODY exactly, the HEADERS (name -> exact value), and THEN(json)
    returning a problem or None. Returns the JSON body when all hold."""
    problem, j = None, None
    if r.status != status:
        problem = f"expected {status}, got {r.describe()}"
    elif body is not None or then is not None:
        j, problem = body_of(r)
        if problem is None and body is not None:
            found = mismatch(body, j)
            problem = found and f"{found}; got {r.describe()}"
    if problem is None:
        for name, value in (headers or {}).items():
            if r.header(name) != value:
                problem = f"expected header {name}: {value!r}, got {r.header(name)!r}"
                break
    if problem is None and then is not None:
        problem = then(j)
    REPORT.check(desc, problem)
    return None if problem else j


def error(code, field=None):
    """The platform's error body: CODE, a message, and FIELD only when given."""
    detail = {"code": code, "message": TEXT}
    if field is not None:
        detail["field"] = field
    return {"error": detail}


def expect_error(desc, r, status, code, field=None, headers=None):
    return expect(desc, r, status, error(code, field), headers)


def movie(title, description="", id=ID):
    return {"id": id, "title": title, "description": description}


STRING = Is("a string", lambda v: isinstance(v, str))
MOVIE_SHAPE = movie(Is("a non-empty string", lambda v: isinstance(v, str) and v != ""), STRING)


def check_movie_list(j):
    """A bare JSON array of movies, ordered by id (the API's one list shape)."""
    if not isinstance(j, list):
        return f"body is {short(j)}, expected a JSON array"
    for i, item in enumerate(j):
        found = mismatch(MOVIE_SHAPE, item, f"body[{i}]")
        if found:
            return found
    ids = [item["id"] for item in j]
    if any(a >= b for a, b in zip(ids, ids[1:])):
        return f"ids are not in increasing order: {ids[:20]}"
    return None


def list_holding(*movies):
    """THEN for a full list: a movie list that holds MOVIES exactly as given."""

    def then(j):
        found = check_movie_list(j)
        if found:
            return found
        by_id = {m["id"]: m for m in j}
        for m in movies:
            if m is None:
                return "a movie this list should hold was not created"
            if by_id.get(m["id"]) != m:
                return f"expected {short(m)} in the list, found {short(by_id.get(m['id']))}"
        return None

    return then


def ident(m):
    """The id of a created movie (0, which no movie has, if it was not created)."""
    return m["id"] if isinstance(m, dict) else 0


def created(desc, r, title, description="", id=ID):
    """A create: 201, the stored movie, Location naming it. Returns the movie."""

    def then(j):
        want = f"/api/movies/{j['id']}"
        got = r.header("Location")
        return None if got == want else f"expected Location {want!r}, got {got!r}"

    return expect(desc, r, 201, movie(title, description, id), then=then)


def create_all(desc, base, titles):
    """Creates a movie per title (each must answer 201 with it); one check."""
    made, problem = [], None
    for title in titles:
        r = send("POST", base, {"title": title})
        j, problem = body_of(r) if r.status == 201 else (None, f"{title!r}: expected 201, got {r.describe()}")
        if problem is None:
            problem = mismatch(movie(title), j)
        if problem:
            break
        made.append(j)
    REPORT.check(desc, problem)
    return made if problem is None else [None] * len(titles)


# ---------------------------------------------------------------- system --


def local_ok(*args):
    try:
        mp_local.local(*args)
        return True
    except mp_local.LocalError as e:
        print(f"# {e}", file=sys.stderr)
        return False


def answers_2xx(url):
    return 200 <= mp_http.request("GET", url, timeout=3).status < 300


class SilentServer:
    """A fake inventory that accepts connections on PORT and never answers."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.held = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except socket.timeout:
                pass
            except OSError:
                return

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


# ------------------------------------------------------------------- health --


def check_health(name, base):
    expect(f"{name}: GET /health is 200", req("GET", base + "/health"), 200)
    expect(f"{name}: GET /ready is 200 (all its dependencies up)", req("GET", base + "/ready"), 200)


# ---------------------------------------------------------------- inventory --


class Movies:
    """What the inventory suites of one pass share: the base URL, the tag
    that names this pass's movies, and the movies made so far (None when a
    create failed; the checks that follow then compare against placeholders)."""

    def __init__(self, base, label):
        self.label = label
        self.tag = f"e2e-{label}-{RUN_ID}"
        self.m = base + "/api/movies"
        self.first = self.second = self.uni = None
        self.id1 = 0

    def d(self, text):
        return f"{self.label}: {text}"


def inventory_suite(base, label):
    """The inventory routes and errors against BASE (the gateway or inventory
    itself); LABEL prefixes the descriptions. The suites run in this order
    and share the movies they create (Movies)."""
    c = Movies(base, label)
    movies_create_read(c)
    movies_search(c)
    movies_paging(c)
    movies_create_validation(c)
    movies_update(c)
    movies_bad_routes(c)
    movies_delete(c)


def movies_create_read(c):
    """Create (a plain, a trailing-slash and a non-ASCII movie), then read them back."""
    tag, m, d = c.tag, c.m, c.d
    first = created(
        d("POST /api/movies creates a movie"),
        send("POST", m, {"title": f"{tag} first", "description": "first description"}),
        f"{tag} first",
        "first description",
    )
    second = created(
        d("POST /api/movies/ (trailing slash) creates a movie without description"),
        send("POST", m + "/", {"title": f"{tag} second"}),
        f"{tag} second",
        id=Is(f"a new id (not {ident(first)})", lambda v: ID.test(v) and v != ident(first)),
    )
    t = f"{tag} Amélie — «ünïcødé» ✓"
    uni = created(d("POST /api/movies keeps a non-ASCII title"), send("POST", m, {"title": t}), t)
    expect(d("GET returns the non-ASCII title byte for byte"), req("GET", f"{m}/{ident(uni)}"), 200, uni or movie(t))
    c.first, c.second, c.uni = first, second, uni

    expect(
        d("GET /api/movies/{id} returns the movie"),
        req("GET", f"{m}/{ident(first)}"),
        200,
        first or movie(f"{tag} first", "first description"),
    )
    expect(d("GET /api/movies/{id}/ (trailing slash)"), req("GET", f"{m}/{ident(first)}/"), 200, first or movie(""))
    listed = expect(d("GET /api/movies lists movies"), req("GET", m), 200, then=list_holding(first, second, uni))
    # The same resource: the same list (nothing changed in between).
    slash = req("GET", m + "/")
    if listed is None:
        expect(d("GET /api/movies/ (trailing slash) lists movies"), slash, 200, then=list_holding(first, second, uni))
    else:
        expect(d("GET /api/movies/ (trailing slash) lists movies"), slash, 200, listed)


def movies_search(c):
    """?title=: a case-insensitive contains search; % _ ' \\ are literal characters."""
    tag, m, d = c.tag, c.m, c.d
    first, second, uni = c.first, c.second, c.uni
    names = ["100% pure", "100x pure", "a_b", "axb", "back\\slash", "backslash", "O'Brien"]
    made = create_all(d("create the 7 search fixtures (201 each)"), m, [f"{tag} {n}" for n in names])
    fixtures = dict(zip(names, made))
    every = [first, second, uni, *fixtures.values()]

    def search(path, title):
        return req("GET", with_query(path, title=title))

    expect(d("?title= is a case-insensitive contains search"), search(m, tag.upper()), 200, exactly(*every))
    expect(d("GET /api/movies/?title= (trailing slash) searches"), search(m + "/", f"{tag} FIRST"), 200, exactly(first))
    expect(d("?title= treats % literally"), search(m, f"{tag} 100%"), 200, exactly(fixtures["100% pure"]))

    def only_percent(j):
        full = req("GET", m)
        everything, problem = body_of(full)
        if problem:
            return f"the full list for comparison: {problem}"
        want = [x for x in everything if "%" in x["title"]]
        found = mismatch(want, j)
        if found:
            return f"expected exactly the {len(want)} movies whose title holds %: {found}"
        if fixtures["100% pure"] not in j:
            return "the fixture with % is not in the answer"
        return None

    expect(d("?title=% finds only titles containing %"), search(m, "%"), 200, then=only_percent)
    expect(d("?title= treats _ literally"), search(m, f"{tag} a_b"), 200, exactly(fixtures["a_b"]))
    expect(d("?title= treats \\ literally"), search(m, f"{tag} back\\slash"), 200, exactly(fixtures["back\\slash"]))
    expect(d("?title= with a quote"), search(m, f"{tag} o'brien"), 200, exactly(fixtures["O'Brien"]))
    expect_error(
        d("?title= with a NUL character is 400 naming title"),
        req("GET", m + "?title=a%00b"),
        400,
        "validation_failed",
        "title",
    )
    # Longer than any title can be (255), so it matches nothing; the search
    # has no length limit of its own.
    expect(d("?title= with 5000 characters is an empty list"), search(m, "z" * 5000), 200, [])
    expect(d("?title= with no match is an empty list"), search(m, f"{tag} no such movie"), 200, [])


def exactly(*found):
    """The expected list: the movies FOUND, a placeholder for one not created."""
    return [x if x is not None else movie("<not created>") for x in found]


def movies_paging(c):
    """?limit= with ?offset=: pages that hold every movie once; bad values named."""
    tag, m, d = c.tag, c.m, c.d
    pages = create_all(d("create the 5 paging fixtures (201 each)"), m, [f"{tag} page {i}" for i in range(1, 6)])
    got_ids = []
    for offset, limit in ((0, 2), (2, 2), (4, 2)):
        page = expect(
            d(f"?limit={limit}&offset={offset} returns one page"),
            req("GET", with_query(m, title=f"{tag} page", offset=offset, limit=limit)),
            200,
            exactly(*pages[offset : offset + limit]),
        )
        got_ids += [x["id"] for x in page or []]
    want_ids = [ident(p) for p in pages]
    REPORT.check(
        d("the pages hold the 5 movies exactly once"),
        None if got_ids == want_ids and 0 not in want_ids else f"expected ids {want_ids}, got {got_ids}",
    )
    expect(
        d("an offset past the end is an empty list"),
        req("GET", with_query(m, title=f"{tag} page", offset=100)),
        200,
        [],
    )
    for param in ("limit=abc", "limit=-1", "offset=-1", "offset=abc", "limit=1.5"):
        name = param.split("=")[0]
        expect_error(
            d(f"GET /api/movies?{param} is 400 naming {name}"),
            req("GET", f"{m}?{param}"),
            400,
            "validation_failed",
            name,
        )


def movies_create_validation(c):
    """Every refusal of a create: fields, JSON, media type, size."""
    tag, m, d = c.tag, c.m, c.d
    for desc, value, field in (
        ("POST without title is 400 naming title", {}, "title"),
        ("POST with empty title is 400 naming title", {"title": ""}, "title"),
        ("POST with blank title is 400 naming title", {"title": "   "}, "title"),
        ("POST with null title is 400 naming title", {"title": None}, "title"),
        ("POST with numeric title is 400 naming title", {"title": 42}, "title"),
        ("POST with a 256-char title is 400 naming title", {"title": "x" * 256}, "title"),
    ):
        expect_error(d(desc), send("POST", m, value), 400, "validation_failed", field)
    created(d("POST with a 255-char (non-ASCII) title is accepted"), send("POST", m, {"title": "é" * 255}), "é" * 255)
    expect_error(
        d("POST with a 10001-char description is 400 naming description"),
        send("POST", m, {"title": f"{tag} long", "description": "d" * 10001}),
        400,
        "validation_failed",
        "description",
    )
    created(
        d("POST with a 10000-char description is accepted"),
        send("POST", m, {"title": f"{tag} long", "description": "d" * 10000}),
        f"{tag} long",
        "d" * 10000,
    )
    for desc, value, field in (
        ("POST with numeric description is 400 naming description", {"title": tag, "description": 42}, "description"),
        ("POST with a NUL character in the title is 400 naming title", {"title": "a\0b"}, "title"),
        (
            "POST with a NUL character in the description is 400 naming description",
            {"title": "ok", "description": "a\0b"},
            "description",
        ),
    ):
        expect_error(d(desc), send("POST", m, value), 400, "validation_failed", field)
    # serde_json refuses nesting deeper than 128 as a syntax error.
    expect_error(
        d("POST with a deeply nested title is 400"),
        send("POST", m, '{"title":' + "[" * 300 + "]" * 300 + "}"),
        400,
        "invalid_json",
    )
    expect_error(
        d("POST with invalid UTF-8 is 400"),
        send("POST", m, b'{"title":"bad \xff\xfe utf-8"}'),
        400,
        "invalid_json",
    )
    created(
        d("POST with Content-Type application/json; charset=utf-8 is accepted"),
        req("POST", m, json.dumps({"title": f"{tag} charset"}), {"Content-Type": "application/json; charset=utf-8"}),
        f"{tag} charset",
    )
    expect_error(d("POST with a body that is not JSON is 400"), send("POST", m, '{"title":"x",'), 400, "invalid_json")
    # Valid JSON of the wrong shape is the validator's, not the parser's, refusal.
    expect_error(
        d("POST with a JSON array (not an object) is 400"),
        send("POST", m, '[{"title":"x"}]'),
        400,
        "validation_failed",
    )
    expect_error(d("POST with a JSON string (not an object) is 400"), send("POST", m, '"x"'), 400, "validation_failed")
    expect_error(d("POST with an empty body is 400"), send("POST", m, ""), 400, "invalid_json")
    body = json.dumps({"title": tag})
    expect_error(
        d("POST with Content-Type text/plain is 415"),
        req("POST", m, body, {"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    expect_error(
        d("POST with a form body is 415"),
        req("POST", m, f"title={tag}", {"Content-Type": "application/x-www-form-urlencoded"}),
        415,
        "unsupported_media_type",
    )
    expect_error(d("POST without Content-Type is 415"), req("POST", m, body), 415, "unsupported_media_type")
    expect_error(
        d("POST with a 2 MiB body is 413"),
        send("POST", m, '{"title":"' + "x" * (2 * 1024 * 1024) + '"}'),
        413,
        "payload_too_large",
    )


def movies_update(c):
    """PUT: the update, a field left out keeping its value, and its refusals."""
    tag, m, d = c.tag, c.m, c.d
    first = c.first
    id1 = c.id1 = ident(first)
    updated = expect(
        d("PUT /api/movies/{id} updates the movie"),
        send("PUT", f"{m}/{id1}", {"title": f"{tag} first updated", "description": "updated"}),
        200,
        movie(f"{tag} first updated", "updated", id1),
    )
    expect(
        d("GET after PUT shows the update"),
        req("GET", f"{m}/{id1}"),
        200,
        movie(f"{tag} first updated", "updated", id1),
    )
    # A field left out keeps its stored value.
    first = expect(
        d("PUT /api/movies/{id}/ (trailing slash)"),
        send("PUT", f"{m}/{id1}/", {"title": f"{tag} first again"}),
        200,
        movie(f"{tag} first again", "updated" if updated else "first description", id1),
    )
    expect_error(
        d("PUT with empty title is 400 naming title"),
        send("PUT", f"{m}/{id1}", {"title": ""}),
        400,
        "validation_failed",
        "title",
    )
    expect_error(
        d("PUT with a 10001-char description is 400 naming description"),
        send("PUT", f"{m}/{id1}", {"title": tag, "description": "d" * 10001}),
        400,
        "validation_failed",
        "description",
    )
    expect_error(d("PUT with a JSON array is 400"), send("PUT", f"{m}/{id1}", "[1]"), 400, "validation_failed")
    expect_error(
        d("PUT with Content-Type text/plain is 415"),
        req("PUT", f"{m}/{id1}", '{"title":"x"}', {"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    expect_error(
        d("PUT of a missing movie is 404"), send("PUT", f"{m}/{MISSING_ID}", {"title": "nobody"}), 404, "not_found"
    )
    expect_error(
        d("PUT /api/movies/abc is 400"), send("PUT", f"{m}/abc", {"title": "x"}), 400, "validation_failed", "id"
    )
    c.first = first


def movies_bad_routes(c):
    """Bad ids, unknown routes, wrong methods (405 with Allow)."""
    m, d, id1 = c.m, c.d, c.id1
    expect_error(d("GET of a missing movie is 404"), req("GET", f"{m}/{MISSING_ID}"), 404, "not_found")
    expect_error(d("GET /api/movies/abc is 400"), req("GET", f"{m}/abc"), 400, "validation_failed", "id")
    expect_error(
        d("GET /api/movies/<id too large> is 400"),
        req("GET", f"{m}/99999999999999999999999"),
        400,
        "validation_failed",
        "id",
    )
    expect_error(d("GET /api/movies/-1 is 400 naming id"), req("GET", f"{m}/-1"), 400, "validation_failed", "id")
    expect_error(d("GET /api/moviesx is 404"), req("GET", m + "x"), 404, "not_found")
    expect_error(d("GET /api/movies/{id}/extra is 404"), req("GET", f"{m}/{id1}/extra"), 404, "not_found")
    expect_error(d("DELETE of a missing movie is 404"), req("DELETE", f"{m}/{MISSING_ID}"), 404, "not_found")
    expect_error(d("DELETE /api/movies/abc is 400"), req("DELETE", f"{m}/abc"), 400, "validation_failed", "id")
    collection, item = {"Allow": "GET, HEAD, POST, DELETE"}, {"Allow": "GET, HEAD, PUT, DELETE"}
    for method, path, allow in (
        ("PATCH", m, collection),
        ("PUT", m, collection),
        ("POST", f"{m}/{id1}", item),
        ("PATCH", f"{m}/{id1}", item),
    ):
        shown = "/api/movies" if path == m else "/api/movies/{id}"
        expect_error(
            d(f"{method} {shown} is 405"),
            send(method, path, "{}" if method == "PATCH" and path == m else '{"title":"x"}'),
            405,
            "method_not_allowed",
            headers=allow,
        )


def movies_delete(c):
    """Delete one, then all: a delete answers the movie it removed, delete-all the count."""
    m, d, id1, label = c.m, c.d, c.id1, c.label
    first, second, uni = c.first, c.second, c.uni
    expect(d("DELETE /api/movies/{id} deletes it"), req("DELETE", f"{m}/{id1}"), 200, first or movie(""))
    expect_error(d("GET after DELETE is 404"), req("GET", f"{m}/{id1}"), 404, "not_found")
    expect(
        d("DELETE /api/movies/{id}/ (trailing slash) deletes it"),
        req("DELETE", f"{m}/{ident(second)}/"),
        200,
        second or movie(""),
    )
    expect_error(d("DELETE twice is 404"), req("DELETE", f"{m}/{ident(second)}"), 404, "not_found")
    # It answers how many it deleted: all that the list holds just before.
    before, _ = body_of(req("GET", m))
    count = len(before) if isinstance(before, list) else -1
    path, desc = (
        (m, "DELETE /api/movies deletes all movies")
        if label == "gateway"
        else (m + "/", "DELETE /api/movies/ (trailing slash) deletes all movies")
    )
    expect(d(desc), req("DELETE", path), 200, {"deleted": count})
    expect(d("the list is empty after delete-all"), req("GET", m), 200, [])
    expect_error(d("GET of a movie removed by delete-all is 404"), req("GET", f"{m}/{ident(uni)}"), 404, "not_found")


# ------------------------------------------------------------------ billing --

QUEUED = {"message": "Order queued for processing", "status": "queued", "order_id": UUID}

BAD_ORDERS = [
    (r'{"number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":"","number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":"   ","number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":1.5,"number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":true,"number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":{},"number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":"a\u0001b","number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":"a\u0000b","number_of_items":1,"total_amount":1}', "user_id"),
    ('{"user_id":"' + "u" * 65 + '","number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":1,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":0,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":-3,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":1.5,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":"abc","total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":1000001,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":99999999999999999999999,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":1}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":null}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":-1}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":1.234}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":"1e3"}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":"NaN"}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":"abc"}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":100000000}', "total_amount"),
]


def billing_suite():
    b = GW + "/api/billing"
    user = f"e2e-{RUN_ID}"

    expect(
        "billing: POST /api/billing with string values is queued with a UUID order_id",
        send("POST", b, {"user_id": user, "number_of_items": "99", "total_amount": "250"}),
        200,
        QUEUED,
    )
    expect(
        "billing: POST /api/billing with numeric values is queued",
        send("POST", b, '{"user_id":20,"number_of_items":3,"total_amount":12.5}'),
        200,
        QUEUED,
    )
    expect(
        "billing: POST /api/billing/ (trailing slash) is queued",
        send("POST", b + "/", {"user_id": user, "number_of_items": 1, "total_amount": "0.10"}),
        200,
        QUEUED,
    )
    expect(
        "billing: the largest amount (99999999.99) is queued",
        send("POST", b, {"user_id": user, "number_of_items": 1, "total_amount": "99999999.99"}),
        200,
        QUEUED,
    )

    # the orders above must reach the orders table, once each, exactly as sent
    want = [["1", "0.10"], ["99", "250.00"], ["1", "99999999.99"]]
    rows = []

    def stored():
        nonlocal rows
        rows = mp_local.psql_rows(
            "orders",
            f"SELECT number_of_items, total_amount FROM orders WHERE user_id = '{user}' ORDER BY total_amount",
        )
        return rows == want

    mp_http.wait_until(stored, 30)
    REPORT.check(
        "billing: the queued orders are stored once each with exact values",
        None if rows == want else f"expected rows {want} for user_id {user}, got {rows}",
    )

    for body, field in BAD_ORDERS:
        expect_error(
            f"billing: {body[:70]} is 400 naming {field}", send("POST", b, body), 400, "validation_failed", field
        )
    expect(
        "billing: Content-Type application/json; charset=utf-8 is accepted",
        req(
            "POST",
            b,
            json.dumps({"user_id": f"{user}-cs", "number_of_items": 1, "total_amount": 1}),
            {"Content-Type": "application/json; charset=utf-8"},
        ),
        200,
        QUEUED,
    )
    expect_error(
        "billing: invalid UTF-8 is 400",
        send("POST", b, b'{"user_id":"\xff\xfe","number_of_items":1,"total_amount":1}'),
        400,
        "invalid_json",
    )
    # The gateway skims the body without building it (no depth limit): valid
    # JSON whose user_id is no scalar.
    expect_error(
        "billing: a deeply nested user_id is 400 naming user_id",
        send("POST", b, '{"user_id":' + "[" * 300 + "]" * 300 + ',"number_of_items":1,"total_amount":1}'),
        400,
        "validation_failed",
        "user_id",
    )
    order = '{"user_id":1,"number_of_items":1,"total_amount":1}'
    expect_error("billing: no Content-Type is 415", req("POST", b, order), 415, "unsupported_media_type")
    for desc, body in (
        ("a body that is not JSON", '{"user_id":'),
        ("a JSON array (not an object)", "[1,2]"),
        ("a JSON number (not an object)", "42"),
        ("an empty body", ""),
    ):
        expect_error(f"billing: {desc} is 400", send("POST", b, body), 400, "invalid_json")
    expect_error(
        "billing: Content-Type text/plain is 415",
        req("POST", b, order, {"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    expect_error(
        "billing: a form body is 415",
        req(
            "POST",
            b,
            "user_id=1&number_of_items=1&total_amount=1",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
        "unsupported_media_type",
    )
    expect_error(
        "billing: a 2 MiB body is 413",
        send("POST", b, '{"user_id":"' + "u" * (2 * 1024 * 1024) + '","number_of_items":1,"total_amount":1}'),
        413,
        "payload_too_large",
    )
    for method in ("GET", "DELETE"):
        expect_error(
            f"billing: {method} /api/billing is 405",
            req(method, b),
            405,
            "method_not_allowed",
            headers={"Allow": "POST"},
        )


# ------------------------------------------------------------------ gateway --


def gateway_suite():
    # Only [A-Za-z0-9._-]: request ids outside that set may be replaced.
    rid = f"e2e-rid-{RUN_ID}"
    check_health("gateway", GW)
    with open(os.path.join(mp_local.ROOT, "openapi.yaml"), "rb") as f:
        spec = f.read()
    r = req("GET", GW + "/api/openapi.yaml")
    if r.status != 200 or r.media_type != "application/yaml":
        problem = f"expected 200 application/yaml, got {r.header('Content-Type')!r} {r.describe(80)}"
    elif r.body != spec:
        problem = (
            f"the served document ({len(r.body)} bytes) is not this checkout's"
            f" openapi.yaml ({len(spec)} bytes): rebuild dist/"
        )
    else:
        problem = None
    REPORT.check("gateway: GET /api/openapi.yaml serves the OpenAPI document", problem)
    expect_error("gateway: GET /api/nope is 404", req("GET", GW + "/api/nope"), 404, "not_found")
    expect_error("gateway: GET /nope is 404", req("GET", GW + "/nope"), 404, "not_found")
    expect_error(
        "gateway: POST /health is 405",
        send("POST", GW + "/health", "{}"),
        405,
        "method_not_allowed",
        headers={"Allow": "GET, HEAD"},
    )

    expect(
        "gateway: X-Request-Id is returned unchanged (proxied GET /api/movies)",
        req("GET", GW + "/api/movies", headers={"X-Request-Id": f"{rid}-1"}),
        200,
        headers={"X-Request-Id": f"{rid}-1"},
    )

    def logged():
        r = mp_local.local("logs", "inventory-app", check=False)
        return r.returncode == 0 and f"{rid}-1" in r.stdout

    REPORT.check(
        "gateway: the request id reaches inventory (in its log)",
        (
            None
            if mp_http.wait_until(logged, 3, 0.3)
            else f"expected {rid}-1 in scripts/local.sh logs inventory-app, found none"
        ),
    )
    expect(
        "gateway: X-Request-Id is returned unchanged (POST /api/billing)",
        send(
            "POST",
            GW + "/api/billing",
            {"user_id": "e2e-rid", "number_of_items": 1, "total_amount": 1},
            {"X-Request-Id": f"{rid}-2"},
        ),
        200,
        QUEUED,
        headers={"X-Request-Id": f"{rid}-2"},
    )
    expect_error(
        "gateway: X-Request-Id is returned on an error too",
        send("POST", GW + "/api/billing", "{}", {"X-Request-Id": f"{rid}-3"}),
        400,
        "validation_failed",
        "user_id",
        headers={"X-Request-Id": f"{rid}-3"},
    )
    ids = [req("GET", GW + "/api/movies").header("X-Request-Id") for _ in range(2)]
    REPORT.check(
        "gateway: a missing X-Request-Id is generated (unique per request)",
        (
            None
            if all(i and mp_http.UUID_RE.match(i) for i in ids) and ids[0] != ids[1]
            else f"expected two different UUIDs, got {ids}"
        ),
    )


# ---------------------------------------------- inventory down / too slow --


def dependency_suite():
    if not local_ok("stop", "inventory-app"):
        REPORT.check("gateway: stop inventory-app for the 502 check", "scripts/local.sh stop inventory-app failed")
        return
    restarted = False
    try:
        expect_error(
            "gateway: GET /api/movies with inventory down is 502",
            req("GET", GW + "/api/movies"),
            502,
            "upstream_unavailable",
        )
        expect_error(
            "gateway: POST /api/movies with inventory down is 502",
            send("POST", GW + "/api/movies", {"title": "x"}),
            502,
            "upstream_unavailable",
        )
        expect(
            "gateway: /ready with inventory down is 503 naming inventory",
            req("GET", GW + "/ready"),
            503,
            then=lambda j: None if "inventory" in json.dumps(j).lower() else f"inventory is not named in {short(j)}",
        )
        expect(
            "gateway: /health with inventory down is still 200 (the process is alive)",
            req("GET", GW + "/health"),
            200,
        )
        expect(
            "gateway: billing still works with inventory down",
            send("POST", GW + "/api/billing", {"user_id": "e2e-indep", "number_of_items": 1, "total_amount": 1}),
            200,
            QUEUED,
        )

        desc = "gateway: GET /api/movies with inventory not answering is 504"
        try:
            fake = SilentServer(INV_PORT)
        except OSError as e:
            REPORT.check(desc, f"cannot listen on inventory's port {INV_PORT} for the silent fake: {e}")
        else:
            try:
                expect_error(desc, req("GET", GW + "/api/movies"), 504, "upstream_timeout")
            finally:
                fake.close()

        restarted = local_ok("start", "inventory-app")
        REPORT.check("inventory-app restarts", None if restarted else "scripts/local.sh start inventory-app failed")
        mp_http.wait_until(lambda: req("GET", GW + "/api/movies").status == 200, 30)
        # Both inventory suites ended with delete-all, and nothing wrote since.
        expect(
            "gateway: proxies again once inventory is back (no gateway restart)",
            req("GET", GW + "/api/movies"),
            200,
            [],
        )
    finally:
        if not restarted and not local_ok("start", "inventory-app"):
            print("# could not restart inventory-app", file=sys.stderr)


# --------------------------------------------------------------------- main --


def main():
    print(f"# e2e against gateway {GW}, inventory {INV}, worker {WORKER} (run {RUN_ID})", flush=True)
    if not mp_http.wait_until(lambda: answers_2xx(GW + "/health"), 30):
        print(f"# warning: {GW}/health does not answer 2xx", file=sys.stderr)

    gateway_suite()
    check_health("inventory", INV)
    check_health("billing-worker", WORKER)
    expect_error("inventory: GET /nope is 404", req("GET", INV + "/nope"), 404, "not_found")
    expect_error("billing-worker: GET /nope is 404", req("GET", WORKER + "/nope"), 404, "not_found")
    billing_suite()
    inventory_suite(GW, "gateway")
    inventory_suite(INV, "inventory")
    dependency_suite()
    check_health("gateway", GW)

    return REPORT.summary()


if __name__ == "__main__":
    sys.exit(main())
