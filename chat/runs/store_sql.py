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

from contextlib import nullcontext
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, models, transaction
from django.db.models.expressions import RawSQL
from django.db.models.sql import InsertQuery

from chat import branches
from chat.models import AgentRun, Conversation, Message
from chat.pg import loaded_json, loop_connections

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
        db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: `connection` is a proxy, looked up per attribute
        return _COMPILED[shape], [field.get_db_prep_save(value, db)
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


# The values the statement fills in, made once (an expression costs more to make than to use).
_USER_ID, _ANSWER_ID = _from("ids", "user_id"), _from("ids", "answer_id")
_SNAPSHOT = {name: _from("snapshot", name) for name in ("model", "instructions", "approval_tools", "fallback_models",
                                                         "model_settings")}


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
    sql, params = send_statement(message, answer, run, title)
    # In a caller's transaction (tests), a savepoint, so a refused send leaves the caller's usable.
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        cursor.nextset()
        attached = cursor.fetchone()
    return read_result(message, answer, run, row, attached)


class SendStatement:
    """`store_send` on the event loop's own connection (`chat.pg`), built first and run later (the
    send limit's round trip goes on meanwhile): no thread hop on the path to the first token."""

    def __init__(self, message: Message, answer: Message, run: AgentRun, title: str) -> None:
        self.rows = message, answer, run
        self.sql, self.params = send_statement(message, answer, run, title)

    async def run_on_loop(self) -> bool:
        """Store the rows; True if the conversation got its title. Raises `IntegrityError`
        (Django's) as `store_send` does."""
        try:
            async with loop_connections().cursor() as cursor:
                await cursor.execute(self.sql, self.params)
                row = await cursor.fetchone()
                cursor.nextset()
                attached = await cursor.fetchone()
        except psycopg.IntegrityError as error:
            raise IntegrityError(str(error)) from error
        return read_result(*self.rows, row, attached)


def send_statement(message: Message, answer: Message, run: AgentRun, title: str) -> tuple[str, list[Any]]:
    """The query string of a send (its two statements) and its parameters."""
    message.id, answer.id = _USER_ID, _ANSWER_ID
    answer.parent_id = _USER_ID  # the answer goes under the message it answers (chat.branches)
    run.trigger_message_id, run.message_id = _USER_ID, _ANSWER_ID
    for name, value in _SNAPSHOT.items():
        setattr(run, name, value)
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
    return f"{sql}; {attach}", params


def read_result(message: Message, answer: Message, run: AgentRun, row: Any, attached: Any) -> bool:
    """Fill in the rows' ids and the run's snapshot from the statement's results; True if titled."""
    if row is None:
        raise Conversation.DoesNotExist("the conversation is gone")
    (parent_id,) = attached
    message.id, answer.id = row[0], row[1]
    message.parent_id, answer.parent_id = parent_id, message.id
    run.trigger_message_id, run.message_id, run.model, run.instructions = row[:4]
    run.model_settings, run.approval_tools, run.fallback_models = map(loaded_json, row[4:7])
    return not row[7]
