#!/usr/bin/env python3
"""Resilience scenarios for billing: an order the gateway answered 200 for is
stored exactly once, whatever crashes or restarts happen meanwhile.

    python3 scripts/scenarios.py          all scenarios
    python3 scripts/scenarios.py 1 3      only those

  1  worker stopped while 1,000 orders are accepted; all stored once it starts
  2  worker SIGKILLed repeatedly while it drains a backlog of 20,000
  3  RabbitMQ stopped and started while orders are posted
  4  PostgreSQL (orders) down for 20 s while orders flow
  5  100 malformed messages among 1,000 good ones: dead-lettered, worker lives
  6  clients retrying every non-200 with their Idempotency-Key, across a
     RabbitMQ restart and worker SIGKILLs: every key stored exactly once

Runs against the system scripts/local.sh runs (and drives it with local.sh
stop/start/kill): $GATEWAY_URL (default http://127.0.0.1:8080), the worker's
health port $LOCAL_BILLING_HEALTH_PORT (8082), the RabbitMQ management API on
$LOCAL_RABBITMQ_MGMT_PORT (55673, guest/guest), state in $MP_STATE_DIR
(<repo>/.state). Each scenario uses its own user_id, so it counts only its own
rows; every wait is bounded; what a scenario stops it starts again. Each
scenario is one check of scripts/lib/mp_check.py ("ok     scenario N (...):
counts [time]" or "FAILED ...: what went wrong"), then "scenarios: N passed,
M failed".

Tunables (environment): SCENARIO_POSTERS (32), SCENARIO_RATE (orders/s while
posting during an outage, 300), SCENARIO_DRAIN_TIMEOUT (s, 120),
SCENARIO_BACKLOG (scenario 2, 20000), SCENARIO_MIN_KILLS (scenario 2, kills
while a backlog is left, 5), SCENARIO_KILL_DELAY (scenario 2, seconds from
the worker's start to its kill, "0.02,0.15"), SCENARIO_KEYED_ORDERS
(scenario 6, 3000).

Python 3 standard library only.
"""

import base64
import collections
import concurrent.futures
import http.client
import itertools
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from decimal import Decimal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The helpers shared with scripts/e2e.py (scripts/lib) and the .env reader.
sys.path[:0] = [os.path.join(ROOT, "scripts", "lib"), os.path.join(ROOT, "scripts")]
import mp_check  # noqa: E402 (found through the path set just above)
import mp_dotenv  # noqa: E402
import mp_local  # noqa: E402
import mp_rabbitmq  # noqa: E402
from mp_http import UUID_RE, http_get, wait_until  # noqa: E402
from mp_local import LocalError, env, local  # noqa: E402


def dotenv(name, default):
    """A value of .env, read by the one .env format (scripts/mp_dotenv.py);
    the environment wins, as in every reader."""
    try:
        return mp_dotenv.load(os.path.join(ROOT, ".env"), os.environ).get(name, default)
    except OSError:
        return default


GATEWAY_URL = mp_local.gateway_url()
_gw = urllib.parse.urlsplit(GATEWAY_URL)
GATEWAY_HOST, GATEWAY_PORT = _gw.hostname or "127.0.0.1", _gw.port or 80
WORKER_URL = mp_local.worker_url()
MGMT = mp_rabbitmq.Management(env("LOCAL_RABBITMQ_MGMT_PORT", "55673"), dotenv("RABBITMQ_VHOST", "/"))
STATE_DIR = env("MP_STATE_DIR", os.path.join(ROOT, ".state"))
WORKER_PIDFILE = os.path.join(STATE_DIR, "run", "billing-worker.pid")
GATEWAY_PIDFILE = os.path.join(STATE_DIR, "run", "api-gateway.pid")

POSTERS = int(env("SCENARIO_POSTERS", "32"))
RATE = float(env("SCENARIO_RATE", "300"))
DRAIN_TIMEOUT = float(env("SCENARIO_DRAIN_TIMEOUT", "120"))
BACKLOG = int(env("SCENARIO_BACKLOG", "20000"))
MIN_KILLS = int(env("SCENARIO_MIN_KILLS", "5"))
KILL_DELAY = tuple(float(x) for x in env("SCENARIO_KILL_DELAY", "0.02,0.15").split(","))
KEYED_ORDERS = int(env("SCENARIO_KEYED_ORDERS", "3000"))
READY_TIMEOUT = 60
POST_TIMEOUT = float(env("SCENARIO_POST_TIMEOUT", "300"))


