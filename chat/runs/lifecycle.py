"""Run state transitions in the database. Each is a conditional UPDATE, so the worker, a stop,
the watchdog and the admin can race and exactly one of them wins."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from chat import branches, pg
from chat.db import db_call
from chat.models import AgentRun, Attachment, Conversation, Message
from chat.uploads import attachments_by_message, model_content

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
RETRY_HINT = "Press Retry for a new answer."


@dataclass
class ClaimedRun:
    """Everything the executor needs, read once when it claims the run."""

    run_id: str
    conversation_id: str
    model: str
    instructions: str
    model_settings: dict[str, Any]
    history: list[dict[str, Any]]
    message_id: int
    author_id: int | None = None  # who asked (the tools search their messages)
    in_room: bool = False
    # A run that waited for an approval goes on from here (chat.runs.transcript).
    paused_state: dict[str, Any] | None = None
    approval_tools: list[str] | None = None  # None: settings.NOUS_APPROVAL_TOOLS
    fallback_models: list[str] = field(default_factory=list)
    partial_text: str = ""
    last_seq: int = 0


def claim_run(run_id: str, worker: str = WORKER_NAME) -> ClaimedRun | None:
    """queued -> running; None if someone else got it. Its streaming message exists already."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        run = _claim_returning(run_id, worker, now)
    else:
        run = _claim_orm(run_id, worker, now)
    return None if run is None else claimed_run(run_id, run)


async def claim(run_id: str, worker: str = WORKER_NAME) -> ClaimedRun | None:
    """`claim_run` from async code: on PostgreSQL its one statement runs on the event loop's own
    connection (`chat.pg`; no thread hop on the path to the first token), elsewhere on a database thread."""
    if not pg.available():
        return await db_call(claim_run)(run_id, worker)
    async with pg.loop_connections().cursor() as cursor:
        await cursor.execute(CLAIM_SQL, _claim_params(run_id, worker, timezone.now(), own_transaction=True))
        row = await cursor.fetchone()
    if row is None:
        return None
    run = _claim_row(row)
    if run["message_id"] is None or any(turn["has_files"] for turn in run["history"] or ()):
        return await db_call(claimed_run)(run_id, run)  # the rare claims that read more, through the ORM
    return claimed_run(run_id, run)


def claimed_run(run_id: str, run: dict[str, Any]) -> ClaimedRun:
    """The `ClaimedRun` of a claimed row (`CLAIM_FIELDS` and `history`, the rows or None)."""
    in_room = run["conversation__kind"] == Conversation.Kind.ROOM
    if run["message_id"] is None:  # queued by an older version of this code: no answer yet, so no history read
        run["message_id"] = _create_answer_message(run_id, run["conversation_id"])
        run["history"] = None
    rows = run["history"]
    if rows is None:
        rows = history_rows(run["conversation_id"], before_id=run["message_id"], limit=run["context_messages"])
    return ClaimedRun(
        run_id=str(run_id),
        conversation_id=str(run["conversation_id"]),
        model=run["model"],
        instructions=run["instructions"],
        model_settings=run["model_settings"] or {},
        history=history_of(rows, with_names=in_room),
        message_id=run["message_id"],
        author_id=run["trigger_message__author_id"],
        in_room=in_room,
        paused_state=run["paused_state"],
        approval_tools=run["approval_tools"],
        fallback_models=run["fallback_models"] or [],
        partial_text=(run["message__content"] or "") if run["paused_state"] else "",
        last_seq=run["last_seq"] if run["paused_state"] else 0,
    )


# What a claim reads: what the run was queued with (a settings change since then is for the next run).
CLAIM_FIELDS = ("model", "instructions", "model_settings", "context_messages", "message_id", "conversation_id", "conversation__kind",
                "trigger_message__author_id", "paused_state", "last_seq", "message__content", "approval_tools", "fallback_models")
JSON_FIELDS = ("model_settings", "paused_state", "approval_tools", "fallback_models", "history")
HISTORY_ROLES = (Message.Role.USER, Message.Role.ASSISTANT)

# The history `history_rows` reads, as one JSON array (newest first) for CLAIM_SQL.
_HISTORY_SQL = f"""
    SELECT coalesce(json_agg(turn ORDER BY turn.id DESC), '[]') FROM (
        SELECT m.id, m.role, m.content, author.{get_user_model()._meta.get_field("username").column} AS "author__username",
               EXISTS (SELECT 1 FROM {Attachment._meta.db_table} file WHERE file.message_id = m.id) AS has_files
        FROM {Message._meta.db_table} m
        LEFT JOIN {get_user_model()._meta.db_table} author ON author.id = m.author_id
        WHERE m.conversation_id = claimed.conversation_id AND m.on_branch AND m.id < claimed.message_id
          AND m.role IN ('{HISTORY_ROLES[0]}', '{HISTORY_ROLES[1]}') AND NOT (m.content = '' AND m.role = '{HISTORY_ROLES[1]}')
        ORDER BY m.id DESC
        LIMIT coalesce(nullif(claimed.context_messages, 0), %(context_messages)s)
    ) AS turn
"""

