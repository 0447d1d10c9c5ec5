"""The inventory suites: every route and error of /api/movies, run once through
the gateway and once against inventory itself (`inventory_suite`).
"""

import json

from mp_http import with_query

from e2e.common import (
    ID,
    MISSING_ID,
    REPORT,
    RUN_ID,
    Is,
    body_of,
    create_all,
    created,
    expect,
    expect_error,
    ident,
    list_holding,
    mismatch,
    movie,
    req,
    send,
)


class Movies:
    """What the inventory suites of one pass share: the base URL, the tag
    that names this pass's movies, and the movies made so far (None when a
    create failed; the checks that follow then compare against placeholders)."""

    def __init__(self, base, label):
        self.label = label
        self.tag = f"e2e-{label}-{RUN_ID}"
        self.m = base + "/api/movies"
        self.first = self.second = self.uni = None
        self.id1 = 0

    def d(self, text):
        return f"{self.label}: {text}"


def inventory_suite(base, label):
    """The inventory routes and errors against BASE (the gateway or inventory
    itself); LABEL prefixes the descriptions. The suites run in this order
    and share the movies they create (Movies)."""
    c = Movies(base, label)
    movies_create_read(c)
    movies_search(c)
    movies_paging(c)
    movies_create_validation(c)
    movies_update(c)
    movies_bad_routes(c)
    movies_delete(c)


def movies_create_read(c):
    """Create (a plain, a trailing-slash and a non-ASCII movie), then read them back."""
    tag, m, d = c.tag, c.m, c.d
    first = created(
        d("POST /api/movies creates a movie"),
        send("POST", m, {"title": f"{tag} first", "description": "first description"}),
        f"{tag} first",
        "first description",
    )
    second = created(
        d("POST /api/movies/ (trailing slash) creates a movie without description"),
        send("POST", m + "/", {"title": f"{tag} second"}),
        f"{tag} second",
        id=Is(f"a new id (not {ident(first)})", lambda v: ID.test(v) and v != ident(first)),
    )
    t = f"{tag} Amélie — «ünïcødé» ✓"
    uni = created(d("POST /api/movies keeps a non-ASCII title"), send("POST", m, {"title": t}), t)
    expect(d("GET returns the non-ASCII title byte for byte"), req("GET", f"{m}/{ident(uni)}"), 200, uni or movie(t))
    c.first, c.second, c.uni = first, second, uni

    expect(
        d("GET /api/movies/{id} returns the movie"),
        req("GET", f"{m}/{ident(first)}"),
        200,
        first or movie(f"{tag} first", "first description"),
    )
    expect(d("GET /api/movies/{id}/ (trailing slash)"), req("GET", f"{m}/{ident(first)}/"), 200, first or movie(""))
    listed = expect(d("GET /api/movies lists movies"), req("GET", m), 200, then=list_holding(first, second, uni))
    # The same resource: the same list (nothing changed in between).
    slash = req("GET", m + "/")
    if listed is None:
        expect(d("GET /api/movies/ (trailing slash) lists movies"), slash, 200, then=list_holding(first, second, uni))
    else:
        expect(d("GET /api/movies/ (trailing slash) lists movies"), slash, 200, listed)


