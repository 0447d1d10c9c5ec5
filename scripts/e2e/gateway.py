"""The gateway's own routes: its health, the OpenAPI document, request ids.
"""

import os
import re
import uuid

import mp_http
import mp_local

from e2e.common import GW, QUEUED, REPORT, RUN_ID, check_health, expect, expect_error, req, send


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
    trace_suite()
    ids = [req("GET", GW + "/api/movies").header("X-Request-Id") for _ in range(2)]
    REPORT.check(
        "gateway: a missing X-Request-Id is generated (unique per request)",
        (
            None
            if all(i and mp_http.UUID_RE.match(i) for i in ids) and ids[0] != ids[1]
            else f"expected two different UUIDs, got {ids}"
        ),
    )


def trace_suite():
    """One trace id, sent by the client as a W3C traceparent, followed through
    every service's log to the stored row, as docs/observability.md tells a
    user to: grep the trace id, read the order id, find the row."""
    tid = uuid.uuid4().hex
    parent = f"00-{tid}-{uuid.uuid4().hex[:16]}-01"
    user = f"e2e-trace-{RUN_ID}"
    expect(
        "trace: an order with a client's traceparent is accepted",
        send("POST", GW + "/api/billing", {"user_id": user, "number_of_items": 2, "total_amount": 3},
             {"traceparent": parent}),
        200,
        QUEUED,
    )
    expect(
        "trace: a catalogue read with the same traceparent is answered",
        req("GET", GW + "/api/movies?title=e2e-trace", headers={"traceparent": parent}),
        200,
    )
    token = f"trace_id={tid} "

    def lines(name):
        r = mp_local.local("logs", name, check=False)
        return [line for line in r.stdout.splitlines() if token in line] if r.returncode == 0 else []

    found = {}

    def followed():
        for name in ("api-gateway", "inventory-app", "billing-worker"):
            found[name] = lines(name)
        gw, inv, worker = found["api-gateway"], found["inventory-app"], found["billing-worker"]
        queued = [m.group(1) for line in gw for m in [re.search(r"event=order_queued order_id=(\S+)", line)] if m]
        stored = [m.group(1) for line in worker for m in [re.search(r"event=order_stored order_id=(\S+)", line)] if m]
        return (
            any("POST /api/billing 200" in line for line in gw)
            and any("GET /api/movies 200" in line for line in gw)
            and any("GET /api/movies 200" in line for line in inv)
            and len(queued) == 1
            and stored == queued
        )

    ok = mp_http.wait_until(followed, 20, 0.5)
    REPORT.check(
        "trace: grep trace_id finds the order in the gateway's and the worker's logs, and the read in inventory's",
        None if ok else f"lines with {token.strip()}: {found}",
    )
    order_id = next(
        (m.group(1) for line in found.get("billing-worker", [])
         for m in [re.search(r"event=order_stored order_id=(\S+)", line)] if m),
        None,
    )
    rows = mp_local.psql_rows("orders", f"SELECT user_id FROM orders WHERE order_id = '{order_id}'") if order_id else []
    REPORT.check(
        "trace: the order id the trace's log lines name is the stored row",
        None if rows == [[user]] else f"order {order_id}: expected one row of user {user}, got {rows}",
    )
    expect(
        "trace: a malformed traceparent is ignored (the request is served in a trace of its own)",
        req("GET", GW + "/api/movies?title=e2e-trace", headers={"traceparent": f"00-{tid.upper()}-0000000000000000-01"}),
        200,
    )
