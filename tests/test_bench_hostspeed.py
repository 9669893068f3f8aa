"""The bench's reading of the host's own speed: taken without leaving anything behind, and shown
in the table beside the results it explains (older result files, without it, still compare)."""

import os
from pathlib import Path

from bench import hostspeed, report


def children() -> set[str]:
    """This process's children, running or unreaped (a test session may have started its own)."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    return {pid for task in tasks.iterdir() for pid in (task / "children").read_text().split()}


def test_a_reading_measures_the_host_and_leaves_no_child_behind():
    before = children()
    reading = hostspeed.reading()
    assert reading["python_ms"] > 0 and reading["wakeup_us"] > 0 and reading["idle_wakeup_us"] > 0
    assert children() == before


def test_the_table_shows_the_host_before_and_after_and_a_dash_for_older_results():
    result = {"config": {"name": "production-uvicorn-pubsub", "mode": "production"}, "failures": []}
    measured = {**result, "host": {"before": {"python_ms": 13.9, "wakeup_us": 20.2, "idle_wakeup_us": 33.1},
                                   "after": {"python_ms": 15.1, "wakeup_us": 24.0, "idle_wakeup_us": 41.5}}}
    lines = {line.split("|")[0].strip(): line for line in report.table([measured, result]).splitlines()}
    row = lines["host: pure-Python ms / wake-up us / after idle, before -> after"]
    assert "13.9/20.2/33.1 -> 15.1/24.0/41.5" in row
    assert row.rstrip().endswith("-")
