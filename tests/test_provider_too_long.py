"""The providers' real "prompt is too long" errors, through the real SDKs and the loopback server:
mapped to `context_length`, and answered by trimming harder once instead of failing the run."""

from __future__ import annotations

import pytest

from agents import ContextTrimmed, Finished, RunError
from tests.loopback_llm import http_error, text
from tests.loopback_llm import llm_server as llm_server  # the fixture
from tests.test_providers import collect, make_agent
from tests.test_providers import provider as provider  # the fixture

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

# As each API words it (Anthropic: the message only; OpenAI: the error code).
TOO_LONG = {
    "anthropic": http_error(400, message="prompt is too long: 1204 tokens > 1000 maximum"),
    "openai": http_error(400, error_code="context_length_exceeded",
                         message="This model's maximum context length is 1000 tokens. However, your messages resulted in 1204 tokens."),
}


def history(turns: int) -> list[dict]:
    return [m for n in range(turns) for m in (
        {"role": "user", "content": f"question {n} " + "word " * 40}, {"role": "assistant", "content": f"answer {n} " + "word " * 40})]


async def test_a_too_long_error_is_its_own_code_and_not_retried(provider, llm_server):
    llm_server.script(TOO_LONG[provider.name], text(["never"]))
    events = await collect(make_agent(provider, llm_server).run_stream("Hi"))
    error = events[-1].error
    assert isinstance(events[-1], RunError) and (error.code, error.retryable, error.status) == ("context_length", False, 400)
    assert "too long" in error.message and len(llm_server.requests) == 1  # nothing older to leave out: no second try


async def test_a_too_long_error_is_answered_by_trimming_harder_once(provider, llm_server):
    # The estimate says the history fits the window; the provider counts more and refuses.
    llm_server.script(TOO_LONG[provider.name], text(["fits ", "now"]))
    agent = make_agent(provider, llm_server, context_windows={f"{provider.name}:": 2000}, instructions="Be brief.")
    events = await collect(agent.run_stream("Hi", message_history=history(6)))
    assert isinstance(events[-1], Finished) and events[-1].result.output == "fits now"
    trimmed = next(e for e in events if isinstance(e, ContextTrimmed))
    assert trimmed.dropped_messages == events[-1].result.trimmed_messages > 0
    first, second = llm_server.bodies()
    assert len(first["messages"]) - len(second["messages"]) == trimmed.dropped_messages
    assert "Hi" in str(second["messages"][-1]) and "question 5" in str(second["messages"])  # the newest turns stay
    assert "Be brief." in str(second.get("system")) + str(second["messages"][0])  # and the instructions


async def test_trimming_harder_is_tried_once_only(provider, llm_server):
    llm_server.script(TOO_LONG[provider.name], TOO_LONG[provider.name], text(["never"]))
    agent = make_agent(provider, llm_server, context_windows={f"{provider.name}:": 2000})
    events = await collect(agent.run_stream("Hi", message_history=history(6)))
    assert isinstance(events[-1], RunError) and events[-1].error.code == "context_length"
    assert len(llm_server.requests) == 2
