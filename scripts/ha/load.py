#!/usr/bin/env python3
"""Orders under load for the high-availability test (scripts/ha-test.sh).

    load.py OUT STOPFILE THREADS URL [URL...]

Each thread posts orders, one at a time, until STOPFILE exists. Every order
has its own user_id (so a second row for it would show) and an
Idempotency-Key, which the client keeps when it retries (docs/api.md): the
gateway derives the order_id from it, so an order a dying gateway had queued
before the client saw its answer is stored once. A request that fails before
any answer (connection refused or reset: its gateway died) goes to the next
URL, as a virtual IP moving to another gateway would; the final answer is
what counts. OUT gets one line per order: user_id, the key, status (0 = no
HTTP answer), the monotonic times it was sent and answered.
"""
import json
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import mp_http  # noqa: E402  (the one HTTP client of the test programs)


def post(url, body, key, timeout):
    """The answer's status; 0 when none came (refused, reset: its gateway died)."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    return mp_http.request("POST", url.rstrip("/") + "/api/billing", body, headers, timeout).status


def first_answer(urls, first, send):
    """send(url) to each URL in turn, starting at urls[first], until one gives
    an answer (a status other than 0), as a virtual IP moving to a live host
    would. Returns the status (0 when none answered) and the index to start
    at next time: the URL that answered, else first."""
    status = 0
    for k in range(len(urls)):
        i = (first + k) % len(urls)
        status = send(urls[i])
        if status:
            return status, i
    return status, first


def worker(tag, urls, stopfile, out, lock):
    n = 0
    first = 0
    while not os.path.exists(stopfile):
        n += 1
        user_id = f"{tag}-{n}"
        order_id = str(uuid.uuid4())
        body = json.dumps({"user_id": user_id, "number_of_items": 1, "total_amount": "9.99"})
        sent = time.monotonic()
        # The next order starts on the gateway that answered.
        status, first = first_answer(urls, first, lambda url: post(url, body, order_id, timeout=20))
        answered = time.monotonic()
        with lock:
            out.write(f"{user_id} {order_id} {status} {sent:.3f} {answered:.3f}\n")
            out.flush()
        if status != 200:
            time.sleep(0.2)


def main():
    out_path, stopfile, threads, urls = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    run = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    with open(out_path, "a", encoding="utf-8") as out:
        ts = [
            threading.Thread(target=worker, args=(f"ha-{run}-{i}", urls[i % len(urls):] + urls[: i % len(urls)], stopfile, out, lock))
            for i in range(threads)
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


if __name__ == "__main__":
    main()
