"""Human approval of sensitive tool calls, held by the server.

A run that reaches a call needing approval stores a `ToolApproval` bound to that exact call,
publishes `run.approval_required`, and pauses: it becomes `waiting` with its transcript in
`AgentRun.paused_state`, and its worker is free (a Celery thread would otherwise wait up to
five minutes, and a worker restart would lose the run). `tool.decide` from the owner records the
decision with a conditional update, then queues the run again; any worker claims it and goes on
from the transcript. Nobody deciding in time is a rejection (`expired`), never a yes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import AgentRun, Message, ToolApproval
from chat.protocol import FrameError


class PauseForApproval(Exception):
    """Raised by the run's approver: the call waits for a human; the run pauses."""

    def __init__(self, call: Any) -> None:
        super().__init__(f"tool call {call.id} waits for approval")
        self.call = call


def needs_approval(tool_name: str) -> bool:
    return tool_name in settings.NOUS_APPROVAL_TOOLS


def request_approval(run_id: str, call: Any) -> ToolApproval:
    """The approval row of this call (made now, or the one made before a restart)."""
    arguments = _arguments_of(call)
    try:
        with transaction.atomic():
            return ToolApproval.objects.create(
                run_id=run_id, tool_call_id=call.id, name=call.name, arguments=arguments, arguments_hash=_hash_of(arguments),
                expires_at=timezone.now() + timedelta(seconds=settings.NOUS_APPROVAL_TIMEOUT_SECS),
            )
    except IntegrityError:
        return ToolApproval.objects.get(run_id=run_id, tool_call_id=call.id)


def decision_of(run_id: str, call: Any) -> ToolApproval | None:
    """The decided approval of this exact call (same arguments), or None if none was decided."""
    approval = ToolApproval.objects.filter(run_id=run_id, tool_call_id=call.id).first()
    if approval is None or approval.status == ToolApproval.Status.PENDING:
        return None
    if approval.arguments_hash != _hash_of(_arguments_of(call)):
        return None  # not the call that was approved
    return approval


def _arguments_of(call: Any) -> dict[str, Any]:
    return call.arguments if isinstance(call.arguments, dict) else {}


def _hash_of(arguments: dict[str, Any]) -> str:
    """What binds an approval to the exact arguments it was asked for."""
    return hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()


def pause_run(run_id: str, text: str, seq: int, state: dict[str, Any]) -> str | None:
    """running -> waiting, keeping the text so far and where to go on from.

    Returns "waiting", or "queued" when the decision came in before the run had paused (queue it
    again now), or None if the run was stopped or ended meanwhile.
    """
    with transaction.atomic():
        paused = AgentRun.objects.filter(id=run_id, status=AgentRun.Status.RUNNING, stop_requested=False).update(
            status=AgentRun.Status.WAITING, paused_state=state, last_seq=seq, heartbeat_at=timezone.now())
        if paused:
            Message.objects.filter(run_id=run_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING).update(content=text)
    if not paused:
        return None
    return "queued" if resume_when_decided(run_id) else "waiting"


def decide(conversation_id: Any, owner_id: int, user_id: int, tool_call_id: str, approved: bool, reason: str) -> str | None:
    """`tool.decide`: record the owner's decision once. Returns the run to queue again, if any."""
    approval = ToolApproval.objects.select_related("run").filter(
        run__conversation_id=conversation_id, tool_call_id=tool_call_id).order_by("-created_at").first()
    if approval is None:
        raise FrameError("not_found", "No tool call is waiting for approval")
    if user_id != owner_id:
        raise FrameError("forbidden", "Only the owner may approve or reject a tool call")
    now = timezone.now()
    status = ToolApproval.Status.APPROVED if approved else ToolApproval.Status.REJECTED
    won = ToolApproval.objects.filter(id=approval.id, status=ToolApproval.Status.PENDING, expires_at__gt=now).update(
        status=status, decided_by_id=user_id, decided_at=now, reason=reason[:2000])
    if not won:
        approval.refresh_from_db()
        if approval.status == ToolApproval.Status.PENDING:  # past its time: nobody said yes
            expire([approval.id])
            raise FrameError("timeout", "This tool call was not decided in time; it was rejected")
        raise FrameError("bad_request", f"This tool call was already {approval.status}")
    return str(approval.run_id) if resume_when_decided(str(approval.run_id)) else None


def expire(approval_ids: list[int] | None = None) -> list[str]:
    """Pending approvals past their time become `expired`; returns the runs to queue again."""
    q = ToolApproval.objects.filter(status=ToolApproval.Status.PENDING)
    q = q.filter(id__in=approval_ids) if approval_ids is not None else q.filter(expires_at__lte=timezone.now())
    run_ids = {str(r) for r in q.values_list("run_id", flat=True)}
    q.update(status=ToolApproval.Status.EXPIRED, decided_at=timezone.now())
    return [run_id for run_id in sorted(run_ids) if resume_when_decided(run_id)]


def resume_when_decided(run_id: str) -> bool:
    """waiting -> queued once none of its calls waits any more; False if it still waits or ended."""
    if ToolApproval.objects.filter(run_id=run_id, status=ToolApproval.Status.PENDING).exists():
        return False
    return bool(AgentRun.objects.filter(id=run_id, status=AgentRun.Status.WAITING).update(status=AgentRun.Status.QUEUED))


def pending_for(conversation_id: Any) -> list[dict[str, Any]]:
    """`session.ready.pending_approvals`: the calls of the conversation's active run that wait."""
    q = ToolApproval.objects.filter(run__conversation_id=conversation_id, run__status__in=AgentRun.ACTIVE,
                                    status=ToolApproval.Status.PENDING, expires_at__gt=timezone.now())
    return [a.to_dict() for a in q.order_by("created_at")]


def result_of(approval: ToolApproval) -> str:
    """What the model is told of a call that was not approved."""
    if approval.status == ToolApproval.Status.EXPIRED:
        return "Rejected: nobody approved this call in time"
    return "Rejected by the user" + (f": {approval.reason}" if approval.reason else "")
