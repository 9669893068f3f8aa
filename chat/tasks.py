"""Celery tasks: the periodic commands. Runs are not tasks: the workers take them from a Redis list (chat.runs.handover)."""

import io
import logging

import redis
from celery import shared_task
from django.conf import settings
from django.core.management import call_command


@shared_task(name="chat.execute_run", ignore_result=True)
def execute_run_task(run_id: str) -> None:
    """A run handed over as a task by an older version of this code: handed over as runs are now."""
    redis.Redis.from_url(settings.REDIS_URL).rpush(settings.NOUS_RUN_HANDOVER_KEY, run_id)


log = logging.getLogger("nous.ops")


def _command(*args: str) -> str:
    """Run a management command; its lines go to the log (not the worker's stdout, logged as warnings)."""
    out = io.StringIO()
    summary = call_command(*args, stdout=out)
    log.info("%s: %s", args[0], out.getvalue().strip())
    return summary


# The periodic work Celery beat starts (CELERY_BEAT_SCHEDULE in settings): the management
# commands themselves, so a schedule and a hand-run do exactly the same thing.
@shared_task(name="chat.cleanup_agents", ignore_result=True)
def cleanup_agents_task() -> str:
    return _command("cleanup_agents")


@shared_task(name="chat.prune_conversations", ignore_result=True)
def prune_conversations_task() -> str:
    if not settings.NOUS_PRUNE_AFTER_DAYS:
        return "Done! Pruning is off (NOUS_PRUNE_AFTER_DAYS=0)."
    return _command("prune_conversations", "--older-than", f"{settings.NOUS_PRUNE_AFTER_DAYS}d")
