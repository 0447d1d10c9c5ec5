#!/usr/bin/env python3
"""Catalogue requests under load for the high-availability test (scripts/ha-test.sh).

    movies_load.py OUT STOPFILE WRITERS READERS URL [URL...]

WRITERS threads each add movies, one at a time (POST /api/movies, each with a
title of its own, so a second row for it would show); READERS threads each
read the first page of the catalogue (GET /api/movies?limit=5), until
STOPFILE exists. A GET that gets no answer at all (its gateway died) goes to
the next URL, as it would through a virtual IP; a POST does not (it may have
been stored: sending it again could store it twice), its status stays 0.
OUT gets one line per request: kind (post/get), title (- for a get), status
(0 = no HTTP answer), the monotonic times it was sent and answered, and
load.py's `why` (the client's error behind a status 0, the JSON error code of
an error answer). Requests wait load.py's TIMEOUT.
"""
import json
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import mp_http  # noqa: E402  (the one HTTP client of the test programs)
from load import TIMEOUT, first_answer, why  # noqa: E402  (the client-side failover, shared with the orders load)


def writer(tag, urls, stopfile, out, lock):
    n = 0
    while not os.path.exists(stopfile):
        n += 1
        title = f"{tag}-{n}"
        body = json.dumps({"title": title, "description": "ha test"})
        sent = time.monotonic()
        resp = mp_http.request("POST", urls[n % len(urls)] + "/api/movies", body, {"Content-Type": "application/json"}, TIMEOUT)
        status = resp.status
        answered = time.monotonic()
        with lock:
            out.write(f"post {title} {status} {sent:.3f} {answered:.3f}{why(resp)}\n")
            out.flush()
        if status != 201:
            time.sleep(0.2)


def reader(urls, stopfile, out, lock):
    first = 0
    while not os.path.exists(stopfile):
        sent = time.monotonic()
        resp, first = first_answer(
            urls, first, lambda url: mp_http.request("GET", url + "/api/movies?limit=5", None, {}, TIMEOUT)
        )
        status = resp.status
        answered = time.monotonic()
        with lock:
            out.write(f"get - {status} {sent:.3f} {answered:.3f}{why(resp)}\n")
            out.flush()
        if status != 200:
            time.sleep(0.2)


def main():
    out_path, stopfile = sys.argv[1], sys.argv[2]
    writers, readers, urls = int(sys.argv[3]), int(sys.argv[4]), [u.rstrip("/") for u in sys.argv[5:]]
    run = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    with open(out_path, "a", encoding="utf-8") as out:
        ts = [threading.Thread(target=writer, args=(f"ha-{run}-{i}", urls, stopfile, out, lock)) for i in range(writers)]
        ts += [
            threading.Thread(target=reader, args=(urls[i % len(urls):] + urls[: i % len(urls)], stopfile, out, lock))
            for i in range(readers)
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


if __name__ == "__main__":
    main()
