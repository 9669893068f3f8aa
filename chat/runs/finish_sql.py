"""PostgreSQL: a streamed run's end stored in one round trip, on the worker's event loop.

`lifecycle.finish_run` (the ORM, on a database thread) ends a run in six statements and a thread
hop: the conditional update of the run, reads of the run and its answer, the answer's save, the
conversation's token totals and the answer's siblings. It was most of a worker's CPU per run, and
a good part of PostgreSQL's (docs/scaling.md). Here one `WITH` does the same for the ends a worker
reaches itself, `completed` and `stopped`: the run, then its answer (text, status, usage and
provenance, computed from the run's row as `lifecycle.provenance_of` does), then the conversation
(the lock order of `finish_run`, see chat.branches), and it returns what the terminal frame shows.

Everything else (a failed run's error message, the watchdog's conditions, a run ended before any
claim, other databases) stays with `finish_run`; so does a run this statement did not end, which
`finish_run` then finds ended (None) or ends itself.
"""

from __future__ import annotations

import json
from typing import Any

from django.utils import timezone

from chat import branches, pg
from chat.db import db_call
from chat.models import AgentRun, Conversation, Message
from chat.runs.lifecycle import ANSWER_STATUS, finish_run

_ACTIVE = ", ".join(f"'{status}'" for status in AgentRun.ACTIVE)
_NODE_ROLES = ", ".join(f"'{role}'" for role in branches.NODE_ROLES)


def _ms(end: str, start: str) -> str:
    """SQL for `provenance_of`'s milliseconds between two timestamps (half up; NULL if either is)."""
    return f"floor(extract(epoch FROM {end} - {start}) * 1000 + 0.5)::bigint"


FINISH_SQL = f"""
WITH ended AS (
    UPDATE {AgentRun._meta.db_table}
    SET status = %(status)s, finished_at = %(now)s, last_seq = %(seq)s, usage = %(usage)s::jsonb, error_code = '',
        error_message = '', retries = %(retries)s, first_token_at = coalesce(%(first_token_at)s, first_token_at)
    WHERE id = %(id)s AND status IN ({_ACTIVE}) AND message_id IS NOT NULL
    RETURNING id, conversation_id, message_id, model, status, created_at, started_at, first_token_at, usage, retries, stopped_by
), answer AS (
    UPDATE {Message._meta.db_table} m
    SET content = %(content)s, status = %(message_status)s, usage = ended.usage, provenance = jsonb_build_object(
        'model', ended.model,
        'time_to_first_token_ms', {_ms("ended.first_token_at", "ended.created_at")},
        'duration_ms', {_ms("%(now)s", "ended.started_at")},
        'input_tokens', ended.usage -> 'input_tokens',
        'output_tokens', ended.usage -> 'output_tokens',
        'retries', ended.retries,
        'fallback_model', %(fallback_model)s::text,
        'trimmed_messages', %(trimmed_messages)s::int,
        'ended', CASE WHEN ended.status = '{AgentRun.Status.STOPPED}'
                      THEN jsonb_build_object('status', ended.status, 'by', nullif(ended.stopped_by, ''))
                      ELSE jsonb_build_object('status', ended.status) END)
    FROM ended WHERE m.id = ended.message_id
    RETURNING m.id, m.conversation_id, m.client_id, m.parent_id, ended.id AS run_id, m.created_at, m.provenance
), touched AS (  -- after the answer (FROM answer): the lock order of finish_run
    UPDATE {Conversation._meta.db_table} c
    SET input_tokens = c.input_tokens + %(input_tokens)s, output_tokens = c.output_tokens + %(output_tokens)s, updated_at = %(now)s
    FROM answer WHERE c.id = answer.conversation_id AND %(has_usage)s
)
SELECT answer.id, answer.client_id, answer.parent_id, answer.run_id, answer.created_at, answer.provenance, answer.conversation_id,
       conversation.kind,
       CASE WHEN conversation.kind = '{Conversation.Kind.CHAT}' AND answer.parent_id IS NOT NULL THEN (
           SELECT json_agg(sibling.id ORDER BY sibling.id) FROM {Message._meta.db_table} sibling
           WHERE sibling.conversation_id = answer.conversation_id AND sibling.parent_id = answer.parent_id
             AND sibling.role IN ({_NODE_ROLES})
       ) END
FROM answer JOIN {Conversation._meta.db_table} conversation ON conversation.id = answer.conversation_id
"""


async def finish(run_id: str, status: str, content: str, seq: int, usage: dict[str, int] | None = None,
                 error: dict[str, Any] | None = None, first_token_at: Any = None, retries: int = 0,
                 fallback_model: str | None = None, trimmed_messages: int = 0) -> dict[str, Any] | None:
    """`finish_run` from a worker's loop, as one statement where it can be (see the module)."""
    if status in ANSWER_STATUS and error is None and pg.available():
        params = {"id": run_id, "status": status, "now": timezone.now(), "seq": seq, "content": content,
                  "message_status": ANSWER_STATUS[status], "usage": None if usage is None else json.dumps(usage),
                  "retries": retries, "first_token_at": first_token_at, "fallback_model": fallback_model,
                  "trimmed_messages": trimmed_messages, "has_usage": bool(usage),
                  "input_tokens": (usage or {}).get("input_tokens", 0), "output_tokens": (usage or {}).get("output_tokens", 0)}
        async with pg.loop_connections().cursor() as cursor:
            await cursor.execute(FINISH_SQL, params)
            row = await cursor.fetchone()
        if row is not None:
            return _frame(status, content, seq, usage, row)
    return await db_call(finish_run)(run_id, status, content, seq, usage, error, first_token_at=first_token_at, retries=retries,
                                     fallback_model=fallback_model, trimmed_messages=trimmed_messages)


def _frame(status: str, content: str, seq: int, usage: dict[str, int] | None, row: tuple[Any, ...]) -> dict[str, Any]:
    """The terminal frame `finish_run` would return, from the statement's row."""
    answer_id, client_id, parent_id, answer_run_id, created_at, provenance, conversation_id, kind, siblings = row
    answer = Message(id=answer_id, role=Message.Role.ASSISTANT, content=content, client_id=client_id, status=ANSWER_STATUS[status],
                     usage=usage, run_id=answer_run_id, provenance=pg.loaded_json(provenance), parent_id=parent_id, created_at=created_at)
    message = answer.to_dict()
    if kind == Conversation.Kind.CHAT:
        message["branch"] = branches.branch_of(message["id"], [str(i) for i in pg.loaded_json(siblings) or ()])
    frame: dict[str, Any] = {"type": f"run.{status}", "run_id": str(answer_run_id), "seq": seq, "conversation_id": str(conversation_id),
                             "message": message}
    if status == AgentRun.Status.COMPLETED:
        frame["usage"] = usage
    return frame
