"""Database calls from async code, on a small pool of threads of this process.

Channels' `database_sync_to_async` runs every call of a process on one thread, so 20 users sending
at once queue behind each other's queries (bench/README.md). Here each pool thread has its own
persistent connection and calls overlap; connections are closed when stale, as Channels does.
The pool has NOUS_DB_THREADS threads: one on SQLite (a single writer anyway), more on PostgreSQL.
"""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from channels.db import DatabaseSyncToAsync
from django.conf import settings

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _database_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=settings.NOUS_DB_THREADS, thread_name_prefix="nous-db")
        return _executor


def db_call(func: Callable[..., Any]) -> Any:
    """`func` as a coroutine function running on the database pool (usable as a decorator, methods too)."""
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=_database_executor())


def close_database_threads() -> None:
    """Stop the pool: its threads end and their connections close (tests, before dropping the database)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
        gc.collect()
