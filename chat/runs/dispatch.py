"""Handing runs to an executor and stopping them: in-process tasks, or Celery workers."""

from __future__ import annotations

import asyncio
from functools import cache

from django.conf import settings
from django.db.models import Q

from chat.db import db_call
from chat.models import AgentRun
from chat.runs import lifecycle
from chat.runs.executor import execute_run
from chat.runs.publish import publish_end
from chat.runs.stop import stop_signal


class InProcessExecutor:
    """Embedded default: each run is an asyncio task in the ASGI process."""

    handover_key = None  # no list: `submit` starts the task

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    async def submit(self, run_id: str) -> None:
        """Start the run now (it holds a slot of the fair queue, chat.runs.slots)."""
        task = asyncio.create_task(execute_run(run_id), name=f"run-{run_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class WorkerExecutor:
    """Production: each run goes to a Celery worker process, onto its run loop (chat.runs.handover)."""

    @property
    def handover_key(self) -> str:
        """The list the workers take runs from: the fair queue's admission may push onto it itself."""
        return settings.NOUS_RUN_HANDOVER_KEY

    async def submit(self, run_id: str) -> None:
        """Hand the run to the next worker with room. It holds a slot of the fair queue
        (chat.runs.slots), so no run waits ahead of it as long as the workers' NOUS_WORKER_RUNS
        add up to at least NOUS_MAX_ACTIVE_RUNS."""
        from chat.runs.handover import hand_over

        await hand_over(run_id)


@cache
def run_executor() -> InProcessExecutor | WorkerExecutor:
    """The executor of this process's mode."""
    return WorkerExecutor() if settings.REDIS_URL else InProcessExecutor()


async def stop_run(run_id: str, by: str = "") -> bool:
    """Stop an active run, wherever it executes; False if it was not active. `by`: who asked."""
    state = await db_call(lifecycle.request_stop)(run_id, by)
    if state == "running":
        await stop_signal().request(run_id)
        return True
    if state == "queued":
        frame = await db_call(lifecycle.finish_run)(run_id, "stopped", "", 0, condition=Q(status=AgentRun.Status.QUEUED))
        if frame is not None:
            await publish_end(frame["conversation_id"], frame)
            return True
        return await stop_run(run_id)  # it started meanwhile
    if state == "waiting":  # paused for an approval: no worker holds it
        _, text, seq = await db_call(lifecycle.checkpointed)(run_id)
        frame = await db_call(lifecycle.finish_run)(run_id, "stopped", text, seq, condition=Q(status=AgentRun.Status.WAITING))
        if frame is not None:
            await publish_end(frame["conversation_id"], frame)
            return True
        return await stop_run(run_id)  # it was decided and queued meanwhile
    return False


async def fail_unsubmitted(run_id: str, message: str = "The agent could not be started") -> None:
    """End a queued run that could not be handed to an executor (or queued), and tell its watchers."""
    error = {"code": "overloaded", "message": message, "retryable": True}
    frame = await db_call(lifecycle.finish_run)(run_id, "failed", "", 0, None, error, Q(status=AgentRun.Status.QUEUED))
    if frame is not None:
        await publish_end(frame["conversation_id"], frame)
