"""The run pipeline that chat and rooms share: snapshots, authors in the history, gap repair in the hub."""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from chat.fanout import conversation_hub, group_for, layer_event
from chat.models import AgentRun, Conversation, Message
from chat.runs import lifecycle, queueing
from chat.runs.replay import SEQ_FRAMES, replay_log
from rooms.models import create_room
from tests.chat_helpers import deltas_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


async def test_a_run_runs_with_the_settings_it_was_queued_with(alice):
    conversation = await Conversation.objects.acreate(owner=alice, model="test:", instructions="be brief", temperature=0.2)
    sent = await sync_to_async(queueing.store_message_and_queue_run)(conversation, alice, "hi", "snap-1")
    # Another tab changes the settings after the send, before a worker claims the run.
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:words=3", instructions="be long", temperature=1.5)
    claimed = await sync_to_async(lifecycle.claim_run)(str(sent.run.id))
    assert (claimed.model, claimed.instructions, claimed.model_settings) == ("test:", "be brief", {"temperature": 0.2})


async def test_a_rooms_history_says_who_said_what(alice, bob):
    room = await sync_to_async(create_room)(alice, "Lunch")
    conversation = room.conversation
    await Message.objects.acreate(conversation=conversation, role="user", content="pizza?", author=alice)
    await Message.objects.acreate(conversation=conversation, role="assistant", content="Pizza it is.")
    trigger = await Message.objects.acreate(conversation=conversation, role="user", content="sushi!", author=bob)
    run = await sync_to_async(queueing.queue_run)(conversation.id, trigger, queueing.RunSnapshot("test:", context_messages=10))
    claimed = await sync_to_async(lifecycle.claim_run)(str(run.id))
    assert [(m["role"], m["content"]) for m in claimed.history] == [
        ("user", "alice: pizza?"), ("assistant", "Pizza it is."), ("user", "bob: sushi!")]
    # A private chat has one speaker: its turns go to the model as written.
    chat = await Conversation.objects.acreate(owner=alice, model="test:")
    sent = await sync_to_async(queueing.store_message_and_queue_run)(chat, alice, "plain", "plain-1")
    claimed = await sync_to_async(lifecycle.claim_run)(str(sent.run.id))
    assert claimed.history == [{"role": "user", "content": "plain", "author": "alice"}]


class Sink:
    def __init__(self):
        self.events = []

    async def deliver(self, event):
        self.events.append(event)


async def test_a_dropped_delta_is_read_back_once_per_process_not_once_per_socket(alice, monkeypatch):
    conversation_id, run_id = "c-gap", f"r-gap-{uuid.uuid4()}"
    hub, log = conversation_hub(), replay_log()
    sinks = [Sink() for _ in range(50)]
    for sink in sinks:
        await hub.join(conversation_id, sink)
    reads = []
    real_read = log.read

    async def counted_read(*args, **kwargs):
        reads.append(args)
        return await real_read(*args, **kwargs)

    monkeypatch.setattr(log, "read", counted_read)
    layer = get_channel_layer()

    async def publish(seq, deliver=True):
        await log.append(run_id, seq, f"w{seq} ")
        if deliver:
            await layer.group_send(group_for(conversation_id), layer_event(conversation_id, {"type": "run.delta", "run_id": run_id, "seq": seq, "text": f"w{seq} "}))

    await publish(1)
    await publish(2, deliver=False)  # the layer dropped this one
    await publish(3, deliver=False)
    await publish(4)
    end = {"type": "run.completed", "run_id": run_id, "seq": 5, "message": {}, "usage": {}}
    await publish(5, deliver=False)
    await layer.group_send(group_for(conversation_id), layer_event(conversation_id, end))

    deadline = asyncio.get_running_loop().time() + 5
    while any(len(s.events) < 6 for s in sinks) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    for sink in sinks:
        assert [(e["frame_type"], e["seq"]) for e in sink.events] == [
            ("run.delta", 1), ("run.delta", 2), ("run.delta", 3), ("run.delta", 4), ("run.delta", 5), ("run.completed", 5)]
    assert len(reads) == 2  # one read per gap, for all 50 sockets
    for sink in sinks:
        await hub.leave(conversation_id, sink)


