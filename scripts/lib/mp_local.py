"""The system scripts/local.sh runs, seen from a test program
(scripts/e2e.py, scripts/scenarios.py): where its services answer,
and driving it through local.sh (stop/start, logs, psql).

Targets come from the environment, as scripts/test.sh exports them:
GATEWAY_URL (default http://127.0.0.1:$LOCAL_GATEWAY_PORT, 8080), inventory
on 127.0.0.1:$LOCAL_INVENTORY_PORT (8081), the worker's health port
$LOCAL_BILLING_HEALTH_PORT (8082).

Python 3 standard library only.
"""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCAL_SH = os.path.join(ROOT, "scripts", "local.sh")


def env(name, default):
    """$NAME, or DEFAULT when it is unset or empty."""
    return os.environ.get(name) or default


def gateway_url():
    return env("GATEWAY_URL", "http://127.0.0.1:" + env("LOCAL_GATEWAY_PORT", "8080")).rstrip("/")


def inventory_port():
    return int(env("LOCAL_INVENTORY_PORT", "8081"))


def inventory_url():
    return f"http://127.0.0.1:{inventory_port()}"


def worker_url():
    return "http://127.0.0.1:" + env("LOCAL_BILLING_HEALTH_PORT", "8082")


class LocalError(Exception):
    """A local.sh command failed or took too long."""


def local(*args, timeout=180, check=True):
    """Runs scripts/local.sh ARGS; raises LocalError when it fails (with
    check) or outlives TIMEOUT seconds. Returns the CompletedProcess."""
    try:
        r = subprocess.run([LOCAL_SH, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise LocalError(f"local.sh {' '.join(args)} took more than {timeout}s") from e
    if check and r.returncode != 0:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-5:])
        raise LocalError(f"local.sh {' '.join(args)} failed ({r.returncode}): {tail}")
    return r


def psql_rows(db, sql, timeout=60):
    """The rows (lists of text columns) of SQL on database DB, or None if it failed."""
    try:
        r = local("psql", db, "-X", "-q", "-tAc", f"COPY ({sql}) TO STDOUT", timeout=timeout, check=False)
    except LocalError:
        return None
    if r.returncode != 0:
        return None
    return [line.split("\t") for line in r.stdout.splitlines() if line]
