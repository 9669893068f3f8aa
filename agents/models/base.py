"""The interface every provider model implements."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, TypedDict

from agents.events import ModelEvent, ToolCall


class ModelSettings(TypedDict, total=False):
    """Generation settings; a provider ignores the ones it does not accept (see `supported_settings`)."""

    temperature: float
    max_tokens: int
    top_p: float


@dataclass(frozen=True)
class ToolDefinition:
    """What the model is told about a tool: a name, a description and a JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass
class ModelRequest:
    """One call to a model.

    `messages` are plain dicts: `{"role": "user"|"assistant", "content": str}`; a user message's
    content may instead be a list of parts, `{"type": "text", "text"}` and
    `{"type": "image", "media_type", "data"}` (base64), which each provider maps to its wire format
    (see `agents.models.capabilities.accepts_images`). An assistant message may carry `tool_calls: [{"id", "name", "arguments"}]`, and a tool result is
    `{"role": "tool", "tool_call_id", "name", "content", "is_error"}`.
    """

    messages: list[dict[str, Any]]
    instructions: str = ""
    settings: ModelSettings = field(default_factory=ModelSettings)
    tools: list[ToolDefinition] = field(default_factory=list)


class Model(Protocol):
    """A provider model: `stream` yields `TextDelta` and `ToolCall` events, then one `ResponseEnd`.

    It raises `ProviderError` on failure. Cancelling the iteration must close the HTTP request.
    """

    provider: str
    name: str
    supported_settings: frozenset[str]

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]: ...


def parse_tool_call(call_id: str, name: str, text: str) -> ToolCall:
    """A tool call from the model's arguments text; text that is not a JSON object lands in `invalid_arguments`."""
    if not text.strip():
        return ToolCall(call_id, name, {})
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return ToolCall(call_id, name, {}, invalid_arguments=text)
    return ToolCall(call_id, name, value)


# Tests set this to False: a provider then refuses any base URL that is not on loopback,
# so no test can reach a real API by accident.
ALLOW_NON_LOOPBACK_REQUESTS = True
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def check_request_allowed(base_url: str | None) -> None:
    """Raise `AgentConfigError` if requests to `base_url` are disallowed (see ALLOW_NON_LOOPBACK_REQUESTS)."""
    if ALLOW_NON_LOOPBACK_REQUESTS:
        return
    from urllib.parse import urlsplit

    from agents.errors import AgentConfigError

    host = urlsplit(base_url or "").hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise AgentConfigError(f"Model requests to {base_url or 'the default API host'} are disabled while tests run")
