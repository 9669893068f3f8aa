"""A circuit breaker per provider: closed, open after N consecutive failures, half-open after a cool-down.

The breaker's state lives in a `BreakerStore`. The default, `MemoryBreakerStore`, is this
process's; a deployment of several processes installs a shared one (`set_breaker_store`, e.g.
chat/runs/breaker_store.py on Redis) so every process sees the breaker open at once and counts
consecutive failures together.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Protocol

from agents import config
from agents.errors import ProviderError

State = Literal["closed", "open", "half_open"]
# Error codes that say nothing about whether the provider is up.
NOT_COUNTED = frozenset({"rate_limited", "provider_unavailable"})


@dataclass(frozen=True)
class Verdict:
    """What the store says about a call: `trial` is the half-open trial's token, `retry_in` the seconds
    until calls may go again when the call is refused."""

    allowed: bool
    trial: str | None = None
    retry_in: float = 0.0


@dataclass(frozen=True)
class Policy:
    """A breaker's numbers, passed to the store with every transition."""

    failure_threshold: int
    cooldown_secs: float
    trial_lease_secs: float


class BreakerStore(Protocol):
    """Where breakers keep their state; each method is one atomic transition of breaker `name`."""

    async def acquire(self, name: str, policy: Policy, token: str) -> Verdict:
        """May a call go now? In half-open state the first caller gets the trial (as `token`)."""
        ...

    async def succeeded(self, name: str) -> None:
        """A call succeeded: close the circuit and forget the failures."""
        ...

    async def failed(self, name: str, policy: Policy, counted: bool, trial: str | None) -> None:
        """A call failed; `counted` says whether the failure is the provider's (5xx, timeout)."""
        ...

    async def abandoned(self, name: str, trial: str | None) -> None:
        """A call ended without a verdict: free its trial, if it held it."""
        ...

    async def snapshot(self, name: str, policy: Policy) -> dict[str, object]:
        """`{"name", "state", "failures", "retry_in"}`."""
        ...

    async def closed_among(self, names: Iterable[str]) -> frozenset[str]:
        """Which of these breakers are closed now (all read at once)."""
        ...


@dataclass
class _Entry:
    failures: int = 0
    opened_at: float | None = None
    trial: str | None = None
    trial_until: float = 0.0


class MemoryBreakerStore:
    """Breakers of this process only (the default, and the fallback when a shared store is down)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, name: str) -> _Entry:
        return self._entries.setdefault(name, _Entry())

    def _state(self, entry: _Entry, policy: Policy) -> tuple[State, float]:
        if entry.opened_at is None:
            return "closed", 0.0
        left = policy.cooldown_secs - (self.clock() - entry.opened_at)
        return ("open", left) if left > 0 else ("half_open", 0.0)

    async def acquire(self, name: str, policy: Policy, token: str) -> Verdict:
        with self._lock:
            entry = self._entry(name)
            state, left = self._state(entry, policy)
            if state == "closed":
                return Verdict(True)
            if state == "open":
                return Verdict(False, retry_in=left)
            now = self.clock()
            if entry.trial is not None and entry.trial_until > now:
                return Verdict(False)  # the trial is on its way
            entry.trial, entry.trial_until = token, now + policy.trial_lease_secs
            return Verdict(True, trial=token)

    async def succeeded(self, name: str) -> None:
        with self._lock:
            self._entries[name] = _Entry()

    async def failed(self, name: str, policy: Policy, counted: bool, trial: str | None) -> None:
        with self._lock:
            entry = self._entry(name)
            is_trial = trial is not None and entry.trial == trial
            if not counted:
                if is_trial:
                    entry.trial = None
                return
            entry.failures += 1
            if is_trial or entry.failures >= policy.failure_threshold:
                entry.opened_at = self.clock()
                entry.trial = None

    async def abandoned(self, name: str, trial: str | None) -> None:
        with self._lock:
            entry = self._entry(name)
            if trial is not None and entry.trial == trial:
                entry.trial = None

    async def closed_among(self, names: Iterable[str]) -> frozenset[str]:
        with self._lock:
            return frozenset(name for name in names if self._entry(name).opened_at is None)

    def _snapshot(self, name: str, entry: _Entry, policy: Policy) -> dict[str, object]:
        state, left = self._state(entry, policy)
        return {"name": name, "state": state, "failures": entry.failures, "retry_in": round(left, 3)}

    async def snapshot(self, name: str, policy: Policy) -> dict[str, object]:
        with self._lock:
            return self._snapshot(name, self._entry(name), policy)

    def states(self, policy: Policy) -> list[dict[str, object]]:
        """Every breaker's snapshot, read without an event loop (for /metrics)."""
        with self._lock:
            return [self._snapshot(name, entry, policy) for name, entry in self._entries.items()]


