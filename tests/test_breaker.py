"""The circuit breaker's semantics, the same in the memory store (one process) and in Redis (every process).

Two breakers of one provider on one store stand for two processes: with Redis, two
`RedisBreakerStore`s on the same database, as two workers would have.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

import pytest
import redis
from django.conf import settings

from agents.breaker import CircuitBreaker, MemoryBreakerStore
from agents.errors import ProviderError
from chat.runs.breaker_store import PREFIX, RedisBreakerStore, shared_breaker_states
from tests.conftest import PRODUCTION, skip_or_fail
from tests.services import redis_available

SERVER_ERROR = ProviderError("overloaded", "529", retryable=True)
RATE_LIMITED = ProviderError("rate_limited", "429", retryable=True, retry_after=5)
BAD_REQUEST = ProviderError("provider_error", "400", retryable=False)


class Memory:
    """Two breakers on one memory store with a hand clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.store = MemoryBreakerStore(lambda: self.now)

    def pair(self, name: str, threshold: int, cooldown: float) -> tuple[CircuitBreaker, CircuitBreaker]:
        return (CircuitBreaker(name, threshold, cooldown, self.store, trial_lease_secs=60),
                CircuitBreaker(name, threshold, cooldown, self.store, trial_lease_secs=60))

    async def end_cooldown(self, name: str) -> None:
        self.now += 1000

    async def end_trial_lease(self, name: str) -> None:
        self.now += 61

    async def close(self) -> None:
        pass


class Redis:
    """Two breakers on two Redis stores (two processes); time passes by moving the deadlines in the hash."""

    def __init__(self) -> None:
        if not PRODUCTION:
            pytest.skip("the Redis store is tested in production mode (REDIS_URL)")
        if not redis_available(settings.REDIS_URL):
            skip_or_fail(f"Redis is not reachable at {settings.REDIS_URL}")
        self.stores = [RedisBreakerStore(settings.REDIS_URL), RedisBreakerStore(settings.REDIS_URL)]
        self.client = redis.Redis.from_url(settings.REDIS_URL)

    def pair(self, name: str, threshold: int, cooldown: float) -> tuple[CircuitBreaker, CircuitBreaker]:
        first, second = self.stores
        return (CircuitBreaker(name, threshold, cooldown, first, trial_lease_secs=60),
                CircuitBreaker(name, threshold, cooldown, second, trial_lease_secs=60))

    async def end_cooldown(self, name: str) -> None:
        assert self.client.hexists(PREFIX + name, "open_until")
        self.client.hset(PREFIX + name, "open_until", 1)

    async def end_trial_lease(self, name: str) -> None:
        assert self.client.hexists(PREFIX + name, "trial_until")
        self.client.hset(PREFIX + name, "trial_until", 1)

    async def close(self) -> None:
        for store in self.stores:
            await store.aclose()
        self.client.close()


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    harness = Memory() if request.param == "memory" else Redis()
    yield harness
    await harness.close()


@pytest.fixture
def name() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


async def refused(breaker: CircuitBreaker) -> ProviderError | None:
    """The breaker's refusal, or None (and the trial released) if the call would have gone through."""
    try:
        trial = await breaker.before_call()
    except ProviderError as error:
        assert error.code == "provider_unavailable"
        return error
    await breaker.record_abandoned(trial)
    return None


async def test_failures_count_across_processes_and_all_see_it_open_at_once(store, name):
    one, two = store.pair(name, threshold=3, cooldown=30)
    await one.record_failure(SERVER_ERROR)
    await two.record_failure(SERVER_ERROR)
    assert await refused(one) is None and await refused(two) is None
    await one.record_failure(SERVER_ERROR)  # the third in a row, deployment-wide
    error = await refused(two)
    assert error is not None and 25 <= error.retry_after <= 30
    assert error.message == f"The {name} provider is unavailable"
    retry_at = datetime.fromisoformat(error.to_dict()["retry_at"])
    assert retry_at.utcoffset().total_seconds() == 0 and abs(retry_at.timestamp() - error.retry_at) < 0.01
    assert await refused(one) is not None
    assert await two.state() == "open" and (await one.snapshot())["failures"] == 3


async def test_a_success_anywhere_resets_the_count(store, name):
    one, two = store.pair(name, threshold=2, cooldown=30)
    await one.record_failure(SERVER_ERROR)
    await two.record_success(await two.before_call())
    await one.record_failure(SERVER_ERROR)
    assert await one.state() == "closed" and await refused(two) is None


