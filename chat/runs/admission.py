"""The fair run queue in action: admit a queued run or make it wait, and when a slot frees, hand
the next runs to the executor and tell every waiting run that moved up its new position.

Every run passes here (`admit`); every end passes `release` (the run-end hook, a pause for an
approval, the watchdog's sweep), so the slot store (`chat.runs.slots`) and the database agree.
"""

from __future__ import annotations

import logging
from typing import Any

from chat.db import db_call
from chat.models import AgentRun
from chat.runs.dispatch import fail_unsubmitted, run_executor
from chat.runs.publish import doorbell, publish
from chat.runs.slots import Moves, Start, slots

log = logging.getLogger("nous.runs")


def user_key(user_id: Any, conversation_id: Any) -> str:
    """Whose turn a run is in the round robin: the asking user's, else the conversation's."""
    return f"u{user_id}" if user_id is not None else f"c{conversation_id}"


async def admit(conversation_id: Any, run_id: str, user: str, first: bool = False,
                announce: tuple[dict[str, Any], str | None] | None = None) -> None:
    """Start a queued run if a slot is free, else queue it fairly (`run.queued` with its position);
    a full queue ends it `failed` with `overloaded`. `first`: it goes ahead of the waiting runs.

    `announce`: a frame for the conversation's sockets (and the socket it skips), published just
    before. In production that, the admission, `run.queued` and the hand-over to a worker are one
    Redis round trip (`slots.Start`): they are on the path to the first token."""
    start = _start_in_script(conversation_id, run_id, announce)
    if announce is not None and start is None:
        await publish(conversation_id, *announce)
    try:
        admission = await slots().admit(run_id, user, str(conversation_id), first, start)
    except Exception:  # the slot store is down: run it anyway rather than refuse every send
        log.exception("fair queue: could not admit run %s; starting it unqueued", run_id)
        if announce is not None and start is not None:
            await publish(conversation_id, *announce)
        await _hand_over(conversation_id, run_id)
        return
    if admission.outcome == "full":
        await fail_unsubmitted(run_id, "Too many answers are being written right now")
    elif admission.outcome == "waiting":
        await publish(conversation_id, {"type": "run.queued", "run_id": run_id, "position": admission.position})
    elif not admission.handed_over:
        await _hand_over(conversation_id, run_id)
    await apply(admission)


def _start_in_script(conversation_id: Any, run_id: str, announce: tuple[dict[str, Any], str | None] | None) -> Start | None:
    """The `Start` of a run in production (Redis layer and hand-over list); None in the embedded default."""
    handover = run_executor().handover_key
    queued = doorbell(conversation_id, {"type": "run.queued", "run_id": run_id, "position": 0})
    if handover is None or queued is None:
        return None
    announced = doorbell(conversation_id, *announce) if announce is not None else None
    return Start(handover, before=[announced] if announced else [], on_start=[queued])


async def _hand_over(conversation_id: Any, run_id: str, announce: bool = True) -> None:
    try:
        await run_executor().submit(run_id)
    except Exception:
        # Not handed over: end it now, or the conversation would stay busy until the watchdog.
        log.exception("could not submit run %s", run_id)
        await fail_unsubmitted(run_id)
        return
    if announce:
        await publish(conversation_id, {"type": "run.queued", "run_id": run_id, "position": 0})


async def apply(moves: Moves) -> None:
    """Tell the waiting runs that moved their position, and hand the admitted ones over."""
    for run_id, conversation_id, position in moves.moved:
        await publish(conversation_id, {"type": "run.queued", "run_id": run_id, "position": position})
    for run_id, conversation_id in moves.admitted:
        await publish(conversation_id, {"type": "run.queued", "run_id": run_id, "position": 0})
        await _hand_over(conversation_id, run_id, announce=False)


async def release(run_id: str) -> None:
    """The run ended, paused, or stopped while waiting: its slot or its place goes to the next."""
    try:
        moves = await slots().release(run_id)
    except Exception:  # the lease expires, and the watchdog's sweep frees it then
        log.exception("fair queue: could not release run %s", run_id)
        return
    await apply(moves)


async def release_on_end(conversation_id: str, frame: dict[str, Any]) -> None:
    """The run-end hook (every end is published once, by whoever ended the run)."""
    await release(frame["run_id"])


async def sweep() -> int:
    """The watchdog's part: drop expired holders, and runs the database says are not active any
    more (ended by a process killed before it released), then admit the next. Returns how many
    runs were dropped or admitted."""
    holders, waiting = await slots().snapshot()
    active = await db_call(_active_among)(holders + waiting)
    dropped = [run_id for run_id in holders if active.get(run_id) not in (AgentRun.Status.QUEUED, AgentRun.Status.RUNNING)]
    dropped += [run_id for run_id in waiting if active.get(run_id) != AgentRun.Status.QUEUED]
    admitted = 0
    for run_id in dropped:
        moves = await slots().release(run_id)
        admitted += len(moves.admitted)
        await apply(moves)
    moves = await slots().release("")
    await apply(moves)
    return len(dropped) + admitted + len(moves.admitted)


def _active_among(run_ids: list[str]) -> dict[str, str]:
    if not run_ids:
        return {}
    return {str(i): s for i, s in AgentRun.objects.filter(id__in=run_ids, status__in=AgentRun.ACTIVE).values_list("id", "status")}