async def test_tool_frames_take_their_seq_and_a_resume_rebuilds_them(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model="test:tool=clock,tps=20,words=40")
    socket = await sockets.open(alice, conversation)
    await socket.send({"type": "message.send", "content": "what time is it", "client_id": "tools-1"})
    result, _ = await socket.recv_until("run.tool_result")
    call = next(f for f in socket.frames if f["type"] == "run.tool_call")
    assert (call["seq"], result["seq"]) == (1, 2) and call["tool_call"]["name"] == "clock"
    # A second tab opening now gets the tool frames in its snapshot, with their seq.
    late = await sockets.open(alice, conversation)
    events = late.ready["active_run"]["events"]
    assert [e["type"] for e in events] == ["run.tool_call", "run.tool_result"] and events[0]["seq"] == 1
    completed, _ = await socket.recv_until("run.completed")
    assert deltas_text(socket.frames) == completed["message"]["content"]
    # A resume from the start replays the same numbered frames, tool events included.
    await socket.send({"type": "run.resume", "run_id": completed["run_id"], "after_seq": 0})
    replayed = [await socket.recv()]  # the first may take a while on a busy machine; the rest follow at once
    while not await socket.nothing(0.3):
        replayed.append(await socket.recv())
    live = [f for f in socket.frames[: socket.frames.index(completed)] if f["type"] in SEQ_FRAMES]
    assert [(f["type"], f["seq"]) for f in replayed] == [(f["type"], f["seq"]) for f in live]
    tool_messages = [m async for m in Message.objects.filter(conversation=conversation, role="tool")]
    assert len(tool_messages) == 1 and '"name": "clock"' in tool_messages[0].content


async def test_an_answer_carries_its_provenance(alice, sockets):
    # The first call fails before any text and is retried once.
    conversation = await Conversation.objects.acreate(owner=alice, model="test:fail=overloaded,fail_times=1,words=8")
    socket = await sockets.open(alice, conversation)
    await socket.send({"type": "message.send", "content": "hello", "client_id": "prov-1"})
    completed, _ = await socket.recv_until("run.completed")
    provenance = completed["message"]["provenance"]
    assert provenance["model"] == "test:fail=overloaded,fail_times=1,words=8" and provenance["retries"] == 1
    assert provenance["ended"] == {"status": "completed"} and provenance["output_tokens"] == completed["usage"]["output_tokens"]
    assert provenance["time_to_first_token_ms"] is not None and provenance["duration_ms"] is not None

    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=20,words=200")
    await socket.send({"type": "message.send", "content": "a long one", "client_id": "prov-2"})
    await socket.recv_until("run.delta")
    await socket.send({"type": "run.stop"})
    stopped, _ = await socket.recv_until("run.stopped")
    assert stopped["message"]["provenance"]["ended"] == {"status": "stopped", "by": "alice"}
    stored = await Message.objects.aget(id=stopped["message"]["id"])
    assert stored.provenance == stopped["message"]["provenance"]


async def test_typing_never_goes_out_ahead_of_messages_and_only_its_newest_state_does(alice):
    conversation_id = f"c-typing-{uuid.uuid4()}"
    hub, layer = conversation_hub(), get_channel_layer()
    sink = Sink()
    await hub.join(conversation_id, sink)

    def frame(kind, **fields):
        return layer_event(conversation_id, {"type": kind, **fields}, exclude=fields.get("exclude_as"))

    group = group_for(conversation_id)
    await layer.group_send(group, frame("typing", user="bob", typing=True, exclude_as="user:2"))
    await layer.group_send(group, frame("typing", user="bob", typing=False, exclude_as="user:2"))  # supersedes it
    await layer.group_send(group, frame("message.created", message={"id": "1"}))
    deadline = asyncio.get_running_loop().time() + 5
    while len(sink.events) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    kinds = [(e["frame_type"], '"typing": true' in e["json"]) for e in sink.events]
    assert kinds == [("message.created", False), ("typing", False)], kinds
    await hub.leave(conversation_id, sink)


