"""The circuit breakers' state in Redis, shared by every ASGI process and Celery worker (production).

One hash per provider, `nous:breaker:<provider>`: `failures` (consecutive counted failures, all
processes together), `open_until` (ms on Redis's clock; set while open or half-open), `trial` and
`trial_until` (the half-open trial's token and lease). Each transition is one Lua script, so one
atomic round trip, timed by Redis's `TIME` so the machines' clocks need not agree. A hash not
written for a week expires.

Redis down: a breaker that cannot reach Redis must not fail every run, so the process falls back
to its own memory breaker (the embedded one: runs go on, the provider is still protected per
process) and logs one warning; when Redis answers again it logs once more and uses the shared
state again. The failures counted locally meanwhile are not carried over.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Iterable

import redis
import redis.asyncio as aioredis

from agents.breaker import BreakerStore, MemoryBreakerStore, Policy, Verdict, breaker_store, default_policy, set_breaker_store

log = logging.getLogger("nous.breaker")

PREFIX = "nous:breaker:"
KEY_TTL_MS = 7 * 24 * 3600 * 1000
TIMEOUT_SECS = 1.0
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
"""
# ARGV: lease_ms, token, ttl_ms -> {allowed, trial token or '', retry_in_ms}
ACQUIRE = _NOW + """
local open_until = tonumber(redis.call('HGET', key, 'open_until'))
if not open_until then return {1, '', 0} end
if open_until > now then return {0, '', open_until - now} end
local trial_until = tonumber(redis.call('HGET', key, 'trial_until') or '0')
if trial_until > now then return {0, '', 0} end
redis.call('HSET', key, 'trial', ARGV[2], 'trial_until', now + tonumber(ARGV[1]))
redis.call('PEXPIRE', key, ARGV[3])
return {1, ARGV[2], 0}
"""
# ARGV: ttl_ms
SUCCEEDED = _NOW + """
redis.call('HSET', key, 'failures', 0)
redis.call('HDEL', key, 'open_until', 'trial', 'trial_until')
redis.call('PEXPIRE', key, ARGV[1])
return 0
"""
# ARGV: threshold, counted (0/1), trial token or '', cooldown_ms, ttl_ms
FAILED = _NOW + """
local is_trial = ARGV[3] ~= '' and redis.call('HGET', key, 'trial') == ARGV[3]
if ARGV[2] == '0' then
  if is_trial then redis.call('HDEL', key, 'trial', 'trial_until') end
  return 0
end
local failures = redis.call('HINCRBY', key, 'failures', 1)
if is_trial or failures >= tonumber(ARGV[1]) then
  redis.call('HSET', key, 'open_until', now + tonumber(ARGV[4]))
  redis.call('HDEL', key, 'trial', 'trial_until')
end
redis.call('PEXPIRE', key, ARGV[5])
return failures
"""
# ARGV: trial token or ''
ABANDONED = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'trial') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'trial', 'trial_until')
end
return 0
"""
# -> {state, failures, retry_in_ms}
SNAPSHOT = _NOW + """
local failures = tonumber(redis.call('HGET', key, 'failures') or '0')
local open_until = tonumber(redis.call('HGET', key, 'open_until'))
if not open_until then return {'closed', failures, 0} end
if open_until > now then return {'open', failures, open_until - now} end
return {'half_open', failures, 0}
"""
# KEYS: several providers' hashes -> the keys of those whose circuit is closed (no open_until)
CLOSED_AMONG = """
local closed = {}
for _, key in ipairs(KEYS) do
  if redis.call('HEXISTS', key, 'open_until') == 0 then table.insert(closed, key) end