# PostgreSQL: the conditional update and the reads of `_claim_orm` and `history_rows` in one
# statement, one round trip (it is on the path to the first token). The update's RETURNING row
# joined with what it points at, and the history as JSON. The history reads the table as it was
# when the statement began: the trigger and everything before it were committed before the run
# was queued, so it sees them.
# Its commit does not wait for the WAL flush (`synchronous_commit` off for this transaction only:
# that wait was a third of the claim). A claim lost in a PostgreSQL crash leaves the run `queued`
# while its worker streams: the worker's first checkpoint finds it not running and stops it, and
# the one conditional end stores it (or the watchdog fails it): it still ends once, never runs twice.
CLAIM_SQL = f"""
WITH claimed AS (
    UPDATE {AgentRun._meta.db_table} SET status = %(running)s, started_at = %(now)s, heartbeat_at = %(now)s, worker = %(worker)s
    WHERE id = %(id)s AND status = %(queued)s
    RETURNING model, instructions, model_settings, context_messages, message_id, conversation_id, trigger_message_id,
              paused_state, last_seq, approval_tools, fallback_models
)
SELECT claimed.model, claimed.instructions, claimed.model_settings, claimed.context_messages, claimed.message_id,
       claimed.conversation_id, conversation.kind, trigger_message.author_id, claimed.paused_state, claimed.last_seq,
       answer.content, claimed.approval_tools, claimed.fallback_models,
       CASE WHEN claimed.message_id IS NOT NULL THEN ({_HISTORY_SQL}) END,
       CASE WHEN %(own_transaction)s THEN set_config('synchronous_commit', 'off', true) END
FROM claimed
JOIN {Conversation._meta.db_table} conversation ON conversation.id = claimed.conversation_id
LEFT JOIN {Message._meta.db_table} trigger_message ON trigger_message.id = claimed.trigger_message_id
LEFT JOIN {Message._meta.db_table} answer ON answer.id = claimed.message_id
"""


def _claim_params(run_id: str, worker: str, now: Any, own_transaction: bool) -> dict[str, Any]:
    return {"id": run_id, "now": now, "worker": worker, "running": AgentRun.Status.RUNNING, "queued": AgentRun.Status.QUEUED,
            "context_messages": settings.NOUS_CONTEXT_MESSAGES, "own_transaction": own_transaction}


def _claim_returning(run_id: str, worker: str, now: Any) -> dict[str, Any] | None:
    # Never make a caller's transaction asynchronous.
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, _claim_params(run_id, worker, now, own_transaction=not connection.in_atomic_block))
        row = cursor.fetchone()
    return None if row is None else _claim_row(row)


def _claim_row(row: tuple[Any, ...]) -> dict[str, Any]:
    run = dict(zip((*CLAIM_FIELDS, "history"), row[: len(CLAIM_FIELDS) + 1], strict=True))
    for name in JSON_FIELDS:
        run[name] = pg.loaded_json(run[name])
    return run


def _claim_orm(run_id: str, worker: str, now: Any) -> dict[str, Any] | None:
    claimed = AgentRun.objects.filter(id=run_id, status=AgentRun.Status.QUEUED).update(
        status=AgentRun.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker
    )
    if not claimed:
        return None
    return {**AgentRun.objects.filter(id=run_id).values(*CLAIM_FIELDS).get(), "history": None}


def _create_answer_message(run_id: str, conversation_id: Any) -> int:
    """The streaming message of a run queued without one (by an older version of this code)."""
    with transaction.atomic():
        message = Message.objects.create(
            conversation_id=conversation_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, run_id=run_id
        )
        AgentRun.objects.filter(id=run_id).update(message=message)
    return message.id


def model_history(conversation_id: Any, before_id: int, limit: int | None = None, with_names: bool = False) -> list[dict[str, Any]]:
    """The last messages the model sees: user and assistant turns of the selected branch that have
    text, oldest first.

    Each turn carries its `author`; `with_names` (rooms) also writes it into the text the model
    reads ("alice: ..."), since several people speak there. A user turn's attachments ride in its
    content (chat.uploads.model_content): one more query, only when some turn has any.
    """
    return history_of(history_rows(conversation_id, before_id, limit), with_names)


