#!/usr/bin/env python3
"""The verdict of one fault of the high-availability test.

    verdict.py NAME LOADFILE STORED FAULT_AT [NOTE [MAX_OUTAGE [MAX_FAILED]]]

LOADFILE: load.py's lines; STORED: `user_id count` lines from the orders
database; FAULT_AT: the monotonic time the fault was injected. Prints one
line: requests, answered 200, lost (200 and not stored), stored twice,
non-200 answered but stored, and the longest time without an accepted order
after the fault (how long the service was gone), then NOTE (what else the
fault measured, e.g. a database's failover time). Exits 1 if any order
answered 200 is lost or any order is stored twice, or if MAX_OUTAGE (seconds)
is given and the longest time without an accepted order exceeds it, or if
MAX_FAILED is given and more orders than that got no 200.
"""
import sys

from load import tally  # the one reading of a load line's last field


def main():
    name, load_path, stored_path, fault_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    stored = {}
    with open(stored_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                user, count = line.split()
                stored[user] = int(count)
    orders = []
    errors = {}  # load.py's tally: what went wrong, and how often
    with open(load_path, encoding="utf-8") as f:
        for line in f:
            user, _order, status, sent, answered, *error = line.split()
            orders.append((user, int(status), float(sent), float(answered)))
            if error:
                tally(errors, int(status), float(sent), error[0])
    ok = [o for o in orders if o[1] == 200]
    lost = [o[0] for o in ok if stored.get(o[0], 0) == 0]
    # Only this run's orders (the set-up's probes are not part of it).
    twice = sorted({o[0] for o in orders if stored.get(o[0], 0) > 1})
    non200_stored = [o[0] for o in orders if o[1] != 200 and stored.get(o[0], 0) > 0]
    failed = len(orders) - len(ok)
    note = f"; {sys.argv[5]}" if len(sys.argv) > 5 and sys.argv[5] else ""
    max_outage = float(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] else None
    max_failed = int(sys.argv[7]) if len(sys.argv) > 7 and sys.argv[7] else None
    too_many = max_failed is not None and failed > max_failed
    too_long = False
    # Longest stretch after the fault with no order answered 200 (FAULT_AT 0:
    # a total over several faults, which has no one fault time).
    outage = ""
    if fault_at > 0:
        done = sorted(o[3] for o in ok if o[3] >= fault_at)
        gaps = [b - a for a, b in zip([fault_at] + done, done)]
        longest = max(gaps) if gaps else float("inf")
        outage = f"; longest time without an accepted order after the fault {longest:.1f} s"
        too_long = max_outage is not None and longest > max_outage
    print(
        f"{name}: {len(orders)} orders, {len(ok)} answered 200, {failed} not 200; "
        f"lost {len(lost)}, stored twice {len(twice)}, non-200 but stored {len(non200_stored)}"
        f"{outage}{note}"
    )
    for (kind, error), (count, first_at) in sorted(errors.items(), key=lambda e: -e[1][0])[:6]:
        when = f" (the first sent {first_at - fault_at:+.1f} s after the fault)" if fault_at > 0 else ""
        print(f"  {kind} {count}x{when}: {error}")
    if lost:
        print(f"  lost (first 5): {lost[:5]}")
    if twice:
        print(f"  stored twice (first 5): {twice[:5]}")
    if too_long:
        print(f"  FAILED: longer than {max_outage:.0f} s without an accepted order")
    if too_many:
        print(f"  FAILED: {failed} orders without a 200, at most {max_failed} allowed")
    sys.exit(1 if lost or twice or not ok or too_long or too_many else 0)


if __name__ == "__main__":
    main()
