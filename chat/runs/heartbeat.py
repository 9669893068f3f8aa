"""One heartbeat per process for all the runs it streams.

Every NOUS_CHECKPOINT_SECS a single round of queries refreshes the heartbeat of every local run
and finds the ones that must stop (stop requested, or ended by the watchdog or the admin); the
partial text of each run is checkpointed every NOUS_CHECKPOINT_TEXT_SECS. A query per run per
second cost PostgreSQL more than the streaming itself at a few hundred concurrent runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from django.conf import settings

from chat.db import db_call
from chat.runs import lifecycle
from chat.runs.slots import slots

log = logging.getLogger("nous.runs")


@dataclass
class LocalRun:
    """What the heartbeat knows of one run streaming in this process."""

    run_id: str
    message_id: int
    text: Callable[[], str]
    must_stop: asyncio.Event = field(default_factory=asyncio.Event)
    saved_length: int = 0
    saved_at: float = field(default_factory=time.monotonic)


class Heartbeat:
    """The runs of one event loop and the task that beats for them."""

    def __init__(self) -> None:
        self.runs: dict[str, LocalRun] = {}
        self.task: asyncio.Task[None] | None = None

    def register(self, run: LocalRun) -> None:
        self.runs[run.run_id] = run
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._beat(), name="nous-heartbeat")

    def unregister(self, run_id: str) -> None:
        self.runs.pop(run_id, None)

    async def _beat(self) -> None:
        while self.runs:
            await asyncio.sleep(settings.NOUS_CHECKPOINT_SECS)
            now = time.monotonic()
            texts = {}
            for run in list(self.runs.values()):
                if now - run.saved_at >= settings.NOUS_CHECKPOINT_TEXT_SECS:
                    text = run.text()
                    if len(text) != run.saved_length:
                        texts[run.run_id] = (run.message_id, text)
                    run.saved_length, run.saved_at = len(text), now
            try:
                await slots().renew(list(self.runs))  # the fair queue's leases of these runs
            except Exception:  # Redis trouble: the leases last NOUS_RUN_SLOT_TTL_SECS; the next beat tries again
                log.exception("renewing the slots of %d run(s) failed", len(self.runs))
            try:
                must_stop = await db_call(lifecycle.checkpoint)(list(self.runs), texts)
            except Exception:  # a database hiccup: try again; the watchdog covers a longer outage
                log.exception("heartbeat of %d run(s) failed", len(self.runs))
                continue
            for run_id in must_stop:
                if run_id in self.runs:
                    self.runs[run_id].must_stop.set()


_heartbeats: dict[asyncio.AbstractEventLoop, Heartbeat] = {}


def heartbeat() -> Heartbeat:
    """The heartbeat of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _heartbeats:
        for closed in [lp for lp in _heartbeats if lp.is_closed()]:
            del _heartbeats[closed]
        _heartbeats[loop] = Heartbeat()
    return _heartbeats[loop]
