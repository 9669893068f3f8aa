"""Errors of the agent library. `ProviderError` maps one-to-one onto PROTOCOL.md's `run.failed.error`."""

from __future__ import annotations

from dataclasses import dataclass


class AgentConfigError(ValueError):
    """A model string, provider or key is wrong: the user must change a setting, retrying won't help."""


@dataclass
class ProviderError(Exception):
    """A provider call failed.

    `code` is one of PROTOCOL.md's error codes (`provider_error`, `provider_unavailable`,
    `rate_limited`, `timeout`, `overloaded`, `internal`), `tool_loop` (the model kept calling
    tools) or `context_length` (the prompt does not fit the model's context window); `retryable` says whether the same request may succeed later; `retry_after` is the
    provider's hint in seconds, if it gave one.
    """

    code: str
    message: str
    retryable: bool = False
    retry_after: float | None = None
    status: int | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """`run.failed.error`: code, message, retryable, and `retry_after` (seconds) when known."""
        data: dict[str, object] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.retry_after is not None:
            data["retry_after"] = round(self.retry_after, 3)
        return data
