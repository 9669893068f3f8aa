"""Storing a message and queueing a run: two steps, since a room message does not always start one.

A chat does both in one transaction (a busy chat stores nothing); a room stores first and queues
a run only when the AI is addressed. A run snapshots what it runs with when it is queued.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from chat import branches, pg
from chat.db import db_call
from chat.models import AgentRun, Conversation, Message, with_attachments
from chat.runs import store_sql
from chat.uploads import claim_for_message

SNAPSHOT_FIELDS = ("model", "instructions", "temperature", "max_tokens", "approval_tools", "fallback_models")


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
    fallback_models: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, conversation: Conversation) -> RunSnapshot:
        """The conversation's agent settings as they are in the database now."""
        return cls.of_row(Conversation.objects.values(*SNAPSHOT_FIELDS).get(id=conversation.id))

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> RunSnapshot:
        chosen = {k: row[k] for k in ("temperature", "max_tokens") if row[k] is not None}
        return cls(model=row["model"], instructions=row["instructions"], model_settings=chosen,
                   approval_tools=row["approval_tools"], fallback_models=list(row.get("fallback_models") or []))


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
            return create_run(conversation_id, trigger, snapshot)
    except IntegrityError:
        raise Busy() from None


def store_message_and_queue_run(conversation: Conversation, user: Any, content: str, client_id: str,
                                attachment_ids: list[str] | None = None) -> SendResult:
    """A chat's send: the user's message, its attachments and its run, atomically; idempotent on `client_id`.

    Raises `Busy` (storing nothing) when a run is already active, `FrameError` (storing
    nothing) when an attachment may not be sent.
    """
    try:
        if connection.vendor == "postgresql" and not attachment_ids:
            # The same rows and the message under the branch's end, in one round trip and one commit
            # (chat.runs.store_sql). On the path to the first token.
            message, answer, run = _send_rows(conversation, user, content, client_id)
            titled = store_sql.store_send(message, answer, run, _title_from(content))
            message._prefetched_objects_cache = {"attachments": []}  # to_dict shows "none" without a query
        else:
            with transaction.atomic():
                message = _user_message(conversation, user, content, client_id)
                message.save(force_insert=True)
                # The settings as stored now (another tab may have changed them since this socket
                # connected), and the title, in one read: this is on the path to the first token.
                row = Conversation.objects.values(*SNAPSHOT_FIELDS, "title").get(id=conversation.id)
                claim_for_message(message, user, conversation.id, attachment_ids or [], row["model"])
                run = create_run(conversation.id, message, RunSnapshot.of_row(row), in_tree=True)
                titled = not row["title"]
                # This update locks the conversation's row (after the run's insert: chat.branches), so
                # no branch switch comes between reading the branch's end and going under it.
                Conversation.objects.filter(id=conversation.id).update(
                    updated_at=timezone.now(),
                    title=Case(When(title="", then=Value(_title_from(content))), default=F("title")),
                )
                branches.attach_to_leaf(conversation.id, message)
    except IntegrityError:
        return refused_send(conversation, client_id)
    return SendResult(message, run, duplicate=False, titled=titled)


def refused_send(conversation: Conversation, client_id: str | None) -> SendResult:
    """A send the constraints refused: a resend of a stored `client_id` (or the same one raced in
    from another socket) finds the stored message; otherwise a run is active, `Busy`."""
    existing = stored_with_client_id(conversation, client_id)
    if existing is None:
        raise Busy()
    return SendResult(existing, None, duplicate=True)


async def store_chat_send(conversation: Conversation, user: Any, content: str, client_id: str,
                          attachment_ids: list[str] | None = None,
                          allowed: Callable[[], Awaitable[None]] | None = None) -> SendResult:
    """`store_message_and_queue_run` from async code: on PostgreSQL (without attachments) its one
    round trip runs on the event loop's own connection (`chat.pg`), elsewhere on a database thread.

    `allowed` (the send limit's check, which raises to refuse) is awaited before anything is
    stored; its round trip goes on while the statement is built."""
    checking = asyncio.ensure_future(allowed()) if allowed is not None else None
    try:
        if checking is not None:
            await asyncio.sleep(0)  # the check's request is on its way
        prepared = None
        if not attachment_ids and pg.available():
            message, answer, run = _send_rows(conversation, user, content, client_id)
            prepared = store_sql.SendStatement(message, answer, run, _title_from(content))
    finally:
        if checking is not None:
            await checking  # refused: nothing is stored
    if prepared is None:
        return await db_call(store_message_and_queue_run)(conversation, user, content, client_id, attachment_ids)
    try:
        titled = await prepared.run_on_loop()
    except IntegrityError:
        return await db_call(refused_send)(conversation, client_id)
    message._prefetched_objects_cache = {"attachments": []}  # to_dict shows "none" without a query
    return SendResult(message, run, duplicate=False, titled=titled)


def create_run(conversation_id: Any, trigger: Message, snapshot: RunSnapshot, in_tree: bool = False,
               client_id: str | None = None) -> AgentRun:
    """The run and its streaming answer; `in_tree` (chats): the answer goes under `trigger` (chat.branches)."""
    # The answer's message is made now, with its run (the foreign keys are checked at the commit),
    # so that the worker's claim is one update and two reads: it is on the path to the first token.
    run_id = uuid.uuid4()
    answer = _answer_message(conversation_id, run_id, parent_id=trigger.id if in_tree else None, client_id=client_id)
    answer.save(force_insert=True)
    # The partial unique index makes this insert fail while another run is active.
    run = _run(run_id, conversation_id, trigger, answer, snapshot)
    run.save(force_insert=True)
    return run


# The rows of a send, unsaved: the ORM path saves them, the PostgreSQL one (store_sql) inserts them at once.
def _user_message(conversation: Conversation, user: Any, content: str, client_id: str) -> Message:
    return Message(conversation=conversation, role=Message.Role.USER, content=content, author=user, client_id=client_id)


def _send_rows(conversation: Conversation, user: Any, content: str, client_id: str) -> tuple[Message, Message, AgentRun]:
    """The user's message, the answer and the run of a send, for `store_sql` (which fills in the rest)."""
    message = _user_message(conversation, user, content, client_id)
    run_id = uuid.uuid4()
    answer = _answer_message(conversation.id, run_id)
    return message, answer, _run(run_id, conversation.id, message, answer, RunSnapshot(model=""))


def _answer_message(conversation_id: Any, run_id: uuid.UUID, parent_id: Any = None, client_id: str | None = None) -> Message:
    return Message(conversation_id=conversation_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, run_id=run_id,
                   parent_id=parent_id, client_id=client_id)


def _run(run_id: uuid.UUID, conversation_id: Any, trigger: Message, answer: Message, snapshot: RunSnapshot) -> AgentRun:
    return AgentRun(
        id=run_id, conversation_id=conversation_id, trigger_message=trigger, message=answer, model=snapshot.model,
        instructions=snapshot.instructions, model_settings=snapshot.model_settings,
        context_messages=snapshot.context_messages, approval_tools=snapshot.approval_tools,
        fallback_models=snapshot.fallback_models,
    )


def stored_with_client_id(conversation: Conversation, client_id: str | None) -> Message | None:
    """The message a resend of `client_id` finds (with its author and attachments), if any."""
    if not client_id:
        return None
    return with_attachments(Message.objects.select_related("author").filter(conversation=conversation, client_id=client_id)).first()


def _existing(conversation: Conversation, client_id: str) -> Message:
    return Message.objects.select_related("author").get(conversation=conversation, client_id=client_id)


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= 60 else line[:57].rstrip() + "..."