async def test_a_run_is_claimed_once_reading_the_run_and_its_history_in_one_statement(alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    conversation = await Conversation.objects.acreate(owner=alice, model="test:")
    sent = await sync_to_async(queueing.store_message_and_queue_run)(conversation, alice, "hi there", "claim-1")

    def claim_counting() -> tuple[object, int]:
        with CaptureQueriesContext(connection) as queries:
            claimed = lifecycle.claim_run(str(sent.run.id))
        return claimed, len(queries)

    claimed, statements = await sync_to_async(claim_counting)()
    assert claimed.history == [{"role": "user", "content": "hi there", "author": "alice"}]
    assert claimed.message_id == sent.run.message_id and claimed.author_id == alice.id
    # The claim is on the path to the first token: on PostgreSQL the update with its reads and the
    # history are one statement; elsewhere the update, the read and the history.
    assert statements == (1 if connection.vendor == "postgresql" else 3)
    assert await sync_to_async(lifecycle.claim_run)(str(sent.run.id)) is None  # a second claim gets nothing
    run = await AgentRun.objects.aget(id=sent.run.id)
    assert run.status == "running" and run.started_at is not None


async def test_the_claims_history_is_the_selected_branchs_last_turns_with_their_authors(alice):
    """What the claim reads for the model (one statement on PostgreSQL) is `model_history`'s rule:
    the selected branch only, user and assistant turns with text, the run's context size, oldest first."""
    conversation = await Conversation.objects.acreate(owner=alice, model="test:")

    def build() -> AgentRun:
        add = Message.objects.create
        add(conversation=conversation, role="user", content="too old", author=alice)
        add(conversation=conversation, role="user", content="first", author=alice)
        add(conversation=conversation, role="assistant", content="")  # an answer stopped before any text
        add(conversation=conversation, role="user", content="an edited-away question", author=alice, on_branch=False)
        add(conversation=conversation, role="assistant", content="answer one")
        add(conversation=conversation, role="tool", content='{"result": 1}')
        add(conversation=conversation, role="user", content="from a deleted user", author=None)
        trigger = add(conversation=conversation, role="user", content="last", author=alice)
        run = queueing.queue_run(conversation.id, trigger, queueing.RunSnapshot(model="test:", context_messages=4))
        add(conversation=conversation, role="user", content="after the run's answer", author=alice)
        return run

    run = await sync_to_async(build)()
    claimed = await sync_to_async(lifecycle.claim_run)(str(run.id))
    assert claimed.history == [
        {"role": "user", "content": "first", "author": "alice"},
        {"role": "assistant", "content": "answer one", "author": "assistant"},
        {"role": "user", "content": "from a deleted user", "author": "deleted user"},
        {"role": "user", "content": "last", "author": "alice"},
    ]
    assert claimed.history == await sync_to_async(lifecycle.model_history)(conversation.id, claimed.message_id, 4)


async def test_a_send_is_stored_at_once_with_the_settings_and_title_of_that_moment(alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    conversation = await Conversation.objects.acreate(owner=alice, model="test:", instructions="be brief", temperature=0.5)
    # Another tab changed the settings after this socket connected: the send takes what is stored now.
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:words=3", max_tokens=99)

    statements_seen: list[str] = []

    def store_counting(client_id: str) -> tuple[queueing.SendResult, int]:
        with CaptureQueriesContext(connection) as queries:
            sent = queueing.store_message_and_queue_run(conversation, alice, "what is  the weather", client_id)
        statements_seen[:] = [q["sql"][:80] for q in queries if q["sql"] not in ("BEGIN", "COMMIT")]
        return sent, len(statements_seen)

    sent, statements = await sync_to_async(store_counting)("store-1")
    if connection.vendor == "postgresql":
        # On the path to the first token, one round trip and one commit: the rows in one statement,
        # then the message put under the branch's end once the conversation is locked, sent together.
        assert statements == 1, statements_seen
    run = await AgentRun.objects.select_related("trigger_message", "message").aget(id=sent.run.id)
    assert (run.model, run.instructions, run.model_settings) == ("test:words=3", "be brief", {"temperature": 0.5, "max_tokens": 99})
    assert run.trigger_message_id == sent.message.id and run.message_id == sent.run.message_id
    assert run.trigger_message.content == "what is  the weather" and run.message.status == "streaming"
    assert run.trigger_message_id < run.message_id  # the claim's history is what came before the answer
    assert run.message.parent_id == sent.message.id and sent.message.parent_id is None  # the first message is a root
    assert sent.titled and (await Conversation.objects.aget(id=conversation.id)).title == "what is the weather"
    claimed = await sync_to_async(lifecycle.claim_run)(str(run.id))
    assert [m["content"] for m in claimed.history] == ["what is  the weather"]

    again, _ = await sync_to_async(store_counting)("store-1")  # a resend stores nothing
    assert again.duplicate and again.message.id == sent.message.id
    with pytest.raises(queueing.Busy):  # the run is still active
        await sync_to_async(store_counting)("store-2")
    assert await Message.objects.filter(conversation=conversation).acount() == 2

    await sync_to_async(lifecycle.finish_run)(str(run.id), "completed", "sunny", 1)
    follow_up, _ = await sync_to_async(store_counting)("store-3")  # goes under the answer it follows
    stored = await Message.objects.aget(id=follow_up.message.id)
    assert stored.parent_id == follow_up.message.parent_id == run.message_id
    assert stored.content == "what is  the weather" and stored.client_id == "store-3"


@pytest.mark.django_db
def test_a_cached_insert_is_the_insert_django_compiles(alice, monkeypatch):
    """The send's INSERTs are compiled once per shape; later rows get exactly Django's SQL and values."""
    import datetime

    from django.utils import timezone

    from chat.runs import store_sql

    monkeypatch.setattr(timezone, "now", lambda: datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC))

    conversation = Conversation.objects.create(owner=alice, model="test:")
    first = Message(conversation=conversation, role=Message.Role.USER, content="one", author=alice, client_id="c-1")
    second = Message(conversation=conversation, role=Message.Role.USER, content="two é", author=alice, client_id="c-2",
                     usage={"input_tokens": 3})
    store_sql.insert_sql(first, ("id",))
    cached = store_sql.insert_sql(second, ("id",))
    store_sql._COMPILED.clear()
    compiled = store_sql.insert_sql(second, ("id",))
    assert cached[0] == compiled[0]
    assert [str(v) for v in cached[1]] == [str(v) for v in compiled[1]]
    assert "two é" in cached[1] and "c-2" in cached[1]