def movies_search(c):
    """?title=: a case-insensitive contains search; % _ ' \\ are literal characters."""
    tag, m, d = c.tag, c.m, c.d
    first, second, uni = c.first, c.second, c.uni
    names = ["100% pure", "100x pure", "a_b", "axb", "back\\slash", "backslash", "O'Brien"]
    made = create_all(d("create the 7 search fixtures (201 each)"), m, [f"{tag} {n}" for n in names])
    fixtures = dict(zip(names, made))
    every = [first, second, uni, *fixtures.values()]

    def search(path, title):
        return req("GET", with_query(path, title=title))

    expect(d("?title= is a case-insensitive contains search"), search(m, tag.upper()), 200, exactly(*every))
    expect(d("GET /api/movies/?title= (trailing slash) searches"), search(m + "/", f"{tag} FIRST"), 200, exactly(first))
    expect(d("?title= treats % literally"), search(m, f"{tag} 100%"), 200, exactly(fixtures["100% pure"]))

    def only_percent(j):
        full = req("GET", m)
        everything, problem = body_of(full)
        if problem:
            return f"the full list for comparison: {problem}"
        want = [x for x in everything if "%" in x["title"]]
        found = mismatch(want, j)
        if found:
            return f"expected exactly the {len(want)} movies whose title holds %: {found}"
        if fixtures["100% pure"] not in j:
            return "the fixture with % is not in the answer"
        return None

    expect(d("?title=% finds only titles containing %"), search(m, "%"), 200, then=only_percent)
    expect(d("?title= treats _ literally"), search(m, f"{tag} a_b"), 200, exactly(fixtures["a_b"]))
    expect(d("?title= treats \\ literally"), search(m, f"{tag} back\\slash"), 200, exactly(fixtures["back\\slash"]))
    expect(d("?title= with a quote"), search(m, f"{tag} o'brien"), 200, exactly(fixtures["O'Brien"]))
    expect_error(
        d("?title= with a NUL character is 400 naming title"),
        req("GET", m + "?title=a%00b"),
        400,
        "validation_failed",
        "title",
    )
    # Longer than any title can be (255), so it matches nothing; the search
    # has no length limit of its own.
    expect(d("?title= with 5000 characters is an empty list"), search(m, "z" * 5000), 200, [])
    expect(d("?title= with no match is an empty list"), search(m, f"{tag} no such movie"), 200, [])


def exactly(*found):
    """The expected list: the movies FOUND, a placeholder for one not created."""
    return [x if x is not None else movie("<not created>") for x in found]


def movies_paging(c):
    """?limit= with ?offset=: pages that hold every movie once; bad values named."""
    tag, m, d = c.tag, c.m, c.d
    pages = create_all(d("create the 5 paging fixtures (201 each)"), m, [f"{tag} page {i}" for i in range(1, 6)])
    got_ids = []
    for offset, limit in ((0, 2), (2, 2), (4, 2)):
        page = expect(
            d(f"?limit={limit}&offset={offset} returns one page"),
            req("GET", with_query(m, title=f"{tag} page", offset=offset, limit=limit)),
            200,
            exactly(*pages[offset : offset + limit]),
        )
        got_ids += [x["id"] for x in page or []]
    want_ids = [ident(p) for p in pages]
    REPORT.check(
        d("the pages hold the 5 movies exactly once"),
        None if got_ids == want_ids and 0 not in want_ids else f"expected ids {want_ids}, got {got_ids}",
    )
    expect(
        d("an offset past the end is an empty list"),
        req("GET", with_query(m, title=f"{tag} page", offset=100)),
        200,
        [],
    )
    for param in ("limit=abc", "limit=-1", "offset=-1", "offset=abc", "limit=1.5"):
        name = param.split("=")[0]
        expect_error(
            d(f"GET /api/movies?{param} is 400 naming {name}"),
            req("GET", f"{m}?{param}"),
            400,
            "validation_failed",
            name,
        )


