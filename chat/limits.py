"""Limits that keep one user from taking the service down: sockets per user, sends per minute,
frames per second. Per-user counters live in Redis in production (shared by all ASGI processes,
healing by expiry after a crash) and in process memory in the embedded default. Sockets are
leases (`chat.leases`): a killed process's sockets stop counting within one lease TTL."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict, deque
from functools import cache

from django.conf import settings

from chat.leases import lease_keeper, leases
from chat.runs.redis_client import LuaScript

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
    """Sends in the last minute per user, as a sliding window of their times."""

    def __init__(self) -> None:
        self.sends: dict[int, deque[float]] = defaultdict(deque)

    async def allow_send(self, user_id: int) -> bool:
        now = time.time()
        times = self.sends[user_id]
        while times and times[0] <= now - SEND_WINDOW_SECS:
            times.popleft()
        if len(times) >= settings.NOUS_SENDS_PER_MINUTE:
            return False  # a refused send does not count
        times.append(now)
        return True


class RedisCounters:
    """The same sliding window as a sorted set per user, shared by every process: one script, one
    round trip; a refused send is not added (it does not count)."""

    ALLOW = LuaScript("""
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[3])
    if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
    redis.call('EXPIRE', KEYS[1], ARGV[3] + 1)
    return 1
    """)

    async def allow_send(self, user_id: int) -> bool:
        now = time.time()
        member = f"{now}:{uuid.uuid4().hex[:8]}"
        return bool(await self.ALLOW([f"nous:sends:{user_id}"], now, member, SEND_WINDOW_SECS, settings.NOUS_SENDS_PER_MINUTE))


@cache
def user_counters() -> MemoryCounters | RedisCounters:
    """The per-user counters of this process's mode."""
    return RedisCounters() if settings.REDIS_URL else MemoryCounters()
