"""Real services for the production-path tests: Redis, PostgreSQL and a Celery worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def redis_available(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class CeleryWorker:
    """A real `celery worker` subprocess on the test database, with the production pool settings."""

    def __init__(self, database_name: str, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.database_name = database_name
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        from django.conf import settings

        db = settings.DATABASES["default"]
        env = dict(os.environ)
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{self.database_name}"
        env["NOUS_CHECKPOINT_SECS"] = str(settings.NOUS_CHECKPOINT_SECS)
        env.update(self.extra_env)
        log = open(self.log_path, "ab")
        hostname = f"test-worker-{os.getpid()}-{time.monotonic_ns()}@%h"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "nous_site", "worker", "--pool", "threads", "--concurrency", "2",
             "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "--hostname", hostname, "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"celery worker exited; see {self.log_path}")
            if b"ready." in self.log_path.read_bytes():
                self.log_path.write_bytes(b"")  # the next start waits for its own "ready."
                return
            time.sleep(0.1)
        raise RuntimeError(f"celery worker not ready after {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when a machine dies."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
