"""Errors of the agent library. `ProviderError` maps one-to-one onto PROTOCOL.md's `run.failed.error`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


class AgentConfigError(ValueError):
    """A model string, provider or key is wrong: the user must change a setting, retrying won't help."""


@dataclass
class ProviderError(Exception):
    """A provider call failed.

    `code` is one of PROTOCOL.md's error codes (`provider_error`, `provider_unavailable`,
    `rate_limited`, `timeout`, `overloaded`, `internal`), `tool_loop` (the model kept calling
    tools) or `context_length` (the prompt does not fit the model's context window); `retryable`
    says whether the same request may succeed later; `retry_after` is the provider's hint in
    seconds, if it gave one, and `retry_at` the same moment as Unix time (set from `retry_after`
    when the error is made).
    """

    code: str
    message: str
    retryable: bool = False
    retry_after: float | None = None
    status: int | None = None
    retry_at: float | None = None

    def __post_init__(self) -> None:
        if self.retry_after is not None and self.retry_at is None:
            self.retry_at = time.time() + self.retry_after

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """`run.failed.error`: code, message, retryable, and when known `retry_after` (seconds) and
        `retry_at` (ISO 8601 UTC)."""
        data: dict[str, object] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.retry_after is not None:
            data["retry_after"] = round(self.retry_after, 3)
        if self.retry_at is not None:
            data["retry_at"] = datetime.fromtimestamp(self.retry_at, UTC).isoformat(timespec="milliseconds")
        return data
