"""Limits that keep one user from taking the service down: sockets per user, sends per minute,
frames per second. Per-user counters live in Redis in production (shared by all ASGI processes,
healing by expiry after a crash) and in process memory in the embedded default. Sockets are
leases (`chat.leases`): a killed process's sockets stop counting within one lease TTL."""

from __future__ import annotations

import time
from collections import defaultdict
from functools import cache

from django.conf import settings

from chat.leases import lease_keeper, leases
from chat.runs.redis_client import redis_client

SEND_WINDOW_SECS = 60


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


async def open_socket(user_id: int, socket_id: str) -> bool:
    """Count a new socket of the user; False (nothing counted) when the user has too many."""
    key = f"nous:sockets:{user_id}"
    if not await leases().add(key, socket_id, limit=settings.NOUS_MAX_SOCKETS_PER_USER):
        return False
    lease_keeper().hold(key, socket_id)
    return True


async def close_socket(user_id: int, socket_id: str) -> None:
    key = f"nous:sockets:{user_id}"
    lease_keeper().release(key, socket_id)
    await leases().remove(key, socket_id)


class MemoryCounters:
    def __init__(self) -> None:
        self.sockets: dict[int, int] = defaultdict(int)
        self.sends: dict[tuple[int, int], int] = defaultdict(int)

    async def allow_send(self, user_id: int) -> bool:
        window = int(time.time() // SEND_WINDOW_SECS)
        for key in [k for k in self.sends if k[1] < window]:
            del self.sends[key]
        self.sends[(user_id, window)] += 1
        return self.sends[(user_id, window)] <= settings.NOUS_SENDS_PER_MINUTE


class RedisCounters:
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
