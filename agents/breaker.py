"""A circuit breaker per provider: closed, open after N consecutive failures, half-open after a cool-down."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

from agents.errors import ProviderError

State = Literal["closed", "open", "half_open"]
# Error codes that say nothing about whether the provider is up.
NOT_COUNTED = frozenset({"rate_limited", "provider_unavailable"})


@dataclass
class CircuitBreaker:
    """Fails fast with `provider_unavailable` while a provider keeps failing.

    Only retryable provider failures (5xx, 529, connection errors, timeouts) count; a bad
    request or a missing key says nothing about the provider's health, and a rate limit (429)
    is the provider asking this caller to wait, not the provider being down: it must not pause
    every other caller of the provider in the process. In half-open state one
    trial call goes through; its success closes the circuit, its failure opens it again.
    """

    name: str
    failure_threshold: int = 5
    cooldown_secs: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown_secs:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        """Raise `ProviderError(provider_unavailable)` if calls must not go through now."""
        with self._lock:
            state = self.state
            if state == "closed":
                return
            if state == "half_open" and not self.trial_in_flight:
                self.trial_in_flight = True
                return
            retry_in = max(0.0, self.cooldown_secs - (self.clock() - (self.opened_at or 0.0)))
            raise ProviderError(
                "provider_unavailable",
                f"The {self.name} provider is failing; calls are paused for {retry_in:.0f} s",
                retryable=True,
                retry_after=retry_in,
            )

    def record_success(self) -> None:
        with self._lock:
            self.failures = 0
            self.opened_at = None
            self.trial_in_flight = False

    def record_failure(self, error: ProviderError) -> None:
        with self._lock:
            if not error.retryable or error.code in NOT_COUNTED:
                self.trial_in_flight = False
                return
            self.failures += 1
            if self.trial_in_flight or self.failures >= self.failure_threshold:
                self.opened_at = self.clock()
            self.trial_in_flight = False

    def record_abandoned(self) -> None:
        """A call ended without a verdict (cancelled): free the half-open trial slot."""
        with self._lock:
            self.trial_in_flight = False

    def snapshot(self) -> dict[str, object]:
        """The breaker's state as plain data, for health pages and the admin."""
        return {"name": self.name, "state": self.state, "failures": self.failures}


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(provider: str) -> CircuitBreaker:
    """The process-wide breaker of one provider (created on first use)."""
    with _breakers_lock:
        if provider not in _breakers:
            _breakers[provider] = CircuitBreaker(provider)
        return _breakers[provider]


def breaker_states() -> list[dict[str, object]]:
    """Every known breaker's state."""
    with _breakers_lock:
        return [b.snapshot() for b in _breakers.values()]


def reset_breakers() -> None:
    """Forget every breaker (tests)."""
    with _breakers_lock:
        _breakers.clear()
