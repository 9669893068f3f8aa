"""Gapless delivery of run frames to one socket, the same for chat and rooms (DESIGN.md 5).

A socket joins its conversation's hub first, then builds `session.ready` (frames that arrive
meanwhile wait in a backlog), then forwards live frames: each run's deltas once, in `seq` order,
and its terminal frame once, after every delta before it. The hub repairs a gap in the live
stream once per run and process (`chat.fanout`); what is left to repair here is a socket's own,
for example a `run.resume` from an old `after_seq`.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from chat import session
from chat.db import db_call
from chat.models import AgentRun
from chat.runs.replay import SEQ_FRAMES, entry_frame, replay_log

TERMINAL_FRAMES = frozenset({"run.completed", "run.stopped", "run.failed"})


class RunDelivery:
    """What one socket has been sent of each run, and the frames waiting for `session.ready`."""

    def __init__(self, send_text: Callable[[str], Awaitable[None]], identities: set[str]) -> None:
        self.send_text = send_text
        # A frame published with `exclude` equal to one of these skips this socket: its socket id
        # (a tab's own message.created) or "user:<id>" (a user's own typing, on all their tabs).
        self.identities = identities
        self.seen_seq: dict[str, int] = {}
        self.ended_runs: set[str] = set()
        # Frames of room state (presence) carry a `version`; an older one than the socket has is stale.
        self.versions: dict[str, int] = {}
        # Frames that arrive before session.ready wait here, then follow it in order.
        self.backlog: list[dict[str, Any]] | None = []

    async def active_run(self, run: AgentRun | None) -> dict[str, Any] | None:
        """`session.ready`'s `active_run`: the text so far from the replay log, its seq, and the
        tool frames streamed so far (`events`, each with its seq)."""
        if run is None:
            return None
        replay = await replay_log().read(str(run.id))
        content, seq, events = (replay.text, replay.last_seq, replay.events) if replay else ("", 0, [])
        self.seen_seq[str(run.id)] = seq
        return {"run_id": str(run.id), "seq": seq, "content": content, "status": run.status, "model": run.model,
                "events": events}

    async def ready(self) -> None:
        """`session.ready` was sent: send what arrived meanwhile, then go live."""
        while self.backlog:
            await self._deliver_now(self.backlog.pop(0))
        self.backlog = None

    async def deliver(self, event: dict[str, Any]) -> None:
        """One published frame (`chat.fanout.layer_event`), from the hub."""
        if self.backlog is not None:
            self.backlog.append(event)
            return
        await self._deliver_now(event)

    async def resume(self, run: AgentRun, after_seq: int) -> None:
        """`run.resume`: every delta after `after_seq`, then the end if the run has ended."""
        run_id = str(run.id)
        self.seen_seq[run_id] = max(0, after_seq)
        replay = await replay_log().read(run_id, self.seen_seq[run_id])
        if replay is not None:
            await self._send_deltas(run_id, replay.deltas)
            if replay.end:
                await self._send_end(run_id, replay.end.get("seq", 0), json.dumps(replay.end))
        elif not run.is_active:  # the log has expired: the end as the database has it
            frame = await db_call(session.ended_frame)(run)
            await self._send_end(run_id, frame.get("seq", 0), json.dumps(frame))

    async def _deliver_now(self, event: dict[str, Any]) -> None:
        kind, text = event["frame_type"], event["json"]
        if kind in SEQ_FRAMES:
            await self._on_live_delta(event["run_id"], event["seq"], text)
        elif kind in TERMINAL_FRAMES:
            await self._send_end(event["run_id"], event["seq"] or 0, text)
        elif event["exclude"] not in self.identities:
            version = event.get("version")
            if version is not None:
                if version <= self.versions.get(kind, -1):
                    return  # published before the state this socket has (a join racing a change)
                self.versions[kind] = version
            await self.send_text(text)

    async def _on_live_delta(self, run_id: str, seq: int, text: str) -> None:
        seen = self.seen_seq.get(run_id, 0)
        if seq <= seen or run_id in self.ended_runs:
            return
        if seq > seen + 1:  # this socket is behind the hub (it resumed from an older seq)
            replay = await replay_log().read(run_id, seen)
            await self._send_deltas(run_id, [d for d in (replay.deltas if replay else []) if d[0] < seq])
        await self._send_deltas(run_id, [(seq, "")], live_json=text)

    async def _send_deltas(self, run_id: str, deltas: list[tuple[int, str]], live_json: str | None = None) -> None:
        for seq, text in deltas:
            if seq == self.seen_seq.get(run_id, 0) + 1:
                self.seen_seq[run_id] = seq
                # A live frame goes out as published (encoded once for every socket).
                if live_json is not None:
                    await self.send_text(live_json)
                else:
                    await self.send_text(json.dumps(entry_frame(run_id, seq, text)))

    async def _send_end(self, run_id: str, seq: int, text: str) -> None:
        """Send a run's terminal frame (JSON `text`) once, after every delta before it."""
        if run_id in self.ended_runs:
            return
        seen = self.seen_seq.get(run_id, 0)
        if seq > seen:
            replay = await replay_log().read(run_id, seen)
            await self._send_deltas(run_id, replay.deltas if replay else [])
        if run_id in self.ended_runs:  # sent meanwhile, while the gap was read
            return
        self.ended_runs.add(run_id)
        await self.send_text(text)
