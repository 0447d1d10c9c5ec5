"""The check harness of the Python test programs (scripts/e2e.py,
scripts/scenarios.py, scripts/check-links-test.py), with the output format of
the shell's (mp::check in scripts/lib/mp.sh), so every test's verdicts read
alike:

    ok     DESCRIPTION
    FAILED DESCRIPTION: PROBLEM

and a last line "NAME: N passed, M failed".

    checks = mp_check.Checks("e2e")
    checks.check("GET /health answers 200", problem)   # None or "" = passed
    sys.exit(checks.summary())

Python 3 standard library only. Import with scripts/lib on sys.path.
"""


def line(desc, problem=None):
    """The verdict line of one check: passed when PROBLEM is None or empty."""
    return f"FAILED {desc}: {problem}" if problem else f"ok     {desc}"


class Checks:
    """Counts and prints the checks of one test program NAME."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, desc, problem=None):
        """Records and prints one check; True when it passed (PROBLEM None
        or empty)."""
        if problem:
            self.failed += 1
        else:
            self.passed += 1
        print(line(desc, problem), flush=True)
        return not problem

    def summary(self):
        """Prints "NAME: N passed, M failed"; the exit status: 1 when a
        check failed, else 0."""
        print(f"{self.name}: {self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0
