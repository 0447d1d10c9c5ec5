#!/usr/bin/env python3
"""The verdict of one catalogue fault of the high-availability test.

    movies_verdict.py NAME LOADFILE STORED FAULT_AT MAX_GAP MAX_FAILED [NOTE]

LOADFILE: movies_load.py's lines; STORED: `title count` lines from the movies
database; FAULT_AT: the monotonic time the fault was injected. Prints one
line: movies added (answered 201), lost (201 and not stored), stored twice,
non-201 but stored, the longest time without an added movie after the fault
(writes gone), reads and failed reads, the longest time without a read
answered 200 after the fault, then NOTE. Exits 1 if a movie answered 201 is
lost, any is stored twice, either longest time exceeds MAX_GAP seconds (the
promise), or more than MAX_FAILED requests failed, reads (not 200) and
writes (not 201) together (-1: any number).
"""
import sys

from load import tally  # the one reading of a load line's last field


def longest_gap(fault_at, times):
    """Longest stretch after fault_at without one of times (sorted)."""
    done = sorted(t for t in times if t >= fault_at)
    gaps = [b - a for a, b in zip([fault_at] + done, done)]
    return max(gaps) if gaps else float("inf")


def main():
    name, load_path, stored_path = sys.argv[1], sys.argv[2], sys.argv[3]
    fault_at, max_gap, max_failed = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
    note = f"; {sys.argv[7]}" if len(sys.argv) > 7 and sys.argv[7] else ""
    stored = {}
    with open(stored_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                title, count = line.split()
                stored[title] = int(count)
    posts, gets = [], []
    errors = {}  # load.py's tally: what went wrong, and how often
    with open(load_path, encoding="utf-8") as f:
        for line in f:
            kind, title, status, sent, answered, *error = line.split()
            (posts if kind == "post" else gets).append((title, int(status), float(sent), float(answered)))
            if error:
                tally(errors, int(status), float(sent), error[0])
    added = [p for p in posts if p[1] == 201]
    lost = [p[0] for p in added if stored.get(p[0], 0) == 0]
    twice = sorted({p[0] for p in posts if stored.get(p[0], 0) > 1})
    non201_stored = [p[0] for p in posts if p[1] != 201 and stored.get(p[0], 0) > 0]
    failed_gets = [g for g in gets if g[1] != 200]
    parts = [f"{name}:"]
    problems = []
    if posts:
        write_gap = longest_gap(fault_at, [p[3] for p in added])
        parts.append(
            f"{len(posts)} movies posted, {len(added)} answered 201; lost {len(lost)}, stored twice {len(twice)}, "
            f"non-201 but stored {len(non201_stored)}; longest time without an added movie after the fault "
            f"{write_gap:.1f} s;"
        )
        if lost or twice or not added:
            problems.append("movies lost or stored twice")
        if write_gap > max_gap:
            problems.append(f"writes gone longer than {max_gap:.0f} s")
    read_gap = longest_gap(fault_at, [g[3] for g in gets if g[1] == 200])
    parts.append(
        f"{len(gets)} reads, {len(failed_gets)} failed; longest time without a read answered 200 after the fault "
        f"{read_gap:.1f} s{note}"
    )
    if read_gap > max_gap:
        problems.append(f"reads gone longer than {max_gap:.0f} s")
    failed = failed_gets + [p for p in posts if p[1] != 201]
    if max_failed >= 0 and len(failed) > max_failed:
        statuses = sorted({r[1] for r in failed})
        problems.append(
            f"{len(failed)} failed requests (statuses {statuses}: {len(failed_gets)} reads, "
            f"{len(failed) - len(failed_gets)} writes), at most {max_failed} allowed"
        )
    print(" ".join(parts))
    for (kind, error), (count, first_at) in sorted(errors.items(), key=lambda e: -e[1][0])[:6]:
        when = f" (the first sent {first_at - fault_at:+.1f} s after the fault)" if fault_at > 0 else ""
        print(f"  {kind} {count}x{when}: {error}")
    if lost:
        print(f"  lost (first 5): {lost[:5]}")
    if twice:
        print(f"  stored twice (first 5): {twice[:5]}")
    for p in problems:
        print(f"  FAILED: {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
