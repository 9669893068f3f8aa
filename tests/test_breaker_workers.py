"""The breaker shared by processes (production mode): what one worker opens the other obeys, and every
process's /metrics reports the deployment's breaker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from agents.breaker import CircuitBreaker
from agents.errors import ProviderError
from chat.models import Conversation
from chat.runs.breaker_store import RedisBreakerStore, shared_breaker_states
from tests.chat_helpers import send_frame
from tests.conftest import PRODUCTION
from tests.loopback_llm import http_error, llm_server, text  # noqa: F401  (llm_server is a fixture)
from tests.services import CeleryWorker
from tests.test_metrics import sample

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs"),
              pytest.mark.skipif(not PRODUCTION, reason="needs Redis and worker processes (production mode)")]

COOLDOWN_SECS = 12  # long enough to start the second worker while the breaker is still open


@pytest.fixture
def two_workers(request, runs, llm_server, monkeypatch, tmp_path):  # noqa: F811
    """Two worker processes pointed at the loopback LLM, threshold 3, cool-down COOLDOWN_SECS; the session's
    worker is stopped meanwhile (its `runs` fixture restarts it for the next test)."""
    runs.stop()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-loopback")
    monkeypatch.setenv("NOUS_BREAKER_FAILURES", "3")
    monkeypatch.setenv("NOUS_BREAKER_COOLDOWN_SECS", str(COOLDOWN_SECS))
    database = settings.DATABASES["default"]["NAME"]
    workers = [CeleryWorker(database, tmp_path / "worker-1.log"), CeleryWorker(database, tmp_path / "worker-2.log")]
    yield workers
    for worker in workers:
        worker.stop()


def anthropic_state() -> dict:
    return next((s for s in shared_breaker_states(settings.REDIS_URL) if s["name"] == "anthropic"), {"state": "closed"})


async def test_failures_in_one_worker_open_the_breaker_for_the_other(alice, sockets, two_workers, llm_server, settings):  # noqa: F811
    first, second = two_workers
    settings.NOUS_METRICS_ALLOW = ["127.0.0.0/8"]
    scrape = sync_to_async(lambda: Client().get("/metrics").content.decode())
    conversation = await Conversation.objects.acreate(owner=alice, model="anthropic:claude-loopback")
    socket = await sockets.open(alice, conversation)
    llm_server.script(*[http_error(503, headers={"retry-after": "0"})] * 3)

    await sync_to_async(first.start)()
    await socket.send(send_frame("first"))
    failed, _ = await socket.recv_until("run.failed", timeout=30)
    assert failed["error"]["code"] != "provider_unavailable" and len(llm_server.requests) == 3
    assert anthropic_state()["state"] == "open"  # three 503s in a row, deployment-wide
    await sync_to_async(second.start)()
    await sync_to_async(first.stop)()  # from now on the second worker executes every run

    await socket.send(send_frame("second"))
    failed, _ = await socket.recv_until("run.failed", timeout=30)
    error = failed["error"]
    assert error["code"] == "provider_unavailable" and len(llm_server.requests) == 3  # refused without a request
    assert error["message"] == "The anthropic provider is unavailable"
    assert 0 < datetime.fromisoformat(error["retry_at"]).timestamp() - time.time() <= COOLDOWN_SECS
    metrics = await scrape()
    assert sample(metrics, 'nous_breaker_open{provider="anthropic"}') == 1
    assert sample(metrics, 'nous_breaker_failures{provider="anthropic"}') == 3

    deadline = time.monotonic() + COOLDOWN_SECS + 10
    while anthropic_state()["state"] != "half_open":  # the cool-down, on Redis's clock
        assert time.monotonic() < deadline, anthropic_state()
        await asyncio.sleep(0.1)
    llm_server.script(text(["Back ", "again"]))
    await socket.send(send_frame("third"))
    completed, _ = await socket.recv_until("run.completed", timeout=30)
    assert completed["message"]["content"] == "Back again" and len(llm_server.requests) == 4  # the one trial
    assert anthropic_state() == {"name": "anthropic", "state": "closed", "failures": 0, "retry_in": 0.0}
    assert sample(await scrape(), 'nous_breaker_open{provider="anthropic"}') == 0


SCRAPE = textwrap.dedent("""
    import django; django.setup()
    from django.test import RequestFactory
    from django.test.utils import override_settings
    from nous_site.metrics import metrics_view
    with override_settings(NOUS_METRICS_ALLOW=["127.0.0.0/8"]):
        print(metrics_view(RequestFactory().get("/metrics")).content.decode())
""")


def test_a_process_that_saw_it_open_does_not_outvote_the_scrape(tmp_path):
    """Several processes of a machine write to PROMETHEUS_MULTIPROC_DIR; the scraping one reads the shared
    state, and its reading wins over an older one of another process."""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="nous_site.settings")

    def scrape() -> str:
        return subprocess.run([sys.executable, "-c", SCRAPE], env=env, check=True, capture_output=True, text=True).stdout

    async def transition(failed: bool) -> None:
        store = RedisBreakerStore(settings.REDIS_URL)
        breaker = CircuitBreaker("anthropic", 1, 30, store)
        if failed:
            await breaker.record_failure(ProviderError("overloaded", "529", retryable=True))
        else:
            await breaker.record_success()
        await store.aclose()

    asyncio.run(transition(failed=True))
    opened = scrape()  # this process saw it open, and its file says so
    assert sample(opened, 'nous_breaker_open{provider="anthropic"}') == 1
    assert sample(opened, 'nous_breaker_failures{provider="anthropic"}') == 1
    asyncio.run(transition(failed=False))  # closed by a success in some other process
    closed = scrape()
    assert sample(closed, 'nous_breaker_open{provider="anthropic"}') == 0
    assert sample(closed, 'nous_breaker_failures{provider="anthropic"}') == 0
