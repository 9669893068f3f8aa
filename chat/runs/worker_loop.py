"""One event loop per worker process, in a thread of its own, shared by every run of the process.

The worker's run taker (chat.runs.handover) executes every run it takes on this loop. So 300
concurrent runs are 300 tasks on one loop (one Redis pool, one channel-layer connection, one busy
thread holding the GIL) rather than 300 loops in 300 threads fighting for it. It is a uvloop
loop, as uvicorn's are: each Redis and PostgreSQL round trip of a run costs less CPU there.
"""

from __future__ import annotations

import asyncio
import threading

import uvloop

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def worker_loop() -> asyncio.AbstractEventLoop:
    """The process's run loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = uvloop.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="nous-run-loop", daemon=True).start()
        return _loop
