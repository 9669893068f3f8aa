"""Reading a conversation's state for a socket: the session.ready snapshot and history pages."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agents.models import ALL_SETTINGS, supported_settings
from chat import branches as chat_branches
from chat.models import AgentRun, Conversation, Message, with_attachments


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    """The conversation as sent to the page, with the settings its model ignores."""
    data = conversation.to_dict()
    try:
        ignored = sorted(ALL_SETTINGS - supported_settings(conversation.model) - {"top_p"})
    except ValueError:
        ignored = []
    data["settings"]["ignored"] = ignored
    return data


def history_page(conversation_id: Any, before_id: int | None = None, size: int | None = None,
                 branches: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """One page of the selected branch before `before_id` (newest page if None), oldest first, and
    has_more; `branches` (chats): with each message's siblings (chat.branches)."""
    size = size or settings.NOUS_HISTORY_PAGE_SIZE
    q = Message.objects.filter(conversation_id=conversation_id, on_branch=True).select_related("author")
    if before_id is not None:
        q = q.filter(id__lt=before_id)
    rows = list(with_attachments(q.order_by("-id"))[: size + 1])
    messages = [m.to_dict() for m in reversed(rows[:size])]
    if branches:
        chat_branches.annotate(conversation_id, messages)
    return messages, len(rows) > size


def active_run(conversation_id: Any) -> AgentRun | None:
    return AgentRun.objects.filter(conversation_id=conversation_id, status__in=AgentRun.ACTIVE).first()


def ended_frame(run: AgentRun) -> dict[str, Any]:
    """The terminal frame of an ended run rebuilt from the database (its replay log has expired)."""
    message = Message.objects.filter(id=run.message_id).first()
    frame: dict[str, Any] = {"type": f"run.{run.status}", "run_id": str(run.id), "seq": run.last_seq,
                             "message": message.to_dict() if message else None}
    if run.status == AgentRun.Status.COMPLETED:
        frame["usage"] = run.usage or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    elif run.status == AgentRun.Status.FAILED:
        error_message = Message.objects.filter(run=run, role=Message.Role.ERROR).first()
        frame["error"] = {"code": run.error_code or "internal", "message": run.error_message, "retryable": True}
        frame["partial"], frame["message"] = frame["message"], error_message.to_dict() if error_message else frame["message"]
    return frame