def log(msg):
    print(f"# {time.strftime('%H:%M:%S')} {msg}", flush=True)


class ScenarioError(LocalError):
    """The system could not be driven (a local.sh command failed, it is not
    ready...): LocalError is the one local.sh raises."""


# ---------------------------------------------------------------- system --


def psql_rows(sql):
    """Rows (lists of columns) of SQL on the orders database, or None if it failed."""
    return mp_local.psql_rows("orders", sql)


def stored(tag):
    """The rows of user TAG: Counter of order_id, and order_id -> (items, amount)."""
    rows = psql_rows(
        f"SELECT order_id, number_of_items, total_amount FROM orders WHERE user_id = '{tag}'"
    )
    if rows is None:
        return None
    counts, values = collections.Counter(), {}
    for oid, items, amount in rows:
        counts[oid] += 1
        values[oid] = (int(items), Decimal(amount))
    return counts, values


def stored_count(tag):
    rows = psql_rows(f"SELECT count(*) FROM orders WHERE user_id = '{tag}'")
    return int(rows[0][0]) if rows else None


def read_pid(path):
    try:
        with open(path, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def ready(url):
    return http_get(url + "/ready", timeout=3)[0] == 200


def queue_depth(name):
    """Messages in queue NAME, or None when the management API cannot tell."""
    return MGMT.queue_depth(name)


def publish_raw(payload, message_id=None, encoding="string"):
    """Publishes straight into billing_queue through the management API."""
    props = {"delivery_mode": 2, "content_type": "application/json"}
    if message_id:
        props["message_id"] = message_id
    return MGMT.publish("billing_queue", payload, props, encoding)


def ensure_running():
    """Starts whatever is not running (idempotent) and waits for readiness."""
    for name in ("pg-billing", "rabbitmq", "billing-worker", "api-gateway"):
        local("start", name, timeout=200)
    if not wait_until(lambda: ready(GATEWAY_URL) and ready(WORKER_URL), READY_TIMEOUT):
        raise ScenarioError(
            f"not ready: gateway /ready {http_get(GATEWAY_URL + '/ready')}, "
            f"worker /ready {http_get(WORKER_URL + '/ready')}"
        )


def restore(*names):
    """Starts NAMES again; never raises (used in finally)."""
    for name in names:
        try:
            local("start", name, timeout=200)
        except LocalError as e:
            log(f"could not restart {name}: {e}")


# ----------------------------------------------------------------- orders --


class Poster:
    """Posts orders of one user through the gateway, one keep-alive
    connection per thread, and records what the gateway accepted."""

    def __init__(self, tag):
        self.tag = tag
        self.local = threading.local()
        self.lock = threading.Lock()
        self.seq = itertools.count()
        self.accepted = {}  # order_id -> (number_of_items, total_amount)
        self.statuses = collections.Counter()  # status or transport error -> count
        self.problems = []  # answers that break the contract
        self.sent = 0
        self.last_ok = 0.0  # monotonic time of the latest 200

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(GATEWAY_HOST, GATEWAY_PORT, timeout=30)
            self.local.conn = c
        return c

    def _drop_conn(self):
        c = getattr(self.local, "conn", None)
        if c is not None:
            c.close()
        self.local.conn = None

    def problem(self, text):
        with self.lock:
            if len(self.problems) < 20:
                self.problems.append(text)

    def post_one(self):
        n = next(self.seq)
        items = random.randint(1, 1000)
        amount = Decimal(random.randint(0, 10**8)).scaleb(-2)  # 0.00 .. 1000000.00
        if n % 2:  # both accepted forms: JSON numbers and strings
            body = f'{{"user_id":"{self.tag}","number_of_items":{items},"total_amount":{amount}}}'
        else:
            body = f'{{"user_id":"{self.tag}","number_of_items":"{items}","total_amount":"{amount}"}}'
        with self.lock:
            self.sent += 1
        try:
            conn = self._conn()
            conn.request(
                "POST",
                "/api/billing",
                body=body.encode(),
                headers={"Content-Type": "application/json", "X-Request-Id": f"{self.tag}-{n}"},
            )
            resp = conn.getresponse()
            data = resp.read()
            if resp.will_close:
                self._drop_conn()
        except (OSError, http.client.HTTPException) as e:
            self._drop_conn()
            with self.lock:
                self.statuses[f"transport:{type(e).__name__}"] += 1
            return False
        with self.lock:
            self.statuses[resp.status] += 1
        ctype = resp.getheader("Content-Type", "")
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if resp.status == 200:
            oid = answer.get("order_id") if isinstance(answer, dict) else None
            if not (isinstance(oid, str) and UUID_RE.match(oid) and answer.get("status") == "queued"):
                self.problem(f"200 without a queued order_id: {data[:200]!r}")
                return False
            with self.lock:
                if oid in self.accepted:
                    self.problems.append(f"order_id {oid} returned twice")
                self.accepted[oid] = (items, amount)
                self.last_ok = time.monotonic()
            return True
        if not ctype.startswith("application/json") or not isinstance(answer, dict) or "error" not in answer:
            self.problem(f"{resp.status} without a JSON error: {ctype} {data[:200]!r}")
        return False

    def post_many(self, count, workers=POSTERS, timeout=POST_TIMEOUT):
        """Posts COUNT orders; gives up on those not sent within TIMEOUT s."""
        deadline = time.monotonic() + timeout

        def one():
            if time.monotonic() < deadline:
                self.post_one()

        with concurrent.futures.ThreadPoolExecutor(workers) as ex:
            for f in [ex.submit(one) for _ in range(count)]:
                f.result()
        if self.sent < count:
            self.problem(f"only {self.sent} of {count} orders sent within {timeout:.0f}s")

    def start_flow(self, workers=16, rate=RATE):
        """Posts continuously (about RATE orders/s) until stop_flow()."""
        self.stop = threading.Event()
        interval = workers / rate

        def loop():
            while not self.stop.is_set():
                t0 = time.monotonic()
                ok = self.post_one()
                # After an error, pause a little so an outage is not a busy loop.
                pause = interval - (time.monotonic() - t0) if ok else max(interval, 0.1)
                if pause > 0:
                    self.stop.wait(pause)

        self.threads = [threading.Thread(target=loop, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def stop_flow(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def status_text(self):
        return " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items(), key=str))


def new_tag(n):
    return f"scn{n}-{uuid.uuid4().hex[:10]}"


class Result:
    """What a scenario measured, and the checks it failed."""

    def __init__(self, number, title):
        self.number, self.title = number, title
        self.counts = {}
        self.failures = []
        self.notes = []
        self.started = time.monotonic()

    def require(self, condition, text):
        if not condition:
            self.failures.append(text)
        return condition

    def describe(self):
        """The scenario, what it counted and how long it took: the check's
        description; its failures are the problem."""
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        secs = time.monotonic() - self.started
        return f"scenario {self.number} ({self.title}): {counts} [{secs:.0f}s]"


def verify(res, tag, expected, timeout=DRAIN_TIMEOUT, forbid_extra=False):
    """Waits (bounded) until every expected order_id is stored, then counts
    lost, duplicated, extra and mismatched rows into RES and asserts them."""
    last = [None]

    def drained():
        s = stored(tag)
        if s is None:
            return False
        last[0] = s
        return all(s[0].get(oid, 0) >= 1 for oid in expected)

    t0 = time.monotonic()
    done = wait_until(drained, timeout, interval=1)
    res.notes.append(f"drained in {time.monotonic() - t0:.1f}s" if done else f"not drained after {timeout:.0f}s")
    if last[0] is None:
        res.require(False, "could not read the orders table")
        res.counts.update(stored="?", lost="?", duplicated="?")
        return
    counts, values = last[0]
    lost = [o for o in expected if counts.get(o, 0) == 0]
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    extra = [o for o in counts if o not in expected]
    mismatched = [o for o in expected if o in values and values[o] != expected[o]]
    res.counts.update(stored=sum(counts.values()), lost=len(lost), duplicated=duplicated)
    if extra:
        res.counts["unconfirmed-stored"] = len(extra)
    res.require(not lost, f"{len(lost)} accepted orders lost (e.g. {lost[:3]})")
    res.require(not duplicated, f"{duplicated} duplicate rows")
    res.require(not mismatched, f"{len(mismatched)} rows differ from what was sent (e.g. {mismatched[:1]})")
    if forbid_extra:
        res.require(not extra, f"{len(extra)} rows that were never accepted (e.g. {extra[:3]})")


def record_posts(res, poster):
    res.counts.update(sent=poster.sent, accepted=len(poster.accepted))
    res.require(not poster.problems, "bad answers: " + " | ".join(poster.problems[:3]))


# -------------------------------------------------------------- scenarios --


def scenario_1(res):
    tag = new_tag(1)
    poster = Poster(tag)
    local("stop", "billing-worker")
    try:
        poster.post_many(1000)
        record_posts(res, poster)
        res.require(len(poster.accepted) == 1000, f"not all 1000 accepted ({poster.status_text()})")
        time.sleep(1)
        early = stored_count(tag)
        res.counts["stored-while-stopped"] = early
        res.require(early == 0, f"{early} rows stored while the worker was stopped")
    finally:
        restore("billing-worker")
    verify(res, tag, poster.accepted)


def scenario_2(res):
    tag = new_tag(2)
    poster = Poster(tag)
    kills = kills_in_backlog = 0
    local("stop", "billing-worker")
    try:
        t0 = time.monotonic()
        poster.post_many(BACKLOG)
        res.notes.append(f"posted {BACKLOG} in {time.monotonic() - t0:.1f}s")
        record_posts(res, poster)
        res.require(len(poster.accepted) == BACKLOG, f"not all {BACKLOG} accepted ({poster.status_text()})")
        total = len(poster.accepted)
        delay = KILL_DELAY
        deadline = time.monotonic() + DRAIN_TIMEOUT * 2
        # The worker drains thousands of orders per second, so a kill can
        # miss the backlog. Until MIN_KILLS have landed mid-backlog: kill
        # sooner after each miss, and refill the backlog (the worker is dead
        # between kills) whenever it got drained.
        while kills_in_backlog < MIN_KILLS:
            if time.monotonic() > deadline:
                res.require(False, f"kill loop did not finish in {DRAIN_TIMEOUT * 2:.0f}s")
                break
            before = stored_count(tag)
            if before is not None and before >= total:
                poster.post_many(BACKLOG // 4)
                record_posts(res, poster)
                total = len(poster.accepted)
                log(f"backlog drained before enough kills: refilled to {total} orders")
            old_pid = read_pid(WORKER_PIDFILE)
            # `local.sh start` waits for /ready; run it aside so the kill
            # lands shortly after start: connecting, or mid-batch with
            # unacknowledged messages in flight.
            starter = subprocess.Popen(
                [mp_local.LOCAL_SH, "start", "billing-worker"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_until(lambda: read_pid(WORKER_PIDFILE) not in (None, old_pid), 10, interval=0.01)
                time.sleep(random.uniform(*delay))
                local("kill", "billing-worker")
            finally:
                if starter.poll() is None:
                    starter.terminate()  # it would wait 60 s for a /ready that never comes
                starter.wait(10)
            # Nothing is stored after the kill, so this tells whether it hit mid-backlog.
            n = stored_count(tag)
            kills += 1
            if n is None or n < total:
                kills_in_backlog += 1
            else:
                delay = (delay[0] / 2, delay[1] / 2)
            log(f"SIGKILL {kills} with {n}/{total} stored")
    finally:
        restore("billing-worker")
    res.title = f"SIGKILL x{kills} during a {len(poster.accepted)}-order backlog, {kills_in_backlog} mid-backlog"
    res.require(kills >= MIN_KILLS, f"only {kills} kills")
    res.require(
        kills_in_backlog >= MIN_KILLS,
        f"only {kills_in_backlog} kills landed before the backlog was drained (shorten SCENARIO_KILL_DELAY)",
    )
    verify(res, tag, poster.accepted, timeout=DRAIN_TIMEOUT)


def outage(poster, name, lead, during, after):
    """Orders flow from POSTER while NAME is down: LEAD seconds of flow, stop
    NAME, during(), start NAME, after(). Always stops the flow, and starts NAME
    again if it is still down."""
    down = False
    try:
        poster.start_flow()
        time.sleep(lead)
        log(f"stopping {name}")
        down = True
        local("stop", name)
        during()
        log(f"starting {name}")
        local("start", name, timeout=200)
        down = False
        after()
    finally:
        if getattr(poster, "threads", None):
            poster.stop_flow()
        if down:
            restore(name)


def scenario_3(res):
    tag = new_tag(3)
    poster = Poster(tag)
    gw_pid, worker_pid = read_pid(GATEWAY_PIDFILE), read_pid(WORKER_PIDFILE)
    outage_ready = None

    def during():
        nonlocal outage_ready
        time.sleep(2)
        outage_ready = http_get(GATEWAY_URL + "/ready")
        worker_ready = http_get(WORKER_URL + "/ready")
        res.notes.append(f"during the outage: gateway /ready {outage_ready[0]}, worker /ready {worker_ready[0]}")
        time.sleep(2)

    def after():
        back = time.monotonic()
        recovered = wait_until(lambda: poster.last_ok > back, 60)
        if res.require(recovered, "no order accepted within 60s after RabbitMQ came back"):
            res.notes.append(f"first 200 {poster.last_ok - back:.1f}s after RabbitMQ was back")
        time.sleep(3)

    outage(poster, "rabbitmq", 3, during, after)
    record_posts(res, poster)
    res.counts["statuses"] = poster.status_text().replace(" ", ",")
    other = {k: v for k, v in poster.statuses.items() if k not in (200, 503)}
    res.require(not other, f"answers other than 200/503: {other}")
    res.require(poster.statuses.get(503, 0) > 0, "no 503 during the outage")
    res.require(
        outage_ready is not None and outage_ready[0] == 503 and re.search("rabbit|amqp|broker", outage_ready[1], re.I),
        f"gateway /ready during the outage was not a 503 naming RabbitMQ: {outage_ready}",
    )
    res.require(
        wait_until(lambda: ready(GATEWAY_URL), READY_TIMEOUT), "gateway /ready not 200 within 60s after the outage"
    )
    res.require(
        wait_until(lambda: ready(WORKER_URL), READY_TIMEOUT), "worker /ready not 200 within 60s after the outage"
    )
    res.require(read_pid(GATEWAY_PIDFILE) == gw_pid, "the gateway was restarted (pid changed)")
    res.require(read_pid(WORKER_PIDFILE) == worker_pid, "the worker was restarted (pid changed)")
    verify(res, tag, poster.accepted)


def scenario_4(res):
    tag = new_tag(4)
    poster = Poster(tag)
    worker_pid = read_pid(WORKER_PIDFILE)
    seen_ready = collections.Counter()

    def during():
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end:
            seen_ready[http_get(WORKER_URL + "/ready", timeout=2)[0]] += 1
            time.sleep(1)

    outage(poster, "pg-billing", 2, during, lambda: time.sleep(3))
    record_posts(res, poster)
    res.notes.append(f"worker /ready during the outage: {dict(seen_ready)}")
    res.require(len(poster.accepted) == poster.sent, f"gateway refused orders while only PostgreSQL was down ({poster.status_text()})")
    verify(res, tag, poster.accepted)
    res.require(read_pid(WORKER_PIDFILE) == worker_pid, f"the worker was restarted or died (pid {worker_pid} -> {read_pid(WORKER_PIDFILE)})")
    res.require(wait_until(lambda: ready(WORKER_URL), READY_TIMEOUT), "worker /ready not 200 within 60s after PostgreSQL came back")


def malformed_messages(tag):
    """100 messages the worker must dead-letter: not JSON, not an object, or bad fields."""

    def order(**fields):
        base = {"order_id": str(uuid.uuid4()), "user_id": tag, "number_of_items": 1, "total_amount": "1.00"}
        base.update(fields)
        return json.dumps({k: v for k, v in base.items() if v is not ...})

    kinds = [
        lambda: ("nope", "string"),
        lambda: ("{", "string"),
        lambda: ("", "string"),
        lambda: (base64.b64encode(b"\xff\xfe{\x00").decode(), "base64"),
        lambda: ('{"order_id":', "string"),
        lambda: ("[1,2]", "string"),
        lambda: ("42", "string"),
        lambda: ("null", "string"),
        lambda: ('"order"', "string"),
        lambda: (order(number_of_items=0), "string"),
        lambda: (order(number_of_items=-1), "string"),
        lambda: (order(number_of_items="abc"), "string"),
        lambda: (order(number_of_items=1.5), "string"),
        lambda: (order(number_of_items=...), "string"),
        lambda: (order(total_amount="-1.00"), "string"),
        lambda: (order(total_amount="1e3"), "string"),
        lambda: (order(total_amount=1.234), "string"),
        lambda: (order(total_amount=100000000), "string"),
        lambda: (order(total_amount=...), "string"),
        lambda: (order(user_id=""), "string"),
        lambda: (order(user_id=...), "string"),
        lambda: (order(user_id={"a": 1}), "string"),
        lambda: (order(order_id="not-a-uuid"), "string"),
        lambda: (order(order_id=42), "string"),
        lambda: (order(user_id="x" * 65), "string"),
    ]
    return [kinds[i % len(kinds)]() for i in range(100)]


def scenario_5(res):
    tag = new_tag(5)
    poster = Poster(tag)
    worker_pid = read_pid(WORKER_PIDFILE)
    dlq_before = queue_depth("billing_queue.dlq")
    if not res.require(dlq_before is not None, "cannot read billing_queue.dlq through the management API"):
        return
    direct = {}  # good orders published straight into the queue
    unrouted = []
    lock = threading.Lock()

    def publish_good():
        oid, items = str(uuid.uuid4()), random.randint(1, 1000)
        amount = Decimal(random.randint(0, 10**8)).scaleb(-2)
        msg = {"order_id": oid, "user_id": tag, "number_of_items": items, "total_amount": str(amount)}
        if publish_raw(json.dumps(msg), message_id=oid):
            with lock:
                direct[oid] = (items, amount)
        else:
            unrouted.append(oid)

    def publish_bad(payload, encoding):
        if not publish_raw(payload, encoding=encoding):
            unrouted.append("malformed")

    jobs = [publish_good] * 500 + [poster.post_one] * 500
    jobs += [(lambda p=p, e=e: publish_bad(p, e)) for p, e in malformed_messages(tag)]
    random.shuffle(jobs)
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        for f in [ex.submit(j) for j in jobs]:
            f.result()
    record_posts(res, poster)
    res.counts["sent"] = poster.sent + 600
    res.counts["accepted"] = len(poster.accepted) + len(direct)
    res.require(not unrouted, f"{len(unrouted)} management-API publishes were not routed")
    res.require(len(poster.accepted) == 500, f"gateway accepted {len(poster.accepted)}/500 ({poster.status_text()})")
    expected = dict(direct)
    expected.update(poster.accepted)
    verify(res, tag, expected, forbid_extra=True)
    got = [None]

    def dead_lettered():
        got[0] = queue_depth("billing_queue.dlq")
        return got[0] is not None and got[0] - dlq_before >= 100

    wait_until(dead_lettered, DRAIN_TIMEOUT, interval=1)
    # The management API's counters lag by a few seconds: read once more.
    time.sleep(6)
    got[0] = queue_depth("billing_queue.dlq")
    delta = None if got[0] is None else got[0] - dlq_before
    res.counts["dead-lettered"] = delta
    res.require(delta == 100, f"dead-letter queue grew by {delta}, not 100")
    res.require(read_pid(WORKER_PIDFILE) == worker_pid, f"the worker was restarted or died (pid {worker_pid} -> {read_pid(WORKER_PIDFILE)})")
    res.require(ready(WORKER_URL), "worker /ready is not 200")


class KeyedClient:
    """Clients that send each order with an Idempotency-Key and retry every
    answer but 200 (503, 504, a dropped connection...) with the same key and
    body until one is a 200, as a careful payment client does."""

    def __init__(self, tag):
        self.tag = tag
        self.lock = threading.Lock()
        self.orders = {}  # key -> (number_of_items, total_amount)
        self.ids = {}  # key -> order_id of its 200s
        self.statuses = collections.Counter()
        self.problems = []
        self.retries = 0

    def problem(self, text):
        with self.lock:
            if len(self.problems) < 20:
                self.problems.append(text)

    def place(self, n, deadline, pace):
        key = f"{self.tag}-{n}"
        items = random.randint(1, 1000)
        amount = Decimal(random.randint(0, 10**8)).scaleb(-2)
        body = json.dumps({"user_id": self.tag, "number_of_items": items, "total_amount": str(amount)})
        with self.lock:
            self.orders[key] = (items, amount)
        conn = None
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(GATEWAY_HOST, GATEWAY_PORT, timeout=30)
                conn.request(
                    "POST",
                    "/api/billing",
                    body=body.encode(),
                    headers={"Content-Type": "application/json", "Idempotency-Key": key},
                )
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                if conn is not None:
                    conn.close()
                conn = None
                status, data = f"transport:{type(e).__name__}", b""
            with self.lock:
                self.statuses[status] += 1
            if status == 200:
                try:
                    oid = json.loads(data).get("order_id")
                except (ValueError, AttributeError):
                    oid = None
                if not (isinstance(oid, str) and UUID_RE.match(oid)):
                    self.problem(f"200 without an order_id: {data[:200]!r}")
                with self.lock:
                    if self.ids.setdefault(key, oid) != oid:
                        self.problems.append(f"key {key}: order_id {oid} after {self.ids[key]}")
                if conn is not None:
                    conn.close()
                time.sleep(pace)
                return
            if status not in (503, 504) and not str(status).startswith("transport:"):
                self.problem(f"key {key}: unexpected answer {status} {data[:200]!r}")
            with self.lock:
                self.retries += 1
            time.sleep(0.2)
        self.problem(f"key {key}: no 200 before the deadline")

    def status_text(self):
        return " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items(), key=str))


def scenario_6(res):
    tag = new_tag(6)
    client = KeyedClient(tag)
    deadline = time.monotonic() + POST_TIMEOUT
    done = threading.Event()
    kills = []
    outages = []

    def post_all():
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            for f in [ex.submit(client.place, n, deadline, 0.05) for n in range(KEYED_ORDERS)]:
                f.result()
        done.set()

    poster = threading.Thread(target=post_all, daemon=True)
    rabbit_down = False
    try:
        poster.start()
        time.sleep(2)
        for _ in range(2):
            local("kill", "billing-worker")
            kills.append(time.monotonic())
            time.sleep(1)
            local("start", "billing-worker")
            time.sleep(1)
        log("restarting rabbitmq while keyed clients post")
        rabbit_down = True
        local("stop", "rabbitmq")
        t_down = time.monotonic()
        time.sleep(2)
        local("start", "rabbitmq", timeout=200)
        rabbit_down = False
        outages.append(time.monotonic() - t_down)
        # The worker reconnects by itself; kill it once more while clients
        # are still retrying what the outage refused.
        local("kill", "billing-worker")
        kills.append(time.monotonic())
        time.sleep(1)
        local("start", "billing-worker")
        poster.join(POST_TIMEOUT + 60)
    finally:
        if rabbit_down:
            restore("rabbitmq")
        restore("billing-worker")
    res.counts.update(keys=KEYED_ORDERS, accepted=len(client.ids), retries=client.retries)
    res.counts["statuses"] = client.status_text().replace(" ", ",")
    res.notes.append(f"{len(kills)} worker kills; RabbitMQ down for {outages[0]:.1f}s" if outages else "no outage")
    res.require(done.is_set(), "the clients did not finish")
    res.require(not client.problems, "bad answers: " + " | ".join(client.problems[:3]))
    res.require(len(client.ids) == KEYED_ORDERS, f"only {len(client.ids)}/{KEYED_ORDERS} keys got a 200")
    res.require(client.retries > 0, "no client had to retry: the outage did not reach them")
    expected = {oid: client.orders[key] for key, oid in client.ids.items() if oid}
    # Every try of a key carries its one order id, so nothing else may appear.
    verify(res, tag, expected, forbid_extra=True)


SCENARIOS = {
    1: ("worker stopped during 1000 orders", scenario_1),
    2: (f"SIGKILL during {BACKLOG} backlog", scenario_2),
    3: ("RabbitMQ restarted while posting", scenario_3),
    4: ("PostgreSQL down 20s while posting", scenario_4),
    5: ("100 malformed among 1000 good messages", scenario_5),
    6: ("keyed retries across a RabbitMQ restart and worker kills", scenario_6),
}


def main(argv):
    try:
        chosen = [int(a) for a in argv] or sorted(SCENARIOS)
    except ValueError:
        chosen = [0]
    if any(n not in SCENARIOS for n in chosen):
        print(__doc__, file=sys.stderr)
        return 2
    log(f"gateway {GATEWAY_URL}, worker {WORKER_URL}, management {MGMT.url}, state {STATE_DIR}")
    checks = mp_check.Checks("scenarios")
    for n in chosen:
        title, run = SCENARIOS[n]
        res = Result(n, title)
        log(f"scenario {n}: {title}")
        try:
            ensure_running()
            run(res)
        except LocalError as e:
            res.require(False, str(e))
        except Exception as e:  # a broken scenario must not stop the others
            res.require(False, f"{type(e).__name__}: {e}")
        finally:
            try:
                ensure_running()
            except LocalError as e:
                res.require(False, f"system not restored: {e}")
        for note in res.notes:
            log(f"scenario {n}: {note}")
        checks.check(res.describe(), "; ".join(res.failures))
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
