"""Knobs of the agent library, read from the environment (no Django): each has a default that works."""

from __future__ import annotations

import os

from agents.errors import AgentConfigError


def env_float(name: str, default: float) -> float:
    """A positive number from the environment variable `name`, or `default` if it is unset or empty."""
    raw = os.getenv(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise AgentConfigError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise AgentConfigError(f"{name} must be positive, not {raw!r}")
    return value


def connect_timeout_secs() -> float:
    """How long to wait for a provider's TCP/TLS connection (NOUS_PROVIDER_CONNECT_TIMEOUT_SECS, 10)."""
    return env_float("NOUS_PROVIDER_CONNECT_TIMEOUT_SECS", 10.0)


def read_timeout_secs() -> float:
    """The longest silence tolerated inside a provider's reply (NOUS_PROVIDER_READ_TIMEOUT_SECS, 60)."""
    return env_float("NOUS_PROVIDER_READ_TIMEOUT_SECS", 60.0)


def max_tool_rounds() -> int:
    """How many rounds of tool calls one run may make before it fails with `tool_loop` (NOUS_MAX_TOOL_ROUNDS, 8)."""
    return int(env_float("NOUS_MAX_TOOL_ROUNDS", 8))
