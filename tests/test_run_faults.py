"""Faults lose nothing: a dead worker, a stale run, a race between ends."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from chat.models import AgentRun, Conversation, Message
from chat.runs import lifecycle
from chat.runs.watchdog import end_stale_runs
from tests.chat_helpers import deltas_text, messages_of, run_of, send_frame
from tests.conftest import PRODUCTION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


async def wait_for(condition, timeout: float = 10.0, what: str = "the condition") -> None:
    """Poll the async `condition` until it holds; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what} did not happen within {timeout} s"
        await asyncio.sleep(0.05)


def waiting_hand_overs_of(run_id: str) -> int:
    """How many times the run waits in the hand-over list for a worker to take it (chat.runs.handover)."""
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True).lrange(settings.NOUS_RUN_HANDOVER_KEY, 0, -1).count(run_id)


@pytest.mark.skipif(not PRODUCTION, reason="needs REDIS_URL: in the embedded default runs live in the ASGI process")
async def test_a_worker_killed_mid_run_ends_failed_with_the_text_kept(alice, conversation, sockets, runs):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=30,words=300")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("die halfway"))
    for _ in range(4):
        await socket.recv_until("run.delta")
    await sync_to_async(runs.kill)()
    run_id = next(f["run_id"] for f in socket.frames if f["type"] == "run.queued")
    assert (await run_of(run_id)).status == "running"  # nobody ended it yet
    assert await end_stale_runs() == []  # its heartbeat is fresh
    await AgentRun.objects.filter(id=run_id).aupdate(heartbeat_at=timezone.now() - timedelta(hours=1))

    assert await end_stale_runs() == [run_id]
    failed, before = await socket.recv_until("run.failed")
    received = deltas_text(socket.frames)
    assert failed["error"]["code"] == "timeout" and failed["partial"]["content"] == received
    run = await run_of(run_id)
    assert run.status == "failed" and run.message.content == received and run.message.status == "failed"
    assert await end_stale_runs() == []  # a second sweep finds nothing

    # Never run twice: the run is not waiting to be taken again, and a new worker that has
    # completed another run since it started has not touched the failed one.
    assert await sync_to_async(waiting_hand_overs_of)(run_id) == 0
    messages_before = await messages_of(conversation)
    await sync_to_async(runs.start)()
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=0,words=5")
    await socket.send(send_frame("again, please"))
    completed, _ = await socket.recv_until("run.completed", timeout=20)
    assert completed["run_id"] != run_id
    after = await run_of(run_id)
    assert (after.status, after.started_at, after.heartbeat_at, after.worker, after.finished_at, after.last_seq) == (
        run.status, run.started_at, run.heartbeat_at, run.worker, run.finished_at, run.last_seq)
    assert (after.message.content, after.message.status) == (received, "failed")
    messages_after = await messages_of(conversation)
    assert [(m.id, m.content, m.status) for m in messages_after[: len(messages_before)]] == [
        (m.id, m.content, m.status) for m in messages_before]
    assert [m.role for m in messages_after[len(messages_before):]] == ["user", "assistant"]


async def test_the_watchdog_leaves_live_runs_alone(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=30,words=300")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("still alive"))
    delta, _ = await socket.recv_until("run.delta")
    run = AgentRun.objects.filter(id=delta["run_id"])
    long_ago = timezone.now() - timedelta(hours=1)
    await run.aupdate(heartbeat_at=long_ago)
    await wait_for(lambda: run.filter(heartbeat_at__gt=long_ago).aexists(), what="a heartbeat")
    assert await end_stale_runs(stale_secs=60) == []
    assert (await run_of(delta["run_id"])).status == "running"
    await socket.send({"type": "run.stop"})
    await socket.recv_until("run.stopped")


async def test_cleanup_agents_fails_a_run_nobody_picked_up(alice, conversation, sockets):
    message = await Message.objects.acreate(conversation=conversation, role="user", content="lost", author=alice)
    run = await AgentRun.objects.acreate(conversation=conversation, trigger_message=message, model="test:")
    socket = await sockets.open(alice, conversation)
    assert socket.ready["active_run"]["run_id"] == str(run.id)
    await sync_to_async(call_command)("cleanup_agents", "--queued-secs", "60")
    assert (await run_of(str(run.id))).status == "queued"  # queued a moment ago: not lost yet
    await AgentRun.objects.filter(id=run.id).aupdate(created_at=timezone.now() - timedelta(hours=1))
    await sync_to_async(call_command)("cleanup_agents", "--queued-secs", "60", "--dry-run")
    assert (await run_of(str(run.id))).status == "queued"
    await sync_to_async(call_command)("cleanup_agents", "--queued-secs", "60")
    failed, _ = await socket.recv_until("run.failed")
    assert failed["run_id"] == str(run.id)
    assert (await run_of(str(run.id))).status == "failed"


async def test_a_run_ends_exactly_once(alice, conversation):
    message = await Message.objects.acreate(conversation=conversation, role="user", content="race", author=alice)
    run = await AgentRun.objects.acreate(conversation=conversation, trigger_message=message, model="test:")
    claimed = await sync_to_async(lifecycle.claim_run)(str(run.id))
    assert claimed is not None
    assert await sync_to_async(lifecycle.claim_run)(str(run.id)) is None  # never run twice
    first = await sync_to_async(lifecycle.finish_run)(str(run.id), "stopped", "partial", 1)
    second = await sync_to_async(lifecycle.finish_run)(str(run.id), "failed", "other", 2, None, {"code": "internal", "message": "x"})
    assert first is not None and second is None
    run = await run_of(str(run.id))
    assert run.status == "stopped" and run.message.content == "partial"


async def test_a_stop_whose_signal_is_lost_still_stops_at_the_next_heartbeat(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=30,words=300")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("stop me quietly"))
    delta, _ = await socket.recv_until("run.delta")
    # Only the database flag, as if the signal had been dropped on the way.
    await AgentRun.objects.filter(id=delta["run_id"]).aupdate(stop_requested=True)
    stopped, _ = await socket.recv_until("run.stopped", timeout=5)
    assert stopped["message"]["content"] == deltas_text(socket.frames)
    assert (await run_of(delta["run_id"])).status == "stopped"


async def test_the_partial_text_is_checkpointed_while_streaming(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=30,words=300")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("checkpoint me"))
    delta, _ = await socket.recv_until("run.delta")
    message = Message.objects.filter(run_id=delta["run_id"], role="assistant")
    await wait_for(lambda: message.exclude(content="").aexists(), what="a checkpoint of the text")
    run = await run_of(delta["run_id"])
    assert run.status == "running" and run.message.status == "streaming"
    checkpointed = run.message.content
    await socket.send({"type": "run.stop"})
    await socket.recv_until("run.stopped")
    # What a restart would find: several seconds' worth of the text the page was streamed.
    assert len(checkpointed.split()) > 30 and deltas_text(socket.frames).startswith(checkpointed)
