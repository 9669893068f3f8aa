"""Production: runs handed from the ASGI processes to the Celery workers through one Redis list.

A run admitted by the fair queue (`chat.runs.admission`) is pushed onto `NOUS_RUN_HANDOVER_KEY`;
each Celery worker process takes run ids from it with `BLPOP`, straight onto its run loop
(`chat.runs.worker_loop`), while it has fewer than `NOUS_WORKER_RUNS` runs. The push is one
round trip from the ASGI loop and the take wakes the run loop itself: a Celery task message cost
2-3 ms more on the way to the first token (kombu's publish on a thread, the worker's consumer,
its pool thread, then the run loop; docs/scaling.md). Celery still runs the worker processes,
their start and warm shutdown (`RunTakerStep`), and the periodic commands.

A taken run is never given back: as with Celery's early acknowledgement, a worker killed between
the take and the end leaves its run to the watchdog, which fails it (never a second execution).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from celery import bootsteps
from celery.signals import worker_shutting_down
from django.conf import settings

from chat.runs.executor import execute_run
from chat.runs.redis_client import redis_client
from chat.runs.worker_loop import worker_loop

log = logging.getLogger("nous.runs")
TAKE_TIMEOUT_SECS = 1.0  # how long one BLPOP waits: the longest a warm shutdown waits for the taker


async def hand_over(run_id: str) -> None:
    """Queue an admitted run for the next worker with room for it (first in, first taken)."""
    await redis_client().rpush(settings.NOUS_RUN_HANDOVER_KEY, run_id)


class RunTaker:
    """A worker process's taker: takes run ids while it has room and executes them on its run loop."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.runs: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._taking: asyncio.Future[Any] | None = None

    def start(self) -> None:
        """Start taking runs (from any thread: the work happens on the process's run loop)."""
        self._stopping = False
        self._taking = asyncio.run_coroutine_threadsafe(self._take(), worker_loop())

    def stop_taking(self) -> None:
        """Take no more runs (safe from a signal handler); one taken meanwhile goes back to the list."""
        self._stopping = True

    def stop(self, wait_for_runs: bool = True) -> None:
        """Stop taking runs; with `wait_for_runs` (a warm shutdown), block until the taken ones end."""
        self.stop_taking()
        if self._taking is not None:
            # Never cancelled mid-BLPOP (a popped id would be lost): it sees the flag within a timeout.
            self._taking.result()
        if wait_for_runs:
            asyncio.run_coroutine_threadsafe(self._wait_for_runs(), worker_loop()).result()

    async def _take(self) -> None:
        # Its own connection: a BLPOP holds one for as long as it waits.
        client = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        room = asyncio.Semaphore(self.capacity)
        failing = False
        try:
            while not self._stopping:
                await room.acquire()
                try:
                    taken = await client.blpop([settings.NOUS_RUN_HANDOVER_KEY], timeout=TAKE_TIMEOUT_SECS)
                except Exception:
                    room.release()
                    if not failing:
                        log.exception("cannot take runs from Redis; retrying every second")
                    failing = True
                    await asyncio.sleep(1)
                    continue
                if failing:
                    log.warning("taking runs from Redis again")
                    failing = False
                if taken is None:
                    room.release()
                    continue
                if self._stopping and await self._give_back(client, taken[1]):
                    room.release()
                    continue
                self._execute(taken[1], room)
        finally:
            await client.aclose()

    async def _give_back(self, client: aioredis.Redis, run_id: str) -> bool:
        """A run taken as the worker began to stop goes back to the head of the list, for the next worker."""
        try:
            await client.lpush(settings.NOUS_RUN_HANDOVER_KEY, run_id)
        except Exception:  # then this worker runs it: the warm shutdown waits for it
            log.exception("could not give run %s back; running it before stopping", run_id)
            return False
        return True

    def _execute(self, run_id: str, room: asyncio.Semaphore) -> None:
        task = asyncio.get_running_loop().create_task(execute_run(run_id), name=f"run-{run_id}")
        self.runs.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self.runs.discard(task)
            room.release()
            if not task.cancelled() and task.exception() is not None:
                log.error("run %s crashed outside its execution", run_id, exc_info=task.exception())

        task.add_done_callback(done)

    async def _wait_for_runs(self) -> None:
        if self.runs:
            log.info("warm shutdown: waiting for %d run(s) to end", len(self.runs))
            await asyncio.gather(*self.runs, return_exceptions=True)


_taker: RunTaker | None = None  # this worker process's, once its step has started


@worker_shutting_down.connect
def _stop_taking_at_once(**kwargs: Any) -> None:
    """SIGTERM: no new run from this instant (the step's `stop` comes later, after other steps')."""
    if _taker is not None:
        _taker.stop_taking()


class RunTakerStep(bootsteps.StartStopStep):
    """The Celery worker's step that takes runs: started with the worker; a warm shutdown stops
    taking and waits for the runs it has (as a pool waits for its tasks), a cold one does not."""

    requires = {"celery.worker.components:Pool"}  # stopped before the pool

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.taker: RunTaker | None = None

    def start(self, worker: Any) -> None:
        if not settings.REDIS_URL:
            return
        global _taker
        self.taker = _taker = RunTaker(settings.NOUS_WORKER_RUNS)
        self.taker.start()

    def stop(self, worker: Any) -> None:
        if self.taker is not None:
            self.taker.stop(wait_for_runs=True)

    def terminate(self, worker: Any) -> None:
        if self.taker is not None:
            self.taker.stop(wait_for_runs=False)
