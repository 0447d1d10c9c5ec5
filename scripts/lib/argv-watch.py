#!/usr/bin/python3
"""Samples every process's command line (/proc/*/cmdline) until STOPFILE
exists, and reports each process whose arguments hold one of the secrets.
For the three-host test: provisioning must hand passwords to psql and
rabbitmqctl through stdin, files or the environment, never through argv,
which every local user can read (ps).

    argv-watch.py SECRETS_FILE STOPFILE    (one secret per line, file 0600)

Prints "samples=N processes=M" and then one line per leak; exits 0 when
nothing leaked, 2 when something did.
"""
import os
import sys
import time


def main():
    secrets_file, stop = sys.argv[1:3]
    with open(secrets_file, "rb") as f:
        secrets = [s for s in f.read().split(b"\n") if s]
    me = os.getpid()
    leaks = {}
    seen = set()
    samples = 0
    while not os.path.exists(stop):
        samples += 1
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == me:
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            seen.add((pid, cmd))
            for s in secrets:
                if s in cmd:
                    words = cmd.split(b"\0")
                    leaks[(pid, words[0])] = b" ".join(w[:40] for w in words[:6])
        time.sleep(0.002)
    print(f"samples={samples} processes={len(seen)}")
    for (pid, _), cmd in sorted(leaks.items()):
        # The command, not the secret: the secret itself must not reach a log.
        print(f"LEAK pid {pid}: {cmd.decode(errors='replace').split(' ')[0]} (a password in its arguments)")
    return 2 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
