"""Benchmark-only instrumentation, never in product frames.

With `NOUS_BENCH_TIMESTAMPS=1` the executor records each flushed delta's `(run_id, seq, t_emit,
t_flush)` (wall-clock seconds: when its first text arrived, when it was handed to the publisher)
as one tab-separated line in a file of this process under `NOUS_BENCH_STAMPS_DIR`; `bench/`
joins them with what its clients received, after the phase. Unset, `ENABLED` is False and the
executor skips this module entirely.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import TextIO

ENABLED = os.getenv("NOUS_BENCH_TIMESTAMPS") == "1"
STAMPS_DIR = Path(os.getenv("NOUS_BENCH_STAMPS_DIR") or Path(tempfile.gettempdir()) / "nous-bench-stamps")

_lock = threading.Lock()
_file: tuple[int, Path, TextIO] | None = None  # (pid, directory, file): a forked child opens its own


def _sink() -> TextIO:
    global _file
    pid = os.getpid()
    if _file is None or _file[:2] != (pid, STAMPS_DIR):
        STAMPS_DIR.mkdir(parents=True, exist_ok=True)
        # Line-buffered: a line is written before its delta is published, so a reader that has
        # seen the delta finds the line.
        _file = (pid, STAMPS_DIR, open(STAMPS_DIR / f"stamps-{pid}.tsv", "a", buffering=1, encoding="ascii"))
    return _file[2]


def record(run_id: str, seq: int, t_emit: float, t_flush: float) -> None:
    """Append one delta's timestamps to this process's file."""
    with _lock:
        _sink().write(f"{run_id}\t{seq}\t{t_emit:.6f}\t{t_flush:.6f}\n")
