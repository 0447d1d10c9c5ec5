"""The gateway's answers when inventory is down (502) or too slow (504), and its
recovery once inventory is back.
"""

import json
import sys

import mp_http

from e2e.common import (
    GW,
    INV_PORT,
    QUEUED,
    REPORT,
    SilentServer,
    expect,
    expect_error,
    local_ok,
    req,
    send,
    short,
)


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
