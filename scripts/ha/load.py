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
HTTP answer; a request waits HA_LOAD_TIMEOUT seconds for it, default 20),
the monotonic times it was sent and answered, and `why`'s field: for
status 0 why there was none (the client's error, e.g.
`OSError:_[Errno_99]...`: a verdict that counts failures can then tell a
gateway's fault from the client's own), for an error answer its JSON error
code (`code=broker_unavailable`).
"""
import json
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import mp_http  # noqa: E402  (the one HTTP client of the test programs)

# How long a request waits for its answer before the client gives up (and,
# with the URL given twice, sends an idempotent one again).
TIMEOUT = float(os.environ.get("HA_LOAD_TIMEOUT", "20"))


def post(url, body, key, timeout):
    """The answer (status 0 when none came: refused, reset, its gateway died)."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    return mp_http.request("POST", url.rstrip("/") + "/api/billing", body, headers, timeout)


def why(resp):
    """The load line's last field: for an error answer (4xx/5xx), its JSON
    error code (`code=database_unavailable`: which service said no, and
    why); the client's error (one word) when there was no answer, or when
    the answer came only on a later URL (the first attempt's error: the
    request was retried); else nothing."""
    if resp.status >= 400:
        return " code=" + error_code(resp.body)
    error = resp.error or getattr(resp, "retried_after", "")
    return " " + ("_".join(error.split()) or "no_answer") if error or not resp.status else ""


def error_code(body):
    """`error.code` of a JSON error body (one word), or `not_json`."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = ""
    return "_".join(str(code).split()) or "not_json"


def tally(errors, status, sent, field):
    """Counts a load line's last field (why's) in ERRORS, {(kind, field):
    (count, first sent)}, for the verdicts' lines of what went wrong."""
    if status == 0:
        kind = "no answer"
    elif field.startswith("code="):
        kind = f"answered {status}"
    else:
        kind = "answered on a retry after"
    count, first_at = errors.get((kind, field), (0, sent))
    errors[(kind, field)] = (count + 1, min(first_at, sent))


def first_answer(urls, first, send):
    """send(url) to each URL in turn, starting at urls[first], until one gives
    an answer (a status other than 0), as a virtual IP moving to a live host
    would (the same URL twice: one retry of a request that got no answer).
    Returns the last response (status 0 when none answered; an answer after
    a failed attempt carries that attempt's error as `retried_after`) and
    the index to start at next time: the URL that answered, else first."""
    resp, failed = None, ""
    for k in range(len(urls)):
        i = (first + k) % len(urls)
        resp = send(urls[i])
        if resp.status:
            resp.retried_after = failed
            return resp, i
        failed = failed or resp.error
    return resp, first


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
        resp, first = first_answer(urls, first, lambda url: post(url, body, order_id, timeout=TIMEOUT))
        status = resp.status
        answered = time.monotonic()
        with lock:
            out.write(f"{user_id} {order_id} {status} {sent:.3f} {answered:.3f}{why(resp)}\n")
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
