"""System checks for settings that start but are unsafe together (`manage.py check --deploy`).

Errors stop `migrate` and `runserver`; the ASGI servers and Celery do not run checks, so a
deployment runs `manage.py check --deploy` once (README.md, Production).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

# `dev_secret_key` in settings.py writes keys with this prefix into var/dev-secret-key.
DEV_KEY_PREFIX = "dev-only-"
# A live run is beaten every NOUS_CHECKPOINT_SECS; a slow database may delay one or two beats.
MIN_HEARTBEATS_PER_STALE = 3


@register(Tags.security)
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if not settings.DEBUG and settings.SECRET_KEY.startswith(DEV_KEY_PREFIX):
        return [Error(
            "DEBUG is off but SECRET_KEY is this checkout's development key.",
            hint="Set SECRET_KEY (or SECRET_KEY_FILE) to a long random value of its own, the same in every process.",
            id="nous.E001",
        )]
    return []


@register(Tags.security)
def check_allowed_hosts(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    if settings.DEBUG:
        return []
    if not settings.ALLOWED_HOSTS:
        return [Error(
            "DEBUG is off and ALLOWED_HOSTS is empty: every request would be refused with 400.",
            hint="Set ALLOWED_HOSTS to the site's host names, comma-separated (e.g. chat.example.com).",
            id="nous.E002",
        )]
    return []


@register(Tags.security, deploy=True)
def check_wildcard_host(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    if not settings.DEBUG and "*" in settings.ALLOWED_HOSTS:
        return [Warning(
            "ALLOWED_HOSTS contains '*': any Host header is accepted (host header poisoning of links).",
            hint="List the site's host names instead.",
            id="nous.W002",
        )]
    return []


@register()
def check_production_database(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    if settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        return [Warning(
            "REDIS_URL is set (production mode) but the database is SQLite.",
            hint="Celery workers on other machines cannot share a SQLite file, and SQLite takes one writer at a time: "
                 "set DATABASE_URL to PostgreSQL.",
            id="nous.W001",
        )]
    return []


@register()
def check_run_timeouts(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if settings.NOUS_RUN_STALE_SECS < MIN_HEARTBEATS_PER_STALE * settings.NOUS_CHECKPOINT_SECS:
        return [Error(
            f"NOUS_RUN_STALE_SECS ({settings.NOUS_RUN_STALE_SECS:g}) is under {MIN_HEARTBEATS_PER_STALE} heartbeats "
            f"(NOUS_CHECKPOINT_SECS {settings.NOUS_CHECKPOINT_SECS:g}): the watchdog would fail runs that are alive.",
            hint=f"Raise NOUS_RUN_STALE_SECS to at least {MIN_HEARTBEATS_PER_STALE * settings.NOUS_CHECKPOINT_SECS:g}.",
            id="nous.E003",
        )]
    if settings.NOUS_RUN_SLOT_TTL_SECS < MIN_HEARTBEATS_PER_STALE * settings.NOUS_CHECKPOINT_SECS:
        return [Error(
            f"NOUS_RUN_SLOT_TTL_SECS ({settings.NOUS_RUN_SLOT_TTL_SECS:g}) is under {MIN_HEARTBEATS_PER_STALE} heartbeats "
            f"(NOUS_CHECKPOINT_SECS {settings.NOUS_CHECKPOINT_SECS:g}): the fair queue would give away the slots of live runs.",
            hint=f"Raise NOUS_RUN_SLOT_TTL_SECS to at least {MIN_HEARTBEATS_PER_STALE * settings.NOUS_CHECKPOINT_SECS:g}.",
            id="nous.E004",
        )]
    return []
