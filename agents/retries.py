"""Retry policy: exponential backoff with full jitter, honouring the provider's `retry-after`."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before repeating a failed model call.

    A call is retried only if its error is `retryable` and nothing has been streamed yet.
    """

    max_attempts: int = 3
    base_delay_secs: float = 0.5
    max_delay_secs: float = 8.0
    max_retry_after_secs: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_secs)
        ceiling = min(self.max_delay_secs, self.base_delay_secs * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


NO_RETRIES = RetryPolicy(max_attempts=1)
