"""Fitting a conversation into a model's context window: a token estimate and trimming from the oldest turns.

The estimate is a conservative heuristic, not a tokenizer: one token per 3 characters (English runs
near 4 per token with the Claude and GPT tokenizers), plus a few tokens of framing per message.
It over-counts on purpose: trimming a turn too many is cheaper than a "prompt is too long" error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from agents.models.capabilities import image_count, text_of

CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators of one message
DEFAULT_ANSWER_TOKENS = 4096  # room kept for the answer when max_tokens is not set (at most a quarter of the window)


def estimate_tokens(text: str) -> int:
    """Tokens that `text` costs at most, by the characters-per-token heuristic."""
    return -(-len(text) // CHARS_PER_TOKEN)


# What an image costs a model, about: Anthropic counts width*height/750 tokens for an image scaled to
# at most ~1.15 megapixels (~1,600), OpenAI 85 + 170 per 512-px tile (~1,100 for 1024x1024).
IMAGE_TOKENS = 1600


def message_tokens(message: dict[str, Any]) -> int:
    """The estimated cost of one message dict, tool calls included."""
    content = message.get("content")
    cost = MESSAGE_OVERHEAD_TOKENS + estimate_tokens(text_of(content)) + IMAGE_TOKENS * image_count(content)
    if message.get("tool_calls"):
        cost += estimate_tokens(json.dumps(message["tool_calls"]))
    return cost


def answer_reserve(window: int, max_tokens: int | None) -> int:
    """Tokens kept free for the answer: `max_tokens` if set, else a default no larger than a quarter of the window."""
    return int(max_tokens) if max_tokens else min(DEFAULT_ANSWER_TOKENS, window // 4)


@dataclass(frozen=True)
class Fitted:
    """The messages that fit, and how many of the oldest were left out."""

    messages: list[dict[str, Any]]
    dropped: int


def fit_messages(messages: Sequence[dict[str, Any]], budget: int, *, fixed_tokens: int = 0) -> Fitted:
    """Drop the oldest turns until the messages cost at most `budget` tokens (with `fixed_tokens` of
    instructions and tool definitions), keeping the newest turn whatever it costs.

    A turn is a user message and everything up to the next one, so an assistant's tool call is
    never separated from its result, and what is left still opens with a user message.
    """
    turns = _turns(messages)
    costs = [sum(message_tokens(m) for m in turn) for turn in turns]
    total = fixed_tokens + sum(costs)
    start = 0
    while start < len(turns) - 1 and total > budget:
        total -= costs[start]
        start += 1
    kept = [m for turn in turns[start:] for m in turn]
    return Fitted(kept, len(messages) - len(kept))


def _turns(messages: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    turns: list[list[dict[str, Any]]] = []
    for message in messages:
        if message.get("role") == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns
