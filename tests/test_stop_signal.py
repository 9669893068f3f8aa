"""A stop reaches the run's executor at once, also when it comes right after the claim.

The executor watches for its run's stop before the claim (`stop_signal().watch`): a stop is only
signalled once the claim made the run running, so with the process's listener subscribed nothing
needs to ask Redis for an earlier request. Before the listener is subscribed it still asks.
"""

import asyncio
import uuid

import pytest

from chat.models import AgentRun, Conversation
from chat.runs import executor, lifecycle, queueing
from chat.runs.dispatch import stop_run
from chat.runs.stop import RedisStopSignal, stop_signal
from tests.conftest import PRODUCTION

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def listeners_cancelled():
    """The stop listeners a test started end with it (they would outlive its event loop)."""
    yield
    loop = asyncio.get_running_loop()
    getattr(stop_signal(), "listening", {}).pop(loop, None)
    listeners = [t for t in asyncio.all_tasks(loop) if t.get_name() == "nous-stop-listener"]
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)


class NoCheckpoints:
    """A heartbeat that never checks the database: only the signal can stop the run."""

    runs: dict = {}

    def register(self, run) -> None:
        pass

    def unregister(self, run_id) -> None:
        pass


class NoEarlierStopRead:
    """The Redis client, refusing to be asked whether a stop came before the wait."""

    def __init__(self, client) -> None:
        self.client = client

    def __getattr__(self, name):
        return getattr(self.client, name)

    async def exists(self, *keys):
        raise AssertionError(f"asked Redis for an earlier stop: {keys}")


async def test_a_stop_right_after_the_claim_ends_the_run_at_once(alice, conversation, monkeypatch):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=5,words=100")  # 20 s of answer
    await conversation.arefresh_from_db()
    signal = stop_signal()
    if PRODUCTION:
        await signal._subscribed()  # this process's listener, as after a worker's first run
        from chat.runs import stop

        client = stop.redis_client()
        monkeypatch.setattr(stop, "redis_client", lambda: NoEarlierStopRead(client))
    monkeypatch.setattr(executor, "heartbeat", NoCheckpoints)
    claim = lifecycle.claim

    async def claim_then_stop(run_id, *args):
        claimed = await claim(run_id, *args)
        assert await stop_run(run_id, "alice")  # the page's run.stop, before the first word
        return claimed

    monkeypatch.setattr(lifecycle, "claim", claim_then_stop)
    sent = await queueing.store_chat_send(conversation, alice, "stop me at once", f"c-{uuid.uuid4().hex}")
    await asyncio.wait_for(executor.execute_run(str(sent.run.id)), 5)

    run = await AgentRun.objects.select_related("message").aget(id=sent.run.id)
    assert run.status == "stopped" and run.stopped_by == "alice"
    assert len(run.message.content.split()) < 100  # not the whole answer
    assert str(sent.run.id) not in signal.events  # forgotten once ended


async def test_a_second_execution_that_finds_the_run_taken_leaves_the_first_ones_stop_working(alice, conversation, monkeypatch):
    # A run handed over twice (allowed: only the first claim executes) must still stop at once.
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=5,words=100")
    await conversation.arefresh_from_db()
    if PRODUCTION:
        await stop_signal()._subscribed()
    monkeypatch.setattr(executor, "heartbeat", NoCheckpoints)
    sent = await queueing.store_chat_send(conversation, alice, "twice", f"c-{uuid.uuid4().hex}")
    run_id = str(sent.run.id)
    first = asyncio.create_task(executor.execute_run(run_id))
    while (await AgentRun.objects.aget(id=run_id)).status != "running":
        await asyncio.sleep(0.01)
    await asyncio.wait_for(executor.execute_run(run_id), 5)  # finds it taken: nothing to do
    assert await stop_run(run_id, "alice")
    await asyncio.wait_for(first, 5)
    assert (await AgentRun.objects.aget(id=run_id)).status == "stopped"
    assert run_id not in stop_signal().events


@pytest.mark.skipif(not PRODUCTION, reason="the Redis stop signal needs REDIS_URL")
async def test_before_the_listener_is_subscribed_a_run_still_sees_a_stop_requested_earlier():
    signal = RedisStopSignal()  # a new process: no listener yet
    run_id = str(uuid.uuid4())
    await signal.request(run_id)  # its message reaches no one
    watch = signal.watch(run_id)
    assert watch.ask
    await asyncio.wait_for(signal.wait(watch), 5)  # the key says it was stopped
    signal.forget(watch)


@pytest.mark.skipif(not PRODUCTION, reason="the Redis stop signal needs REDIS_URL")
async def test_a_run_watched_with_the_listener_subscribed_is_woken_by_the_message():
    signal = RedisStopSignal()
    await signal._subscribed()
    run_id = str(uuid.uuid4())
    watch = signal.watch(run_id)
    assert not watch.ask
    waiting = asyncio.create_task(signal.wait(watch))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await RedisStopSignal().request(run_id)  # another process's run.stop
    await asyncio.wait_for(waiting, 5)
    signal.forget(watch)
    assert run_id not in signal.events
