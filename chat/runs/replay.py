"""The replay log: every run frame by `seq` (text deltas and tool events), plus the terminal
frame, kept a while after the end.

The channel layer is at-most-once; this log is the ledger that makes `run.resume` and
`session.ready` gapless. In memory for the embedded default, a Redis list per run in production.
An entry is a delta's text, or a whole frame as JSON after `FRAME_MARK` (deltas never hold NUL:
the coalescer drops it, as no database column can store it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings

from chat.runs.redis_client import redis_client

RUNNING_TTL_SECS = 24 * 3600  # a log outlives a crashed worker long enough for the watchdog
FRAME_MARK = "\x00"
# The run frames numbered by `seq` and kept in the log, besides the terminal one.
SEQ_FRAMES = frozenset({"run.delta", "run.tool_call", "run.tool_result", "run.approval_required"})


def entry_frame(run_id: str, seq: int, entry: str) -> dict[str, Any]:
    """The run frame a log entry stands for."""
    if entry.startswith(FRAME_MARK):
        return json.loads(entry[1:])
    return {"type": "run.delta", "run_id": run_id, "seq": seq, "text": entry}


class ReplayLogBroken(RuntimeError):
    """A run's log lost entries; the run cannot promise gapless replay and is failed."""


@dataclass
class Replay:
    """Entries after some seq as `(seq, entry)`, and the terminal frame if the run has ended."""

    deltas: list[tuple[int, str]]
    end: dict[str, Any] | None

    @property
    def text(self) -> str:
        """The text streamed so far (tool events left out)."""
        return "".join(entry for _, entry in self.deltas if not entry.startswith(FRAME_MARK))

    @property
    def events(self) -> list[dict[str, Any]]:
        """The tool frames among the entries, in order (`session.ready` rebuilds them)."""
        return [json.loads(entry[1:]) for _, entry in self.deltas if entry.startswith(FRAME_MARK)]

    @property
    def last_seq(self) -> int:
        return self.deltas[-1][0] if self.deltas else 0


@dataclass
class _MemoryEntry:
    deltas: list[str] = field(default_factory=list)
    end: dict[str, Any] | None = None
    expires_at: float | None = None


class MemoryReplayLog:
    """Process memory: right for the embedded default, where runs execute in the ASGI process."""

    def __init__(self) -> None:
        self.entries: dict[str, _MemoryEntry] = {}

    async def append(self, run_id: str, seq: int, text: str) -> None:
        entry = self.entries.setdefault(run_id, _MemoryEntry())
        if seq != len(entry.deltas) + 1:
            raise ReplayLogBroken(f"replay log of {run_id} has {len(entry.deltas)} deltas, got seq {seq}")
        entry.deltas.append(text)

    async def finish(self, run_id: str, frame: dict[str, Any]) -> None:
        now = time.monotonic()
        for key in [k for k, e in self.entries.items() if e.expires_at and e.expires_at < now]:
            del self.entries[key]
        entry = self.entries.setdefault(run_id, _MemoryEntry())
        entry.end, entry.expires_at = frame, now + settings.NOUS_REPLAY_TTL_SECS

    async def read(self, run_id: str, after_seq: int = 0) -> Replay | None:
        entry = self.entries.get(run_id)
        if entry is None:
            return None
        return Replay([(i + 1, t) for i, t in enumerate(entry.deltas) if i + 1 > after_seq], entry.end)


class RedisReplayLog:
    """A Redis list per run (index = seq - 1) and a key for the terminal frame; both expire after the end."""

    @staticmethod
    def _keys(run_id: str) -> tuple[str, str]:
        return f"nous:run:{run_id}:deltas", f"nous:run:{run_id}:end"

    async def append(self, run_id: str, seq: int, text: str, then_publish: tuple[str, bytes] | None = None) -> None:
        """Append delta `seq`; then, in the same round trip, PUBLISH `(channel, payload)` if given."""
        deltas, _ = self._keys(run_id)
        async with redis_client().pipeline(transaction=False) as pipe:
            pipe.rpush(deltas, text)
            if seq == 1:
                pipe.expire(deltas, RUNNING_TTL_SECS)
            if then_publish is not None:
                pipe.publish(*then_publish)
            length, *_ = await pipe.execute()
        if length != seq:  # the list expired or was flushed mid-run: the ledger is broken
            raise ReplayLogBroken(f"replay log of {run_id} has {length} deltas, expected {seq}")

    async def finish(self, run_id: str, frame: dict[str, Any], then_publish: tuple[str, bytes] | None = None) -> None:
        """Record the terminal frame; then, in the same round trip, PUBLISH `(channel, payload)` if given."""
        deltas, end = self._keys(run_id)
        ttl = settings.NOUS_REPLAY_TTL_SECS
        async with redis_client().pipeline(transaction=True) as pipe:
            pipe.set(end, json.dumps(frame), ex=ttl)
            pipe.expire(deltas, ttl)
            if then_publish is not None:
                pipe.publish(*then_publish)
            await pipe.execute()

    async def read(self, run_id: str, after_seq: int = 0) -> Replay | None:
        deltas, end = self._keys(run_id)
        async with redis_client().pipeline(transaction=True) as pipe:
            pipe.lrange(deltas, after_seq, -1)
            pipe.get(end)
            pipe.exists(deltas)
            texts, end_json, exists = await pipe.execute()
        if not exists and end_json is None:
            return None
        return Replay([(after_seq + i + 1, t) for i, t in enumerate(texts)], json.loads(end_json) if end_json else None)


@cache
def replay_log() -> MemoryReplayLog | RedisReplayLog:
    """The replay log of this process's mode."""
    return RedisReplayLog() if settings.REDIS_URL else MemoryReplayLog()
