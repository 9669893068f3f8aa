"""REDIS_URL as Celery's broker URL and back: redis-py and kombu spell a Unix socket differently.

redis-py: `unix:///run/redis.sock?db=5`; kombu: `redis+socket:///run/redis.sock?virtual_host=5`.
TCP URLs (`redis://`, `rediss://`) are the same for both and pass through unchanged.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


def _respelled(url: str, scheme: tuple[str, str], db: tuple[str, str]) -> str:
    parts = urlsplit(url)
    if parts.scheme != scheme[0]:
        return url
    query = urlencode([(db[1] if name == db[0] else name, value) for name, value in parse_qsl(parts.query)])
    # Not urlunsplit: it drops the empty host's "//" (redis+socket:/run/redis.sock), which kombu misreads.
    return f"{scheme[1]}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")


def broker_url(redis_url: str) -> str:
    """Celery's broker URL for a redis-py URL."""
    return _respelled(redis_url, ("unix", "redis+socket"), ("db", "virtual_host"))


def redis_py_url(broker: str) -> str:
    """The redis-py URL of a Celery broker URL made by `broker_url`."""
    return _respelled(broker, ("redis+socket", "unix"), ("virtual_host", "db"))
