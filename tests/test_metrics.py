"""/metrics: protected outside DEBUG, counts what a run did, and adds up several processes."""

import os
import subprocess
import sys
import textwrap

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from tests.chat_helpers import send_frame
from tests.conftest import PRODUCTION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


def sample(text: str, name: str) -> float:
    """The value of one sample line (`name` with its labels) in a scrape, 0 if absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_it_is_not_there_without_a_token_or_an_allowed_network(settings):
    settings.DEBUG, settings.NOUS_METRICS_TOKEN, settings.NOUS_METRICS_ALLOW = False, "s3cret", []
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
    settings.NOUS_METRICS_TOKEN, settings.NOUS_METRICS_ALLOW = "", ["127.0.0.0/8"]
    assert Client().get("/metrics").status_code == 200  # the test client comes from 127.0.0.1


async def test_a_run_shows_in_the_metrics(alice, conversation, sockets, settings):
    settings.NOUS_METRICS_ALLOW = ["127.0.0.0/8"]
    scrape = sync_to_async(lambda: Client().get("/metrics").content.decode())
    before = await scrape()
    socket = await sockets.open(alice, conversation)
    during = await scrape()
    assert sample(during, "nous_open_sockets") == sample(before, "nous_open_sockets") + 1
    await socket.send(send_frame("count me"))
    completed, frames = await socket.recv_until("run.completed")
    after = await scrape()
    assert "nous_runs_queued" in after
    if not PRODUCTION:  # in production the run's numbers are the worker's (added up per machine, below)
        runs = 'nous_runs_total{status="completed"}'
        assert sample(after, runs) == sample(before, runs) + 1
        deltas = sum(f["type"] == "run.delta" for f in frames)
        assert sample(after, "nous_deltas_published_total") == sample(before, "nous_deltas_published_total") + deltas
        assert sample(after, 'nous_time_to_first_token_seconds_count{provider="test"}') >= 1


def test_several_processes_are_added_up(tmp_path, settings):
    """Each process of a machine writes to PROMETHEUS_MULTIPROC_DIR; one scrape sums them."""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="nous_site.settings")
    count = textwrap.dedent("""
        from nous_site.metrics import RUNS
        RUNS.labels("completed").inc(3)
    """)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True)
    scrape = textwrap.dedent("""
        import django; django.setup()
        from django.test import RequestFactory
        from django.test.utils import override_settings
        from nous_site.metrics import metrics_view
        with override_settings(NOUS_METRICS_ALLOW=["127.0.0.0/8"]):
            print(metrics_view(RequestFactory().get("/metrics")).content.decode())
    """)
    out = subprocess.run([sys.executable, "-c", scrape], env=env, check=True, capture_output=True, text=True).stdout
    assert sample(out, 'nous_runs_total{status="completed"}') == 6
