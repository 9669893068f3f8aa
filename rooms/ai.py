"""The room's AI participant: when it answers, what it sees, and one run at a time.

Triggers that arrive while the AI is answering are folded into one follow-up run, started when
that run ends (`on_run_end`): never run twice (the flag is taken by a conditional update), never
lost (a trigger that finds the run just ended starts the follow-up itself). Switching the AI off
drops a pending follow-up.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from chat.db import db_call
from chat.models import AgentRun, Message
from chat.runs.actions import submit_run
from chat.runs.queueing import Busy, RunSnapshot, queue_run
from rooms.models import Room
from rooms.presence import participants

SILENCE_BEFORE_CHIMING_IN = timedelta(minutes=5)
CONTEXT_MESSAGES = 10
# A question: a "?" that ends a sentence ("ready?" or "ready? I am"), not one inside a word or URL.
QUESTION = re.compile(r"\?[?!.]*(?=\s|$|[\"')\]])")


def addresses_ai(content: str, ai_name: str) -> bool:
    """`@ai` or the AI's name as a word ("Nous, ..." or "@Nous"), never as part of one ("said")."""
    names = {"ai", ai_name.strip().lower()} - {""}
    pattern = r"(?<![\w@])@?(?:" + "|".join(re.escape(n) for n in sorted(names)) + r")(?!\w)"
    for match in re.finditer(pattern, content, flags=re.IGNORECASE):
        # The bare word "ai" is everyday language ("AI is hard"); only "@ai" addresses the AI.
        if match.group().lower() != "ai" or ai_name.strip().lower() == "ai":
            return True
    return False


def should_answer(content: str, ai_name: str, silent_for: timedelta) -> bool:
    """Addressed by name or `@ai`, asked a question, or spoken to after 5 minutes of AI silence."""
    return addresses_ai(content, ai_name) or bool(QUESTION.search(content)) or silent_for >= SILENCE_BEFORE_CHIMING_IN


def ai_should_answer(room_id: int, content: str) -> bool:
    """Whether the room's AI answers `content`: one read of the room with its AI's last answer time."""
    last_answer = Message.objects.filter(conversation_id=OuterRef("conversation_id"), role=Message.Role.ASSISTANT)
    room = (Room.objects.filter(id=room_id)
            .annotate(last_answer_at=Subquery(last_answer.order_by("-id").values("created_at")[:1]))
            .values("ai_active", "ai_name", "created_at", "last_answer_at").get())
    if not room["ai_active"]:
        return False
    silent_for = timezone.now() - (room["last_answer_at"] or room["created_at"])
    return should_answer(content, room["ai_name"], silent_for)


def room_snapshot(room: Room, participants: list[str]) -> RunSnapshot:
    """What the AI runs with: the room's model, its instructions and who is in the room now."""
    base = RunSnapshot.of(room.conversation)
    prompt = (
        f"You are {room.ai_name}, the AI participant of the chat room \"{room.title}\". "
        f"People in the room now: {', '.join(participants) or 'nobody else'}. "
        "Messages from people are written as 'name: text'. Answer the latest one, briefly, "
        "and address people by name when it helps."
    )
    instructions = f"{prompt}\n\n{base.instructions}" if base.instructions else prompt
    return RunSnapshot(base.model, instructions, base.model_settings, context_messages=CONTEXT_MESSAGES,
                       approval_tools=base.approval_tools, fallback_models=base.fallback_models)


def queue_or_fold(room_id: int, trigger: Message, participants: list[str]) -> str | None:
    """Queue the AI's run for `trigger`, or fold it into the follow-up of the running one.

    Returns the new run's id, or None when folded.
    """
    room = Room.objects.select_related("conversation").get(id=room_id)
    try:
        return str(queue_run(room.conversation_id, trigger, room_snapshot(room, participants)).id)
    except Busy:
        pass
    Room.objects.filter(id=room_id).update(followup_pending=True, followup_trigger=trigger)
    # The run may have ended between the insert and the flag: then no end would see the flag.
    if not AgentRun.objects.filter(conversation_id=room.conversation_id, status__in=AgentRun.ACTIVE).exists():
        return take_followup(room.conversation_id, participants)
    return None


# Conversations known not to be a room's (a conversation's kind never changes), newest last.
_CHATS: dict[str, None] = {}
CHATS_REMEMBERED = 10_000


def _followup_pending(conversation_id: str) -> bool | None:
    """Whether the room has folded triggers waiting; None if the conversation is not a room's."""
    return Room.objects.filter(conversation_id=conversation_id).values_list("followup_pending", flat=True).first()


def _remember_chat(conversation_id: str) -> None:
    _CHATS[conversation_id] = None
    if len(_CHATS) > CHATS_REMEMBERED:
        del _CHATS[next(iter(_CHATS))]  # the oldest: its next run end reads once more


def take_followup(conversation_id: Any, participants: list[str]) -> str | None:
    """Start the folded follow-up run of a room, once: whoever clears the flag starts it."""
    room = Room.objects.select_related("conversation").filter(conversation_id=conversation_id, followup_pending=True).first()
    if room is None or not room.ai_active:
        return None
    if not Room.objects.filter(id=room.id, followup_pending=True).update(followup_pending=False):
        return None  # someone else took it
    trigger = room.followup_trigger or Message.objects.filter(
        conversation_id=conversation_id, role=Message.Role.USER).order_by("-id").first()
    if trigger is None:
        return None
    try:
        return str(queue_run(conversation_id, trigger, room_snapshot(room, participants)).id)
    except Busy:  # another run started meanwhile: it stays folded into that one
        Room.objects.filter(id=room.id).update(followup_pending=True)
        return None


async def start_followup_after(conversation_id: str, frame: dict[str, Any]) -> None:
    """The run-end hook: a room's folded triggers get their one follow-up run now."""
    if conversation_id in _CHATS:
        return  # every chat run ends here too: after its first, without a read
    pending = await db_call(_followup_pending)(conversation_id)
    if pending is None:
        _remember_chat(conversation_id)
    if not pending:
        return
    run_id = await db_call(take_followup)(conversation_id, await participants(conversation_id))
    if run_id is not None:
        await submit_run(conversation_id, run_id)
