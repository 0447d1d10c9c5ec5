#!/usr/bin/env python3
"""One client against the firewall's per-source limits (scripts/three-host-test.sh).

  conn-limits.py hold HOST PORT COUNT EXTRA STOPFILE
      Opens COUNT connections to the gateway at HOST:PORT, slower than the
      new-connection limit lets a source, and keeps every one busy: a small
      request at once and then every second (the gateway closes a connection
      that sends no request head for 5 s, or stays idle for 5 s). Then tries
      EXTRA more at once (2 s each) and prints, once and flushed,
          held N extra_connected C extra_refused R
      then keeps the COUNT connections until STOPFILE exists (120 s at most)
      and prints "lost L": how many of them the other side closed meanwhile.
  conn-limits.py burst HOST PORT COUNT
      Opens and closes COUNT connections as fast as it can (0.3 s each) and
      prints "opened N refused R first_refused I" (I: 1-based index of the
      first attempt that failed, 0 if none did).

A connection the firewall refuses is never answered (its SYN is dropped), so
"refused" means: not connected within the time given. Exit status 0 unless
the arguments are wrong.
"""

import errno
import os
import select
import socket
import sys
import time


def request(host):
    # A path the gateway answers itself (404), without asking inventory.
    return f"GET /conn-limits-probe HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def try_connect(host, port, timeout):
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None


class Held:
    def __init__(self, sock, req):
        sock.setblocking(False)
        self.sock = sock
        self.req = req
        self.closed = False
        self.last = 0.0
        self.ping()

    def ping(self):
        try:
            self.sock.send(self.req)
        except OSError:
            self.closed = True
        self.last = time.monotonic()

    def drain(self):
        while not self.closed:
            try:
                if not self.sock.recv(65536):
                    self.closed = True
            except BlockingIOError:
                return
            except OSError:
                self.closed = True

    def tick(self):
        self.drain()
        if not self.closed and time.monotonic() - self.last >= 1.0:
            self.ping()


def extra_connects(host, port, count, timeout):
    """Starts COUNT connects at once; returns how many completed within TIMEOUT."""
    pending = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            continue
        pending.append(s)
    connected = 0
    deadline = time.monotonic() + timeout
    waiting = list(pending)
    while waiting and time.monotonic() < deadline:
        _, writable, _ = select.select([], waiting, [], max(0.0, deadline - time.monotonic()))
        for s in writable:
            waiting.remove(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected += 1
    for s in pending:
        s.close()
    return connected


def hold(host, port, count, extra, stopfile):
    req = request(host)
    held = []
    # 50 a second: half the default rate limit, so only the count limit strikes.
    for _ in range(count):
        sock = try_connect(host, port, 2.0)
        if sock is None:
            break
        held.append(Held(sock, req))
        for h in held:
            h.tick()
        time.sleep(0.02)
    for h in held:
        h.tick()
    connected = extra_connects(host, port, extra, 2.0)
    print(f"held {len(held)} extra_connected {connected} extra_refused {extra - connected}", flush=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(stopfile) and time.monotonic() < deadline:
        for h in held:
            h.tick()
        time.sleep(0.1)
    print(f"lost {sum(1 for h in held if h.closed)}", flush=True)
    for h in held:
        h.sock.close()


def burst(host, port, count):
    opened = refused = first = 0
    for i in range(1, count + 1):
        sock = try_connect(host, port, 0.3)
        if sock is None:
            refused += 1
            first = first or i
        else:
            opened += 1
            sock.close()
    print(f"opened {opened} refused {refused} first_refused {first}", flush=True)


def main(argv):
    if len(argv) == 6 and argv[0] == "hold":
        hold(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5])
    elif len(argv) == 4 and argv[0] == "burst":
        burst(argv[1], int(argv[2]), int(argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
