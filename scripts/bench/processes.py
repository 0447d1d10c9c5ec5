"""The run's plumbing (scripts/bench/bench.py): where the checkout is, messages,
/proc readings (CPU ticks, RSS), stopping a process, ports, and the shell
library's functions (shell_lib).
"""

import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# scripts/lib and scripts on sys.path: bench.py, the entry point, puts them there.
import mp_http  # noqa: E402
from figures import BenchError, machine_ticks, stat_comm, stat_cpu_ticks, status_field  # noqa: E402


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def point_line(key, conns, rps, p50, p99):
    print(f"    {key:<34} c={conns:<3} {rps:>8} req/s  p50 {p50:>7} ms  p99 {p99:>7} ms", file=sys.stderr, flush=True)


def tail(text, n):
    """The last N lines of TEXT joined by spaces (for one-line error messages)."""
    return "".join(line + " " for line in text.splitlines()[-n:])


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cpu_ticks(pids):
    """CPU time (user+system, clock ticks) of PIDS, all threads."""
    total = 0
    for pid in pids:
        text = read_text(f"/proc/{pid}/stat")
        if text:
            total += stat_cpu_ticks(text)
    return total


def cpu_snapshot():
    """Every process's command name and CPU ticks: {pid: (comm, ticks)}, and
    the machine's (busy, all) ticks, read together."""
    procs = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            text = read_text(f"/proc/{pid}/stat")
            if text:
                procs[pid] = (stat_comm(text), stat_cpu_ticks(text))
    return procs, machine_ticks(read_text("/proc/stat"))


def rss_kb(pid, field):
    return status_field(read_text(f"/proc/{pid}/status"), field) if pid else ""


def reset_peak(pids):
    """Restarts the kernel's peak-RSS counter (VmHWM) of each process at its
    current RSS, so that the next reading is the peak of what happened in between."""
    for pid in pids:
        if pid:
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5\n")
            except OSError:
                pass


def pid_alive(pid):
    """True when PID is a live process (not a zombie)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    stat = read_text(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(") ", 1)[1][:1] != "Z"


def stop_pid(pid, seconds):
    """TERM, up to SECONDS to exit, then KILL: a process that is not our child."""
    if not pid_alive(pid):
        return
    try:
        os.kill(int(pid), signal.SIGTERM)
    except OSError:
        return
    if not mp_http.wait_until(lambda: not pid_alive(pid), seconds, 0.2):
        warn(f"pid {pid} did not stop in {seconds}s, killing it")
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def stop_child(proc, seconds):
    """TERM, up to SECONDS, then KILL: a process we started (and reap it)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        warn(f"pid {proc.pid} did not stop in {seconds}s, killing it")
        proc.kill()
        proc.wait()


def port_open(port):
    import socket

    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


def shell_lib(*words):
    """Runs a function of scripts/lib/common.sh (the one definition of
    dist_dir; and of mp.sh, which it sources: mp::pkg::install): its output,
    or BenchError."""
    script = 'source "$1"; shift; "$@"'
    r = subprocess.run(
        ["bash", "-c", script, "bash", os.path.join(ROOT, "scripts", "lib", "common.sh"), *words],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise BenchError(f"{' '.join(words)} failed")
    return r.stdout.strip()
