"""The stop signal: how `run.stop` reaches the coroutine that streams the run, in any process.

The database flag `AgentRun.stop_requested` is the durable record (the worker's checkpoint sees it
within a second); this signal makes the stop immediate.
"""

from __future__ import annotations

import asyncio
from functools import cache

from django.conf import settings

from chat.runs.redis_client import redis_client


class MemoryStopSignal:
    """In-process runs: an asyncio.Event per run."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}

    async def request(self, run_id: str) -> None:
        self.events.setdefault(run_id, asyncio.Event()).set()

    async def wait(self, run_id: str) -> None:
        await self.events.setdefault(run_id, asyncio.Event()).wait()

    def forget(self, run_id: str) -> None:
        """The run has ended: drop its event."""
        self.events.pop(run_id, None)


class RedisStopSignal:
    """Runs in Celery workers: a key (for a late subscriber) plus a pub/sub message (for speed)."""

    @staticmethod
    def _names(run_id: str) -> tuple[str, str]:
        return f"nous:run:{run_id}:stop", f"nous:run-stop:{run_id}"

    async def request(self, run_id: str) -> None:
        key, channel = self._names(run_id)
        client = redis_client()
        await client.set(key, "1", ex=3600)
        await client.publish(channel, "stop")

    def forget(self, run_id: str) -> None:
        """Nothing to drop: the key expires by itself."""

    async def wait(self, run_id: str) -> None:
        key, channel = self._names(run_id)
        client = redis_client()
        pubsub = client.pubsub()
        try:
            # Subscribe first, then look at the key: a request in between is seen one way or the other.
            await pubsub.subscribe(channel)
            if await client.exists(key):
                return
            async for message in pubsub.listen():
                if message["type"] == "message":
                    return
        finally:
            await pubsub.aclose()


@cache
def stop_signal() -> MemoryStopSignal | RedisStopSignal:
    """The stop signal of this process's mode."""
    return RedisStopSignal() if settings.REDIS_URL else MemoryStopSignal()
