"""PostgreSQL on the event loop: a few psycopg async connections per loop, for the statements of a
run's path (a chat's store, a worker's claim and a streamed run's end, `chat.runs.finish_sql`).

Those statements are raw SQL already, one round trip each. Run through `chat.db` they cost two
thread hops and Django's per-call bookkeeping besides, and the database thread competes with the
loop's thread for the GIL: more than the statement itself (docs/scaling.md). Here they run in the
loop: no thread, no hop. The connections are Django's settings and adapters (so values load as
the ORM's do), in autocommit: a query string is its own implicit transaction, all or nothing.

Everything else keeps using the ORM on the database threads. Only PostgreSQL has this path
(`available()`); callers fall back to `chat.db.db_call` elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import pq


def available() -> bool:
    """Whether the default database is PostgreSQL (the only one this module speaks)."""
    return connections["default"].vendor == "postgresql"


class LoopConnections:
    """At most `size` connections of one event loop, each kept open between calls for as long as
    the database's CONN_MAX_AGE allows (as Django keeps its own)."""

    def __init__(self, size: int) -> None:
        self.room = asyncio.Semaphore(size)
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.opened_at: dict[int, float] = {}  # id(connection) -> monotonic time it was opened

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        params = connections["default"].get_connection_params()
        params.pop("cursor_factory", None)
        conn = await psycopg.AsyncConnection.connect(**params, autocommit=True, cursor_factory=psycopg.AsyncClientCursor)
        if conn.info.parameter_status("TimeZone") != "UTC":  # as Django's own connections (USE_TZ)
            await conn.execute("SET TIME ZONE 'UTC'")
        self.opened_at[id(conn)] = time.monotonic()
        return conn

    def _reusable(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        # Broken, or left mid-query by a cancellation: never handed out again.
        if conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
            return False
        max_age = connections["default"].settings_dict["CONN_MAX_AGE"]
        return max_age is None or time.monotonic() - self.opened_at.get(id(conn), 0.0) < max_age

    @asynccontextmanager
    async def cursor(self) -> AsyncIterator[psycopg.AsyncClientCursor[Any]]:
        """A cursor of an idle connection (a new one if none is idle), in autocommit."""
        async with self.room:
            conn = self.idle.pop() if self.idle else await self._connect()
            try:
                async with conn.cursor() as cursor:
                    yield cursor
            finally:
                if self._reusable(conn):
                    self.idle.append(conn)
                else:
                    self.opened_at.pop(id(conn), None)
                    await conn.close()

    def close_all(self) -> None:
        """Close the idle connections at once (from any thread: no query is sent)."""
        for conn in self.idle:
            conn.pgconn.finish()
            self.opened_at.pop(id(conn), None)
        self.idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopConnections] = weakref.WeakKeyDictionary()


def loaded_json(value: Any) -> Any:
    """A json or jsonb column's value as Python: Django's adapters (these connections' too) hand
    JSON over as text, for JSONField to decode."""
    return json.loads(value) if isinstance(value, str) else value


def loop_connections() -> LoopConnections:
    """The connections of the running event loop (each loop has its own: a connection is bound to it)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = LoopConnections(settings.NOUS_DB_THREADS)
    return pool


def close_loop_connections() -> None:
    """Close every loop's idle connections (tests, before dropping the database)."""
    for pool in list(_pools.values()):
        pool.close_all()
