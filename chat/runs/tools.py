"""The tools a run offers its model: the built-ins, a search over the asker's own messages, and
any a deployment adds by dotted path (`NOUS_TOOLS`); those named in `NOUS_APPROVAL_TOOLS` wait
for a human's approval."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

from agents.builtin_tools import builtin_tools
from agents.tools import Tool
from chat.db import db_call
from chat.models import Message

SEARCH_RESULTS = 5
# search_my_messages's schema, written out: a Tool built per run should not parse its signature.
SEARCH_PARAMETERS = {"type": "object", "properties": {"query": {"type": "string", "description": "the words to look for (case does not matter)"}},
                     "required": ["query"]}


def search_tool(author_id: int | None, conversation_id: str, in_room: bool) -> Tool:
    """`search_my_messages`: the asker's own earlier messages (in a room: that room's only)."""

    async def search_my_messages(query: str) -> str:
        """Search the user's own earlier messages for a word or phrase.

        Args:
            query: the words to look for (case does not matter)
        """
        words = query.strip()[:200]
        if author_id is None or not words:
            return "No messages found."
        q = Message.objects.filter(author_id=author_id, role=Message.Role.USER, content__icontains=words)
        q = q.filter(conversation_id=conversation_id) if in_room else q.filter(conversation__kind="chat")
        rows = await db_call(lambda: list(q.order_by("-id").values("created_at", "content")[:SEARCH_RESULTS]))()
        if not rows:
            return "No messages found."
        return "\n".join(f"{r['created_at']:%Y-%m-%d %H:%M}: {r['content'][:300]}" for r in rows)

    return Tool(search_my_messages, parameters=SEARCH_PARAMETERS)


def tools_for(author_id: int | None, conversation_id: str, in_room: bool, approval_tools: list[str] | None = None) -> list[Tool]:
    """The run's tools; those named in `approval_tools` (the conversation's, else the setting's) wait."""
    waiting = tuple(settings.NOUS_APPROVAL_TOOLS if approval_tools is None else approval_tools)
    search = search_tool(author_id, conversation_id, in_room)
    search.needs_approval = search.name in waiting
    return [*_shared_tools(waiting, tuple(settings.NOUS_TOOLS)), search]


@lru_cache(maxsize=64)
def _shared_tools(waiting: tuple[str, ...], paths: tuple[str, ...]) -> tuple[Tool, ...]:
    """The tools that hold no per-run state, built once per approval set: building a tool reads
    its signature and docstring, and this is on the path to a run's first token."""
    tools: list[Tool] = builtin_tools()
    for path in paths:
        found = import_string(path)
        tools.append(found if isinstance(found, Tool) else Tool(found))
    for one in tools:
        one.needs_approval = one.needs_approval or one.name in waiting
    return tuple(tools)
