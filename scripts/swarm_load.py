#!/usr/bin/env python3
"""Steady load through the Swarm stack's published port, for scripts/swarm-test.sh.

    swarm_load.py BASE_URL OUT.json STOP_FILE [--orders] [--threads N]

Reads (GET /api/movies and GET /api/movies/ID of a movie made first) and,
with --orders, orders (POST /api/billing, user_id = this run's tag) until
STOP_FILE exists. Every answer that is not 2xx, and every transport error, is
a failure, written with its time. OUT.json: counts, failures, and the
order_id of every accepted order (to check each was stored exactly once).
"""

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request


# urllib, not scripts/lib/mp_http: urllib sends `Connection: close`. With
# mp_http's requests (no such header, so HAProxy keeps each client connection
# open for a next request) the rolling update of the gateways saw thousands of
# connection resets within a second (2026-12-05, twice): an open finding about
# keep-alive clients during a gateway update, written down in docs/swarm.md.
def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return 0, str(e).encode()


def main(argv):
    base, out, stop = argv[1], argv[2], argv[3]
    orders = "--orders" in argv
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 4
    tag = f"swarm-{os.getpid()}"
    status, body = call("POST", base + "/api/movies", {"title": tag, "description": "swarm load"})
    if status not in (200, 201):
        print(f"could not create the load's movie: {status} {body[:200]!r}", file=sys.stderr)
        return 1
    movie = json.loads(body)["id"]
    lock = threading.Lock()
    result = {"requests": 0, "failures": [], "orders": [], "user_id": tag}

    def worker(n):
        i = 0
        while not os.path.exists(stop):
            i += 1
            if orders and i % 3 == 0:
                st, b = call("POST", base + "/api/billing", {"user_id": tag, "number_of_items": "1", "total_amount": "1.00"})
                what = "POST /api/billing"
            elif i % 2:
                st, b = call("GET", f"{base}/api/movies/{movie}")
                what = "GET /api/movies/ID"
            else:
                st, b = call("GET", base + "/api/movies?title=" + tag)
                what = "GET /api/movies"
            with lock:
                result["requests"] += 1
                if 200 <= st < 300:
                    if what.startswith("POST"):
                        result["orders"].append(json.loads(b)["order_id"])
                else:
                    result["failures"].append(f"{time.strftime('%H:%M:%S')} {what}: {st} {b[:160]!r}")

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
