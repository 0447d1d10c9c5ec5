"""The billing suite: orders through the gateway, queued and stored once with
exact values, and every refusal of POST /api/billing.
"""

import json

import mp_http
import mp_local

from e2e.common import GW, QUEUED, REPORT, RUN_ID, expect, expect_error, req, send


BAD_ORDERS = [
    (r'{"number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":"","number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":"   ","number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":1.5,"number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":true,"number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":{},"number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":"a\u0001b","number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":"a\u0000b","number_of_items":1,"total_amount":1}', "user_id"),
    ('{"user_id":"' + "u" * 65 + '","number_of_items":1,"total_amount":1}', "user_id"),
    (r'{"user_id":1,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":0,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":-3,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":1.5,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":"abc","total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":1000001,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":99999999999999999999999,"total_amount":1}', "number_of_items"),
    (r'{"user_id":1,"number_of_items":1}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":null}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":-1}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":1.234}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":"1e3"}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":"NaN"}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":"abc"}', "total_amount"),
    (r'{"user_id":1,"number_of_items":1,"total_amount":100000000}', "total_amount"),
]


def billing_suite():
    b = GW + "/api/billing"
    user = f"e2e-{RUN_ID}"
    billing_accepted(b, user)
    billing_refused(b, user)


def billing_accepted(b, user):
    """Orders the gateway queues, and their rows in the orders table."""
    expect(
        "billing: POST /api/billing with string values is queued with a UUID order_id",
        send("POST", b, {"user_id": user, "number_of_items": "99", "total_amount": "250"}),
        200,
        QUEUED,
    )
    expect(
        "billing: POST /api/billing with numeric values is queued",
        send("POST", b, '{"user_id":20,"number_of_items":3,"total_amount":12.5}'),
        200,
        QUEUED,
    )
    expect(
        "billing: POST /api/billing/ (trailing slash) is queued",
        send("POST", b + "/", {"user_id": user, "number_of_items": 1, "total_amount": "0.10"}),
        200,
        QUEUED,
    )
    expect(
        "billing: the largest amount (99999999.99) is queued",
        send("POST", b, {"user_id": user, "number_of_items": 1, "total_amount": "99999999.99"}),
        200,
        QUEUED,
    )

    # the orders above must reach the orders table, once each, exactly as sent
    want = [["1", "0.10"], ["99", "250.00"], ["1", "99999999.99"]]
    rows = []

    def stored():
        nonlocal rows
        rows = mp_local.psql_rows(
            "orders",
            f"SELECT number_of_items, total_amount FROM orders WHERE user_id = '{user}' ORDER BY total_amount",
        )
        return rows == want

    mp_http.wait_until(stored, 30)
    REPORT.check(
        "billing: the queued orders are stored once each with exact values",
        None if rows == want else f"expected rows {want} for user_id {user}, got {rows}",
    )


def billing_refused(b, user):
    """Every order the gateway refuses, and why (plus a charset it accepts)."""
    for body, field in BAD_ORDERS:
        expect_error(
            f"billing: {body[:70]} is 400 naming {field}", send("POST", b, body), 400, "validation_failed", field
        )
    expect(
        "billing: Content-Type application/json; charset=utf-8 is accepted",
        req(
            "POST",
            b,
            json.dumps({"user_id": f"{user}-cs", "number_of_items": 1, "total_amount": 1}),
            {"Content-Type": "application/json; charset=utf-8"},
        ),
        200,
        QUEUED,
    )
    expect_error(
        "billing: invalid UTF-8 is 400",
        send("POST", b, b'{"user_id":"\xff\xfe","number_of_items":1,"total_amount":1}'),
        400,
        "invalid_json",
    )
    # The gateway skims the body without building it (no depth limit): valid
    # JSON whose user_id is no scalar.
    expect_error(
        "billing: a deeply nested user_id is 400 naming user_id",
        send("POST", b, '{"user_id":' + "[" * 300 + "]" * 300 + ',"number_of_items":1,"total_amount":1}'),
        400,
        "validation_failed",
        "user_id",
    )
    order = '{"user_id":1,"number_of_items":1,"total_amount":1}'
    expect_error("billing: no Content-Type is 415", req("POST", b, order), 415, "unsupported_media_type")
    for desc, body in (
        ("a body that is not JSON", '{"user_id":'),
        ("a JSON array (not an object)", "[1,2]"),
        ("a JSON number (not an object)", "42"),
        ("an empty body", ""),
    ):
        expect_error(f"billing: {desc} is 400", send("POST", b, body), 400, "invalid_json")
    expect_error(
        "billing: Content-Type text/plain is 415",
        req("POST", b, order, {"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    expect_error(
        "billing: a form body is 415",
        req(
            "POST",
            b,
            "user_id=1&number_of_items=1&total_amount=1",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
        "unsupported_media_type",
    )
    expect_error(
        "billing: a 2 MiB body is 413",
        send("POST", b, '{"user_id":"' + "u" * (2 * 1024 * 1024) + '","number_of_items":1,"total_amount":1}'),
        413,
        "payload_too_large",
    )
    for method in ("GET", "DELETE"):
        expect_error(
            f"billing: {method} /api/billing is 405",
            req(method, b),
            405,
            "method_not_allowed",
            headers={"Allow": "POST"},
        )
