"""Production: runs go to Celery worker processes through the hand-over list (chat.runs.handover).

A worker takes at most NOUS_WORKER_RUNS at once (the rest wait in the list for room), and a warm
shutdown stops taking runs but lets the ones it has finish; the next worker takes what waits.
"""

import asyncio
import os
import signal

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from chat.models import Conversation
from tests.chat_helpers import deltas_text, run_of, send_frame
from tests.conftest import PRODUCTION

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("runs"),
    pytest.mark.skipif(not PRODUCTION, reason="needs REDIS_URL: in the embedded default runs are tasks of the ASGI process"),
]

STREAMING = "test:tps=20,words=30"  # 1.5 s


def waiting_in_handover() -> list[str]:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True).lrange(settings.NOUS_RUN_HANDOVER_KEY, 0, -1)


async def wait_for(condition, timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what} did not happen within {timeout} s"
        await asyncio.sleep(0.05)


@pytest.fixture
def one_run_worker(celery_worker):
    """The session's worker restarted to execute one run at a time, and restored after the test."""
    saved = os.environ.get("NOUS_WORKER_RUNS")
    celery_worker.stop()
    os.environ["NOUS_WORKER_RUNS"] = "1"
    celery_worker.start()
    yield celery_worker
    celery_worker.stop()
    if saved is None:
        os.environ.pop("NOUS_WORKER_RUNS")
    else:
        os.environ["NOUS_WORKER_RUNS"] = saved
    celery_worker.start()


async def test_a_worker_with_no_room_leaves_the_next_run_in_the_list_until_one_ends(alice, bob, sockets, one_run_worker):
    mine = await sockets.open(alice, await Conversation.objects.acreate(owner=alice, model=STREAMING))
    theirs = await sockets.open(bob, await Conversation.objects.acreate(owner=bob, model=STREAMING))
    await mine.send(send_frame("first"))
    started, _ = await mine.recv_until("run.started")
    await theirs.send(send_frame("second"))
    queued, _ = await theirs.recv_until("run.queued")
    assert queued["position"] == 0  # a slot of the fair queue is free: only the worker has no room
    await wait_for(lambda: sync_to_async(lambda: waiting_in_handover() == [queued["run_id"]])(), what="the run in the list")

    completed, _ = await mine.recv_until("run.completed")
    await theirs.recv_until("run.completed")
    assert (await run_of(queued["run_id"])).started_at >= (await run_of(started["run_id"])).finished_at
    assert waiting_in_handover() == []


async def test_a_warm_shutdown_finishes_its_runs_and_leaves_new_ones_to_the_next_worker(alice, bob, sockets, celery_worker):
    mine = await sockets.open(alice, await Conversation.objects.acreate(owner=alice, model=STREAMING))
    await mine.send(send_frame("finish me"))
    await mine.recv_until("run.delta")
    celery_worker.process.send_signal(signal.SIGTERM)  # what a deploy or `systemctl stop` sends
    await wait_for(lambda: sync_to_async(lambda: b"Warm shutdown" in celery_worker.log_path.read_bytes())(),
                   what="the worker's warm shutdown")

    theirs = await sockets.open(bob, await Conversation.objects.acreate(owner=bob, model="test:tps=0,words=5"))
    await theirs.send(send_frame("sent during the shutdown"))
    queued, _ = await theirs.recv_until("run.queued")
    completed, _ = await mine.recv_until("run.completed")
    assert completed["usage"]["output_tokens"] == 30 and len(deltas_text(mine.frames).split()) == 30
    await sync_to_async(celery_worker.process.wait)(10)  # it exits once its run has ended
    assert (await run_of(queued["run_id"])).status == "queued"  # not taken by the worker going away
    assert waiting_in_handover() == [queued["run_id"]]

    await sync_to_async(celery_worker.start)()
    await theirs.recv_until("run.completed")
    assert (await run_of(queued["run_id"])).status == "completed"
