"""The actions of a chat's branches: `message.regenerate`, `message.edit`, `branch.select`.

Each stores (chat.runs.branching), then answers every tab of the conversation with
`branch.switched` (the acting socket first, directly), then starts the run, if there is one.
"""

from __future__ import annotations

from typing import Any

from chat import session
from chat.db import db_call
from chat.models import Conversation
from chat.protocol import FrameError
from chat.runs import branching
from chat.runs.actions import BUSY, Reply, refuse_when_full, submit_run
from chat.runs.publish import publish
from chat.runs.queueing import Busy


async def do_regenerate(conversation: Conversation, message_id: Any, client_id: str | None, socket_id: str,
                        reply: Reply) -> None:
    """A new answer beside an answer (or to a user message), on a branch of its own."""
    if client_id is not None and not 0 < len(client_id) <= 64:
        raise FrameError("bad_request", "client_id must be 1 to 64 characters")
    await refuse_when_full(client_id)
    try:
        result = await db_call(branching.regenerate)(conversation, message_id, client_id)
    except Busy:
        raise FrameError("busy", BUSY, client_id) from None
    await _switched(conversation, socket_id, reply, duplicate=result.duplicate)
    if result.run is not None:
        await submit_run(conversation.id, str(result.run.id), conversation.owner_id)


async def do_edit(conversation: Conversation, user: Any, message_id: Any, content: str, client_id: str, socket_id: str,
                  reply: Reply) -> None:
    """An edited message: a new branch from where the original was, and its answer."""
    await refuse_when_full(client_id)
    try:
        result = await db_call(branching.edit)(conversation, user, message_id, content, client_id)
    except Busy:
        raise FrameError("busy", BUSY, client_id) from None
    if result.duplicate:  # a resend: the stored message, as for a send, and nothing started
        await reply({"type": "message.created", "message": result.message.to_dict()})
        return
    await _switched(conversation, socket_id, reply)
    assert result.run is not None
    await submit_run(conversation.id, str(result.run.id), user.id)


async def do_select(conversation: Conversation, message_id: Any, socket_id: str, reply: Reply) -> None:
    """Switch to the branch through `message_id`."""
    try:
        await db_call(branching.select)(conversation, message_id)
    except Busy:
        raise FrameError("busy", BUSY) from None
    await _switched(conversation, socket_id, reply)


async def _switched(conversation: Conversation, socket_id: str, reply: Reply, duplicate: bool = False) -> None:
    """`branch.switched`: the newest page of the selected branch, to this socket (and, after a
    change, to the conversation's other tabs)."""
    messages, has_more = await db_call(session.history_page)(conversation.id, branches=True)
    leaf = next((m["id"] for m in reversed(messages) if m["role"] in ("user", "assistant")), None)
    frame = {"type": "branch.switched", "messages": messages, "has_more": has_more, "leaf_id": leaf}
    await reply(frame)
    if not duplicate:
        await publish(conversation.id, frame, exclude=socket_id)
