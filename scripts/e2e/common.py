"""What every suite of scripts/e2e.py shares: the targets (the local run's
URLs), the requests, the one check harness (REPORT, scripts/lib/mp_check.py),
the matching of answers against the one right answer (`expect`,
`expect_error`, `mismatch`), the movies helpers, and the system helpers
(scripts/local.sh, a silent fake inventory, the health checks).
"""

import json
import os
import random
import socket
import sys
import threading

# scripts/lib is on sys.path: scripts/e2e.py, the entry point, puts it there.
import mp_check
import mp_http
import mp_local

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
# The gateway's answer to an order it queued (billing, gateway and dependency suites).
QUEUED = {"message": "Order queued for processing", "status": "queued", "order_id": UUID}


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
