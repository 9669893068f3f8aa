"""What other apps do when a run ends (rooms start a folded follow-up run), without chat.runs
knowing them: `on_run_end(hook)` in an app's `ready()`."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

log = logging.getLogger("nous.runs")

RunEndHook = Callable[[str, dict[str, Any]], Awaitable[None]]
_hooks: list[RunEndHook] = []


def on_run_end(hook: RunEndHook) -> None:
    """Call `hook(conversation_id, terminal_frame)` after every run's end is published."""
    if hook not in _hooks:
        _hooks.append(hook)


async def run_ended(conversation_id: str, frame: dict[str, Any]) -> None:
    for hook in _hooks:
        try:
            await hook(conversation_id, frame)
        except Exception:  # a hook's trouble must not undo an end that is stored and published
            log.exception("run end hook %s failed for run %s", hook, frame.get("run_id"))
