"""The stop signal: how `run.stop` reaches the coroutine that streams the run, in any process.

The database flag `AgentRun.stop_requested` is the durable record (the worker's checkpoint sees it
within a second); this signal makes the stop immediate.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache

from django.conf import settings

from chat.runs.redis_client import redis_client

log = logging.getLogger("nous.runs")
STOP_CHANNEL = "nous:run-stop"
LISTENER_RETRY_SECS = 1.0


class MemoryStopSignal:
    """In-process runs: an asyncio.Event per run."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}

    async def request(self, run_id: str) -> None:
        self.events.setdefault(run_id, asyncio.Event()).set()

    def watch(self, run_id: str) -> None:
        """Before the run's claim: catch its stop from now on (a stop is only signalled once the
        claim made the run running, see `chat.runs.dispatch.stop_run`)."""
        self.events.setdefault(run_id, asyncio.Event())

    async def wait(self, run_id: str) -> None:
        await self.events.setdefault(run_id, asyncio.Event()).wait()

    def forget(self, run_id: str) -> None:
        """The run has ended: drop its event."""
        self.events.pop(run_id, None)


class RedisStopSignal(MemoryStopSignal):
    """Runs in Celery workers: a key per stopped run (for a late waiter) and one pub/sub channel
    that each worker process listens to once, waking the local run it names."""

    def __init__(self) -> None:
        super().__init__()
        self.listening: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}

    @staticmethod
    def _key(run_id: str) -> str:
        return f"nous:run:{run_id}:stop"

    async def request(self, run_id: str) -> None:
        client = redis_client()
        await client.set(self._key(run_id), "1", ex=3600)
        await client.publish(STOP_CHANNEL, run_id)

    def watch(self, run_id: str) -> None:
        """Before the run's claim: with this process's listener subscribed, its stop's message is
        caught from now on, so `wait` need not ask Redis for an earlier request: there can be none,
        since a stop is only signalled once the claim made the run running. Otherwise (the first
        run, or the listener reconnecting) `wait` subscribes and asks, as for any run."""
        listening = self.listening.get(asyncio.get_running_loop())
        if listening is not None and listening.is_set():
            self.events.setdefault(run_id, asyncio.Event())

    async def wait(self, run_id: str) -> None:
        watched = self.events.get(run_id)
        if watched is not None:
            await watched.wait()
            return
        await self._subscribed()
        event = self.events.setdefault(run_id, asyncio.Event())
        # Subscribed first, then the key: a request in between is seen one way or the other.
        if await redis_client().exists(self._key(run_id)):
            return
        await event.wait()

    async def _subscribed(self) -> None:
        loop = asyncio.get_running_loop()
        if loop not in self.listening:
            self.listening[loop] = asyncio.Event()
            loop.create_task(self._listen(self.listening[loop]), name="nous-stop-listener")
        await self.listening[loop].wait()

    async def _listen(self, subscribed: asyncio.Event) -> None:
        while True:
            pubsub = redis_client().pubsub()
            try:
                await pubsub.subscribe(STOP_CHANNEL)
                subscribed.set()
                async for message in pubsub.listen():
                    if message["type"] == "message" and message["data"] in self.events:
                        self.events[message["data"]].set()
            except Exception:
                subscribed.clear()  # runs starting meanwhile ask Redis for their stop (`watch`)
                log.exception("stop listener lost Redis; checkpoints still see stops")
                await asyncio.sleep(LISTENER_RETRY_SECS)
            finally:
                await pubsub.aclose()


@cache
def stop_signal() -> MemoryStopSignal | RedisStopSignal:
    """The stop signal of this process's mode."""
    return RedisStopSignal() if settings.REDIS_URL else MemoryStopSignal()