async def test_half_open_lets_exactly_one_trial_through_the_whole_deployment(store, name):
    one, two = store.pair(name, threshold=1, cooldown=30)
    await one.record_failure(SERVER_ERROR)
    await store.end_cooldown(name)
    assert await two.state() == "half_open"
    outcomes = await asyncio.gather(*(b.before_call() for b in (one, two) * 5), return_exceptions=True)
    trials = [o for o in outcomes if not isinstance(o, ProviderError)]
    assert len(trials) == 1 and trials[0] is not None
    holder = (one, two)[outcomes.index(trials[0]) % 2]
    await holder.record_failure(SERVER_ERROR, trials[0])  # the trial failed: open again, a new cool-down
    assert await one.state() == "open" and await refused(two) is not None
    await store.end_cooldown(name)
    trial = await two.before_call()
    assert await refused(one) is not None
    await two.record_success(trial)
    assert await one.state() == "closed" and await refused(one) is None and await refused(two) is None


async def test_a_cancelled_trial_frees_the_slot_and_only_its_own(store, name):
    one, two = store.pair(name, threshold=1, cooldown=30)
    await one.record_failure(SERVER_ERROR)
    await store.end_cooldown(name)
    trial = await one.before_call()
    await two.record_abandoned(None)  # a call that was not the trial was cancelled: the trial goes on
    assert await refused(two) is not None
    await one.record_abandoned(trial)  # the trial itself was cancelled (Stop)
    assert await refused(two) is None


async def test_a_trial_that_never_reports_is_given_up_after_its_lease(store, name):
    one, two = store.pair(name, threshold=1, cooldown=30)
    await one.record_failure(SERVER_ERROR)
    await store.end_cooldown(name)
    assert await one.before_call() is not None  # then its process dies
    assert await refused(two) is not None
    await store.end_trial_lease(name)
    assert await two.before_call() is not None


async def test_rate_limits_and_bad_requests_never_open_it(store, name):
    one, two = store.pair(name, threshold=1, cooldown=30)
    for _ in range(3):
        await one.record_failure(RATE_LIMITED)
        await two.record_failure(BAD_REQUEST)
    assert await one.state() == "closed"
    await one.record_failure(SERVER_ERROR)
    await store.end_cooldown(name)
    trial = await two.before_call()
    await two.record_failure(RATE_LIMITED, trial)  # the provider answered: not down, the trial slot is free
    assert await one.state() == "half_open" and await one.before_call() is not None


async def test_a_breaker_read_closed_with_the_claim_lets_only_that_first_call_skip_the_store(store, name):
    """A worker reads every provider's breaker while it claims a run (one round trip): the run's
    first call goes as the store would have let it then; every later call asks the store."""
    one, two = store.pair(name, threshold=1, cooldown=30)
    assert await one.store.closed_among([name]) == {name}
    read = one.known_closed()
    await two.record_failure(SERVER_ERROR, await two.before_call())  # another process opens it
    assert await one.store.closed_among([name]) == set()
    assert await refused(read) is None  # read closed an instant before it opened: that one call goes
    assert await refused(read) is not None  # its retry asks the store, and is refused
    assert await refused(one) is not None  # the shared breaker was never told to skip anything
    await store.end_cooldown(name)
    assert await one.store.closed_among([name]) == set()  # half-open is not closed: the trial is the store's to give


async def test_the_cooldown_passes_on_redis_time(name):
    """Without moving any deadline by hand: open, then half-open once the cool-down has passed."""
    harness = Redis()
    one, two = harness.pair(name, threshold=1, cooldown=0.3)
    try:
        await one.record_failure(SERVER_ERROR)
        assert await refused(two) is not None
        for _ in range(200):
            if await two.state() == "half_open":
                break
            await asyncio.sleep(0.01)
        assert await two.state() == "half_open" and await two.before_call() is not None
        assert [s for s in shared_breaker_states(settings.REDIS_URL) if s["name"] == name][0]["state"] == "half_open"
    finally:
        await harness.close()


async def test_without_redis_each_process_falls_back_to_its_own_breaker_and_says_so_once(name, caplog):
    store = RedisBreakerStore("redis://127.0.0.1:1/3")  # nothing listens there
    breaker = CircuitBreaker(name, 2, 30, store)
    with caplog.at_level(logging.WARNING, logger="nous.breaker"):
        await breaker.record_success(await breaker.before_call())  # calls still go through
        await breaker.record_failure(SERVER_ERROR)
        await breaker.record_failure(SERVER_ERROR)
        error = await refused(breaker)  # and the local breaker still protects the provider
        assert await breaker.state() == "open"
        assert await store.closed_among([name, "other"]) == {"other"}  # read from the local breakers
    await store.aclose()
    assert error is not None and error.code == "provider_unavailable"
    warnings = [r for r in caplog.records if r.name == "nous.breaker"]
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()
