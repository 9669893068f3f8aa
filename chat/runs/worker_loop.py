"""One event loop per worker process, in a thread of its own, shared by every run of the process.

A Celery thread hands its run to this loop and waits for it. So 300 concurrent runs are 300
tasks on one loop (one Redis pool, one channel-layer connection, one busy thread holding the
GIL) rather than 300 loops in 300 threads fighting for it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def worker_loop() -> asyncio.AbstractEventLoop:
    """The process's run loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="nous-run-loop", daemon=True).start()
        return _loop


def run_in_worker_loop(function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run `function(*args)` on the process's run loop and block the calling thread until it ends."""
    return asyncio.run_coroutine_threadsafe(function(*args), worker_loop()).result()
