"""The RabbitMQ management HTTP API for the Python programs
(scripts/scenarios.py, scripts/bench/bench.py): one client, one failure value.

Every call goes through `call`, which raises ManagementError (an OSError)
when there is no answer or it is not a 2xx, and ValueError when a body that
should be JSON is not. The readers that a caller polls (`queue_depth`)
answer None instead, the one "could not tell" value, so a poll loop never
mistakes a failed read for a number.

It speaks to a local broker as `guest`, which RabbitMQ accepts from
loopback only: the local run's and the tests' brokers (scripts/local.sh).

Python 3 standard library only. Import with scripts/lib on sys.path.
"""

import base64
import json
import urllib.parse

import mp_http


class ManagementError(OSError):
    """The management API gave no answer, or not a 2xx."""


class Management:
    """The management API of the broker on 127.0.0.1:PORT, for VHOST."""

    def __init__(self, port, vhost="/", user="guest", password="guest", timeout=15):
        self.url = f"http://127.0.0.1:{port}/api"
        self.vhost = urllib.parse.quote(vhost, safe="")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self.timeout = timeout

    def call(self, method, path, body=None):
        """METHOD /api/PATH with BODY (a value sent as JSON): the answer's
        JSON (None for an empty body). ManagementError unless a 2xx,
        ValueError when the body is not JSON."""
        r = mp_http.request(
            method,
            self.url + path,
            None if body is None else json.dumps(body),
            self.headers,
            timeout=self.timeout,
        )
        if not 200 <= r.status < 300:
            raise ManagementError(f"management API {method} {path}: {r.describe()}")
        return json.loads(r.body or b"null")

    def _queue(self, name):
        return f"/queues/{self.vhost}/{urllib.parse.quote(name, safe='')}"

    def overview(self):
        """GET /api/overview (versions, totals); raises as `call` does."""
        return self.call("GET", "/overview")

    def queue_depth(self, name):
        """Messages in queue NAME (ready + unacknowledged), or None when the
        API cannot tell. The counts lag the queue by a few seconds."""
        try:
            q = self.call("GET", self._queue(name) + "?columns=messages")
        except (OSError, ValueError):
            return None
        try:
            return int(q.get("messages") or 0)
        except (AttributeError, TypeError, ValueError):
            return None

    def purge(self, name):
        """Drops every ready message of queue NAME; raises as `call` does."""
        self.call("DELETE", self._queue(name) + "/contents")

    def publish(self, routing_key, payload, properties, encoding="string"):
        """Publishes PAYLOAD to the default exchange with ROUTING_KEY and
        PROPERTIES: True when the broker routed it to a queue. Raises as
        `call` does."""
        r = self.call(
            "POST",
            f"/exchanges/{self.vhost}/amq.default/publish",
            {"properties": properties, "routing_key": routing_key, "payload": payload, "payload_encoding": encoding},
        )
        return bool(r and r.get("routed"))
