"""The gateway's own routes: its health, the OpenAPI document, request ids.
"""

import os

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
    ids = [req("GET", GW + "/api/movies").header("X-Request-Id") for _ in range(2)]
    REPORT.check(
        "gateway: a missing X-Request-Id is generated (unique per request)",
        (
            None
            if all(i and mp_http.UUID_RE.match(i) for i in ids) and ids[0] != ids[1]
            else f"expected two different UUIDs, got {ids}"
        ),
    )