def default_policy() -> Policy:
    """NOUS_BREAKER_FAILURES (5), NOUS_BREAKER_COOLDOWN_SECS (30), NOUS_BREAKER_TRIAL_LEASE_SECS (300)."""
    return Policy(
        int(config.env_float("NOUS_BREAKER_FAILURES", 5)),
        config.env_float("NOUS_BREAKER_COOLDOWN_SECS", 30.0),
        config.env_float("NOUS_BREAKER_TRIAL_LEASE_SECS", 300.0),
    )


@dataclass
class CircuitBreaker:
    """Fails fast with `provider_unavailable` while a provider keeps failing.

    Only retryable provider failures (5xx, 529, connection errors, timeouts) count; a bad
    request or a missing key says nothing about the provider's health, and a rate limit (429)
    is the provider asking this caller to wait, not the provider being down: it must not pause
    every other caller of the provider. In half-open state one trial call goes through (one in
    the whole store: with a shared store, one in the deployment); its success closes the circuit,
    its failure opens it again. A trial that never reports (its process died) is given up after
    `trial_lease_secs`.
    """

    name: str
    failure_threshold: int = 5
    cooldown_secs: float = 30.0
    store: BreakerStore = field(default_factory=MemoryBreakerStore)
    trial_lease_secs: float = 300.0
    read_closed: bool = False  # see `known_closed`

    def known_closed(self) -> CircuitBreaker:
        """This breaker for one caller that has just read it closed (`closed_among`): its first
        `before_call` lets the call go without asking the store again, as the store would have
        answered then; every later call asks. Same store, so its failures count as ever."""
        return dataclasses.replace(self, read_closed=True)

    @property
    def policy(self) -> Policy:
        return Policy(self.failure_threshold, self.cooldown_secs, self.trial_lease_secs)

    async def state(self) -> State:
        return (await self.snapshot())["state"]  # type: ignore[return-value]

    async def before_call(self) -> str | None:
        """Raise `ProviderError(provider_unavailable)` if calls must not go through now; else return
        the trial token (None unless this call is the half-open trial), for the `record_*` calls."""
        if self.read_closed:
            self.read_closed = False
            return None
        verdict = await self.store.acquire(self.name, self.policy, uuid.uuid4().hex)
        if verdict.allowed:
            return verdict.trial
        raise ProviderError(
            "provider_unavailable",
            f"The {self.name} provider is unavailable",
            retryable=True,
            retry_after=max(0.0, verdict.retry_in),
        )

    async def record_success(self, trial: str | None = None) -> None:
        await self.store.succeeded(self.name)

    async def record_failure(self, error: ProviderError, trial: str | None = None) -> None:
        counted = error.retryable and error.code not in NOT_COUNTED
        await self.store.failed(self.name, self.policy, counted, trial)

    async def record_abandoned(self, trial: str | None = None) -> None:
        """A call ended without a verdict (cancelled): free the half-open trial slot."""
        await self.store.abandoned(self.name, trial)

    async def snapshot(self) -> dict[str, object]:
        """The breaker's state as plain data, for health pages, metrics and the admin."""
        return await self.store.snapshot(self.name, self.policy)


_store: BreakerStore = MemoryBreakerStore()
_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def set_breaker_store(store: BreakerStore) -> None:
    """Keep every provider's breaker in `store` from now on (a shared store, at start-up)."""
    global _store
    with _breakers_lock:
        _store = store
        _breakers.clear()


def breaker_store() -> BreakerStore:
    return _store


def breaker_for(provider: str) -> CircuitBreaker:
    """The breaker of one provider, in the installed store (created on first use)."""
    with _breakers_lock:
        if provider not in _breakers:
            policy = default_policy()
            _breakers[provider] = CircuitBreaker(provider, policy.failure_threshold, policy.cooldown_secs, _store,
                                                 policy.trial_lease_secs)
        return _breakers[provider]


async def closed_breakers(providers: Iterable[str]) -> frozenset[str]:
    """Which providers' breakers are closed now, in one read of the installed store."""
    return await _store.closed_among(providers)


async def breaker_states() -> list[dict[str, object]]:
    """The state of every breaker this process has used."""
    with _breakers_lock:
        breakers = list(_breakers.values())
    return [await b.snapshot() for b in breakers]


def reset_breakers() -> None:
    """Forget every breaker of this process, and the memory store's state (tests)."""
    global _store
    with _breakers_lock:
        _breakers.clear()
        if isinstance(_store, MemoryBreakerStore):
            _store = MemoryBreakerStore()
