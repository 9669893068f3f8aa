"""A real uvicorn process serving Nous Chat on the test database, for the browser test.

The server is another process, so it sees only committed data: use it from tests marked
`django_db(transaction=True)`. In production mode (REDIS_URL set) it inherits REDIS_URL, so its
runs go to the Celery worker of the `runs` fixture; in the embedded default it runs them itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
SECRET = "browser-test-secret-key-not-for-production"


@dataclass
class LiveServer:
    url: str
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url_of_test_db() -> str:
    """DATABASE_URL of the test database (its NAME is the test one once django_db_setup ran)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def uvicorn_bin() -> str:
    beside = Path(sys.executable).with_name("uvicorn")
    return str(beside if beside.exists() else ROOT / ".venv" / "bin" / "uvicorn")


def server_command(kind: str, port: int) -> list[str]:
    """uvicorn as `make run` serves, or Daphne (the mission's ASGI server) with its defaults."""
    bin_dir = Path(uvicorn_bin()).parent
    if kind == "daphne":
        return [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port), "nous_site.asgi:application"]
    return [uvicorn_bin(), "nous_site.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--ws", "wsproto", "--ws-per-message-deflate", "false", "--lifespan", "off", "--log-level", "warning"]


def start_server(log_path: Path, timeout: float = 30.0, extra_env: dict[str, str] | None = None,
                 kind: str = "uvicorn") -> LiveServer:
    port = free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_of_test_db(),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        NOUS_DEV_SECRET_KEY=SECRET,
        PYTHONUNBUFFERED="1",
        **(extra_env or {}),
    )
    log = open(log_path, "ab")
    process = subprocess.Popen(
        server_command(kind, port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    server = LiveServer(f"http://127.0.0.1:{port}", log_path, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/accounts/login/", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"{kind} did not answer within {timeout} s:\n{server.log_tail()}")
        time.sleep(0.1)


def stop_server(server: LiveServer) -> None:
    process = server.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="module")
def live_uvicorn(django_db_setup, tmp_path_factory):
    """The running server for the module's tests: `.url`, `.log_tail()`. Killed afterwards."""
    server = start_server(tmp_path_factory.mktemp("uvicorn") / "uvicorn.log")
    yield server
    stop_server(server)
