"""Suggestions for the contact form's message: the agent library and model chat uses, a few short
lines, and never an error: a slow or failing model gives no suggestions (logged at WARNING)."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from typing import Callable

from django.conf import settings

from agents import Agent
from agents.retries import NO_RETRIES

log = logging.getLogger("nous.contact")

MAX_SUGGESTIONS = 3
MAX_SUGGESTION_CHARS = 200
# Suggestions start one character past the form's minimum length (contact.forms).
MIN_SUGGEST_CHARS = 21
MAX_TOKENS = 150
MAX_NAME_CHARS = 100

INSTRUCTIONS = (
    "You help someone improve a message they are writing in the Nous Chat contact form. "
    f"Suggest at most {MAX_SUGGESTIONS} short improvements (clarity, missing details such as steps "
    "or versions, tone), each under 20 words, one per line, with no introduction and no numbering. "
    "If the message needs nothing, answer with an empty reply. Never rewrite the whole message."
)

# "- ", "* ", "• ", "1. ", "2) ", "(3) " at the start of a line.
BULLET = re.compile(r"^\s*(?:[-*•·–]+|\(?\d{1,2}[.):])\s*")


def shorten(text: str, limit: int = MAX_SUGGESTION_CHARS) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with an ellipsis if cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.") + "…"


def parse_suggestions(text: str) -> list[str]:
    """A model's answer as at most 3 suggestions: one per non-empty line, bullets and numbers dropped.

    A line ending in a colon ("Here are some ideas:") introduces the others and is skipped.
    """
    suggestions: list[str] = []
    for line in text.splitlines():
        line = " ".join(BULLET.sub("", line).replace("**", "").split())  # markdown bold would show as stars
        line = shorten(line.strip("\"'` "))
        if line and not line.endswith(":") and line not in suggestions:
            suggestions.append(line)
        if len(suggestions) == MAX_SUGGESTIONS:
            break
    return suggestions


def prompt_for(message: str, name: str = "") -> str:
    name = " ".join(name.split())[:MAX_NAME_CHARS]
    return f"From: {name}\n\n{message}" if name else message


async def suggest(message: str, name: str = "", *, model: str | None = None, timeout_secs: float | None = None) -> list[str]:
    """Up to 3 suggestions for `message`; `[]` if the model fails or is slower than the timeout."""
    model = model or settings.NOUS_FORM_MODEL
    timeout_secs = settings.NOUS_FORM_TIMEOUT_SECS if timeout_secs is None else timeout_secs
    started = time.monotonic()
    try:
        # No retries: a suggestion that comes after a back-off is one the user no longer needs.
        agent = Agent(model, instructions=INSTRUCTIONS, model_settings={"max_tokens": MAX_TOKENS}, retry=NO_RETRIES)
        async with asyncio.timeout(timeout_secs):
            result = await agent.run(prompt_for(message, name))
    except TimeoutError:
        log.warning("contact suggestions: %s took longer than %.1f s", model, timeout_secs)
        return []
    except Exception as error:  # suggestions are optional: nothing may reach the form as an error
        log.warning("contact suggestions: %s failed after %.2f s: %s", model, time.monotonic() - started, error)
        return []
    return parse_suggestions(result.output)


class RateLimiter:
    """At most `limit` hits per key in any `window_secs`, kept in this process's memory.

    Per process, so N server processes allow N times as many: enough for a form helper whose
    only cost is model calls. Keys whose hits have all expired are dropped once there are many.
    """

    MAX_KEYS = 10_000

    def __init__(self, limit: int, window_secs: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_secs = window_secs
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Count a hit; return 0 if allowed, else the seconds until the next one would be."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and now - hits[0] >= self.window_secs:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.001, self.window_secs - (now - hits[0]))
            hits.append(now)
            if len(self._hits) > self.MAX_KEYS:
                self._hits = {k: h for k, h in self._hits.items() if h and now - h[-1] < self.window_secs}
            return 0.0

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()


SUGGESTIONS_PER_MINUTE = 20
limiter = RateLimiter(SUGGESTIONS_PER_MINUTE, 60.0)
