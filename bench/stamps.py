"""The servers' delta timestamps (chat/runs/benchstamps.py), joined with what the clients received.

The servers write `(run_id, seq, t_emit, t_flush)` lines into per-process files; the clients
record `(run_id, seq, receive time)` of each delta they measure. After a phase the driver reads
the lines written since the last phase and turns both into the latencies the report shows.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

Stamp = tuple[float, float]  # (t_emit, t_flush)


class StampReader:
    """Reads the stamp files of one stack incrementally (each line once)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[Path, int] = {}

    def reset(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.offsets.clear()

    def read_new(self) -> dict[tuple[str, int], Stamp]:
        """The stamps written since the last call; a line still being written waits for the next."""
        out: dict[tuple[str, int], Stamp] = {}
        for path in sorted(self.directory.glob("stamps-*.tsv")):
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
            complete = data.rfind(b"\n") + 1
            self.offsets[path] = self.offsets.get(path, 0) + complete
            for line in data[:complete].decode("ascii").splitlines():
                run_id, seq, t_emit, t_flush = line.split("\t")
                out[(run_id, int(seq))] = (float(t_emit), float(t_flush))
        return out


def latencies(stamps: dict[tuple[str, int], Stamp], received: list[list[Any]], sends: list[list[Any]]) -> dict[str, Any]:
    """`received`: `[run_id, seq, receive time]` per measured delta; `sends`: `[run_id, send time]`
    per run. Returns the lists the report takes (ms) and whether any delta had a stamp."""
    flush, flush_start, emit, send_emit = [], [], [], []
    for run_id, seq, now in received:
        stamp = stamps.get((run_id, seq))
        if stamp is None:
            continue
        flush.append((now - stamp[1]) * 1000)
        emit.append((now - stamp[0]) * 1000)
        if seq <= 2:
            flush_start.append((now - stamp[1]) * 1000)
    for run_id, t_send in sends:
        stamp = stamps.get((run_id, 1))
        if stamp is not None:
            send_emit.append((stamp[0] - t_send) * 1000)
    return {"lat_flush": flush, "lat_flush_start": flush_start, "lat_emit": emit, "send_emit": send_emit, "hook": bool(flush or send_emit)}
