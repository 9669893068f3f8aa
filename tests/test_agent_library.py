"""The framework-free agent library: the test model, the run loop, retries, breaker, coalescing."""

import asyncio
from types import SimpleNamespace

import pytest

import agents.models.test
from agents import (
    Agent,
    AgentConfigError,
    CircuitBreaker,
    Finished,
    ProviderError,
    RetryPolicy,
    RunError,
    TextDelta,
    ToolCall,
    ToolResult,
    tool,
)
from agents.breaker import MemoryBreakerStore
from agents.models.test import TestModel
from chat.runs import coalesce
from chat.runs.coalesce import DeltaCoalescer


async def collect(agent, prompt="hello", **kwargs):
    return [event async for event in agent.run_stream(prompt, **kwargs)]


async def test_the_test_model_is_deterministic_per_prompt():
    a = await Agent("test:tps=0,words=20").run("same prompt")
    b = await Agent("test:tps=0,words=20").run("same prompt")
    c = await Agent("test:tps=0,words=20").run("another prompt")
    assert a.output == b.output != c.output
    assert len(a.output.split()) == 20 and a.usage.output_tokens == 20 and a.usage.input_tokens == 2


async def test_the_test_model_streams_at_its_token_rate(monkeypatch):
    sleeps = []

    async def sleep(secs):
        sleeps.append(secs)

    monkeypatch.setattr(agents.models.test, "asyncio", SimpleNamespace(sleep=sleep))
    events = await collect(Agent("test:tps=100,words=20"))
    assert sum(isinstance(e, TextDelta) for e in events) == 20
    assert sleeps == [0] + [0.01] * 19  # the first word at once, then one every 1/tps seconds


async def test_max_tokens_caps_the_answer():
    result = await Agent("test:tps=0,words=50", model_settings={"max_tokens": 5}).run("short")
    assert len(result.output.split()) == 5


@pytest.mark.parametrize("model", ["test:words=x", "test:nonsense=1", "test:tps"])
def test_bad_test_model_options_are_refused(model):
    with pytest.raises(AgentConfigError):
        Agent(model)


async def test_history_goes_in_and_new_messages_come_out_as_plain_data():
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}]
    result = await Agent("test:tps=0,words=3").run("now", message_history=history)
    assert result.new_messages[0] == {"role": "user", "content": "now"}
    assert result.new_messages[1] == {"role": "assistant", "content": result.output}


async def test_tools_are_called_and_their_result_goes_back_to_the_model():
    calls = []

    @tool
    def clock() -> str:
        """The time."""
        calls.append(1)
        return "12:00"

    events = await collect(Agent("test:tps=0,words=4,tool=clock", tools=[clock]))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "ToolCall" and kinds[1] == "ToolResult" and kinds[-1] == "Finished"
    assert calls == [1] and events[1].result == "12:00" and not events[1].is_error
    assert [m["role"] for m in events[-1].result.new_messages] == ["user", "assistant", "tool", "assistant"]


async def test_a_sensitive_tool_waits_for_approval_and_can_be_rejected():
    @tool(needs_approval=True)
    def delete_everything() -> str:
        raise AssertionError("must not run")

    async def reject(call: ToolCall):
        assert call.needs_approval
        return False, "no way"

    events = await collect(Agent("test:tps=0,words=2,tool=delete_everything", tools=[delete_everything], approver=reject))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.is_error and "no way" in result.result
    assert isinstance(events[-1], Finished)


async def test_a_call_already_approved_runs_without_asking_the_approver_again():
    # A run that went on after a pause makes the approved call itself, through the agent's own path.
    @tool(needs_approval=True)
    def delete_everything() -> str:
        return "deleted"

    async def never(call: ToolCall):
        raise AssertionError("already approved")

    agent = Agent("test:", tools=[delete_everything], approver=never)
    call = agent.marked(ToolCall("call-1", "delete_everything", {}))
    assert call.needs_approval
    assert await agent.call_tool(call, approved=True) == ToolResult("call-1", "delete_everything", "deleted")
    unknown = await agent.call_tool(ToolCall("call-2", "nothing_such", {}), approved=True)
    assert unknown.is_error and "Unknown tool" in unknown.result


