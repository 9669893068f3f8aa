"""One action per client intent that changes state and emits frames: send, queue, stop, settings.

As zulip's `do_*` functions do, each action stores *and* publishes, so chat and room consumers
call these and never publish on their own. `reply` answers the acting socket directly (its own
frame goes first, in order, before anything published to the others).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Awaitable, Callable

from django.conf import settings

from agents.errors import AgentConfigError
from agents.models import parse_model_id, resolve_model
from chat import session
from chat.db import db_call
from chat.models import AgentRun, Conversation, Message
from chat.protocol import FrameError, storable
from chat.runs import admission, approvals, queueing
from chat.runs.dispatch import stop_run
from chat.runs.publish import publish
from chat.runs.queueing import Busy, RunSnapshot
from chat.runs.slots import slots

log = logging.getLogger("nous.chat")

Reply = Callable[[dict[str, Any]], Awaitable[None]]
MAX_INSTRUCTIONS_CHARS = 20_000
MAX_TOKENS_LIMIT = 200_000
BUSY = "An answer is still being written; stop it or wait"


def check_content(content: str, client_id: str | None = None, allow_empty: bool = False) -> str:
    """The message text to store, or `FrameError` (nothing stored) if it must be refused.

    `client_id` is checked too when given (a send; an edit has none). `allow_empty`: a send with
    attachments needs no text.
    """
    content = content.strip()
    if not content and not allow_empty:
        raise FrameError("bad_request", "The message is empty", client_id)
    if client_id is not None and (not client_id or len(client_id) > 64):
        raise FrameError("bad_request", "client_id must be 1 to 64 characters")
    if len(content) > settings.NOUS_MAX_MESSAGE_CHARS:
        raise FrameError("too_long", f"Messages are limited to {settings.NOUS_MAX_MESSAGE_CHARS} characters", client_id)
    return content


async def do_chat_send(conversation: Conversation, user: Any, content: str, client_id: str, socket_id: str,
                       reply: Reply, attachment_ids: list[str] | None = None,
                       allowed: Callable[[], Awaitable[None]] | None = None) -> None:
    """A chat's `message.send`: the message, its attachments and its run stored together, then the
    run started. `allowed`: the send limit's check, made as the statement is built (`store_chat_send`)."""
    await refuse_when_full(client_id)
    try:
        sent = await queueing.store_chat_send(conversation, user, content, client_id, attachment_ids, allowed)
    except Busy:
        raise FrameError("busy", BUSY, client_id) from None
    created = {"type": "message.created", "message": sent.message.to_dict()}
    await reply(created)
    if sent.duplicate:
        return
    assert sent.run is not None
    # The other tabs get the message as the run is admitted (one round trip in production).
    await submit_run(conversation.id, str(sent.run.id), user.id, announce=(created, socket_id))
    if sent.titled:
        fresh = await db_call(Conversation.objects.get)(id=conversation.id)
        await publish(conversation.id, {"type": "conversation.updated", "conversation": session.conversation_dict(fresh)})


async def refuse_when_full(client_id: str | None) -> None:
    """`overloaded` before anything is stored (PROTOCOL.md) when the fair queue is full."""
    if await slots().full():
        raise FrameError("overloaded", "Too many answers are being written right now; try again in a minute", client_id)


async def do_store_message(conversation: Conversation, user: Any, content: str, client_id: str, socket_id: str,
                           reply: Reply) -> queueing.SendResult:
    """A room's `message.send`: store the message and tell everyone; no run (see `do_queue_run`)."""
    sent = await db_call(queueing.store_message)(conversation, user, content, client_id)
    created = {"type": "message.created", "message": sent.message.to_dict()}
    await reply(created)
    if not sent.duplicate:
        await publish(conversation.id, created, exclude=socket_id)
    return sent


async def do_queue_run(conversation_id: Any, trigger: Message, snapshot: RunSnapshot) -> str:
    """Queue and start a run answering `trigger`; raises `Busy` if one is active."""
    run = await db_call(queueing.queue_run)(conversation_id, trigger, snapshot)
    await submit_run(conversation_id, str(run.id), trigger.author_id)
    return str(run.id)


async def submit_run(conversation_id: Any, run_id: str, user_id: Any = None, first: bool = False,
                     announce: tuple[dict[str, Any], str | None] | None = None) -> None:
    """Hand a queued run to the executor through the fair queue (`chat.runs.admission`): it starts
    if a slot is free, else waits its turn among `user_id`'s and everyone's runs (`run.queued`
    with its position); `first` goes ahead of the waiting runs (a decided approval). `announce`
    (a frame and the socket it skips) is published to the conversation just before."""
    await admission.admit(conversation_id, run_id, admission.user_key(user_id, conversation_id), first, announce)