def movies_create_validation(c):
    """Every refusal of a create: fields, JSON, media type, size."""
    tag, m, d = c.tag, c.m, c.d
    for desc, value, field in (
        ("POST without title is 400 naming title", {}, "title"),
        ("POST with empty title is 400 naming title", {"title": ""}, "title"),
        ("POST with blank title is 400 naming title", {"title": "   "}, "title"),
        ("POST with null title is 400 naming title", {"title": None}, "title"),
        ("POST with numeric title is 400 naming title", {"title": 42}, "title"),
        ("POST with a 256-char title is 400 naming title", {"title": "x" * 256}, "title"),
    ):
        expect_error(d(desc), send("POST", m, value), 400, "validation_failed", field)
    created(d("POST with a 255-char (non-ASCII) title is accepted"), send("POST", m, {"title": "é" * 255}), "é" * 255)
    expect_error(
        d("POST with a 10001-char description is 400 naming description"),
        send("POST", m, {"title": f"{tag} long", "description": "d" * 10001}),
        400,
        "validation_failed",
        "description",
    )
    created(
        d("POST with a 10000-char description is accepted"),
        send("POST", m, {"title": f"{tag} long", "description": "d" * 10000}),
        f"{tag} long",
        "d" * 10000,
    )
    for desc, value, field in (
        ("POST with numeric description is 400 naming description", {"title": tag, "description": 42}, "description"),
        ("POST with a NUL character in the title is 400 naming title", {"title": "a\0b"}, "title"),
        (
            "POST with a NUL character in the description is 400 naming description",
            {"title": "ok", "description": "a\0b"},
            "description",
        ),
    ):
        expect_error(d(desc), send("POST", m, value), 400, "validation_failed", field)
    # serde_json refuses nesting deeper than 128 as a syntax error.
    expect_error(
        d("POST with a deeply nested title is 400"),
        send("POST", m, '{"title":' + "[" * 300 + "]" * 300 + "}"),
        400,
        "invalid_json",
    )
    expect_error(
        d("POST with invalid UTF-8 is 400"),
        send("POST", m, b'{"title":"bad \xff\xfe utf-8"}'),
        400,
        "invalid_json",
    )
    created(
        d("POST with Content-Type application/json; charset=utf-8 is accepted"),
        req("POST", m, json.dumps({"title": f"{tag} charset"}), {"Content-Type": "application/json; charset=utf-8"}),
        f"{tag} charset",
    )
    expect_error(d("POST with a body that is not JSON is 400"), send("POST", m, '{"title":"x",'), 400, "invalid_json")
    # Valid JSON of the wrong shape is the validator's, not the parser's, refusal.
    expect_error(
        d("POST with a JSON array (not an object) is 400"),
        send("POST", m, '[{"title":"x"}]'),
        400,
        "validation_failed",
    )
    expect_error(d("POST with a JSON string (not an object) is 400"), send("POST", m, '"x"'), 400, "validation_failed")
    expect_error(d("POST with an empty body is 400"), send("POST", m, ""), 400, "invalid_json")
    body = json.dumps({"title": tag})
    expect_error(
        d("POST with Content-Type text/plain is 415"),
        req("POST", m, body, {"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    expect_error(
        d("POST with a form body is 415"),
        req("POST", m, f"title={tag}", {"Content-Type": "application/x-www-form-urlencoded"}),
        415,
        "unsupported_media_type",
    )
    expect_error(d("POST without Content-Type is 415"), req("POST", m, body), 415, "unsupported_media_type")
    expect_error(
        d("POST with a 2 MiB body is 413"),
        send("POST", m, '{"title":"' + "x" * (2 * 1024 * 1024) + '"}'),
        413,
        "payload_too_large",
    )


def movies_update(c):
    """PUT: the update, a field left out keeping its value, and its refusals."""
    tag, m, d = c.tag, c.m, c.d
    first = c.first
    id1 = c.id1 = ident(first)
    updated = expect(
        d("PUT /api/movies/{id} updates the movie"),
        send("PUT", f"{m}/{id1}", {"title": f"{tag} first updated", "description": "updated"}),
        200,
        movie(f"{tag} first updated", "updated", id1),
    )
    expect(
        d("GET after PUT shows the update"),
        req("GET", f"{m}/{id1}"),
        200,
        movie(f"{tag} first updated", "updated", id1),
    )
    # A field left out keeps its stored value.
    first = expect(
        d("PUT /api/movies/{id}/ (trailing slash)"),
        send("PUT", f"{m}/{id1}/", {"title": f"{tag} first again"}),
        200,
        movie(f"{tag} first again", "updated" if updated else "first description", id1),
    )
    expect_error(
        d("PUT with empty title is 400 naming title"),
        send("PUT", f"{m}/{id1}", {"title": ""}),
        400,
        "validation_failed",
        "title",
    )
    expect_error(
        d("PUT with a 10001-char description is 400 naming description"),
        send("PUT", f"{m}/{id1}", {"title": tag, "description": "d" * 10001}),
        400,
        "validation_failed",
        "description",
    )
    expect_error(d("PUT with a JSON array is 400"), send("PUT", f"{m}/{id1}", "[1]"), 400, "validation_failed")
    expect_error(
        d("PUT with Content-Type text/plain is 415"),
        req("PUT", f"{m}/{id1}", '{"title":"x"}', {"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    expect_error(
        d("PUT of a missing movie is 404"), send("PUT", f"{m}/{MISSING_ID}", {"title": "nobody"}), 404, "not_found"
    )
    expect_error(
        d("PUT /api/movies/abc is 400"), send("PUT", f"{m}/abc", {"title": "x"}), 400, "validation_failed", "id"
    )
    c.first = first


def movies_bad_routes(c):
    """Bad ids, unknown routes, wrong methods (405 with Allow)."""
    m, d, id1 = c.m, c.d, c.id1
    expect_error(d("GET of a missing movie is 404"), req("GET", f"{m}/{MISSING_ID}"), 404, "not_found")
    expect_error(d("GET /api/movies/abc is 400"), req("GET", f"{m}/abc"), 400, "validation_failed", "id")
    expect_error(
        d("GET /api/movies/<id too large> is 400"),
        req("GET", f"{m}/99999999999999999999999"),
        400,
        "validation_failed",
        "id",
    )
    expect_error(d("GET /api/movies/-1 is 400 naming id"), req("GET", f"{m}/-1"), 400, "validation_failed", "id")
    expect_error(d("GET /api/moviesx is 404"), req("GET", m + "x"), 404, "not_found")
    expect_error(d("GET /api/movies/{id}/extra is 404"), req("GET", f"{m}/{id1}/extra"), 404, "not_found")
    expect_error(d("DELETE of a missing movie is 404"), req("DELETE", f"{m}/{MISSING_ID}"), 404, "not_found")
    expect_error(d("DELETE /api/movies/abc is 400"), req("DELETE", f"{m}/abc"), 400, "validation_failed", "id")
    collection, item = {"Allow": "GET, HEAD, POST, DELETE"}, {"Allow": "GET, HEAD, PUT, DELETE"}
    for method, path, allow in (
        ("PATCH", m, collection),
        ("PUT", m, collection),
        ("POST", f"{m}/{id1}", item),
        ("PATCH", f"{m}/{id1}", item),
    ):
        shown = "/api/movies" if path == m else "/api/movies/{id}"
        expect_error(
            d(f"{method} {shown} is 405"),
            send(method, path, "{}" if method == "PATCH" and path == m else '{"title":"x"}'),
            405,
            "method_not_allowed",
            headers=allow,
        )


def movies_delete(c):
    """Delete one, then all: a delete answers the movie it removed, delete-all the count."""
    m, d, id1, label = c.m, c.d, c.id1, c.label
    first, second, uni = c.first, c.second, c.uni
    expect(d("DELETE /api/movies/{id} deletes it"), req("DELETE", f"{m}/{id1}"), 200, first or movie(""))
    expect_error(d("GET after DELETE is 404"), req("GET", f"{m}/{id1}"), 404, "not_found")
    expect(
        d("DELETE /api/movies/{id}/ (trailing slash) deletes it"),
        req("DELETE", f"{m}/{ident(second)}/"),
        200,
        second or movie(""),
    )
    expect_error(d("DELETE twice is 404"), req("DELETE", f"{m}/{ident(second)}"), 404, "not_found")
    # It answers how many it deleted: all that the list holds just before.
    before, _ = body_of(req("GET", m))
    count = len(before) if isinstance(before, list) else -1
    path, desc = (
        (m, "DELETE /api/movies deletes all movies")
        if label == "gateway"
        else (m + "/", "DELETE /api/movies/ (trailing slash) deletes all movies")
    )
    expect(d(desc), req("DELETE", path), 200, {"deleted": count})
    expect(d("the list is empty after delete-all"), req("GET", m), 200, [])
    expect_error(d("GET of a movie removed by delete-all is 404"), req("GET", f"{m}/{ident(uni)}"), 404, "not_found")
