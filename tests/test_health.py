"""/healthz answers while the process does; /readyz names what is down and answers 503."""

import os
import socket
import time
from pathlib import Path

import pytest
from django.db import OperationalError
from django.test import override_settings

from nous_site import health
from tests.conftest import PRODUCTION, skip_or_fail


def closed_port_url(db: int = 6) -> str:
    """A Redis URL on a loopback port nothing listens on (the machine's own Redis is left alone)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/{db}"


def redis_settings(url: str) -> dict:
    """The production mode's channel layer and broker, pointed at `url`."""
    return {
        "CHANNEL_LAYERS": {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                                       "CONFIG": {"hosts": [{"address": url, "socket_timeout": None}] * 3}}},
        "CELERY_BROKER_URL": url,
    }


def test_healthz_answers_without_touching_the_database(client):
    # No `db` fixture: a query here would fail the test. Liveness must not depend on the database.
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert "no-cache" in r["Cache-Control"]


def test_healthz_refuses_a_post(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_readyz_reports_each_part(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["checks"]) == {"database", "channel_layer", "broker"}
    assert body["checks"]["database"]["status"] == "ok"
    if PRODUCTION:
        assert body["checks"]["channel_layer"] == {"status": "ok", "backend": "redis", "ms": body["checks"]["channel_layer"]["ms"]}
        assert body["checks"]["broker"]["status"] == "ok"
    else:
        # The embedded default: the layer is in memory and runs need no broker.
        assert body["checks"]["channel_layer"]["backend"] == "in-memory"
        assert body["checks"]["broker"]["status"] == "not used"


@pytest.mark.django_db
def test_readyz_is_503_naming_the_database_when_it_is_unreachable(client, monkeypatch):
    def unreachable():
        raise OperationalError("connection refused")

    monkeypatch.setattr(health.connection, "cursor", unreachable)
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "down" and body["down"] == ["database"]
    assert body["checks"]["database"] == {"status": "down", "error": "OperationalError", "ms": body["checks"]["database"]["ms"]}
    assert "connection refused" not in r.content.decode()  # the reason is logged, not shown


def get_readyz_with_redis_at(client, url: str):
    with override_settings(REDIS_URL=url, **redis_settings(url)):
        return client.get("/readyz")


@pytest.mark.django_db
def test_readyz_is_503_naming_the_redis_parts_when_redis_is_unreachable(client):
    # Both modes: the settings of the production mode pointed at a port where no Redis listens.
    started = time.monotonic()
    r = get_readyz_with_redis_at(client, closed_port_url())
    assert time.monotonic() - started < 5  # refused at once; an unroutable host costs the 1 s timeouts
    assert r.status_code == 503
    body = r.json()
    assert body["down"] == ["channel_layer", "broker"]
    assert body["checks"]["channel_layer"]["status"] == "down" and body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.skipif(not PRODUCTION, reason="needs REDIS_URL: the real Redis")
@pytest.mark.django_db
def test_readyz_is_200_again_once_redis_answers(client, settings):
    from tests.services import redis_available

    if not redis_available(settings.REDIS_URL):
        skip_or_fail(f"Redis is not reachable at {settings.REDIS_URL}")
    assert get_readyz_with_redis_at(client, closed_port_url()).status_code == 503
    r = get_readyz_with_redis_at(client, settings.REDIS_URL)
    assert r.status_code == 200, r.json()
    assert r.json()["down"] == []


def test_readyz_does_not_hang_on_a_redis_that_never_answers(monkeypatch):
    # A listening socket that never replies: the ping gives up after REDIS_TIMEOUT_SECS.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"redis://127.0.0.1:{server.getsockname()[1]}/6"
        monkeypatch.setattr(health, "REDIS_TIMEOUT_SECS", 0.3)
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            health.ping_redis(url)
        assert time.monotonic() - started < 2
    assert "Timeout" in type(raised.value).__name__


SOCKET_PASSWORD = "s3cr@t"


@pytest.fixture
def redis_on_a_socket(tmp_path):
    """A Redis server of its own, listening on a Unix socket only, with a password."""
    import shutil
    import subprocess

    if not shutil.which("redis-server"):
        skip_or_fail("redis-server is not installed")
    path = tmp_path / "redis.sock"
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no",
                               "--requirepass", SOCKET_PASSWORD],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield path
    server.terminate()
    server.wait(10)


def test_redis_on_a_unix_socket_serves_the_broker_too(redis_on_a_socket):
    # REDIS_URL may name a socket (one machine: no TCP stack on each message). Celery's kombu spells
    # it differently; a worker given redis-py's spelling refused to start ("No such transport: unix").
    import subprocess
    import sys

    import redis

    url = f"unix://{redis_on_a_socket}?db=3&password=s3cr%40t"  # redis-py's spelling of the credentials too
    script = ("import django; django.setup()\n"
              "from nous_site.celery import app; from nous_site import health\n"
              "with app.connection_for_write() as conn:\n"
              "    conn.ensure_connection(max_retries=1); conn.default_channel.client.set('reached', 'by celery')\n"
              "print(health.check_broker()['status'], health.check_channel_layer()['status'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOUS_", "DATABASE_", "REDIS_"))}
    r = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                       timeout=60, env={**env, "DJANGO_SETTINGS_MODULE": "nous_site.settings", "REDIS_URL": url,
                                        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "ok"]  # /readyz's broker and channel-layer checks
    assert redis.Redis(unix_socket_path=str(redis_on_a_socket), db=3, password=SOCKET_PASSWORD).get("reached") == b"by celery"
