"""The watchdog: ends runs whose worker died, or that no worker picked up, as `failed`.

Run by `cleanup_agents` and, every NOUS_WATCHDOG_INTERVAL_SECS, by each ASGI process itself.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from django.conf import settings
from django.db.models import Q

from chat.db import db_call
from chat.models import AgentRun
from chat.runs import approvals, lifecycle
from chat.runs.publish import publish_end
from chat.runs.replay import replay_log
from chat.runs.slots import slots

log = logging.getLogger("nous.runs")
_watched_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_tasks: set[asyncio.Task[None]] = set()


async def end_stale_runs(stale_secs: float | None = None, queued_secs: float | None = None) -> list[str]:
    """The watchdog: end runs whose worker died (or that nobody picked up) as `failed`, keeping
    the partial text the replay log holds. Returns the ids it ended."""
    condition = lifecycle.stale_condition(stale_secs, queued_secs)
    run_ids = await db_call(lifecycle.stale_run_ids)(condition)
    if run_ids:  # a run waiting its turn in the fair queue, or just handed over, is not lost
        holders, waiting = await slots().snapshot()
        queued = await db_call(lifecycle.queued_among)(run_ids)
        run_ids = [r for r in run_ids if not (r in queued and (r in waiting or r in holders))]
    return await fail_runs(run_ids, condition)


async def expire_approvals() -> list[str]:
    """Tool calls nobody decided in time are rejected; their runs are queued again to go on
    (ahead of the fair queue's waiting runs, as after a decision)."""
    from chat.runs.actions import submit_run  # actions stand on this module

    resumed = await db_call(approvals.expire)()
    for run_id in resumed:
        conversation_id, owner_id = await db_call(_conversation_of)(run_id)
        await submit_run(conversation_id, run_id, owner_id, first=True)
    return resumed


async def sweep_slots() -> int:
    """The fair queue's part of the sweep: a killed process's slots come back, the next runs start."""
    from chat.runs import admission  # it hands runs to the executor, which stands on this module's peers

    return await admission.sweep()


async def fail_runs(run_ids: list[str], condition: Q | None = None, why: str | None = None) -> list[str]:
    """End active runs `failed` with the partial text the replay log holds, and tell their
    sockets (`run.failed`); the watchdog's sweep and the admin's action. Returns those it ended."""
    ended = []
    for run_id in run_ids:
        status, checkpointed, last_seq = await db_call(lifecycle.checkpointed)(run_id)
        replay = await replay_log().read(run_id)
        text, seq = (replay.text, replay.last_seq) if replay else (checkpointed, last_seq)
        what = why or ("stopped responding" if status == AgentRun.Status.RUNNING else "was never picked up by a worker")
        error = {"code": "timeout", "message": f"The agent run {what}", "retryable": True}
        frame = await db_call(lifecycle.finish_run)(run_id, "failed", text, seq, None, error, condition)
        if frame is not None:
            await publish_end(frame["conversation_id"], frame)
            ended.append(run_id)
    return ended


def _conversation_of(run_id: str) -> tuple[str, int]:
    conversation_id, owner_id = AgentRun.objects.values_list("conversation_id", "conversation__owner_id").get(id=run_id)
    return str(conversation_id), owner_id


def ensure_watchdog() -> None:
    """Start the periodic sweep in the running loop, once (no-op if the interval is 0)."""
    interval = settings.NOUS_WATCHDOG_INTERVAL_SECS
    loop = asyncio.get_running_loop()
    if interval <= 0 or loop in _watched_loops:
        return
    _watched_loops.add(loop)
    task = loop.create_task(_sweep_forever(interval), name="nous-watchdog")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _sweep_forever(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            ended = await end_stale_runs()
            if ended:
                log.warning("watchdog ended %d stale run(s): %s", len(ended), ", ".join(ended))
            if await sweep_slots():
                log.info("watchdog: the fair queue moved on")
            resumed = await expire_approvals()
            if resumed:
                log.info("watchdog: approvals of %d run(s) expired; they go on", len(resumed))
        except Exception:
            log.exception("watchdog sweep failed")