def history_rows(conversation_id: Any, before_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    """The rows of `model_history`, newest first (PostgreSQL's claim reads the same in CLAIM_SQL)."""
    return list(
        Message.objects.filter(conversation_id=conversation_id, on_branch=True, id__lt=before_id, role__in=HISTORY_ROLES)
        .exclude(content="", role=Message.Role.ASSISTANT)
        .annotate(has_files=Exists(Attachment.objects.filter(message=OuterRef("pk"))))
        .order_by("-id")
        .values("id", "role", "content", "author__username", "has_files")[: limit or settings.NOUS_CONTEXT_MESSAGES]
    )


def history_of(rows: list[dict[str, Any]], with_names: bool = False) -> list[dict[str, Any]]:
    """`model_history` from its rows (newest first)."""
    files = attachments_by_message([r["id"] for r in rows if r["has_files"]])
    history = []
    for r in reversed(rows):
        author = r["author__username"] or ("deleted user" if r["role"] == Message.Role.USER else "assistant")
        content: Any = f"{author}: {r['content']}" if with_names and r["role"] == Message.Role.USER else r["content"]
        if r["id"] in files:
            content = model_content(content, files[r["id"]])
        if content:
            history.append({"role": r["role"], "content": content, "author": author})
    return history


def store_tool_message(claimed: ClaimedRun, call: Any, result: Any) -> None:
    """A tool call and its result, as a `tool` message in the history (shown under the answer)."""
    content = json.dumps({"tool_call_id": result.tool_call_id, "name": getattr(call, "name", ""),
                          "arguments": getattr(call, "arguments", {}), "result": result.result,
                          "is_error": result.is_error})
    Message.objects.create(conversation_id=claimed.conversation_id, role=Message.Role.TOOL, content=content,
                           run_id=claimed.run_id)


def checkpoint(run_ids: list[str], texts: dict[str, tuple[int, str]]) -> set[str]:
    """Heartbeat for a process's runs, and their partial texts (`run_id -> (message_id, text)`).

    Returns the runs that must stop streaming: stop requested, or ended by someone else.
    """
    live = AgentRun.objects.filter(id__in=run_ids, status=AgentRun.Status.RUNNING, stop_requested=False)
    live.update(heartbeat_at=timezone.now())
    alive = {str(i) for i in live.values_list("id", flat=True)}
    texts = {message_id: content for run_id, (message_id, content) in texts.items() if run_id in alive}
    if texts:  # one statement for all of them; a message ended meanwhile keeps its final text
        Message.objects.filter(id__in=texts, status=Message.Status.STREAMING).update(
            content=Case(*(When(id=message_id, then=Value(content)) for message_id, content in texts.items()))
        )
    return set(run_ids) - alive


def finish_run(
    run_id: str,
    status: str,
    content: str,
    seq: int,
    usage: dict[str, int] | None = None,
    error: dict[str, Any] | None = None,
    condition: Q | None = None,
    first_token_at: Any = None,
    retries: int = 0,
    fallback_model: str | None = None,
    trimmed_messages: int = 0,
) -> dict[str, Any] | None:
    """End an active run once: store the final text and usage, return the frame to publish.

    Returns None if the run had already ended (someone else won the race). `condition` narrows
    which runs may be ended (the watchdog's staleness test). `fallback_model` (the model that
    answered when it was not the run's first) and `trimmed_messages` go into the provenance.
    """
    now = timezone.now()
    with transaction.atomic():
        q = AgentRun.objects.filter(id=run_id, status__in=AgentRun.ACTIVE)
        if condition is not None:
            q = q.filter(condition)
        won = q.update(
            status=status,
            finished_at=now,
            last_seq=seq,
            usage=usage,
            error_code=(error or {}).get("code", ""),
            error_message=(error or {}).get("message", ""),
            retries=retries,
            **({"first_token_at": first_token_at} if first_token_at is not None else {}),
        )
        if not won:
            return None
        run = AgentRun.objects.select_related("conversation").get(id=run_id)
        message = _final_assistant_message(run, status, content, usage, provenance_of(run, now, fallback_model, trimmed_messages))
        if usage:
            Conversation.objects.filter(id=run.conversation_id).update(
                input_tokens=F("input_tokens") + usage["input_tokens"],
                output_tokens=F("output_tokens") + usage["output_tokens"],
                updated_at=now,
            )
        # `seq` (the last delta's) lets a socket fill any gap before it shows the end.
        frame: dict[str, Any] = {"type": f"run.{status}", "run_id": str(run.id), "seq": seq, "conversation_id": str(run.conversation_id)}
        if status == AgentRun.Status.COMPLETED:
            frame.update(message=message.to_dict(), usage=usage)
        elif status == AgentRun.Status.STOPPED:
            frame.update(message=message.to_dict())
        else:
            error_message = Message.objects.create(
                conversation_id=run.conversation_id,
                role=Message.Role.ERROR,
                status=Message.Status.COMPLETE,
                run=run,
                content=f"{(error or {}).get('message', 'The run failed')}. {RETRY_HINT}",
            )
            frame.update(error=error, message=error_message.to_dict(), partial=message.to_dict())
        if run.conversation.kind == Conversation.Kind.CHAT:  # a regenerated answer has siblings
            branches.annotate(run.conversation_id, [frame.get("partial") or frame["message"]])
        return frame


def provenance_of(run: AgentRun, ended_at: Any, fallback_model: str | None = None, trimmed_messages: int = 0) -> dict[str, Any]:
    """How an answer came to be, stored with it (and shown on demand by the page)."""
    def ms(start: Any, end: Any) -> int | None:  # half up, as chat.runs.finish_sql computes it
        return None if start is None or end is None else ((end - start) // timedelta(microseconds=1) + 500) // 1000

    usage = run.usage or {}
    ended: dict[str, Any] = {"status": run.status}
    if run.status == AgentRun.Status.STOPPED:
        ended["by"] = run.stopped_by or None
    elif run.status == AgentRun.Status.FAILED:
        ended["code"] = run.error_code or "internal"
    return {
        "model": run.model,
        "time_to_first_token_ms": ms(run.created_at, run.first_token_at),
        "duration_ms": ms(run.started_at, ended_at),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "retries": run.retries,
        "fallback_model": fallback_model,
        "trimmed_messages": trimmed_messages,
        "ended": ended,
    }


# An ended run's answer: its status for the run's (any other end: failed).
ANSWER_STATUS = {AgentRun.Status.COMPLETED: Message.Status.COMPLETE, AgentRun.Status.STOPPED: Message.Status.STOPPED}


def _final_assistant_message(run: AgentRun, status: str, content: str, usage: dict[str, int] | None,
                             provenance: dict[str, Any]) -> Message:
    message_status = ANSWER_STATUS.get(status, Message.Status.FAILED)
    if run.message_id is None:  # ended before a worker claimed it
        message = Message.objects.create(conversation_id=run.conversation_id, role=Message.Role.ASSISTANT, run=run)
        AgentRun.objects.filter(id=run.id).update(message=message)
    else:
        message = Message.objects.get(id=run.message_id)
    message.content, message.status, message.usage, message.provenance = content, message_status, usage, provenance
    message.save(update_fields=["content", "status", "usage", "provenance"])
    return message


def request_stop(run_id: str, by: str = "") -> str | None:
    """Ask an active run to stop: "running" (signal the worker), "queued" or "waiting" (end it here), or None."""
    if by:
        AgentRun.objects.filter(id=run_id, status__in=AgentRun.ACTIVE).update(stopped_by=by[:150])
    if AgentRun.objects.filter(id=run_id, status=AgentRun.Status.RUNNING).update(stop_requested=True):
        return "running"
    if AgentRun.objects.filter(id=run_id, status=AgentRun.Status.QUEUED).exists():
        return "queued"
    if AgentRun.objects.filter(id=run_id, status=AgentRun.Status.WAITING).exists():
        return "waiting"
    return None


def checkpointed(run_id: str) -> tuple[str, str, int]:
    """A run's status, its text as last checkpointed and its last seq (a waiting run's are final;
    a streaming run's replay log may hold newer text)."""
    run = AgentRun.objects.select_related("message").get(id=run_id)
    return run.status, (run.message.content if run.message else ""), run.last_seq


def stale_condition(stale_secs: float | None = None, queued_secs: float | None = None) -> Q:
    """Runs the watchdog must end: running with an old heartbeat, or queued for too long."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.NOUS_RUN_STALE_SECS if stale_secs is None else stale_secs)
    queued_before = now - timedelta(seconds=settings.NOUS_RUN_QUEUED_TIMEOUT_SECS if queued_secs is None else queued_secs)
    return Q(status=AgentRun.Status.RUNNING, heartbeat_at__lt=stale_before) | Q(
        status=AgentRun.Status.QUEUED, created_at__lt=queued_before
    )


def stale_run_ids(condition: Q) -> list[str]:
    return [str(i) for i in AgentRun.objects.filter(condition).values_list("id", flat=True)]


def queued_among(run_ids: list[str]) -> set[str]:
    return {str(i) for i in AgentRun.objects.filter(id__in=run_ids, status=AgentRun.Status.QUEUED).values_list("id", flat=True)}
