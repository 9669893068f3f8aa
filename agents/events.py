"""Typed stream events: what a model yields and what an agent run yields.

Each event is a small frozen dataclass with a `kind` literal, so a consumer can `match` on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

from agents.errors import ProviderError


@dataclass(frozen=True)
class Usage:
    """Token counts of one model response or a whole run."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class TextDelta:
    """A piece of streamed answer text."""

    text: str
    kind: Literal["text_delta"] = "text_delta"

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):  # a provider's malformed chunk, caught where it is read
            raise TypeError(f"text delta is {type(self.text).__name__}, not str")


@dataclass(frozen=True)
class ToolCall:
    """The model asked for a tool; `arguments` is the parsed JSON object.

    `invalid_arguments` holds the model's text when it was not a JSON object (then `arguments` is
    empty): the tool does not run and the model gets an error result instead.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    needs_approval: bool = False
    invalid_arguments: str | None = None
    kind: Literal["tool_call"] = "tool_call"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "needs_approval": self.needs_approval}


@dataclass(frozen=True)
class ToolResult:
    """A tool finished, was rejected or failed."""

    tool_call_id: str
    name: str
    result: str
    is_error: bool = False
    kind: Literal["tool_result"] = "tool_result"


@dataclass(frozen=True)
class ResponseEnd:
    """A model response ended; yielded once by a model at the end of its stream."""

    usage: Usage
    stop_reason: str = "end_turn"
    kind: Literal["response_end"] = "response_end"


@dataclass(frozen=True)
class RunResult:
    """The outcome of `Agent.run`: the final text, total usage and the messages the run added."""

    output: str
    usage: Usage
    new_messages: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    """The model string that answered: the agent's model, or the fallback it switched to."""
    trimmed_messages: int = 0
    """How many of the oldest history messages were left out to fit the context window."""


@dataclass(frozen=True)
class Finished:
    """The run ended normally."""

    result: RunResult
    kind: Literal["finished"] = "finished"


@dataclass(frozen=True)
class RunError:
    """The run failed after retries; text streamed before the failure is in `partial`."""

    error: ProviderError
    partial: str = ""
    kind: Literal["error"] = "error"


ModelEvent = Union[TextDelta, ToolCall, ResponseEnd]
@dataclass(frozen=True)
class Retrying:
    """A model call failed before any text and is tried again after `delay_secs`."""

    attempt: int
    """The attempt that failed (1 for the first call)."""
    code: str
    delay_secs: float
    kind: Literal["retry"] = "retry"


@dataclass(frozen=True)
class ModelFallback:
    """`from_model` failed before any text was streamed; the run goes on with `to_model`."""

    from_model: str
    to_model: str
    error_code: str
    """The `ProviderError.code` that made `from_model` give up."""
    kind: Literal["fallback"] = "fallback"


@dataclass(frozen=True)
class ContextTrimmed:
    """The oldest `dropped_messages` of the history were left out so the request fits the model's window.

    Sent again whenever the number changes (a later tool round, a fallback with another window)."""

    dropped_messages: int
    kind: Literal["context_trimmed"] = "context_trimmed"


AgentEvent = Union[TextDelta, ToolCall, ToolResult, Retrying, ModelFallback, ContextTrimmed, Finished, RunError]
