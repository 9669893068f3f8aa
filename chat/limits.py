"""Limits that keep one user from taking the service down: sockets per user, sends per minute,
frames per second. Per-user counters live in Redis in production (shared by all ASGI processes,
healing by expiry after a crash) and in process memory in the embedded default."""

from __future__ import annotations

import time
from collections import defaultdict
from functools import cache

from django.conf import settings

from chat.runs.redis_client import redis_client

SEND_WINDOW_SECS = 60
SOCKET_COUNT_TTL_SECS = 3600  # a crashed process's sockets stop counting after this


class FrameBucket:
    """A token bucket per socket: `rate` frames a second, bursts up to twice that."""

    def __init__(self, rate: float, clock=time.monotonic) -> None:
        self.rate, self.capacity, self.clock = rate, 2 * rate, clock
        self.tokens, self.stamp = self.capacity, clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class MemoryCounters:
    def __init__(self) -> None:
        self.sockets: dict[int, int] = defaultdict(int)
        self.sends: dict[tuple[int, int], int] = defaultdict(int)

    async def open_socket(self, user_id: int) -> bool:
        if self.sockets[user_id] >= settings.NOUS_MAX_SOCKETS_PER_USER:
            return False
        self.sockets[user_id] += 1
        return True

    async def close_socket(self, user_id: int) -> None:
        self.sockets[user_id] = max(0, self.sockets[user_id] - 1)

    async def allow_send(self, user_id: int) -> bool:
        window = int(time.time() // SEND_WINDOW_SECS)
        for key in [k for k in self.sends if k[1] < window]:
            del self.sends[key]
        self.sends[(user_id, window)] += 1
        return self.sends[(user_id, window)] <= settings.NOUS_SENDS_PER_MINUTE


class RedisCounters:
    async def open_socket(self, user_id: int) -> bool:
        key = f"nous:sockets:{user_id}"
        async with redis_client().pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, SOCKET_COUNT_TTL_SECS)
            count, _ = await pipe.execute()
        if count > settings.NOUS_MAX_SOCKETS_PER_USER:
            await redis_client().decr(key)
            return False
        return True

    async def close_socket(self, user_id: int) -> None:
        key = f"nous:sockets:{user_id}"
        if await redis_client().decr(key) < 0:
            await redis_client().set(key, 0, ex=SOCKET_COUNT_TTL_SECS)

    async def allow_send(self, user_id: int) -> bool:
        key = f"nous:sends:{user_id}:{int(time.time() // SEND_WINDOW_SECS)}"
        async with redis_client().pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, SEND_WINDOW_SECS * 2)
            count, _ = await pipe.execute()
        return count <= settings.NOUS_SENDS_PER_MINUTE


@cache
def user_counters() -> MemoryCounters | RedisCounters:
    """The per-user counters of this process's mode."""
    return RedisCounters() if settings.REDIS_URL else MemoryCounters()
