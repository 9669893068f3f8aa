"""Leases: sets whose members expire unless renewed, for room presence and sockets per user.

Each member (a socket) is held with an expiry time; this process renews the leases of its live
sockets every `NOUS_PRESENCE_TTL_SECS / 3`, so a process that is killed stops holding its sockets
within one TTL: no ghosts in a room, no socket slots lost for good. A Redis sorted set per key in
production (score = expiry), process memory in the embedded default.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from functools import cache

from django.conf import settings

from chat.runs.redis_client import LuaScript, redis_client

log = logging.getLogger("nous.chat")


class MemoryLeases:
    def __init__(self) -> None:
        self.sets: dict[str, dict[str, float]] = {}
        self.versions: dict[str, int] = {}

    async def add(self, key: str, member: str, limit: int | None = None) -> bool:
        """Hold `member` in `key`; with `limit`, refuse (False) when `key` holds that many already."""
        held = self._live(key)
        if limit is not None and member not in held and len(held) >= limit:
            return False
        held[member] = time.time() + settings.NOUS_PRESENCE_TTL_SECS
        self.versions[key] = self.versions.get(key, 0) + 1
        return True

    async def remove(self, key: str, member: str) -> None:
        self.sets.get(key, {}).pop(member, None)
        self.versions[key] = self.versions.get(key, 0) + 1

    async def bump(self, key: str) -> None:
        self.versions[key] = self.versions.get(key, 0) + 1

    async def renew(self, held: list[tuple[str, str]]) -> None:
        expires = time.time() + settings.NOUS_PRESENCE_TTL_SECS
        for key, member in held:
            self.sets.setdefault(key, {})[member] = expires

    async def members(self, key: str) -> tuple[list[str], int]:
        """The live members, and the set's version (it grows with every change)."""
        return sorted(self._live(key)), self.versions.get(key, 0)

    def _live(self, key: str) -> dict[str, float]:
        now = time.time()
        held = self.sets.setdefault(key, {})
        for member in [m for m, expires in held.items() if expires <= now]:
            del held[member]
        return held


class RedisLeases:
    # Add only while under the limit, in one round trip and atomically across processes.
    ADD = LuaScript("""
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
    local limit = tonumber(ARGV[4])
    if limit >= 0 and redis.call('ZSCORE', KEYS[1], ARGV[3]) == false and redis.call('ZCARD', KEYS[1]) >= limit then
        return 0
    end
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('INCR', KEYS[2])
    redis.call('EXPIRE', KEYS[2], ARGV[5])
    return 1
    """)

    async def add(self, key: str, member: str, limit: int | None = None) -> bool:
        now, ttl = time.time(), settings.NOUS_PRESENCE_TTL_SECS
        added = await self.ADD([key, f"{key}:v"], now, now + ttl, member, -1 if limit is None else limit, int(ttl * 4) + 1)
        return bool(added)

    async def remove(self, key: str, member: str) -> None:
        async with redis_client().pipeline(transaction=True) as pipe:
            pipe.zrem(key, member)
            pipe.incr(f"{key}:v")
            await pipe.execute()

    async def bump(self, key: str) -> None:
        await redis_client().incr(f"{key}:v")

    async def renew(self, held: list[tuple[str, str]]) -> None:
        ttl = settings.NOUS_PRESENCE_TTL_SECS
        expires = time.time() + ttl
        async with redis_client().pipeline(transaction=False) as pipe:
            for key, member in held:
                pipe.zadd(key, {member: expires}, xx=True)  # a lease another process ended stays ended
            for key in {key for key, _ in held}:
                pipe.expire(key, int(ttl * 4) + 1)
            await pipe.execute()

    async def members(self, key: str) -> tuple[list[str], int]:
        """The live members, and the set's version (it grows with every change), read together."""
        async with redis_client().pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", time.time())
            pipe.zrange(key, 0, -1)
            pipe.get(f"{key}:v")
            _, members, version = await pipe.execute()
        return sorted(members), int(version or 0)


@cache
def leases() -> MemoryLeases | RedisLeases:
    """The leases of this process's mode."""
    return RedisLeases() if settings.REDIS_URL else MemoryLeases()


class LeaseKeeper:
    """Renews the leases this process holds, and calls the sweepers (presence) on each beat."""

    def __init__(self) -> None:
        self.held: set[tuple[str, str]] = set()
        self.sweepers: weakref.WeakSet = weakref.WeakSet()
        self.task: asyncio.Task[None] | None = None

    def hold(self, key: str, member: str) -> None:
        self.held.add((key, member))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._beat(), name="nous-leases")

    def release(self, key: str, member: str) -> None:
        self.held.discard((key, member))

    async def _beat(self) -> None:
        while self.held:
            await asyncio.sleep(settings.NOUS_PRESENCE_TTL_SECS / 3)
            try:
                await leases().renew(sorted(self.held))
                for sweeper in list(self.sweepers):
                    await sweeper.sweep()
            except Exception:  # Redis trouble: the next beat tries again
                log.exception("renewing leases failed")


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LeaseKeeper] = weakref.WeakKeyDictionary()


def lease_keeper() -> LeaseKeeper:
    """The lease keeper of the running event loop."""
    loop = asyncio.get_running_loop()
    keeper = _keepers.get(loop)
    if keeper is None:
        keeper = _keepers[loop] = LeaseKeeper()
    return keeper
