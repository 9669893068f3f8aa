"""Health endpoints for load balancers and orchestrators.

`/healthz`: the process answers (touches nothing else). `/readyz`: the database, the channel layer
and the Celery broker, each with its status; 503 when one is down. Redis is asked with a short
timeout, so a Redis that is down or unreachable makes the answer a 503 within seconds, not a hang.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from nous_site.redis_urls import redis_py_url

log = logging.getLogger("nous.health")

REDIS_TIMEOUT_SECS = 1.0
OK, NOT_USED, DOWN = "ok", "not used", "down"


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"status": OK, "vendor": connection.vendor}


def ping_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECS, socket_timeout=REDIS_TIMEOUT_SECS)
    try:
        client.ping()
    finally:
        client.close()


def check_channel_layer() -> dict[str, Any]:
    layer = settings.CHANNEL_LAYERS["default"]
    if layer["BACKEND"].endswith("InMemoryChannelLayer"):
        return {"status": OK, "backend": "in-memory"}
    # The layer lists one server several times (NOUS_LAYER_CONNECTIONS): each is asked once.
    hosts = layer.get("CONFIG", {}).get("hosts", [])
    urls = list(dict.fromkeys(h["address"] if isinstance(h, dict) else h for h in hosts))
    for url in urls:
        ping_redis(url)
    return {"status": OK, "backend": "redis"}


def check_broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL
    if url.startswith("memory://"):
        return {"status": NOT_USED, "detail": "runs execute in the ASGI process"}
    ping_redis(redis_py_url(url))
    return {"status": OK, "backend": "redis"}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "channel_layer": check_channel_layer,
    "broker": check_broker,
}


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": OK})


@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            result = check()
        except Exception as e:
            # The reason is logged; the answer names only the kind of error, since readyz is not
            # behind a login and a message may carry host names.
            log.warning("readyz: %s is down: %r", name, e)
            result = {"status": DOWN, "error": type(e).__name__}
        result["ms"] = round((time.monotonic() - started) * 1000, 1)
        results[name] = result
    down = [name for name, result in results.items() if result["status"] == DOWN]
    body = {"status": DOWN if down else OK, "down": down, "checks": results}
    return JsonResponse(body, status=503 if down else 200)