async def do_stop(conversation_id: Any, run_id: str | None, may_stop: Callable[[AgentRun], bool] | None = None,
                  by: str = "") -> None:
    """`run.stop`: stop the conversation's active run (or the one named), if `may_stop` allows."""
    run = await find_run(conversation_id, run_id, active_only=True)
    if run is None:
        raise FrameError("not_found", "No answer is being written")
    if may_stop is not None and not may_stop(run):
        raise FrameError("forbidden", "Only the room's owner and whoever asked may stop this answer")
    if not await stop_run(str(run.id), by):
        raise FrameError("not_found", "No answer is being written")


@db_call
def find_run(conversation_id: Any, run_id: str | None, active_only: bool = False) -> AgentRun | None:
    """A run of this conversation (the newest if `run_id` is None); None for another's or a bad id."""
    q = AgentRun.objects.filter(conversation_id=conversation_id).select_related("trigger_message")
    if active_only:
        q = q.filter(status__in=AgentRun.ACTIVE)
    if run_id is not None:
        try:
            q = q.filter(id=uuid.UUID(run_id))
        except ValueError:
            return None
    return q.order_by("-created_at").first()


async def do_decide(conversation: Conversation, user: Any, frame: dict[str, Any]) -> None:
    """`tool.decide`: the owner's decision, once; the paused run is queued again to go on."""
    run_id = await db_call(approvals.decide)(conversation.id, conversation.owner_id, user.id, frame["tool_call_id"],
                                             frame["approved"], frame.get("reason") or "")
    if run_id is not None:  # it had a slot and gave it back while it waited: it goes first
        await submit_run(conversation.id, run_id, conversation.owner_id, first=True)


async def do_update_settings(conversation: Conversation, frame: dict[str, Any]) -> None:
    """`settings.update`: validated, stored, and `conversation.updated` to every tab."""
    changes = validated_settings(frame)
    await db_call(Conversation.objects.filter(id=conversation.id).update)(**changes)
    fresh = await db_call(Conversation.objects.get)(id=conversation.id)
    await publish(conversation.id, {"type": "conversation.updated", "conversation": session.conversation_dict(fresh)})


def checked_model(model: str) -> str:
    """A model string a user may pick, stripped; `FrameError` if it is malformed or its provider is not enabled."""
    try:
        provider, _ = parse_model_id(model)
        if provider not in settings.NOUS_ALLOWED_PROVIDERS:
            raise AgentConfigError(f"The {provider!r} provider is not enabled on this server")
        if provider == "test":
            resolve_model(model)  # checks the test model's options and bounds
    except AgentConfigError as error:
        raise FrameError("bad_request", str(error)) from None
    return model.strip()


def checked_fallbacks(models: list[Any] | None) -> list[str]:
    """`fallback_models`: each checked as `model` is, at most NOUS_MAX_FALLBACK_MODELS; null clears them."""
    models = models or []
    limit = settings.NOUS_MAX_FALLBACK_MODELS
    if len(models) > limit or not all(isinstance(m, str) and 0 < len(m) <= 200 and storable(m) for m in models):
        raise FrameError("bad_request", f"fallback_models: a list of at most {limit} model strings")
    return [checked_model(m) for m in models]


def validated_settings(frame: dict[str, Any]) -> dict[str, Any]:
    fields = ("model", "instructions", "temperature", "max_tokens", "approval_tools", "fallback_models")
    changes = {k: frame[k] for k in fields if k in frame}
    if not changes:
        raise FrameError("bad_request", "settings.update: nothing to change")
    if "model" in changes:
        changes["model"] = checked_model(changes["model"])
    if "fallback_models" in changes:
        changes["fallback_models"] = checked_fallbacks(changes["fallback_models"])
    if len(changes.get("instructions") or "") > MAX_INSTRUCTIONS_CHARS:
        raise FrameError("too_long", f"Instructions are limited to {MAX_INSTRUCTIONS_CHARS} characters")
    temperature = changes.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise FrameError("bad_request", "temperature must be between 0 and 2")
    max_tokens = changes.get("max_tokens")
    if max_tokens is not None and not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise FrameError("bad_request", f"max_tokens must be between 1 and {MAX_TOKENS_LIMIT}")
    tools = changes.get("approval_tools")
    if tools is not None and (len(tools) > 20 or not all(isinstance(t, str) and 0 < len(t) <= 64 and storable(t) for t in tools)):
        raise FrameError("bad_request", "approval_tools: a list of at most 20 tool names")
    return changes
