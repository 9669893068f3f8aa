"""The stack under test, started the way production runs it: PostgreSQL and Redis (already running),
one ASGI process per core, Celery workers on a thread pool. Or the embedded default: SQLite and
one ASGI process that executes the runs itself.

Everything here is plain subprocess management plus /proc readers for CPU and memory.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.stamps import StampReader

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "bench" / "var"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def raise_nofile() -> int:
    """Soft fd limit up to the hard one (10k sockets need it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- /proc readers ---------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces: split after the closing parenthesis.
    return [raw[raw.index("(") + 1 : raw.rindex(")")], *raw[raw.rindex(")") + 2 :].split()]


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of a process (plus its reaped children's if asked), in seconds; 0 if gone."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    # After comm: state is f[1]; utime, stime, cutime, cstime are fields 14-17 of stat, f[12..15] here.
    ticks = int(f[12]) + int(f[13]) + ((int(f[14]) + int(f[15])) if children else 0)
    return ticks / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def postgres_cpu() -> float:
    """CPU of the whole PostgreSQL server: the postmaster, its live backends and the reaped ones.
    The server is shared with other users of this machine, so this is an upper bound."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (f := _stat_fields(int(entry.name))) and f[0].startswith("postgres"):
            procs[int(entry.name)] = int(f[2])  # ppid
    masters = [pid for pid, ppid in procs.items() if ppid not in procs]
    total = sum(cpu_seconds(pid, children=True) for pid in masters)
    return total + sum(cpu_seconds(pid) for pid, ppid in procs.items() if ppid in masters)


def redis_pid(url: str) -> int | None:
    import redis

    try:
        return int(redis.Redis.from_url(url).info("server")["process_id"])
    except Exception:
        return None


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- the stack -------------------------------------------------------------------------------


@dataclass
class StackConfig:
    mode: str = "production"  # production | embedded
    server: str = "uvicorn"  # uvicorn | daphne
    layer: str = "pubsub"  # pubsub | core (production only)
    ws: str = "wsproto"  # uvicorn's websocket implementation: wsproto | websockets | websockets-sansio
    asgi: int = 2  # ASGI processes (production); the embedded default always has one
    workers: int = 2  # Celery worker processes
    concurrency: int = 300  # runs per worker at once (NOUS_WORKER_RUNS)
    base_port: int = 8710
    db_conn_max_age: int | None = None  # None: the app's default
    redis_url: str = "redis://127.0.0.1:6379/5"
    pg_url: str = "postgres://postgres@127.0.0.1:5432/nous_bench"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.mode == "embedded":
            return f"embedded-{self.server}"
        return f"production-{self.server}-{self.layer}"

    @property
    def stamps_dir(self) -> Path:
        """Where the servers write their delta timestamps (bench/stamps.py reads them)."""
        return VAR / "stamps" / self.name

    @property
    def asgi_count(self) -> int:
        return self.asgi if self.mode == "production" else 1

    def env(self) -> dict[str, str]:
        """The environment of every server process and of the driver's Django."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOUS_", "DJANGO_", "DATABASE_", "REDIS_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="bench.settings_core" if self.mode == "production" and self.layer == "core" else "nous_site.settings",
            DEBUG="0",
            SECRET_KEY="bench-only-secret-key-" + "x" * 40,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            # The hook this benchmark relies on: each flushed delta's t_emit and t_flush, recorded in
            # files the driver reads (chat/runs/benchstamps.py, bench/stamps.py), not in the frames.
            NOUS_BENCH_TIMESTAMPS="1",
            NOUS_BENCH_STAMPS_DIR=str(self.stamps_dir),
            # Limits meant for abuse, not for a load generator that owns every socket.
            NOUS_SENDS_PER_MINUTE="1000000",
            NOUS_MAX_SOCKETS_PER_USER="1000000",
            NOUS_FRAMES_PER_SECOND="1000",
            # The fair queue sized to the workers (every thread may hold a run), as a deployment would
            # set it: the load levels measure streaming, not waiting for a slot.
            NOUS_MAX_ACTIVE_RUNS=str(max(1, self.workers) * self.concurrency),
            NOUS_WORKER_RUNS=str(self.concurrency),
            # The coalescing window stays at 100 ms, so the load levels and the knee measure the
            # pipeline itself (production widens it past NOUS_COALESCE_WIDEN_AT runs per process).
            NOUS_COALESCE_MAX_WIDEN="1",
            NOUS_LOG_LEVEL="WARNING",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(ROOT),
        )
        if self.db_conn_max_age is not None:
            env["DB_CONN_MAX_AGE"] = str(self.db_conn_max_age)
        if self.mode == "production":
            env.update(DATABASE_URL=self.pg_url, REDIS_URL=self.redis_url)
        else:
            env.update(DATABASE_URL=f"sqlite:///{VAR / 'nous_bench.sqlite3'}")
        env.update(self.extra_env)
        return env


def _limits() -> None:  # preexec_fn of every server process (same process group: Ctrl+C stops them too)
    raise_nofile()


class Stack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.env = cfg.env()
        self.asgi: list[subprocess.Popen | None] = [None] * cfg.asgi_count
        self.workers: list[subprocess.Popen | None] = [None] * (cfg.workers if cfg.mode == "production" else 0)
        self.ports = [cfg.base_port + i for i in range(cfg.asgi_count)]
        VAR.mkdir(parents=True, exist_ok=True)
        self.redis_pid = redis_pid(cfg.redis_url)
        self.stamps = StampReader(cfg.stamps_dir)

    # --- database and Redis ---------------------------------------------------------------

    def prepare(self) -> None:
        """A clean database (created and migrated if need be), an empty Redis db, no stamps."""
        self.stamps.reset()
        if self.cfg.mode == "production":
            import psycopg
            import redis

            base, _, name = self.cfg.pg_url.rpartition("/")
            with psycopg.connect(base + "/postgres", autocommit=True) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                    conn.execute(f'CREATE DATABASE "{name}"')
            redis.Redis.from_url(self.cfg.redis_url).flushdb()
        else:
            for suffix in ("", "-wal", "-shm"):
                (VAR / f"nous_bench.sqlite3{suffix}").unlink(missing_ok=True)
        self.manage("migrate", "--noinput", quiet=True)
        if self.cfg.mode == "production":
            import psycopg

            with psycopg.connect(self.cfg.pg_url, autocommit=True) as conn:
                conn.execute("TRUNCATE chat_agentrun, chat_message, chat_conversation, django_session, auth_user CASCADE")

    def manage(self, *args: str, quiet: bool = False) -> str:
        out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return "" if quiet else out.stdout

    # --- processes ------------------------------------------------------------------------

    def _log(self, name: str):
        return open(VAR / f"{self.cfg.name}-{name}.log", "ab")

    def start(self) -> None:
        for i in range(len(self.workers)):
            self.start_worker(i, wait=False)
        for i in range(len(self.asgi)):
            self.start_asgi(i, wait=False)
        deadline = time.monotonic() + 60
        for i in range(len(self.asgi)):
            self._wait_port(i, deadline)
        for i in range(len(self.workers)):
            self._wait_worker(i, deadline)

    def asgi_command(self, port: int) -> list[str]:
        if self.cfg.server == "daphne":
            # Twisted's default listen backlog is 50: too small for thousands of handshakes.
            return [sys.executable, "-m", "daphne", "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=4096", "-v", "0",
                    "--websocket-max-message-size", "65536", "nous_site.asgi:application"]
        return [sys.executable, "-m", "uvicorn", "nous_site.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                "--ws", self.cfg.ws, "--ws-per-message-deflate", "false", "--ws-max-size", "65536", "--lifespan", "off",
                "--backlog", "4096", "--log-level", "warning", "--no-access-log"]

    def start_asgi(self, i: int, wait: bool = True) -> None:
        self.asgi[i] = subprocess.Popen(self.asgi_command(self.ports[i]), cwd=ROOT, env=self.env, stdout=self._log(f"asgi{i}"),
                                        stderr=subprocess.STDOUT, preexec_fn=_limits)
        if wait:
            self._wait_port(i, time.monotonic() + 60)

    def _wait_port(self, i: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.asgi[i].poll() is not None:
                raise RuntimeError(f"ASGI process {i} exited; see {VAR}/{self.cfg.name}-asgi{i}.log")
            if port_open(self.ports[i]):
                return
            time.sleep(0.1)
        raise RuntimeError(f"ASGI process {i} not listening on {self.ports[i]}")

    def start_worker(self, i: int, wait: bool = True) -> None:
        log_path = VAR / f"{self.cfg.name}-worker{i}.log"
        log_path.write_bytes(b"")
        self.workers[i] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "nous_site", "worker", "--pool", "threads", "--concurrency", "4",
             "-Q", "nous-runs", "--hostname", f"bench-w{i}-{time.monotonic_ns()}@%h", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, preexec_fn=_limits,
        )
        if wait:
            self._wait_worker(i, time.monotonic() + 60)

    def _wait_worker(self, i: int, deadline: float) -> None:
        log_path = VAR / f"{self.cfg.name}-worker{i}.log"
        while time.monotonic() < deadline:
            if self.workers[i].poll() is not None:
                raise RuntimeError(f"Celery worker {i} exited; see {log_path}")
            if b"ready." in log_path.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"Celery worker {i} not ready; see {log_path}")

    def kill_worker(self, i: int) -> int:
        """SIGKILL, as when a machine dies; returns the pid it had."""
        proc = self.workers[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return proc.pid

    def restart_asgi(self, i: int, grace: float = 3.0) -> None:
        """SIGTERM (a deploy), SIGKILL after `grace` seconds, then the same command on the same port."""
        proc = self.asgi[i]
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.start_asgi(i)

    def stop(self) -> None:
        procs = [p for p in (*self.asgi, *self.workers) if p is not None and p.poll() is None]
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # --- measurements ---------------------------------------------------------------------

    def pids(self) -> dict[str, list[int]]:
        out = {"asgi": [p.pid for p in self.asgi if p], "worker": [p.pid for p in self.workers if p]}
        if self.cfg.mode == "production" and self.redis_pid:
            out["redis"] = [self.redis_pid]
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by role (ASGI, worker, Redis, PostgreSQL)."""
        out = {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in self.pids().items()}
        out["postgres"] = postgres_cpu() if self.cfg.mode == "production" else 0.0
        return out

    def url(self, i: int) -> str:
        return f"ws://127.0.0.1:{self.ports[i % len(self.ports)]}"
