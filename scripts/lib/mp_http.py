"""HTTP for the test programs (scripts/e2e.py, scripts/scenarios.py):
one request function over http.client that sends exactly the bytes and
headers it is given (no implicit Content-Type, any method, invalid UTF-8),
and a response that keeps status, headers and raw body.

Python 3 standard library only. Import with scripts/lib on sys.path:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    import mp_http
"""

import http.client
import json
import re
import time
import urllib.parse

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Response:
    """One answer. status is 0 when there was none (error says why)."""

    def __init__(self, status=0, headers=None, body=b"", error=""):
        self.status = status
        self.headers = headers if headers is not None else http.client.HTTPMessage()
        self.body = body
        self.error = error

    def header(self, name, default=None):
        """The last value of header NAME (case-insensitive)."""
        values = self.headers.get_all(name) or []
        return values[-1] if values else default

    @property
    def media_type(self):
        """The Content-Type without parameters, lower case ("" when absent)."""
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    def json(self):
        """The body parsed as JSON (strict UTF-8); raises ValueError if it is not."""
        return json.loads(self.body.decode("utf-8"))

    def describe(self, limit=300):
        """Status and the start of the body, for failure messages."""
        if self.status == 0:
            return f"no response: {self.error}"
        text = self.body[:limit].decode("utf-8", "replace").replace("\n", " ")
        return f"{self.status} {text}"


def request(method, url, body=None, headers=None, timeout=20):
    """Sends one request on a fresh connection. body is bytes, str (sent as
    UTF-8) or None; headers are sent as given, nothing is added but Host and
    (for a body) Content-Length."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    sending = None
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        try:
            conn.endheaders(body)
        except (BrokenPipeError, ConnectionResetError) as e:
            # A server may answer (413...) and close before reading a large
            # body; its answer is still there to read, as curl reads it.
            sending = e
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.headers, data)
    except (OSError, http.client.HTTPException) as e:
        if sending is not None:
            e = sending
        return Response(error=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def send_json(method, url, value, headers=None, timeout=20):
    """A request whose body is VALUE serialized as JSON (non-ASCII kept as UTF-8)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return request(method, url, json.dumps(value, ensure_ascii=False), all_headers, timeout)


def with_query(url, **params):
    """URL with PARAMS appended, percent-encoded (a NUL becomes %00)."""
    return url + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def http_get(url, timeout=5):
    """GET URL: (status, body text), or (0, why) when there is no answer."""
    r = request("GET", url, timeout=timeout)
    return (r.status, r.body.decode("utf-8", "replace")) if r.status else (0, r.error)


def wait_until(predicate, timeout, interval=0.5):
    """True as soon as predicate() is true; False after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
