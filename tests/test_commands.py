"""The operations commands: cleanup_agents and prune_conversations (and their Celery tasks)."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from chat.models import AgentRun, Conversation, Message
from chat.tasks import cleanup_agents_task, prune_conversations_task
from rooms.models import create_room

# The watchdog reads the runs from database threads of its own: the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

LONG_AGO = timedelta(days=1)


def command(*args: str) -> tuple[str, str]:
    """Run a command; its output lines and its summary (the "Done! ..." it returns)."""
    out = StringIO()
    summary = call_command(*args, stdout=out)
    return out.getvalue(), summary


def ago(delta: timedelta):
    return timezone.now() - delta


# --- cleanup_agents -----------------------------------------------------------------------------

def running_run(owner, heartbeat_age: timedelta, text: str = "") -> AgentRun:
    """A run a worker claimed, whose last heartbeat is `heartbeat_age` old, with its partial text."""
    conversation = Conversation.objects.create(owner=owner, model="test:")
    trigger = Message.objects.create(conversation=conversation, role="user", content="hi", author=owner)
    run = AgentRun.objects.create(conversation=conversation, trigger_message=trigger, model="test:", status="running",
                                  started_at=ago(heartbeat_age), heartbeat_at=ago(heartbeat_age), last_seq=3)
    answer = Message.objects.create(conversation=conversation, role="assistant", status="streaming", content=text, run=run)
    AgentRun.objects.filter(id=run.id).update(message=answer)
    return run


def queued_run(owner, age: timedelta) -> AgentRun:
    conversation = Conversation.objects.create(owner=owner, model="test:")
    trigger = Message.objects.create(conversation=conversation, role="user", content="hi", author=owner)
    run = AgentRun.objects.create(conversation=conversation, trigger_message=trigger, model="test:")
    AgentRun.objects.filter(id=run.id).update(created_at=ago(age))
    return run


@pytest.fixture
def stale_and_live(alice):
    """A run whose worker died, one nobody picked up, and one alive and streaming."""
    return (running_run(alice, LONG_AGO, text="half an ans"), queued_run(alice, LONG_AGO),
            running_run(alice, timedelta(seconds=0), text="still going"))


def status_of(run: AgentRun) -> str:
    return AgentRun.objects.values_list("status", flat=True).get(id=run.id)


def test_cleanup_agents_dry_run_lists_the_stale_runs_and_changes_nothing(stale_and_live):
    dead, lost, live = stale_and_live
    out, summary = command("cleanup_agents", "--dry-run")
    assert f"would end {dead.id} (running, heartbeat " in out
    assert f"would end {lost.id} (queued, queued " in out
    assert str(live.id) not in out
    assert summary == ("Done! Would end 2 stale run(s) as failed: 1 running with no heartbeat, "
                       "1 queued and never picked up. Would expire 0 approval(s). Would delete 0 unsent attachment(s).")
    assert [status_of(r) for r in stale_and_live] == ["running", "queued", "running"]


def test_cleanup_agents_ends_stale_runs_failed_keeping_the_text_and_is_idempotent(stale_and_live):
    dead, lost, live = stale_and_live
    out, summary = command("cleanup_agents")
    assert summary == ("Done! Ended 2 stale run(s) as failed: 1 running with no heartbeat, 1 queued and never picked up."
                       " Expired the approvals of 0 run(s). Deleted 0 unsent attachment(s).")
    assert f"ended {dead.id} as failed" in out and f"ended {lost.id} as failed" in out
    assert [status_of(r) for r in stale_and_live] == ["failed", "failed", "running"]
    dead.refresh_from_db()
    assert dead.error_code == "timeout"
    # The partial answer stays, marked failed, with an error message after it offering a retry.
    assert (dead.message.content, dead.message.status) == ("half an ans", "failed")
    assert Message.objects.filter(conversation=dead.conversation, role="error").count() == 1

    # A second pass finds nothing and adds nothing.
    out, summary = command("cleanup_agents")
    assert "ended " not in out and summary.startswith("Done! Ended 0 stale run(s)")
    assert Message.objects.filter(conversation=dead.conversation, role="error").count() == 1


def test_cleanup_agents_thresholds_come_from_the_options(alice):
    run = running_run(alice, timedelta(minutes=5))
    assert command("cleanup_agents", "--stale-secs", "600")[1].startswith("Done! Ended 0 ")
    assert status_of(run) == "running"
    assert command("cleanup_agents", "--stale-secs", "60")[1].startswith("Done! Ended 1 ")
    with pytest.raises(CommandError):
        command("cleanup_agents", "--stale-secs", "-1")


def test_the_cleanup_task_runs_the_command(stale_and_live):
    assert cleanup_agents_task().startswith("Done! Ended 2 stale run(s)")
    assert cleanup_agents_task().startswith("Done! Ended 0 stale run(s)")


# --- prune_conversations ------------------------------------------------------------------------

def chat(owner, age: timedelta, messages: int = 2) -> Conversation:
    """A chat conversation whose last activity (and every message) is `age` old."""
    conversation = Conversation.objects.create(owner=owner, title=f"{age} old")
    for i in range(messages):
        Message.objects.create(conversation=conversation, role="user" if i % 2 == 0 else "assistant", content=f"m{i}", author=owner)
    Message.objects.filter(conversation=conversation).update(created_at=ago(age))
    Conversation.objects.filter(id=conversation.id).update(updated_at=ago(age))
    return conversation


def exists(conversation: Conversation) -> bool:
    return Conversation.objects.filter(id=conversation.id).exists()


@pytest.fixture
def old_and_new(alice, bob):
    """Two old chats, one recent, one old with a run going, one old room."""
    old = [chat(alice, timedelta(days=100)), chat(bob, timedelta(days=91), messages=3)]
    recent = chat(alice, timedelta(days=10))
    busy = chat(alice, timedelta(days=200))
    trigger = Message.objects.filter(conversation=busy).first()
    AgentRun.objects.create(conversation=busy, trigger_message=trigger, model="test:", status="running",
                            started_at=timezone.now(), heartbeat_at=timezone.now())
    Conversation.objects.filter(id=busy.id).update(updated_at=ago(timedelta(days=200)))
    room = create_room(alice, "Old room", slug="old-room")
    Message.objects.create(conversation=room.conversation, role="user", content="anyone?", author=alice)
    Message.objects.filter(conversation=room.conversation).update(created_at=ago(timedelta(days=300)))
    Conversation.objects.filter(id=room.conversation_id).update(updated_at=ago(timedelta(days=300)))
    return old, recent, busy, room


def test_prune_dry_run_counts_and_deletes_nothing(old_and_new):
    old, recent, busy, room = old_and_new
    out, summary = command("prune_conversations", "--older-than", "90d", "--dry-run")
    assert summary == "Done! Would prune 2 conversation(s) (5 message(s)); 1 old one(s) kept: a run is active."
    assert all(exists(c) for c in [*old, recent, busy, room.conversation])


def test_prune_deletes_old_chats_only_and_is_idempotent(old_and_new):
    old, recent, busy, room = old_and_new
    out, summary = command("prune_conversations", "--older-than", "90d")
    assert summary == "Done! Pruned 2 conversation(s) (5 message(s)) in 1 batch(es); 1 old one(s) kept: a run is active."
    assert not any(exists(c) for c in old)
    assert not Message.objects.filter(conversation__in=old).exists()
    assert exists(recent)
    # A conversation with a run going is never touched, however old; nor a room's.
    assert exists(busy) and Message.objects.filter(conversation=busy).count() == 2
    assert exists(room.conversation) and Message.objects.filter(conversation=room.conversation).count() == 1
    room.refresh_from_db()

    out, summary = command("prune_conversations", "--older-than", "90d")
    assert summary.startswith("Done! Pruned 0 conversation(s) (0 message(s)) in 0 batch(es)")


def test_prune_keeps_an_old_conversation_with_a_recent_message(alice):
    conversation = chat(alice, timedelta(days=100))
    Message.objects.create(conversation=conversation, role="user", content="back again", author=alice)
    Conversation.objects.filter(id=conversation.id).update(updated_at=ago(timedelta(days=100)))
    assert command("prune_conversations", "--older-than", "90d")[1].startswith("Done! Pruned 0 ")
    assert exists(conversation)


def test_prune_deletes_in_batches(alice):
    old = [chat(alice, timedelta(hours=13), messages=1) for _ in range(5)]
    out, summary = command("prune_conversations", "--older-than", "12h", "--batch-size", "2")
    assert re.findall(r"batch (\d): (\d) conversation", out) == [("1", "2"), ("2", "2"), ("3", "1")]
    assert summary.startswith("Done! Pruned 5 conversation(s) (5 message(s)) in 3 batch(es)")
    assert not any(exists(c) for c in old)


def test_prune_reads_durations_and_refuses_others(alice):
    conversation = chat(alice, timedelta(minutes=45))
    assert command("prune_conversations", "--older-than", "1h")[1].startswith("Done! Pruned 0 ")
    assert command("prune_conversations", "--older-than", "30m")[1].startswith("Done! Pruned 1 ")
    assert not exists(conversation)
    for bad in ["90", "0d", "1w", "-3d", "d"]:
        with pytest.raises(CommandError, match="--older-than"):
            command("prune_conversations", "--older-than", bad)
    with pytest.raises(CommandError, match="--older-than"):
        command("prune_conversations")  # deleting data is never implied
    with pytest.raises(CommandError, match="--batch-size"):
        command("prune_conversations", "--older-than", "90d", "--batch-size", "0")


def test_the_prune_task_uses_the_retention_setting(alice, settings):
    old, recent = chat(alice, timedelta(days=40)), chat(alice, timedelta(days=20))
    settings.NOUS_PRUNE_AFTER_DAYS = 30
    assert prune_conversations_task().startswith("Done! Pruned 1 ")
    assert not exists(old) and exists(recent)
    settings.NOUS_PRUNE_AFTER_DAYS = 0
    assert prune_conversations_task() == "Done! Pruning is off (NOUS_PRUNE_AFTER_DAYS=0)."


def test_beat_schedules_both_tasks():
    from nous_site.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {"chat.cleanup_agents", "chat.prune_conversations"}
    app.loader.import_default_modules()
    assert {"chat.cleanup_agents", "chat.prune_conversations"} <= set(app.tasks)
    assert app.conf.beat_schedule == schedule
