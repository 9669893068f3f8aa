"""The agent library's fallback chain and context trimming (framework-free)."""

import pytest

from agents import Agent, CircuitBreaker, ContextTrimmed, Finished, ModelFallback, ProviderError, RetryPolicy, RunError, TextDelta
from agents.context import fit_messages, message_tokens
from agents.errors import AgentConfigError
from agents.models.test import TestModel
from agents.windows import context_window, parse_windows


async def collect(agent, prompt="hello", **kwargs):
    return [event async for event in agent.run_stream(prompt, **kwargs)]


async def no_sleep(_delay):
    return None


def history(turns: int, words: int = 40) -> list[dict]:
    """`turns` user/assistant pairs, each message `words` words long, oldest first."""
    messages = []
    for n in range(turns):
        messages.append({"role": "user", "content": f"question {n} " + "word " * words})
        messages.append({"role": "assistant", "content": f"answer {n} " + "word " * words})
    return messages


async def test_the_next_model_answers_when_the_first_fails_before_any_text():
    agent = Agent("test:fail=provider_error,tps=0", fallback=["test:fail=overloaded,tps=0", "test:tps=0,words=5"],
                  retry=RetryPolicy(max_attempts=2), sleep=no_sleep)
    events = await collect(agent)
    fallbacks = [e for e in events if isinstance(e, ModelFallback)]
    assert [(f.from_model, f.to_model, f.error_code) for f in fallbacks] == [
        ("test:fail=provider_error,tps=0", "test:fail=overloaded,tps=0", "provider_error"),
        ("test:fail=overloaded,tps=0", "test:tps=0,words=5", "overloaded"),  # after its own retry
    ]
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.result.model == "test:tps=0,words=5"
    assert len(finished.result.output.split()) == 5


async def test_a_model_that_answers_is_reported_as_the_first():
    result = await Agent("test:tps=0,words=3", fallback=["test:tps=0"]).run("hi")
    assert result.model == "test:tps=0,words=3" and result.trimmed_messages == 0


async def test_never_a_switch_once_text_was_streamed():
    # Three words, then a failure: the user has seen text, so the run fails as it would alone.
    agent = Agent("test:fail=provider_error,fail_after=3,tps=0", fallback=["test:tps=0"])
    events = await collect(agent)
    assert not any(isinstance(e, ModelFallback) for e in events)
    assert isinstance(events[-1], RunError) and events[-1].error.code == "provider_error"
    assert events[-1].partial == "".join(e.text for e in events if isinstance(e, TextDelta)) != ""


async def test_an_open_breaker_hands_over_to_the_next_model_with_its_own_breaker():
    opened = CircuitBreaker("first", failure_threshold=1)
    await opened.record_failure(ProviderError("overloaded", "down", retryable=True), None)
    assert await opened.state() == "open"
    agent = Agent("test:tps=0,words=4", breaker=opened, fallback=["test:tps=0,words=2"])
    events = await collect(agent)
    fallback = next(e for e in events if isinstance(e, ModelFallback))
    assert fallback.error_code == "provider_unavailable"
    assert events[-1].result.model == "test:tps=0,words=2" and len(events[-1].result.output.split()) == 2


async def test_when_every_model_fails_the_run_fails_with_the_last_error():
    agent = Agent("test:fail=provider_error,tps=0", fallback=["test:fail=tool_loop,tps=0", "test:fail=timeout,tps=0"],
                  retry=RetryPolicy(max_attempts=1))
    events = await collect(agent)
    assert len([e for e in events if isinstance(e, ModelFallback)]) == 2
    assert isinstance(events[-1], RunError) and events[-1].error.code == "timeout"