async def test_retryable_errors_are_retried_with_backoff_before_any_text():
    sleeps = []

    async def sleep(secs):
        sleeps.append(secs)

    agent = Agent("test:tps=0,words=5,fail=overloaded,fail_times=2", retry=RetryPolicy(max_attempts=3, base_delay_secs=0.1), sleep=sleep)
    result = await agent.run("go")
    assert len(result.output.split()) == 5 and agent.model.calls == 3
    assert len(sleeps) == 2 and 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2


async def test_nothing_is_retried_once_text_was_streamed():
    agent = Agent("test:tps=0,words=20,fail=overloaded,fail_after=3", retry=RetryPolicy(base_delay_secs=0))
    events = await collect(agent)
    assert isinstance(events[-1], RunError) and events[-1].error.code == "overloaded"
    assert events[-1].partial == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert agent.model.calls == 1


async def test_a_non_retryable_error_fails_at_once():
    agent = Agent("test:fail=provider_error", retry=RetryPolicy(base_delay_secs=0))
    with pytest.raises(ProviderError) as info:
        await agent.run("x")
    assert info.value.code == "provider_error" and agent.model.calls == 1


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(max_retry_after_secs=10)
    assert policy.delay(1, retry_after=3) == 3
    assert policy.delay(1, retry_after=120) == 10
    assert all(policy.base_delay_secs / 2 <= policy.delay(1) <= policy.base_delay_secs for _ in range(50))


async def test_the_breaker_opens_then_half_opens_after_the_cooldown():
    now = [0.0]
    breaker = CircuitBreaker("p", failure_threshold=2, cooldown_secs=10, store=MemoryBreakerStore(lambda: now[0]))
    failure = ProviderError("provider_error", "500", retryable=True)
    await breaker.record_failure(failure)
    assert await breaker.state() == "closed"
    await breaker.record_failure(failure)
    assert await breaker.state() == "open"
    with pytest.raises(ProviderError) as info:
        await breaker.before_call()
    assert info.value.code == "provider_unavailable"
    now[0] = 11
    assert await breaker.state() == "half_open"
    trial = await breaker.before_call()  # one trial goes through
    assert trial is not None
    with pytest.raises(ProviderError):
        await breaker.before_call()  # a second one waits for the trial
    await breaker.record_failure(failure, trial)
    assert await breaker.state() == "open"
    now[0] = 22
    await breaker.before_call()
    await breaker.record_success()
    assert await breaker.snapshot() == {"name": "p", "state": "closed", "failures": 0, "retry_in": 0.0}


async def test_a_bad_request_does_not_count_against_the_provider():
    breaker = CircuitBreaker("p", failure_threshold=1)
    await breaker.record_failure(ProviderError("provider_error", "400", retryable=False))
    assert await breaker.state() == "closed"


async def test_an_open_breaker_fails_runs_fast_without_calling_the_model():
    breaker = CircuitBreaker("test", failure_threshold=1)
    agent = Agent("test:tps=0,fail=overloaded", breaker=breaker, retry=RetryPolicy(max_attempts=1))
    await collect(agent)
    events = await collect(agent)
    assert events[-1].error.code == "provider_unavailable" and agent.model.calls == 1


class WatchedModel(TestModel):
    """A test model that says whether its stream is still open."""

    __test__ = False
    streaming = False

    async def stream(self, request):
        self.streaming = True
        try:
            async for event in super().stream(request):
                yield event
        finally:
            self.streaming = False


async def test_cancelling_a_stream_stops_the_model():
    model = WatchedModel(tokens_per_second=50, words=1000)
    received = []
    three = asyncio.Event()

    async def consume():
        async for event in Agent(model).run_stream("go"):
            received.append(event)
            if len(received) == 3:
                three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 5)
    assert model.streaming
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
    assert not model.streaming and len(received) == 3  # the model's stream is closed, not left suspended


class HandTimers:
    """The running loop's `call_later` for chat.runs.coalesce, with timers that fire when the test says."""

    def __init__(self, monkeypatch):
        self.loop = asyncio.get_running_loop()
        self.delays = []
        self.timers = []
        timers = self

        class Asyncio:
            def __getattr__(self, name):
                return getattr(asyncio, name)

            def get_running_loop(self):
                return timers

        monkeypatch.setattr(coalesce, "asyncio", Asyncio())

    def call_later(self, delay, callback):
        self.delays.append(delay)
        handle = self.loop.call_later(3600, callback)  # a real handle, so the coalescer can cancel it
        self.timers.append((handle, callback))
        return handle

    def fire(self):
        """Run the timers not cancelled, as if their delay had passed."""
        due, self.timers = [t for t in self.timers if not t[0].cancelled()], []
        for handle, callback in due:
            handle.cancel()
            callback()


