"""Storing a chat's regenerate, edit and branch switch: each in one transaction with the switch.

The conversation's row is locked (after a run's insert: see chat.branches), as a send locks it,
so a send and a switch never interleave; the partial unique index on active runs still refuses
a second run. A refused frame stores nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import branches
from chat.models import AgentRun, Conversation, Message
from chat.protocol import FrameError
from chat.runs.queueing import Busy, RunSnapshot, SendResult, create_run, refused_send, stored_with_client_id


def regenerate(conversation: Conversation, message_id: Any, client_id: str | None) -> SendResult:
    """A new answer to the user message of `message_id` (an answer: its sibling; a user message:
    its answer), selected. `SendResult.message` is the new answer; a resend finds it."""
    def store() -> SendResult:
        trigger = _trigger_of(_node(conversation, message_id))
        run = create_run(conversation.id, trigger, RunSnapshot.of(conversation), in_tree=True, client_id=client_id)
        _touch_and_lock(conversation.id)
        branches.select_path(conversation.id, run.message_id)
        return SendResult(run.message, run, duplicate=False)

    return _stored_once(conversation, client_id, store)


def edit(conversation: Conversation, user: Any, message_id: Any, content: str, client_id: str) -> SendResult:
    """A new user message beside `message_id` (same parent), and its run, selected; idempotent on `client_id`."""
    def store() -> SendResult:
        target = _node(conversation, message_id)
        if target.role != Message.Role.USER:
            raise FrameError("bad_request", "Only your own messages can be edited", client_id)
        message = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=content,
                                         author=user, client_id=client_id, parent_id=target.parent_id)
        run = create_run(conversation.id, message, RunSnapshot.of(conversation), in_tree=True)
        _touch_and_lock(conversation.id)
        branches.select_path(conversation.id, run.message_id)
        return SendResult(message, run, duplicate=False)

    return _stored_once(conversation, client_id, store)


def _stored_once(conversation: Conversation, client_id: str | None, store: Callable[[], SendResult]) -> SendResult:
    """`store()` in one transaction, unless `client_id` was stored already (a resend finds it, also
    when it raced in from another socket); `Busy` while a run is active, with nothing stored."""
    try:
        with transaction.atomic():
            existing = stored_with_client_id(conversation, client_id)
            if existing is not None:
                return SendResult(existing, None, duplicate=True)
            _refuse_if_busy(conversation.id)
            return store()
    except IntegrityError:
        return refused_send(conversation, client_id)


def select(conversation: Conversation, message_id: Any) -> None:
    """Show the branch through `message_id`: down to the newest leaf under it."""
    with transaction.atomic():
        branches.lock_conversation(conversation.id)
        _refuse_if_busy(conversation.id)
        node = _node(conversation, message_id)
        tree = branches.Tree(conversation.id)
        branches.select_path(conversation.id, tree.newest_leaf_under(node.id), tree)


def _node(conversation: Conversation, message_id: Any) -> Message:
    """A user or assistant message of this conversation; `not_found` / `bad_request` otherwise."""
    try:
        wanted = int(message_id)
    except (TypeError, ValueError):
        raise FrameError("not_found", "No such message here") from None
    message = Message.objects.filter(conversation=conversation, id=wanted).first() if 0 < wanted < 2**63 else None
    if message is None:
        raise FrameError("not_found", "No such message here")
    if message.role not in branches.NODE_ROLES:
        raise FrameError("bad_request", "Only a user message or an answer has branches")
    return message


def _trigger_of(message: Message) -> Message:
    """The user message an answer answers (or the user message itself)."""
    if message.role == Message.Role.USER:
        return message
    parent = Message.objects.filter(id=message.parent_id, role=Message.Role.USER).first() if message.parent_id else None
    if parent is None:
        raise FrameError("bad_request", "This answer has no message to answer again")
    return parent


def _refuse_if_busy(conversation_id: Any) -> None:
    if AgentRun.objects.filter(conversation_id=conversation_id, status__in=AgentRun.ACTIVE).exists():
        raise Busy()


def _touch_and_lock(conversation_id: Any) -> None:
    """The conversation is active now; the update holds its row until the commit."""
    Conversation.objects.filter(id=conversation_id).update(updated_at=timezone.now())
