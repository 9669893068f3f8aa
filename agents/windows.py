"""Context window sizes per model (input and output tokens together), and the override parser.

A model string is matched against the table by its longest matching prefix (`anthropic:claude-sonnet-4`
covers `anthropic:claude-sonnet-4-5`); a key that is just `provider:` is that provider's default.
Overrides (`NOUS_CONTEXT_WINDOWS`) are matched the same way, before the table.
"""

from __future__ import annotations

from typing import Mapping

from agents.errors import AgentConfigError

# Published sizes, in tokens. Entries are prefixes of `provider:model_name`.
CONTEXT_WINDOWS: dict[str, int] = {
    "anthropic:": 200_000,  # every Claude 3.x and 4.x model
    "anthropic:claude-3": 200_000,
    "anthropic:claude-sonnet-4": 200_000,
    "anthropic:claude-opus-4": 200_000,
    "anthropic:claude-haiku-4": 200_000,
    "openai:": 128_000,
    "openai:gpt-4o": 128_000,
    "openai:gpt-4-turbo": 128_000,
    "openai:gpt-4.1": 1_047_576,
    "openai:gpt-4": 8_192,
    "openai:gpt-3.5-turbo": 16_385,
    "openai:o1": 200_000,
    "openai:o1-mini": 128_000,
    "openai:o3": 200_000,
    "openai:o3-mini": 200_000,
    "openai:o4-mini": 200_000,
    "openai:gpt-5": 400_000,
    # Local servers are configured per deployment; 8k is what most of them default to.
    "ollama:": 8_192,
    "lmstudio:": 8_192,
    "vllm:": 8_192,
    "custom:": 8_192,
    "test:": 1_000_000,
}
DEFAULT_WINDOW = 8_192  # a provider missing from the table


def context_window(model: str, overrides: Mapping[str, int] | None = None, declared: int | None = None) -> int:
    """The context window of a model string (`provider:name`): overrides first, then what the model
    declares itself (the `test:` model's `window` option), then the table."""
    return _longest_prefix(overrides or {}, model) or declared or _longest_prefix(CONTEXT_WINDOWS, model) or DEFAULT_WINDOW


def _longest_prefix(table: Mapping[str, int], model: str) -> int | None:
    matches = [key for key in table if model.startswith(key)]
    return table[max(matches, key=len)] if matches else None


def parse_windows(text: str) -> dict[str, int]:
    """Parse `"anthropic:claude-sonnet-4-5=200000,test:=300"`; raise `AgentConfigError` saying what is wrong."""
    windows: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.rpartition("=")
        key = key.strip()
        if not sep or ":" not in key:
            raise AgentConfigError(f"{part!r} is not provider:model=tokens (e.g. anthropic:claude-sonnet-4-5=200000)")
        try:
            size = int(value.strip())
        except ValueError:
            raise AgentConfigError(f"{part!r}: the window size must be a whole number of tokens") from None
        if size < 1:
            raise AgentConfigError(f"{part!r}: the window size must be positive")
        windows[key] = size
    return windows
