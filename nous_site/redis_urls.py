"""REDIS_URL as Celery's broker URL and back: redis-py and kombu spell a Unix socket differently.

redis-py: `unix://[[user]:password@]/run/redis.sock?db=5` (credentials also as `username=` and
`password=` in the query); kombu: `redis+socket://[[user]:password@]/run/redis.sock?virtual_host=5`,
credentials only before the `@`. TCP URLs (`redis://`, `rediss://`) are the same for both.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit


def broker_url(redis_url: str) -> str:
    """Celery's broker URL for a redis-py URL. Of a socket URL's query only the database and the
    credentials are kept (kombu would pass other redis-py options on as strings)."""
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    query = dict(parse_qsl(parts.query))
    user = query.get("username", unquote(parts.username or ""))
    password = query.get("password", unquote(parts.password or ""))
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user or password else ""
    kept = urlencode({"virtual_host": query["db"]}) if "db" in query else ""
    # Not urlunsplit: it drops the empty host's "//" (redis+socket:/run/redis.sock), which kombu misreads.
    return f"redis+socket://{netloc}{parts.path}" + (f"?{kept}" if kept else "")


def redis_py_url(broker: str) -> str:
    """The redis-py URL of a Celery broker URL made by `broker_url`."""
    parts = urlsplit(broker)
    if parts.scheme != "redis+socket":
        return broker
    query = urlencode([("db" if name == "virtual_host" else name, value) for name, value in parse_qsl(parts.query)])
    return f"unix://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
