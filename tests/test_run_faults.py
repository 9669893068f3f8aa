"""Faults lose nothing: a dead worker, a stale run, a race between ends."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from chat.models import AgentRun, Conversation, Message
from chat.runs import lifecycle
from chat.runs.watchdog import end_stale_runs
from tests.chat_helpers import deltas_text, run_of, send_frame
from tests.conftest import PRODUCTION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


@pytest.mark.skipif(not PRODUCTION, reason="needs REDIS_URL: in the embedded default runs live in the ASGI process")
async def test_a_worker_killed_mid_run_ends_failed_with_the_text_kept(alice, conversation, sockets, runs):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=30,words=300")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("die halfway"))
    for _ in range(4):
        await socket.recv_until("run.delta")
    await sync_to_async(runs.kill)()
    await asyncio.sleep(2.5)  # the heartbeat goes stale
    run_id = next(f["run_id"] for f in socket.frames if f["type"] == "run.queued")
    assert (await run_of(run_id)).status == "running"  # nobody ended it yet

    assert await end_stale_runs(stale_secs=2) == [run_id]
    failed, before = await socket.recv_until("run.failed")
    received = deltas_text(socket.frames)
    assert failed["error"]["code"] == "timeout" and failed["partial"]["content"] == received
    run = await run_of(run_id)
    assert run.status == "failed" and run.message.content == received and run.message.status == "failed"
    # A second sweep finds nothing; the run is not re-executed when a worker comes back.
    assert await end_stale_runs(stale_secs=2) == []
    await sync_to_async(runs.start)()
    await asyncio.sleep(1)
    assert (await run_of(run_id)).status == "failed"
    await socket.send(send_frame("again, please"))
    await socket.recv_until("run.completed", timeout=20)


async def test_the_watchdog_leaves_live_runs_alone(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=40,words=80")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("still alive"))
    await socket.recv_until("run.delta")
    await asyncio.sleep(1.5)
    assert await end_stale_runs(stale_secs=5) == []
    completed, _ = await socket.recv_until("run.completed")
    assert (await run_of(completed["run_id"])).status == "completed"


async def test_cleanup_agents_fails_a_run_nobody_picked_up(alice, conversation, sockets):
    message = await Message.objects.acreate(conversation=conversation, role="user", content="lost", author=alice)
    run = await AgentRun.objects.acreate(conversation=conversation, trigger_message=message, model="test:")
    socket = await sockets.open(alice, conversation)
    assert socket.ready["active_run"]["run_id"] == str(run.id)
    await asyncio.sleep(0.2)
    await sync_to_async(call_command)("cleanup_agents", "--queued-secs", "0.1", "--dry-run")
    assert (await run_of(str(run.id))).status == "queued"
    await sync_to_async(call_command)("cleanup_agents", "--queued-secs", "0.1")
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


async def test_the_partial_text_is_checkpointed_while_streaming(alice, conversation, sockets, settings):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=30,words=300")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("checkpoint me"))
    delta, _ = await socket.recv_until("run.delta")
    await asyncio.sleep(settings.NOUS_CHECKPOINT_TEXT_SECS + settings.NOUS_CHECKPOINT_SECS + 0.5)
    run = await run_of(delta["run_id"])
    assert run.status == "running" and run.message.status == "streaming"
    checkpointed = run.message.content
    await socket.send({"type": "run.stop"})
    await socket.recv_until("run.stopped")
    # What a restart would find: several seconds' worth of the text the page was streamed.
    assert len(checkpointed.split()) > 30 and deltas_text(socket.frames).startswith(checkpointed)
