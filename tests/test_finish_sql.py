"""A streamed run's end in one statement (chat.runs.finish_sql): what it stores and the frame it
returns are what `lifecycle.finish_run` stores and returns (the contract the pages and the replay
log rely on), for a completed answer, a stopped one, a regenerated one with siblings and a room's."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from chat import branches
from chat.models import AgentRun, Conversation, Message
from chat.runs import branching, finish_sql, lifecycle, queueing
from rooms.models import create_room

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs DATABASE_URL (PostgreSQL): elsewhere runs end through the ORM"),
]

USAGE = {"input_tokens": 12, "output_tokens": 34, "total_tokens": 46}


@pytest.fixture
def orm_path_refused(monkeypatch):
    """The statement must end these runs itself, not hand them to `finish_run`."""
    def refuse(*args, **kwargs):
        raise AssertionError("finish_run was called: the statement did not end the run")

    monkeypatch.setattr(finish_sql, "finish_run", refuse)


@sync_to_async
def stored_frame_parts(run_id: str, fallback_model: str | None = None, trimmed_messages: int = 0) -> tuple[AgentRun, dict, dict]:
    """The run, its answer as `finish_run` would show it, and the provenance it would have computed."""
    run = AgentRun.objects.select_related("conversation").get(id=run_id)
    message = Message.objects.get(id=run.message_id).to_dict()
    if run.conversation.kind == Conversation.Kind.CHAT:
        branches.annotate(run.conversation_id, [message])
    return run, message, lifecycle.provenance_of(run, run.finished_at, fallback_model, trimmed_messages)


async def claimed_send(conversation, user, text: str) -> str:
    sent = await queueing.store_chat_send(conversation, user, text, f"c-{text}")
    assert await lifecycle.claim(str(sent.run.id)) is not None
    return str(sent.run.id)


async def test_a_completed_answer_is_stored_and_framed_as_finish_run_does(alice, conversation, orm_path_refused):
    run_id = await claimed_send(conversation, alice, "hello")
    created_at = (await AgentRun.objects.aget(id=run_id)).created_at
    first_token_at = created_at + timedelta(microseconds=6500)  # a half millisecond: up, as provenance_of rounds
    frame = await finish_sql.finish(run_id, "completed", "Hi there", 3, USAGE, first_token_at=first_token_at, retries=1,
                                    fallback_model="anthropic:claude-sonnet-4-5", trimmed_messages=2)

    run, message, provenance = await stored_frame_parts(run_id, "anthropic:claude-sonnet-4-5", 2)
    assert run.status == "completed" and run.last_seq == 3 and run.usage == USAGE and run.retries == 1
    assert run.first_token_at == first_token_at
    assert message["content"] == "Hi there" and message["status"] == "complete" and message["usage"] == USAGE
    assert message["provenance"] == provenance and provenance["ended"] == {"status": "completed"}
    assert provenance["input_tokens"] == 12 and provenance["time_to_first_token_ms"] == 7
    assert frame == {"type": "run.completed", "run_id": run_id, "seq": 3, "conversation_id": str(conversation.id),
                     "message": message, "usage": USAGE}
    await conversation.arefresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens) == (12, 34)


async def test_a_stopped_answer_keeps_its_text_and_says_who_stopped_it(alice, conversation, orm_path_refused):
    run_id = await claimed_send(conversation, alice, "hello")
    assert await sync_to_async(lifecycle.request_stop)(run_id, by="alice") == "running"
    frame = await finish_sql.finish(run_id, "stopped", "Half an ans", 2, None, fallback_model="anthropic:claude-sonnet-4-5",
                                    trimmed_messages=2)

    run, message, provenance = await stored_frame_parts(run_id, "anthropic:claude-sonnet-4-5", 2)
    assert run.status == "stopped" and message["status"] == "stopped" and message["content"] == "Half an ans"
    assert message["provenance"] == provenance and provenance["ended"] == {"status": "stopped", "by": "alice"}
    assert frame == {"type": "run.stopped", "run_id": run_id, "seq": 2, "conversation_id": str(conversation.id), "message": message}
    await conversation.arefresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens) == (0, 0)  # no usage, no tokens counted


async def test_a_regenerated_answer_carries_its_siblings(alice, conversation, orm_path_refused):
    first = await claimed_send(conversation, alice, "hello")
    await finish_sql.finish(first, "completed", "One answer", 1, USAGE)
    answer_id = (await AgentRun.objects.aget(id=first)).message_id
    again = await sync_to_async(branching.regenerate)(conversation, answer_id, "c-again")
    assert await lifecycle.claim(str(again.run.id)) is not None
    frame = await finish_sql.finish(str(again.run.id), "completed", "Another answer", 1, USAGE)

    _, message, _ = await stored_frame_parts(str(again.run.id))
    assert frame["message"]["branch"] == message["branch"] == {
        "index": 2, "count": 2, "siblings": [str(answer_id), frame["message"]["id"]]}
    assert frame["message"] == message


async def test_a_room_answer_has_no_branches(alice):
    room = await sync_to_async(create_room)(alice, "Planning", model="test:")
    conversation = await Conversation.objects.aget(id=room.conversation_id)
    message = await Message.objects.acreate(conversation=conversation, role="user", content="@ai hi", author=alice)
    run = await sync_to_async(queueing.queue_run)(conversation.id, message, queueing.RunSnapshot(model="test:"))
    assert await lifecycle.claim(str(run.id)) is not None
    frame = await finish_sql.finish(str(run.id), "completed", "Hello room", 1, USAGE)

    _, stored, _ = await stored_frame_parts(str(run.id))
    assert frame["message"] == stored and stored["branch"] is None and stored["parent_id"] is None


async def test_a_stop_with_no_one_named_says_so(alice, conversation, orm_path_refused):
    run_id = await claimed_send(conversation, alice, "hello")
    frame = await finish_sql.finish(run_id, "stopped", "Half", 1)
    _, message, provenance = await stored_frame_parts(run_id)
    assert frame["message"] == message and message["provenance"] == provenance
    assert provenance["ended"] == {"status": "stopped", "by": None}


async def test_a_resumed_run_keeps_its_first_token_time(alice, conversation, orm_path_refused):
    """A run that waited for an approval streams on without a first token of its own."""
    run_id = await claimed_send(conversation, alice, "hello")
    run = await AgentRun.objects.aget(id=run_id)
    await AgentRun.objects.filter(id=run_id).aupdate(first_token_at=run.created_at + timedelta(milliseconds=40))
    await finish_sql.finish(run_id, "completed", "After the approval", 4, USAGE, first_token_at=None)
    run, message, provenance = await stored_frame_parts(run_id)
    assert run.first_token_at == run.created_at + timedelta(milliseconds=40)
    assert message["provenance"] == provenance and provenance["time_to_first_token_ms"] == 40


async def test_a_run_ended_elsewhere_is_not_ended_again(alice, conversation):
    run_id = await claimed_send(conversation, alice, "hello")
    first = await finish_sql.finish(run_id, "completed", "Whole answer", 5, USAGE)
    assert await finish_sql.finish(run_id, "stopped", "Half", 1) is None  # the race's loser changes nothing
    run, message, _ = await stored_frame_parts(run_id)
    assert run.status == "completed" and run.last_seq == 5 and message == first["message"]
    await conversation.arefresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens) == (12, 34)  # counted once
