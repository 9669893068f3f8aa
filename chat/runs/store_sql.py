"""PostgreSQL: a chat's send stored in one round trip and one commit.

The rows are the ones `chat.runs.queueing` builds (so their defaults and any field added there come
along); Django compiles each INSERT (once per shape of row, then cached), and one `WITH` joins
them: the user's message, the answer's message, the run (its snapshot read from the conversation
in the same statement) and the conversation's `updated_at` and title, which locks the
conversation's row. A second statement in the same query string puts the message under the end of
the selected branch (`chat.branches.attach_sql`): it reads the branch with its own snapshot, taken
once the lock is held, so no branch switch comes between. Sent together without parameters bound
by the server, the two statements run as one implicit transaction (committed once, or not at all).
The constraints act as in the ORM path: the partial unique index on active runs fails the whole of
it (`Busy`), `(conversation, client_id)` a resend.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any

from django.db import connection, models, transaction
from django.db.models.expressions import RawSQL
from django.db.models.sql import InsertQuery

from chat import branches
from chat.models import AgentRun, Conversation, Message

# (model, RETURNING, each field's expression SQL or None for a plain value) -> the INSERT's SQL
_COMPILED: dict[tuple[Any, ...], str] = {}


def insert_sql(obj: models.Model, returning: tuple[str, ...]) -> tuple[str, list[Any]]:
    """The INSERT Django would run to save `obj` (pre_save and defaults applied), with RETURNING.

    Compiling it costs more CPU than running it, so the SQL of each shape (which fields hold an
    expression, and which) is compiled once; the plain values are prepared as Django prepares them.
    """
    meta = obj._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field or obj.pk is not None]
    values = [field.pre_save(obj, True) for field in fields]
    # Cached only for plain values and parameterless RawSQL (whose SQL is then part of the shape).
    expressions = [v for v in values if hasattr(v, "resolve_expression")]
    cacheable = all(isinstance(v, RawSQL) and not v.params for v in expressions)
    shape = (type(obj), returning, tuple(v.sql if isinstance(v, RawSQL) else None for v in values))
    if cacheable and shape in _COMPILED:
        return _COMPILED[shape], [field.get_db_prep_save(value, connection)
                                  for field, value in zip(fields, values, strict=True) if not isinstance(value, RawSQL)]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = [meta.get_field(name) for name in returning]
    [(sql, params)] = compiler.as_sql()
    if cacheable:
        _COMPILED[shape] = sql
    return sql, list(params)


def _from(cte: str, column: str) -> RawSQL:
    return RawSQL(f"(SELECT {column} FROM {cte})", ())


# Both messages' ids at once, the user's the smaller: the history a claim reads is `id < answer`.
IDS_SQL = f"""ids AS (
    SELECT min(id) AS user_id, max(id) AS answer_id
    FROM (SELECT nextval(pg_get_serial_sequence('{Message._meta.db_table}', 'id')) AS id FROM generate_series(1, 2)) AS two
)"""
SNAPSHOT_SQL = f"""snapshot AS (
    SELECT model, instructions, approval_tools, fallback_models, title,
           jsonb_strip_nulls(jsonb_build_object('temperature', temperature, 'max_tokens', max_tokens)) AS model_settings
    FROM {Conversation._meta.db_table} WHERE id = %s
)"""
TOUCH_SQL = f"""touched AS (
    UPDATE {Conversation._meta.db_table} SET updated_at = %s, title = CASE WHEN title = '' THEN %s ELSE title END WHERE id = %s
)"""


def store_send(message: Message, answer: Message, run: AgentRun, title: str) -> bool:
    """Insert the three rows and touch the conversation, at once; True if the conversation got `title`.

    `run`'s trigger, answer and snapshot fields are filled in from the statement. Raises
    `IntegrityError` as the ORM would (nothing is stored then).
    """
    message.id, answer.id = _from("ids", "user_id"), _from("ids", "answer_id")
    answer.parent_id = _from("ids", "user_id")  # the answer goes under the message it answers (chat.branches)
    run.trigger_message_id, run.message_id = _from("ids", "user_id"), _from("ids", "answer_id")
    for name in ("model", "instructions", "approval_tools", "fallback_models", "model_settings"):
        setattr(run, name, _from("snapshot", name))
    message_sql, message_params = insert_sql(message, ("id",))
    answer_sql, answer_params = insert_sql(answer, ("id",))
    run_sql, run_params = insert_sql(run, ("trigger_message_id", "message_id", "model", "instructions", "model_settings",
                                           "approval_tools", "fallback_models"))
    sql = (f"WITH {IDS_SQL}, {SNAPSHOT_SQL}, user_message AS ({message_sql}), answer_message AS ({answer_sql}), "
           f"inserted_run AS ({run_sql}), {TOUCH_SQL} "
           "SELECT r.trigger_message_id, r.message_id, r.model, r.instructions, r.model_settings, r.approval_tools, "
           "r.fallback_models, s.title "
           "FROM inserted_run r, snapshot s")
    conversation_id = message.conversation_id
    attach, attach_params = branches.attach_sql(conversation_id, message.client_id)
    params = [conversation_id, *message_params, *answer_params, *run_params, message.created_at, title, conversation_id,
              *attach_params]
    # In a caller's transaction (tests), a savepoint, so a refused send leaves the caller's usable.
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        cursor.execute(f"{sql}; {attach}", params)
        row = cursor.fetchone()
        if row is None:
            raise Conversation.DoesNotExist("the conversation is gone")
        cursor.nextset()
        (parent_id,) = cursor.fetchone()
    message.id, answer.id = row[0], row[1]
    message.parent_id, answer.parent_id = parent_id, message.id
    run.trigger_message_id, run.message_id, run.model, run.instructions = row[:4]
    run.model_settings, run.approval_tools, run.fallback_models = (json.loads(v) if isinstance(v, str) else v for v in row[4:7])
    return not row[7]
