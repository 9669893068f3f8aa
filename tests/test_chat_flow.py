"""The private chat through the real ASGI stack: send, stream, stop, resume, fail, settings.

Runs in both modes: in-process runs (embedded default) and a real Celery worker (production).
"""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from chat.models import AgentRun, Conversation, Message
from chat.runs import lifecycle, queueing
from chat.runs.dispatch import stop_run
from tests.chat_helpers import deltas_text, messages_of, run_of, send_frame
from tests.conftest import PRODUCTION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


async def test_it_streams_an_answer_and_stores_it(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    assert socket.ready["messages"] == [] and socket.ready["active_run"] is None
    await socket.send(send_frame("Hello there, agent", "c-1"))
    created = await socket.recv()
    assert created["type"] == "message.created"
    assert created["message"]["client_id"] == "c-1" and created["message"]["content"] == "Hello there, agent"
    completed, before = await socket.recv_until("run.completed")
    types = [f["type"] for f in before]
    assert types[0] == "run.queued" and "run.started" in types
    text = deltas_text(before)
    # What the page shows (the deltas) is exactly what is stored.
    assert completed["message"]["content"] == text and text.endswith(".")
    assert completed["usage"]["output_tokens"] == 30
    run = await run_of(completed["run_id"])
    assert run.status == "completed" and run.message.content == text and run.message.status == "complete"
    conv = await Conversation.objects.aget(id=conversation.id)
    assert conv.title == "Hello there, agent" and conv.output_tokens == 30


async def test_deltas_are_coalesced(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("coalesce please"))
    completed, before = await socket.recv_until("run.completed")
    deltas = [f for f in before if f["type"] == "run.delta"]
    # 30 words at 200/s arrive in far fewer frames than words.
    assert 1 < len(deltas) < 20, len(deltas)


async def test_a_resent_client_id_creates_nothing_new(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("only once", "same-id"))
    first = await socket.recv()
    await socket.recv_until("run.completed")
    await socket.send(send_frame("only once", "same-id"))
    again = await socket.recv()
    assert again["type"] == "message.created" and again["message"]["id"] == first["message"]["id"]
    assert await socket.nothing(0.5)
    assert await AgentRun.objects.filter(conversation=conversation).acount() == 1
    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1


async def test_a_second_send_while_streaming_is_refused_and_stores_nothing(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=20,words=100")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("first"))
    await socket.recv_until("run.delta")
    await socket.send(send_frame("second", "c-2"))
    error, _ = await socket.recv_until("error")
    assert error["code"] == "busy" and error["ref"] == "c-2"
    assert not await Message.objects.filter(client_id="c-2").aexists()
    await socket.send({"type": "run.stop"})
    await socket.recv_until("run.stopped")


async def test_stop_keeps_the_partial_text(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=40,words=400")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("a long answer please"))
    await socket.recv_until("run.delta")
    await socket.send({"type": "run.stop"})
    stopped, before = await socket.recv_until("run.stopped", timeout=5)
    text = deltas_text(socket.frames)
    assert stopped["message"]["status"] == "stopped" and stopped["message"]["content"] == text
    assert 0 < len(text.split()) < 400
    run = await run_of(stopped["run_id"])
    assert run.status == "stopped" and run.message.content == text and run.finished_at is not None
    assert await socket.nothing(0.5)  # no delta after the stop


async def test_stop_without_a_run_is_an_error(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await socket.send({"type": "run.stop"})
    error = await socket.recv()
    assert error["type"] == "error" and error["code"] == "not_found"


async def test_a_reload_mid_answer_loses_and_duplicates_nothing(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=60,words=120")
    first = await sockets.open(alice, conversation)
    await first.send(send_frame("tell me a story"))
    for _ in range(3):
        await first.recv_until("run.delta")
    seen = deltas_text(first.frames)
    after_seq = max(f["seq"] for f in first.frames if f["type"] == "run.delta")
    await first.close()
    await asyncio.sleep(0.3)  # deltas go on while no page is open

    reloaded = await sockets.open(alice, conversation)
    active = reloaded.ready["active_run"]
    assert active is not None and active["status"] == "running" and active["seq"] > after_seq
    assert active["content"].startswith(seen)
    # Resume from what the first page had: the replay fills the gap, then live deltas follow.
    await reloaded.send({"type": "run.resume", "run_id": active["run_id"], "after_seq": after_seq})
    completed, frames = await reloaded.recv_until("run.completed")
    deltas = [f for f in frames if f["type"] == "run.delta"]
    # A live delta may slip out between session.ready and the resume; it comes again in the replay
    # (PROTOCOL.md: clients dedupe by seq). From the replay's first delta on: every seq once, in order.
    replay_start = next(i for i, f in enumerate(deltas) if f["seq"] == after_seq + 1)
    assert all(f["seq"] > active["seq"] for f in deltas[:replay_start])
    resumed = deltas[replay_start:]
    assert [f["seq"] for f in resumed] == list(range(after_seq + 1, completed["seq"] + 1))
    assert seen + "".join(f["text"] for f in resumed) == completed["message"]["content"]


async def test_session_ready_plus_live_deltas_equal_the_stored_message(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=60,words=90")
    first = await sockets.open(alice, conversation)
    await first.send(send_frame("second tab"))
    await first.recv_until("run.delta")
    second = await sockets.open(alice, conversation)
    active = second.ready["active_run"]
    completed, frames = await second.recv_until("run.completed")
    live = [f for f in frames if f["type"] == "run.delta"]
    assert all(f["seq"] > active["seq"] for f in live)
    assert active["content"] + "".join(f["text"] for f in live) == completed["message"]["content"]
    # The first tab saw the same stream from the start.
    first_completed, _ = await first.recv_until("run.completed")
    assert deltas_text(first.frames) == completed["message"]["content"] == first_completed["message"]["content"]


async def test_resume_after_the_end_gets_the_final_message(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("quick one"))
    completed, _ = await socket.recv_until("run.completed")
    other = await sockets.open(alice, conversation)
    await other.send({"type": "run.resume", "run_id": completed["run_id"], "after_seq": 1})
    again, frames = await other.recv_until("run.completed")
    assert again["message"]["content"] == completed["message"]["content"]
    assert [f["seq"] for f in frames if f["type"] == "run.delta"] == list(range(2, completed["seq"] + 1))


async def test_a_provider_error_fails_the_run_with_an_error_message(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=200,fail=provider_error,fail_after=5")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("this will break"))
    failed, before = await socket.recv_until("run.failed")
    assert failed["error"]["code"] == "provider_error"
    assert failed["message"]["role"] == "error" and "Retry" in failed["message"]["content"]
    assert failed["partial"]["status"] == "failed" and failed["partial"]["content"] == deltas_text(before)
    run = await run_of(failed["run_id"])
    assert run.status == "failed" and run.error_code == "provider_error"
    roles = [m.role for m in await messages_of(conversation)]
    assert roles == ["user", "assistant", "error"]
    # The conversation is free again: the next message starts a run.
    await socket.send(send_frame("again"))
    await socket.recv_until("run.failed")


async def test_a_retryable_error_is_retried_before_any_text(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=200,words=10,fail=overloaded,fail_times=1")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("retry me"))
    completed, before = await socket.recv_until("run.completed", timeout=15)
    assert completed["message"]["content"] == deltas_text(before)


async def test_settings_update_changes_the_next_run(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await socket.send({"type": "settings.update", "model": "test:tps=300,words=7", "instructions": "Be brief.", "max_tokens": 500})
    updated = await socket.recv()
    assert updated["type"] == "conversation.updated"
    assert updated["conversation"]["settings"]["model"] == "test:tps=300,words=7"
    assert updated["conversation"]["settings"]["ignored"] == ["temperature"]
    await socket.send(send_frame("short"))
    completed, before = await socket.recv_until("run.completed")
    started = next(f for f in before if f["type"] == "run.started")
    assert started["model"] == "test:tps=300,words=7"
    assert len(completed["message"]["content"].split()) == 7


@pytest.mark.parametrize("change", [{"model": "gpt-4"}, {"model": "nosuch:model"}, {"temperature": 5}, {"max_tokens": 0},
                                    {"temperature": "hot"}, {}, {"model": "ollama:llama3"},
                                    {"model": "test:words=100000000,tps=0"}, {"model": "test:tps=0.000001"}])
async def test_bad_settings_are_refused(alice, conversation, sockets, change):
    socket = await sockets.open(alice, conversation)
    await socket.send({"type": "settings.update", **change})
    error = await socket.recv()
    assert error["type"] == "error" and error["code"] == "bad_request"
    assert (await Conversation.objects.aget(id=conversation.id)).model == conversation.model


async def test_history_pages_back_fifty_at_a_time(alice, conversation, sockets):
    await Message.objects.abulk_create([Message(conversation=conversation, role="user", content=f"m{i}", author=alice)
                                        for i in range(120)])
    socket = await sockets.open(alice, conversation)
    page = socket.ready["messages"]
    assert [m["content"] for m in page] == [f"m{i}" for i in range(70, 120)] and socket.ready["has_more"]
    await socket.send({"type": "history.load", "before": page[0]["id"]})
    older = await socket.recv()
    assert [m["content"] for m in older["messages"]] == [f"m{i}" for i in range(20, 70)] and older["has_more"]
    await socket.send({"type": "history.load", "before": older["messages"][0]["id"]})
    oldest = await socket.recv()
    assert [m["content"] for m in oldest["messages"]] == [f"m{i}" for i in range(20)] and not oldest["has_more"]


async def test_the_first_message_names_the_conversation_in_every_tab(alice, conversation, sockets):
    first = await sockets.open(alice, conversation)
    other = await sockets.open(alice, conversation)
    await first.send(send_frame("Plan a trip to Lisbon"))
    updated, _ = await other.recv_until("conversation.updated")
    assert updated["conversation"]["title"] == "Plan a trip to Lisbon"
    await first.recv_until("run.completed")
    await first.send(send_frame("and Porto"))
    _, frames = await first.recv_until("run.completed")
    assert "conversation.updated" not in [f["type"] for f in frames]  # named once


async def test_a_run_whose_replay_log_breaks_fails_instead_of_hanging(alice, conversation, sockets):
    from chat.runs.replay import replay_log

    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=50,words=200")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("break the ledger"))
    delta, _ = await socket.recv_until("run.delta")
    if PRODUCTION:
        import redis

        redis.Redis.from_url(settings.REDIS_URL).delete(f"nous:run:{delta['run_id']}:deltas")
    else:
        replay_log().entries.pop(delta["run_id"])
    failed, _ = await socket.recv_until("run.failed", timeout=10)
    assert failed["error"]["code"] == "internal"
    assert (await run_of(failed["run_id"])).status == "failed"


async def test_a_run_is_queued_with_its_answer_message_and_a_stop_before_it_starts_keeps_it(alice, conversation):
    sent = await sync_to_async(queueing.store_message_and_queue_run)(conversation, alice, "hi there", "queued-1")
    user, answer = await messages_of(conversation)
    assert (user.role, user.content, answer.role, answer.status, answer.content) == ("user", "hi there", "assistant", "streaming", "")
    assert sent.run.message_id == answer.id and answer.run_id == sent.run.id
    assert await stop_run(str(sent.run.id))
    user, answer = await messages_of(conversation)
    assert (answer.status, answer.content) == ("stopped", "")
    assert (await run_of(str(sent.run.id))).status == "stopped"


async def test_one_checkpoint_saves_the_partial_texts_of_many_runs_and_never_a_final_one(alice, conversation):
    other = await Conversation.objects.acreate(owner=alice, model="test:")
    runs = []
    for conv in (conversation, other):
        sent = await sync_to_async(queueing.store_message_and_queue_run)(conv, alice, "go", f"cp-{conv.id}")
        runs.append(await sync_to_async(lifecycle.claim_run)(str(sent.run.id)))
    live, ended = runs
    await sync_to_async(lifecycle.finish_run)(ended.run_id, "stopped", "the final text", 3)
    texts = {live.run_id: (live.message_id, "partial one"), ended.run_id: (ended.message_id, "partial two")}
    must_stop = await sync_to_async(lifecycle.checkpoint)([live.run_id, ended.run_id], texts)
    assert must_stop == {ended.run_id}
    assert (await Message.objects.aget(id=live.message_id)).content == "partial one"
    assert (await Message.objects.aget(id=ended.message_id)).content == "the final text"
    # No executor holds the live run: end it here, or the teardown waits out its deadline for it.
    await sync_to_async(lifecycle.finish_run)(live.run_id, "stopped", "partial one", 1)


async def test_every_tab_sees_the_message_before_anything_of_its_answer(alice, conversation, sockets):
    sender = await sockets.open(alice, conversation)
    other = await sockets.open(alice, conversation)
    frame = send_frame("in order, please")
    await sender.send(frame)
    for socket in (sender, other):
        completed, before = await socket.recv_until("run.completed")
        types = [f["type"] for f in before]
        # message.created (the sender's own, once), then the run: queued, started, its deltas.
        assert types.count("message.created") == 1, types
        created = before[types.index("message.created")]
        assert created["message"]["client_id"] == frame["client_id"] and created["message"]["role"] == "user"
        first_delta = types.index("run.delta")
        assert types.index("message.created") < types.index("run.queued") < types.index("run.started") < first_delta, types
        assert deltas_text(before) == completed["message"]["content"]
