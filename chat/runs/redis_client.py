"""One asyncio Redis client per event loop (the ASGI loop, or each worker run's own loop)."""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import NoScriptError

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def redis_client() -> aioredis.Redis:
    """The Redis client of the running event loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=None, max_connections=10000)
        _clients[loop] = client
    return client


class LuaScript:
    """A Lua script, run by its SHA (`EVALSHA`) on the running loop's client: the text is sent to
    Redis once, when Redis does not know it yet, not with every call."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: list[str], *args: Any) -> Any:
        client = redis_client()
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:  # a new or flushed Redis
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)