end
return closed
"""
SCRIPTS = {"acquire": ACQUIRE, "succeeded": SUCCEEDED, "failed": FAILED, "abandoned": ABANDONED, "snapshot": SNAPSHOT, "closed_among": CLOSED_AMONG}
UNREACHABLE = (redis.RedisError, OSError, asyncio.TimeoutError)


def _ms(secs: float) -> int:
    return max(1, round(secs * 1000))


def _snapshot(name: str, reply: list[Any]) -> dict[str, object]:
    state, failures, retry_in_ms = reply
    return {"name": name, "state": state, "failures": int(failures), "retry_in": int(retry_in_ms) / 1000}


class RedisBreakerStore:
    """A `BreakerStore` on Redis, with this process's memory store standing in while Redis is down."""

    def __init__(self, url: str, fallback: BreakerStore | None = None) -> None:
        self.url = url
        self.fallback = fallback or MemoryBreakerStore()
        self.reachable = True
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[aioredis.Redis, dict[str, Any]]] = (
            weakref.WeakKeyDictionary())

    def _scripts(self) -> dict[str, Any]:
        """The scripts on the running loop's client (one client per event loop, as chat/runs/redis_client.py)."""
        loop = asyncio.get_running_loop()
        if loop not in self._per_loop:
            client = aioredis.Redis.from_url(self.url, decode_responses=True, socket_timeout=TIMEOUT_SECS,
                                             socket_connect_timeout=TIMEOUT_SECS)
            self._per_loop[loop] = client, {name: client.register_script(source) for name, source in SCRIPTS.items()}
        return self._per_loop[loop][1]

    async def aclose(self) -> None:
        """Close the running loop's client (tests; a process's clients live as long as it)."""
        client, _ = self._per_loop.pop(asyncio.get_running_loop(), (None, None))
        if client is not None:
            await client.aclose()

    async def _call(self, script: str, name: str, *args: object) -> Any:
        """Run one script on the provider's key; raise if Redis cannot be reached (logged once)."""
        return await self._run(script, [PREFIX + name], *args)

    async def _run(self, script: str, keys: list[str], *args: object) -> Any:
        """Run one script on `keys` (`_call`'s, or several providers' at once)."""
        try:
            reply = await self._scripts()[script](keys=keys, args=list(args))
        except UNREACHABLE:
            if self.reachable:
                self.reachable = False
                log.warning("breaker: Redis unreachable; each process uses its own breaker until it is back", exc_info=True)
            raise
        if not self.reachable:
            self.reachable = True
            log.warning("breaker: Redis reachable again; the breakers are shared again")
        return reply

    async def acquire(self, name: str, policy: Policy, token: str) -> Verdict:
        try:
            allowed, trial, retry_in_ms = await self._call("acquire", name, _ms(policy.trial_lease_secs), token, KEY_TTL_MS)
        except UNREACHABLE:
            return await self.fallback.acquire(name, policy, token)
        return Verdict(bool(allowed), trial or None, int(retry_in_ms) / 1000)

    async def succeeded(self, name: str) -> None:
        try:
            await self._call("succeeded", name, KEY_TTL_MS)
        except UNREACHABLE:
            pass
        await self.fallback.succeeded(name)  # a provider that answers is up for the local breaker too

    async def failed(self, name: str, policy: Policy, counted: bool, trial: str | None) -> None:
        try:
            await self._call("failed", name, policy.failure_threshold, int(counted), trial or "",
                             _ms(policy.cooldown_secs), KEY_TTL_MS)
        except UNREACHABLE:
            await self.fallback.failed(name, policy, counted, trial)

    async def abandoned(self, name: str, trial: str | None) -> None:
        try:
            await self._call("abandoned", name, trial or "")
        except UNREACHABLE:
            await self.fallback.abandoned(name, trial)

    async def snapshot(self, name: str, policy: Policy) -> dict[str, object]:
        try:
            return _snapshot(name, await self._call("snapshot", name))
        except UNREACHABLE:
            return await self.fallback.snapshot(name, policy)

    async def closed_among(self, names: Iterable[str]) -> frozenset[str]:
        names = list(names)
        try:
            keys = await self._run("closed_among", [PREFIX + name for name in names])
        except UNREACHABLE:
            return await self.fallback.closed_among(names)
        return frozenset(key[len(PREFIX):] for key in keys)


def shared_breaker_states(url: str) -> list[dict[str, object]]:
    """Every provider's shared breaker, read now (sync: for /metrics); raises `redis.RedisError`."""
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=TIMEOUT_SECS, socket_connect_timeout=TIMEOUT_SECS)
    try:
        snapshot = client.register_script(SNAPSHOT)
        names = sorted(key[len(PREFIX):] for key in client.scan_iter(PREFIX + "*"))
        return [_snapshot(name, snapshot(keys=[PREFIX + name])) for name in names]
    finally:
        client.close()


def breaker_states_now() -> list[dict[str, object]]:
    """The installed store's breakers, all providers: the deployment's (Redis) or this process's."""
    store = breaker_store()
    if isinstance(store, RedisBreakerStore):
        return shared_breaker_states(store.url)
    return store.states(default_policy()) if isinstance(store, MemoryBreakerStore) else []


def install_shared_breakers(url: str) -> None:
    """Keep every provider's breaker in Redis at `url` (called at start-up when REDIS_URL is set)."""
    set_breaker_store(RedisBreakerStore(url))
