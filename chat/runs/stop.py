"""The stop signal: how `run.stop` reaches the coroutine that streams the run, in any process.

The database flag `AgentRun.stop_requested` is the durable record (the worker's checkpoint sees it
within a second); this signal makes the stop immediate.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import cache

from django.conf import settings

from chat.runs.redis_client import redis_client

log = logging.getLogger("nous.runs")
STOP_CHANNEL = "nous:run-stop"
LISTENER_RETRY_SECS = 1.0


@dataclass(frozen=True)
class Watch:
    """One execution's watch for its run's stop: `ask` when the signal must also ask Redis whether
    a stop came before the process's listener was subscribed."""

    run_id: str
    event: asyncio.Event
    ask: bool = False


class MemoryStopSignal:
    """In-process runs: an asyncio.Event per execution of a run."""

    def __init__(self) -> None:
        self.events: dict[str, set[asyncio.Event]] = {}

    async def request(self, run_id: str) -> None:
        self._wake(run_id)

    def _wake(self, run_id: str) -> None:
        for event in self.events.get(run_id, ()):
            event.set()

    def watch(self, run_id: str) -> Watch:
        """Before the run's claim: catch its stop from now on. A stop is only signalled once the
        claim made the run running (`chat.runs.dispatch.stop_run`), so none can come earlier."""
        event = asyncio.Event()
        self.events.setdefault(run_id, set()).add(event)
        return Watch(run_id, event)

    async def wait(self, watch: Watch) -> None:
        await watch.event.wait()

    def forget(self, watch: Watch) -> None:
        """The execution has ended (or never claimed the run): drop its watch, and only its own."""
        events = self.events.get(watch.run_id)
        if events is not None:
            events.discard(watch.event)
            if not events:
                del self.events[watch.run_id]


class RedisStopSignal(MemoryStopSignal):
    """Runs in Celery workers: a key per stopped run (for a late waiter) and one pub/sub channel
    that each worker process listens to once, waking the local watches of the run it names."""

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

    def watch(self, run_id: str) -> Watch:
        """With this process's listener subscribed, the stop's message is caught from now on and
        `wait` need not ask Redis for an earlier one. Otherwise (the process's first run, or the
        listener resubscribing) `wait` subscribes and then asks."""
        listening = self.listening.get(asyncio.get_running_loop())
        watch = super().watch(run_id)
        return watch if listening is not None and listening.is_set() else Watch(run_id, watch.event, ask=True)

    async def wait(self, watch: Watch) -> None:
        if watch.ask:
            await self._subscribed()
            # Subscribed first, then the key: a request in between is seen one way or the other.
            if await redis_client().exists(self._key(watch.run_id)):
                return
        await watch.event.wait()

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
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":  # the server's confirmation, also after a reconnect
                        subscribed.set()
                    elif message["type"] == "message":
                        self._wake(message["data"])
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
