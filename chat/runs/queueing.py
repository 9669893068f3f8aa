"""Storing a message and queueing a run: two steps, since a room message does not always start one.

A chat does both in one transaction (a busy chat stores nothing); a room stores first and queues
a run only when the AI is addressed. A run snapshots what it runs with when it is queued.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from chat.models import AgentRun, Conversation, Message
from chat.runs import store_sql

SNAPSHOT_FIELDS = ("model", "instructions", "temperature", "max_tokens", "approval_tools")


class Busy(Exception):
    """A run is already queued or running in this conversation."""


@dataclass
class RunSnapshot:
    """What a run runs with, fixed when it is queued."""

    model: str
    instructions: str = ""
    model_settings: dict[str, Any] = field(default_factory=dict)
    context_messages: int | None = None  # None: settings.NOUS_CONTEXT_MESSAGES
    approval_tools: list[str] | None = None  # None: settings.NOUS_APPROVAL_TOOLS

    @classmethod
    def of(cls, conversation: Conversation) -> RunSnapshot:
        """The conversation's agent settings as they are in the database now."""
        return cls.of_row(Conversation.objects.values(*SNAPSHOT_FIELDS).get(id=conversation.id))

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> RunSnapshot:
        chosen = {k: row[k] for k in ("temperature", "max_tokens") if row[k] is not None}
        return cls(model=row["model"], instructions=row["instructions"], model_settings=chosen,
                   approval_tools=row["approval_tools"])


@dataclass
class SendResult:
    message: Message
    run: AgentRun | None
    duplicate: bool
    titled: bool = False  # this message gave the conversation its title


def store_message(conversation: Conversation, user: Any, content: str, client_id: str) -> SendResult:
    """Store a user's message; a resend of the same `client_id` finds the stored one."""
    # A duplicate `client_id` is found by the unique constraint, not by a query before every send.
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation=conversation, role=Message.Role.USER, content=content, author=user, client_id=client_id
            )
    except IntegrityError:
        return SendResult(_existing(conversation, client_id), None, duplicate=True)
    Conversation.objects.filter(id=conversation.id).update(updated_at=timezone.now())
    return SendResult(message, None, duplicate=False)


def queue_run(conversation_id: Any, trigger: Message, snapshot: RunSnapshot) -> AgentRun:
    """Queue a run answering `trigger`, with its answer message; raises `Busy` if one is active."""
    try:
        with transaction.atomic():
            return _create_run(conversation_id, trigger, snapshot)
    except IntegrityError:
        raise Busy() from None


def store_message_and_queue_run(conversation: Conversation, user: Any, content: str, client_id: str) -> SendResult:
    """A chat's send: the user's message and its run, atomically; idempotent on `client_id`.

    Raises `Busy` (storing nothing) when a run is already active.
    """
    try:
        if connection.vendor == "postgresql":  # the same rows in one statement: on the path to the first token
            message = _user_message(conversation, user, content, client_id)
            run_id = uuid.uuid4()
            run = _run(run_id, conversation.id, message, _answer_message(conversation.id, run_id), RunSnapshot(model=""))
            titled = store_sql.store_send(message, run.message, run, _title_from(content))
        else:
            with transaction.atomic():
                message = _user_message(conversation, user, content, client_id)
                message.save(force_insert=True)
                # The settings as stored now (another tab may have changed them since this socket
                # connected), and the title, in one read: this is on the path to the first token.
                row = Conversation.objects.values(*SNAPSHOT_FIELDS, "title").get(id=conversation.id)
                run = _create_run(conversation.id, message, RunSnapshot.of_row(row))
                titled = not row["title"]
                Conversation.objects.filter(id=conversation.id).update(
                    updated_at=timezone.now(),
                    title=Case(When(title="", then=Value(_title_from(content))), default=F("title")),
                )
    except IntegrityError:
        existing = Message.objects.select_related("author").filter(conversation=conversation, client_id=client_id).first()
        if existing:  # a resend, or the same client_id raced in from another socket
            return SendResult(existing, None, duplicate=True)
        raise Busy() from None
    return SendResult(message, run, duplicate=False, titled=titled)


def _create_run(conversation_id: Any, trigger: Message, snapshot: RunSnapshot) -> AgentRun:
    # The answer's message is made now, with its run (the foreign keys are checked at the commit),
    # so that the worker's claim is one update and two reads: it is on the path to the first token.
    run_id = uuid.uuid4()
    answer = _answer_message(conversation_id, run_id)
    answer.save(force_insert=True)
    # The partial unique index makes this insert fail while another run is active.
    run = _run(run_id, conversation_id, trigger, answer, snapshot)
    run.save(force_insert=True)
    return run


# The rows of a send, unsaved: the ORM path saves them, the PostgreSQL one (store_sql) inserts them at once.
def _user_message(conversation: Conversation, user: Any, content: str, client_id: str) -> Message:
    return Message(conversation=conversation, role=Message.Role.USER, content=content, author=user, client_id=client_id)


def _answer_message(conversation_id: Any, run_id: uuid.UUID) -> Message:
    return Message(conversation_id=conversation_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, run_id=run_id)


def _run(run_id: uuid.UUID, conversation_id: Any, trigger: Message, answer: Message, snapshot: RunSnapshot) -> AgentRun:
    return AgentRun(
        id=run_id, conversation_id=conversation_id, trigger_message=trigger, message=answer, model=snapshot.model,
        instructions=snapshot.instructions, model_settings=snapshot.model_settings,
        context_messages=snapshot.context_messages, approval_tools=snapshot.approval_tools,
    )


def _existing(conversation: Conversation, client_id: str) -> Message:
    return Message.objects.select_related("author").get(conversation=conversation, client_id=client_id)


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= 60 else line[:57].rstrip() + "..."
