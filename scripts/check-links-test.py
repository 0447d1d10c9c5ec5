#!/usr/bin/env python3
"""Proves scripts/check-links.py can fail, and pins what it says.

Two fixtures under scripts/testdata/links/: `good`, whose links all resolve
(anchors with code spans, punctuation, non-ASCII letters and a repeated
heading; links inside code that must be ignored), must pass with no output;
`broken` holds exactly three faults (a missing file, a missing anchor, a doc
README does not link) and must fail naming exactly those three. Then the
slug rules on their own, against anchors GitHub gives.

Prints each verdict through scripts/lib/mp_check.py; exits 1 on any failure.
Python 3 standard library only.
"""

import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKER = os.path.join(HERE, "check-links.py")
FIXTURES = os.path.join(HERE, "testdata", "links")

BROKEN = [
    "README.md:3: docs/gone.md: no such file",
    "README.md:5: docs/a.md#setup-1: no heading with the anchor #setup-1 in docs/a.md",
    "README.md: docs/orphan.md is not linked from README.md",
]

SLUGS = {
    "Retrying safely: `Idempotency-Key`": "retrying-safely-idempotency-key",
    'What "exactly once" rests on': "what-exactly-once-rests-on",
    "Proof in real VMs: `scripts/vm-test.sh`": "proof-in-real-vms-scriptsvm-testsh",
    "stock mode (`scripts/vm/qemu.sh` with `VM_STOCK=1`)": "stock-mode-scriptsvmqemush-with-vm_stock1",
    "Broker alarms: `/ready` tells the truth": "broker-alarms-ready-tells-the-truth",
    "Über größe — 100": "über-größe--100",
}

sys.path.insert(0, os.path.join(HERE, "lib"))
import mp_check  # noqa: E402 (found through the path set just above)

CHECKS = mp_check.Checks("check-links-test")


def check(desc, ok, detail=""):
    CHECKS.check(desc, None if ok else detail or "failed")


def run(fixture):
    r = subprocess.run(
        [sys.executable, CHECKER, "--root", os.path.join(FIXTURES, fixture)],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.returncode, r.stdout.splitlines()


rc, out = run("good")
check("a tree whose links all resolve passes", rc == 0 and out == [], f"exit {rc}, output {out}")
rc, out = run("broken")
check("a broken link, a missing anchor and an unlinked doc fail", rc == 1, f"exit {rc}")
check("the failure names exactly those three", out == BROKEN, f"expected {BROKEN}, got {out}")

spec = importlib.util.spec_from_file_location("check_links", CHECKER)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
for heading, want in SLUGS.items():
    got = mod.slug(heading)
    check(f"slug of {heading!r}", got == want, f"expected {want!r}, got {got!r}")

sys.exit(CHECKS.summary())
