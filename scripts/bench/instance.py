"""The bench's own instance of the system (scripts/bench/bench.py): its ports
and state, the local run (scripts/local.sh), psql, nginx, the seeded tables.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import mp_dotenv
import mp_http
import mp_rabbitmq

from figures import SERVICES, BenchError, fmt
from processes import HERE, ROOT, port_open, read_text, say, shell_lib, stop_child, stop_pid, tail, warn


class Instance:
    """The bench's own instance of the system: its ports and state, the
    local run (scripts/local.sh), psql, nginx, the seeded tables. The section
    classes (load.py, measure_rw.py, measure_scale.py) are mixins of
    Bench and use what this one sets up."""

    def __init__(self, settings, out, keep_state, build):
        self.s = settings
        self.out = out
        self.keep_state = keep_state
        self.build = build
        self.R = {}
        self.errors = []
        self.nginx = None
        self.started = False
        self.clk_tck = os.sysconf("SC_CLK_TCK")

        env = os.environ
        # MP_BIN_DIR=DIR benchmarks the binaries in DIR (local.sh reads it too).
        self.bin_dir = env.get("MP_BIN_DIR") or ""
        env["LC_ALL"] = "C"
        self.state = os.path.join(ROOT, ".state", "bench")
        env["MP_STATE_DIR"] = self.state
        # All below Linux's ephemeral range (32768-60999), as scripts/test.sh's:
        # the drain restarts the worker while clients come and go, and an
        # outgoing connection that had taken its port as its own stopped it
        # from listening again (seen: "cannot listen on 127.0.0.1:38082").
        ports = {
            "LOCAL_GATEWAY_PORT": ("BENCH_GATEWAY_PORT", 28080),
            "LOCAL_INVENTORY_PORT": ("BENCH_INVENTORY_PORT", 28081),
            "LOCAL_BILLING_HEALTH_PORT": ("BENCH_BILLING_HEALTH_PORT", 28082),
            "LOCAL_PG_INVENTORY_PORT": ("BENCH_PG_INVENTORY_PORT", 27432),
            "LOCAL_PG_BILLING_PORT": ("BENCH_PG_BILLING_PORT", 27433),
            "LOCAL_RABBITMQ_PORT": ("BENCH_RABBITMQ_PORT", 27672),
            "LOCAL_RABBITMQ_MGMT_PORT": ("BENCH_RABBITMQ_MGMT_PORT", 27673),
            "LOCAL_RABBITMQ_DIST_PORT": ("BENCH_RABBITMQ_DIST_PORT", 27674),
            "LOCAL_EPMD_PORT": ("BENCH_EPMD_PORT", 27675),
            # Not local.sh's defaults: a local run (or a test run) may hold those.
            "LOCAL_GATEWAY_METRICS_PORT": ("BENCH_GATEWAY_METRICS_PORT", 29101),
            "LOCAL_INVENTORY_METRICS_PORT": ("BENCH_INVENTORY_METRICS_PORT", 29102),
        }
        for local_name, (bench_name, default) in ports.items():
            env[local_name] = env.get(bench_name) or str(default)
        self.nginx_port = env.get("BENCH_NGINX_PORT") or "28090"
        # The services log at their normal level: logging is part of what is measured.
        env["RUST_LOG"] = env.get("RUST_LOG") or "info"
        settings.rust_log = env["RUST_LOG"]
        # The one .env format (scripts/mp_dotenv.py); the environment wins.
        try:
            dotenv = mp_dotenv.load(os.path.join(ROOT, ".env"), dict(env))
        except (mp_dotenv.DotenvError, OSError) as e:
            raise BenchError(f"cannot load .env: {e}") from e
        env.update(dotenv)
        settings.prefetch = env.get("BILLING_PREFETCH", "")
        settings.batch = env.get("BILLING_BATCH_SIZE", "")

        self.url = {
            "direct": f"http://127.0.0.1:{env['LOCAL_INVENTORY_PORT']}",
            "nginx": f"http://127.0.0.1:{self.nginx_port}",
            "gateway": f"http://127.0.0.1:{env['LOCAL_GATEWAY_PORT']}",
        }
        # The broker's management API (guest: loopback only).
        self.mgmt = mp_rabbitmq.Management(env["LOCAL_RABBITMQ_MGMT_PORT"], env.get("RABBITMQ_VHOST", "/"), timeout=10)
        if self.bin_dir:
            self.build = False
        else:
            self.bin_dir = shell_lib("dist_dir")
        env["MP_BIN_DIR"] = self.bin_dir
        self.work = os.path.join(self.state, "bench")
        self.run_dir = os.path.join(self.state, "run")
        self.tools = os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "release")
        self.local_sh = os.path.join(ROOT, "scripts", "local.sh")


    # ------------------------------------------------------------ helpers --

    def record_error(self, msg):
        self.errors.append(msg)
        warn(msg)

    def local(self, *args, log=None, check=True, extra_env=None):
        """scripts/local.sh ARGS, its output appended to LOG (or discarded)."""
        env = dict(os.environ, **(extra_env or {}))
        with open(log, "a") if log else open(os.devnull, "w") as sink:
            r = subprocess.run([self.local_sh, *args], stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
        if check and r.returncode != 0:
            raise BenchError(f"scripts/local.sh {' '.join(args)} failed" + (f" (see {log})" if log else ""))
        return r.returncode

    def psql(self, port, db, *args):
        """psql on 127.0.0.1:PORT as postgres: its output without the final newlines."""
        cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port)]
        cmd += ["-U", "postgres", "-d", db, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PGCONNECT_TIMEOUT="5"), check=False)
        if r.returncode != 0:
            raise BenchError(f"psql on port {port}, database {db}: {tail(r.stderr, 3)}")
        return r.stdout.rstrip("\n")

    def movies_sql(self, *args):
        return self.psql(os.environ["LOCAL_PG_INVENTORY_PORT"], os.environ["INVENTORY_DB_NAME"], *args)

    def orders_sql(self, *args):
        return self.psql(os.environ["LOCAL_PG_BILLING_PORT"], os.environ["BILLING_DB_NAME"], *args)

    def service_pid(self, name):
        return read_text(os.path.join(self.run_dir, f"{name}.pid")).strip()

    def nginx_pids(self):
        """The nginx master and its workers."""
        if self.nginx is None:
            return []
        r = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.nginx.pid)], capture_output=True, text=True, check=False)
        return [str(self.nginx.pid)] + r.stdout.split()

    def service_environ(self, name):
        """The environment local.sh gave NAME (its /proc/PID/environ): to run
        the same binary again exactly as configured."""
        with open(f"/proc/{self.service_pid(name)}/environ", "rb") as f:
            return dict(
                item.decode("utf-8", "surrogateescape").split("=", 1) for item in f.read().split(b"\0") if b"=" in item
            )

    def epmd_stop(self):
        """local.sh records the pid of the shell that launched epmd, not epmd's,
        so its `down` leaves our epmd running: stop the epmd on OUR port, by its pid."""
        r = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{os.environ['LOCAL_EPMD_PORT']}"], capture_output=True, text=True, check=False
        )
        m = re.search(r'"epmd",pid=([0-9]+)', r.stdout)
        if m:
            stop_pid(m.group(1), 5)

    # ---------------------------------------------------------- instance --

    def build_all(self):
        if self.build:
            say("building the services (scripts/build.sh)")
            if subprocess.run([os.path.join(ROOT, "scripts", "build.sh")], check=False).returncode != 0:
                raise BenchError("scripts/build.sh failed")
        say("building bench-tools")
        cmd = ["cargo", "build", "--quiet", "--release", "--target", "x86_64-unknown-linux-musl", "-p", "bench-tools"]
        if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
            raise BenchError("building bench-tools failed")
        for b in SERVICES:
            if not os.access(os.path.join(self.bin_dir, b), os.X_OK):
                raise BenchError(f"{self.bin_dir}/{b} is missing: run scripts/build.sh")

    def bench_amqp_env(self):
        env = os.environ
        env["BENCH_AMQP_HOST"] = "127.0.0.1"
        env["BENCH_AMQP_PORT"] = env["LOCAL_RABBITMQ_PORT"]
        # raw-publish and raw-consume both publish and consume: no service account
        # may do both, guest (loopback only, local run) may.
        env["BENCH_AMQP_USER"] = env["BENCH_AMQP_PASSWORD"] = "guest"
        env["BENCH_AMQP_VHOST"] = env.get("RABBITMQ_VHOST", "")

    def instance_up(self):
        self.local("down", check=False)
        if not self.keep_state:
            # Empty servers every run, so one run's data cannot skew the next.
            shutil.rmtree(self.state, ignore_errors=True)
        self.epmd_stop()
        env = os.environ
        names = ["LOCAL_GATEWAY_PORT", "LOCAL_INVENTORY_PORT", "LOCAL_BILLING_HEALTH_PORT"]
        ports = [env[n] for n in names] + [self.nginx_port]
        names = ["LOCAL_PG_INVENTORY_PORT", "LOCAL_PG_BILLING_PORT", "LOCAL_RABBITMQ_PORT"]
        names += ["LOCAL_RABBITMQ_MGMT_PORT", "LOCAL_RABBITMQ_DIST_PORT", "LOCAL_EPMD_PORT"]
        for port in ports + [env[n] for n in names]:
            if port_open(port):
                raise BenchError(f"port {port} is already in use (another instance?): set BENCH_*_PORT")
        os.makedirs(self.work, exist_ok=True)
        self.started = True
        say(f"starting the bench instance (scripts/local.sh up, state in {self.state})")
        log = os.path.join(self.work, "local-up.log")
        if self.local("up", log=log, check=False, extra_env={"MP_SKIP_BUILD": "1"}) != 0:
            sys.stderr.write("".join(line + "\n" for line in read_text(log).splitlines()[-30:]))
            raise BenchError("scripts/local.sh up failed")
        for name in ("inventory-app", "api-gateway", "billing-worker"):
            if not self.service_pid(name):
                raise BenchError(f"{name} did not start (see {log})")

    def nginx_start(self, workers="auto", access_log="off", wrapper=()):
        """nginx in front of inventory: one worker per core and no access log
        (the throughput baseline), or WORKERS and ACCESS_LOG ("log": one line
        per request of the gateway's access-log shape, to a file) as the
        instruction counts need them, started through WRAPPER (valgrind)."""
        d = os.path.join(self.work, "nginx")
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        user_line = ""
        # As root, nginx's workers drop to nobody; let them use the temp dirs.
        # Under valgrind they stay root: vgdb, which asks callgrind for a dump,
        # reaches only the processes of the user it runs as.
        if os.geteuid() == 0 and wrapper:
            user_line = "user root root;"
        elif os.geteuid() == 0:
            user_line = "user nobody nogroup;"
            shutil.chown(os.path.join(d, "tmp"), "nobody", "nogroup")
        conf = os.path.join(d, "nginx.conf")
        text = read_text(os.path.join(HERE, "nginx.conf.template"))
        for k, v in (("@DIR@", d), ("@PORT@", self.nginx_port),
                     ("@UPSTREAM_PORT@", os.environ["LOCAL_INVENTORY_PORT"]), ("@USER_LINE@", user_line),
                     ("@WORKERS@", workers),
                     ("@ACCESS_LOG@", f"{d}/access.log gateway_shape" if access_log == "log" else "off")):
            text = text.replace(k, v)
        with open(conf, "w") as f:
            f.write(text)
        with open(os.path.join(d, "stdout.log"), "a") as logf:
            self.nginx = subprocess.Popen(
                [*wrapper, "nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log"), "-g", f"daemon off; pid {d}/nginx.pid;"],
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        # Under valgrind nginx takes seconds to start, not milliseconds.
        if not mp_http.wait_until(lambda: port_open(self.nginx_port), 60 if wrapper else 10, 0.2):
            raise BenchError(f"nginx did not start; see {d}/error.log")

    def nginx_stop(self):
        if self.nginx is not None:
            stop_child(self.nginx, 10)
            self.nginx = None

    def cleanup(self):
        self.nginx_stop()
        if self.started:
            say("stopping the bench instance")
            if self.local("down", check=False) != 0:
                warn("scripts/local.sh down failed")
            self.epmd_stop()

    # ------------------------------------------------------------ seeding --

    def seed_movies(self, target, start=0):
        """Grows the movies table to TARGET rows (from an empty table when START
        is 0), then ANALYZE. seed.TARGET = seconds."""
        t0 = time.time()
        if start == 0:
            self.movies_sql("-c", "TRUNCATE movies RESTART IDENTITY")
        self.movies_sql("-v", f"from={start}", "-v", f"target={target}", "-f", os.path.join(HERE, "seed-movies.sql"))
        self.movies_sql("-c", "ANALYZE movies")
        self.R[f"seed.{target}"] = fmt(time.time() - t0, 1)