async def test_the_coalescer_flushes_at_the_size_or_the_deadline(monkeypatch):
    timers = HandTimers(monkeypatch)
    flushed = []
    flushes = asyncio.Queue()

    async def flush_to(seq, text, started_at):
        flushed.append((seq, text))
        flushes.put_nowait(seq)

    coalescer = DeltaCoalescer(flush_to, max_chars=10, max_delay_ms=50)
    await coalescer.add("first")  # the first text of a run is not held back
    assert flushed == [(1, "first")] and timers.delays == []
    await coalescer.add("abc")
    await coalescer.add("defghijk")  # 11 chars: flushed at once
    assert flushed == [(1, "first"), (2, "abcdefghijk")]
    assert timers.delays == [0.05] and timers.timers[0][0].cancelled()  # the size won; its timer is off
    await coalescer.add("x")
    assert flushed[2:] == [] and timers.delays == [0.05, 0.05]  # held until the deadline
    timers.fire()
    while await asyncio.wait_for(flushes.get(), 5) != 3:
        pass
    assert flushed[2:] == [(3, "x")]
    await coalescer.add("tail")
    await coalescer.close()
    assert coalescer.text == "firstabcdefghijkxtail" and coalescer.seq == 4


async def test_a_cancelled_trial_call_does_not_jam_a_half_open_breaker():
    now = [0.0]
    breaker = CircuitBreaker("test", failure_threshold=1, cooldown_secs=5, store=MemoryBreakerStore(lambda: now[0]))
    await breaker.record_failure(ProviderError("provider_error", "500", retryable=True))
    now[0] = 6  # half-open: the next call is the trial
    first_word = asyncio.Event()

    async def trial():
        async for _ in Agent(TestModel(tokens_per_second=5, words=100), breaker=breaker).run_stream("slow"):
            first_word.set()

    task = asyncio.create_task(trial())
    await asyncio.wait_for(first_word.wait(), 5)
    task.cancel()  # a user pressed Stop during the trial
    with pytest.raises(asyncio.CancelledError):
        await task
    result = await Agent("test:tps=0,words=3", breaker=breaker).run("next")
    assert len(result.output.split()) == 3 and await breaker.state() == "closed"


async def test_the_coalescing_window_widens_under_load(monkeypatch):
    flushed = []

    async def flush_to(seq, text, started_at):
        flushed.append(text)

    load = [1.0]
    timers = HandTimers(monkeypatch)
    coalescer = DeltaCoalescer(flush_to, max_chars=10, max_delay_ms=1000, widen=lambda: load[0])
    await coalescer.add("first")
    await coalescer.add("0123456789")  # 10 chars: flushed at the normal window
    load[0] = 3.0
    await coalescer.add("0123456789" * 2)  # 20 chars: held, the window is now 30 chars and 3 s
    assert flushed == ["first", "0123456789"] and timers.delays == [1.0, 3.0]
    await coalescer.add("0123456789")
    assert flushed[-1] == "0123456789" * 3


async def test_a_rate_limit_does_not_count_against_the_provider():
    now = [0.0]
    breaker = CircuitBreaker("p", failure_threshold=1, cooldown_secs=10, store=MemoryBreakerStore(lambda: now[0]))
    limited = ProviderError("rate_limited", "429", retryable=True, retry_after=5)
    for _ in range(5):
        await breaker.record_failure(limited)
    assert await breaker.state() == "closed"  # the provider asked this caller to wait; the others may go on
    await breaker.record_failure(ProviderError("provider_error", "500", retryable=True))
    assert await breaker.state() == "open"
    now[0] = 11
    trial = await breaker.before_call()  # the half-open trial
    await breaker.record_failure(limited, trial)  # the provider answered, so it is not down: the trial slot is free again
    assert await breaker.state() == "half_open"
    await breaker.record_success(await breaker.before_call())
    assert await breaker.state() == "closed"