async def test_a_fallback_that_cannot_be_built_is_skipped_not_fatal(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    agent = Agent("test:fail=provider_error,tps=0", fallback=["anthropic:claude-sonnet-4-5", "test:tps=0,words=2"])
    events = await collect(agent)
    assert [e.to_model for e in events if isinstance(e, ModelFallback)] == ["anthropic:claude-sonnet-4-5", "test:tps=0,words=2"]
    assert isinstance(events[-1], Finished)


async def test_a_later_tool_round_may_switch_while_no_text_was_streamed():
    # The first model calls the clock, then fails on the answer round: nothing but a tool call was shown.
    from agents import tool

    @tool
    def clock() -> str:
        """The time."""
        return "noon"

    first = "test:tool=clock,fail=provider_error,tps=0"
    agent = Agent(first, tools=[clock], fallback=["test:tps=0,words=3"])
    events = await collect(agent, "what time is it")
    assert [e.kind for e in events][:3] == ["tool_call", "tool_result", "fallback"]
    assert events[-1].result.model == "test:tps=0,words=3" and events[-1].result.output.startswith("clock returned noon.")


async def test_a_run_that_streamed_text_before_a_pause_never_switches():
    agent = Agent("test:fail=provider_error,tps=0", fallback=["test:tps=0"])
    events = await collect(agent, text_streamed=True)
    assert isinstance(events[-1], RunError) and not any(isinstance(e, ModelFallback) for e in events)


class CrashingModel(TestModel):
    """A model whose provider code has a bug: it raises something that is not a `ProviderError`."""

    __test__ = False

    async def stream(self, request):
        raise RuntimeError("bug in the provider")
        yield  # an async generator, as every model's stream is


async def test_a_crash_is_logged_under_the_model_that_crashed_not_the_first(caplog):
    agent = Agent("test:fail=provider_error,tps=0", fallback=[CrashingModel(name="crasher")])
    with caplog.at_level("ERROR", logger="nous.agents"):
        events = await collect(agent)
    assert isinstance(events[-1], RunError) and events[-1].error.code == "internal"
    # The first model only refused; the operator must look at the fallback that crashed.
    assert [r.getMessage() for r in caplog.records if r.exc_info] == ["model test:crasher crashed"]


def test_trimming_keeps_the_newest_turn_and_leaves_out_whole_turns_from_the_oldest():
    messages = history(5) + [
        {"role": "user", "content": "now"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "clock", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "clock", "content": "noon"},
    ]
    pair = message_tokens(messages[0]) + message_tokens(messages[1])
    newest = sum(message_tokens(m) for m in messages[10:])
    fitted = fit_messages(messages, budget=2 * pair + newest + 5, fixed_tokens=5)
    assert fitted.dropped == 6 and fitted.messages == messages[6:]
    assert fitted.messages[0]["role"] == "user"  # what is left still opens with the user
    # However small the budget, the newest turn stays whole: its tool call with its result.
    tiny = fit_messages(messages, budget=1)
    assert tiny.messages == messages[10:] and tiny.dropped == 10
    # A budget that holds everything leaves everything.
    assert fit_messages(messages, budget=10**6).dropped == 0


async def test_a_long_history_is_trimmed_to_the_window_and_the_instructions_stay():
    agent = Agent("test:tps=0,window=300,words=20", instructions="Be brief.")
    events = await collect(agent, "and now?", message_history=history(10))
    trimmed = next(e for e in events if isinstance(e, ContextTrimmed))
    assert isinstance(events[-1], Finished) and events[-1].result.trimmed_messages == trimmed.dropped_messages
    assert 0 < trimmed.dropped_messages < 20 and trimmed.dropped_messages % 2 == 0
    # Without trimming the same request is refused as too long, and not retried.
    alone = Agent("test:tps=0,window=300,words=20", instructions="Be brief.", context_windows={"test:": 10**6})
    events = await collect(alone, "and now?", message_history=history(10))
    assert isinstance(events[-1], RunError) and events[-1].error.code == "context_length"
    assert not events[-1].error.retryable and not any(e.kind == "retry" for e in events)


def test_the_window_table_and_its_overrides():
    assert context_window("anthropic:claude-sonnet-4-5") == 200_000
    assert context_window("anthropic:claude-3-5-haiku-latest") == 200_000
    assert context_window("openai:gpt-4o-mini") == 128_000
    assert context_window("openai:gpt-4.1-mini") == 1_047_576
    assert context_window("openai:o3-mini") == 200_000
    assert context_window("openai:gpt-5-mini") == 400_000
    assert context_window("openai:some-new-model") == 128_000  # the provider's default
    overrides = parse_windows(" anthropic:claude-sonnet-4-5=1000, test:=300 ")
    assert overrides == {"anthropic:claude-sonnet-4-5": 1000, "test:": 300}
    assert context_window("anthropic:claude-sonnet-4-5", overrides) == 1000
    assert context_window("anthropic:claude-opus-4-1", overrides) == 200_000
    assert context_window("test:window=50", overrides, declared=50) == 300  # an override wins over the model's own
    assert context_window("test:window=50", {}, declared=50) == 50
    assert parse_windows("") == {}


@pytest.mark.parametrize("bad", ["anthropic:claude=lots", "claude=1000", "test:=0", "test:"])
def test_a_bad_window_override_says_what_is_wrong(bad):
    with pytest.raises(AgentConfigError, match="tokens|window size"):
        parse_windows(bad)


def test_the_setting_names_the_variable_on_a_bad_value(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from nous_site.settings import envwindows

    monkeypatch.setenv("NOUS_CONTEXT_WINDOWS", "test:=many")
    with pytest.raises(ImproperlyConfigured, match="NOUS_CONTEXT_WINDOWS='test:=many' is not valid"):
        envwindows("NOUS_CONTEXT_WINDOWS")


async def test_a_fallback_with_a_larger_window_sees_more_and_the_result_says_so():
    agent = Agent("test:fail=provider_error,window=300,tps=0", fallback=["test:tps=0,words=5"])
    events = await collect(agent, "and now?", message_history=history(10))
    assert [e.dropped_messages for e in events if isinstance(e, ContextTrimmed)] == [18, 0]
    assert events[-1].result.trimmed_messages == 0 and events[-1].result.model == "test:tps=0,words=5"


def test_an_image_counts_as_an_image_not_as_its_base64_text():
    from agents.context import IMAGE_TOKENS, message_tokens

    picture = {"type": "image", "media_type": "image/png", "data": "A" * 400_000}
    with_image = {"role": "user", "content": [{"type": "text", "text": "what is this?"}, picture]}
    text_only = {"role": "user", "content": "what is this?"}
    assert message_tokens(with_image) == message_tokens(text_only) + IMAGE_TOKENS
