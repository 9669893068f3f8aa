"""The host's own speed, read before and after a configuration runs, so results taken at different
hours can be told apart from changes in the code.

On a shared VM the same commit measures differently from one hour to the next (docs/scaling.md,
fifth session: every role's CPU per run about 15 % higher later in the day). Two readings that
involve no code of ours:

- `python_ms`: a fixed piece of pure-Python work (JSON, dicts, strings, as a run's frames), the
  fastest of several repetitions: the interpreter's speed on this core.
- `wakeup_us`: one process waking another over a socket pair and being woken back, the median of
  many round trips, halved: what each of the dozen messages between the stack's processes pays
  per run (py-spy found the workers' time mostly in such writes).
- `idle_wakeup_us`: the same after 50 ms with nothing to do, as each process of a lone chat's
  send finds itself: on this kind of VM an idle virtual CPU halts, and waking it costs several
  times more (docs/scaling.md, sixth session).

Both are taken with the stack stopped; lower is faster.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import time
from typing import Any

_FRAME = {"type": "run.delta", "run_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "seq": 1, "text": "word " * 12}


def _python_work() -> int:
    total = 0
    for i in range(4000):
        frame = json.loads(json.dumps({**_FRAME, "seq": i}))
        total += len(frame["text"].split()) + len(f"{frame['run_id']}:{frame['seq']}")
    return total


def python_ms(repeats: int = 7) -> float:
    """Milliseconds for the fixed pure-Python work, the fastest of `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        _python_work()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


def wakeup_us(round_trips: int = 3000, pause: float = 0.0) -> float:
    """Microseconds for one process to wake another over a socket pair (half a round trip's median),
    each round trip after `pause` seconds of idleness."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echoing child: no Python cleanup of the parent's state
        ours.close()
        try:
            while data := theirs.recv(64):
                theirs.sendall(data)
        finally:
            os._exit(0)
    theirs.close()
    samples = []
    try:
        for _ in range(round_trips):
            if pause:
                time.sleep(pause)
            started = time.perf_counter()
            ours.sendall(b"x")
            ours.recv(64)
            samples.append(time.perf_counter() - started)
    finally:
        ours.close()
        os.waitpid(pid, 0)
    return round(statistics.median(samples) / 2 * 1e6, 1)


def reading() -> dict[str, Any]:
    """Both readings, with the 1-minute load average (other work on the machine shows there)."""
    return {"python_ms": python_ms(), "wakeup_us": wakeup_us(), "idle_wakeup_us": wakeup_us(60, pause=0.05), "load1": round(os.getloadavg()[0], 2), "at": time.strftime("%H:%M:%S")}
