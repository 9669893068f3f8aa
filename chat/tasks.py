"""Celery tasks. Runs are acknowledged early (see CELERY_TASK_ACKS_LATE in settings): never re-run."""

import asyncio

from celery import shared_task

from chat.runs.executor import execute_run
from chat.runs.redis_client import close_redis_client


async def _execute_in_own_loop(run_id: str) -> None:
    try:
        await execute_run(run_id)
    finally:
        await close_redis_client()


@shared_task(name="chat.execute_run", ignore_result=True)
def execute_run_task(run_id: str) -> None:
    """Execute one run in an event loop of its own (one loop per run, not one per delta)."""
    asyncio.run(_execute_in_own_loop(run_id))
