#!/usr/bin/env python3
"""End-to-end check of the RUNNING system: every route and every error of
inventory (through the gateway and directly), billing through the gateway,
health/readiness of the three services, the request id round trip, and the
gateway's answers when inventory is down (502) or too slow (504).

    python3 scripts/e2e.py

Targets the system scripts/local.sh runs: $GATEWAY_URL (default
http://127.0.0.1:8080), inventory on 127.0.0.1:$LOCAL_INVENTORY_PORT (8081),
the worker's health port $LOCAL_BILLING_HEALTH_PORT (8082); scripts/test.sh
exports its test ports in the same variables. $E2E_TIMEOUT (20) bounds each
request, in seconds.

Every check pins the one right answer (status, error code, field, and the
whole JSON body where it is known) and prints `ok     ...` or
`FAILED ...: why` (scripts/lib/mp_check.py, the shell harness's format); the
last line is `e2e: N passed, M failed`, and the exit status is 1 if anything
failed.

The suites are modules of scripts/e2e/ (gateway, billing, inventory,
dependency), on the shared helpers of scripts/e2e/common.py.

Side effects: DELETE /api/movies (delete-all) is one of the routes checked,
so every movie in the instance is gone afterwards (run it on a test
instance). Orders it places (user_id e2e-*) stay in the orders table.
inventory-app is stopped and started again for the 502/504 checks.

Python 3 standard library only.
"""

import os
import sys

# scripts/ (the e2e package) and scripts/lib (the shared helpers).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[0:0] = [HERE, os.path.join(HERE, "lib")]

import mp_http  # noqa: E402 (found through the path set just above)
from e2e.billing import billing_suite  # noqa: E402
from e2e.common import GW, INV, REPORT, RUN_ID, WORKER, answers_2xx, check_health, expect_error, req  # noqa: E402
from e2e.dependency import dependency_suite  # noqa: E402
from e2e.gateway import gateway_suite  # noqa: E402
from e2e.inventory import inventory_suite  # noqa: E402


def main():
    print(f"# e2e against gateway {GW}, inventory {INV}, worker {WORKER} (run {RUN_ID})", flush=True)
    if not mp_http.wait_until(lambda: answers_2xx(GW + "/health"), 30):
        print(f"# warning: {GW}/health does not answer 2xx", file=sys.stderr)

    gateway_suite()
    check_health("inventory", INV)
    check_health("billing-worker", WORKER)
    expect_error("inventory: GET /nope is 404", req("GET", INV + "/nope"), 404, "not_found")
    expect_error("billing-worker: GET /nope is 404", req("GET", WORKER + "/nope"), 404, "not_found")
    billing_suite()
    inventory_suite(GW, "gateway")
    inventory_suite(INV, "inventory")
    dependency_suite()
    check_health("gateway", GW)

    return REPORT.summary()


if __name__ == "__main__":
    sys.exit(main())
