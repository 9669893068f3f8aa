"""AnthropicModel against a loopback server speaking the Messages API's SSE format, through the real SDK."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agents import Agent, CircuitBreaker, Finished, RetryPolicy, RunError, TextDelta, ToolCall, ToolDefinition, ToolResult, tool
from agents.errors import AgentConfigError, ProviderError
from agents.events import ResponseEnd, Usage
from agents.models.anthropic import AnthropicModel, to_anthropic_messages
from agents.models.base import ModelRequest
from tests.loopback_llm import RecordingSleep, drop, hang, http_error, stream_error, text, tool_call
from tests.loopback_llm import llm_server as llm_server  # the fixture

# The SDK warns that this (test) model name is deprecated; that is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def make_model(server) -> AnthropicModel:
    return AnthropicModel("claude-sonnet-4-5", api_key="k", base_url=server.base_url)


def make_agent(server, **kwargs) -> Agent:
    kwargs.setdefault("retry", RetryPolicy(base_delay_secs=0.01))
    return Agent(make_model(server), **kwargs)


async def collect(stream) -> list:
    return [event async for event in stream]


def ask(prompt: str = "Hi", **kwargs) -> ModelRequest:
    return ModelRequest([{"role": "user", "content": prompt}], **kwargs)


async def test_streams_text_deltas_and_usage(llm_server):
    llm_server.script(text(["Hel", "lo, ", "wor", "ld"], input_tokens=21, output_tokens=9))
    events = await collect(make_model(llm_server).stream(ask()))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 4 and "".join(d.text for d in deltas) == "Hello, world"
    assert events[-1] == ResponseEnd(Usage(21, 9), "end_turn")
    [request] = llm_server.requests
    assert request.path == "/v1/messages"
    assert request.headers.get("x-api-key") == "k" or request.headers.get("authorization") == "Bearer k"
    assert request.body["model"] == "claude-sonnet-4-5" and request.body["stream"] is True


async def test_instructions_settings_tools_and_history_reach_the_body(llm_server):
    llm_server.script(text(["ok"]))
    history = [
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "toolu_1", "name": "clock", "arguments": {"tz": "UTC"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "clock", "content": "12:00", "is_error": False},
        {"role": "user", "content": "And in Paris?"},
    ]
    clock = ToolDefinition("clock", "Current time", {"type": "object", "properties": {"tz": {"type": "string"}}})
    settings = {"max_tokens": 77, "temperature": 0.3, "top_p": 0.5}
    await collect(make_model(llm_server).stream(ModelRequest(history, "Be brief.", settings, [clock])))
    body = llm_server.requests[0].body
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 77
    assert "temperature" not in body and "top_p" not in body  # the Messages API SDK takes neither
    assert body["tools"] == [{"name": "clock", "description": "Current time", "input_schema": clock.parameters}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What time is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "clock", "input": {"tz": "UTC"}}]},
        # the tool result and the next user turn merge into one user message, tool result first
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12:00"},
                                     {"type": "text", "text": "And in Paris?"}]},
    ]


async def test_max_tokens_defaults_to_4096_and_no_system_without_instructions(llm_server):
    llm_server.script(text(["ok"]))
    await collect(make_model(llm_server).stream(ask()))
    body = llm_server.requests[0].body
    assert body["max_tokens"] == 4096 and "system" not in body and "tools" not in body


def test_message_mapping_marks_errors_and_skips_empty_text():
    system, messages = to_anthropic_messages([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "t1", "name": "x", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "t1", "name": "x", "content": "boom", "is_error": True},
    ])
    assert system == ["sys"]
    assert messages[1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}]}
    assert messages[2]["content"] == [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}]


async def test_tool_call_is_assembled_from_input_json_deltas(llm_server):
    llm_server.script(tool_call("get_weather", {"city": "Paris", "days": 3, "units": "metric"}, text=["Let me ", "check."]))
    events = await collect(make_model(llm_server).stream(ask("Weather?")))
    assert [type(e) for e in events] == [TextDelta, TextDelta, ToolCall, ResponseEnd]
    call = events[2]
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert call.arguments == {"city": "Paris", "days": 3, "units": "metric"}
    assert events[-1].stop_reason == "tool_use"


async def test_agent_runs_the_tool_and_sends_the_result_back(llm_server):
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    llm_server.script(tool_call("get_weather", {"city": "Paris"}, input_tokens=30, output_tokens=5),
                      text(["It is ", "sunny."], input_tokens=50, output_tokens=4))
    agent = make_agent(llm_server, tools=[get_weather], instructions="Use tools.")
    events = await collect(agent.run_stream("Weather in Paris?"))
    call = next(e for e in events if isinstance(e, ToolCall))
    assert next(e for e in events if isinstance(e, ToolResult)).result == "sunny in Paris"
    result = events[-1].result
    assert result.output == "It is sunny." and result.usage == Usage(80, 9)
    assert len(llm_server.requests) == 2
    second = llm_server.requests[1].body
    assert second["system"] == "Use tools."
    assert second["tools"][0]["name"] == "get_weather"
    assert second["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}]}
    assert second["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "sunny in Paris"}]}


async def test_agent_streams_text_and_finishes(llm_server):
    llm_server.script(text(["Bon", "jour", "!"], input_tokens=3, output_tokens=2))
    events = await collect(make_agent(llm_server).run_stream("Hi"))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Bon", "jour", "!"]
    assert isinstance(events[-1], Finished) and events[-1].result.output == "Bonjour!"
    assert events[-1].result.usage == Usage(3, 2)


async def test_429_is_retried_after_the_retry_after_header(llm_server):
    sleep = RecordingSleep()
    llm_server.script(http_error(429, headers={"retry-after": "2"}), text(["ok"]))
    result = await make_agent(llm_server, sleep=sleep).run("Hi")
    assert result.output == "ok"
    assert len(llm_server.requests) == 2
    assert sleep.delays == [2.0]


async def test_429_error_carries_code_and_retry_after(llm_server):
    llm_server.script(http_error(429, headers={"retry-after": "0"}))
    with pytest.raises(ProviderError) as caught:
        await collect(make_model(llm_server).stream(ask()))
    error = caught.value
    assert (error.code, error.retryable, error.retry_after, error.status) == ("rate_limited", True, 0.0, 429)


@pytest.mark.parametrize(("status", "code"), [(529, "overloaded"), (500, "provider_error"), (503, "provider_error")])
async def test_server_errors_are_retried_then_succeed(llm_server, status, code):
    sleep = RecordingSleep()
    llm_server.script(http_error(status), text(["fine"]))
    result = await make_agent(llm_server, sleep=sleep).run("Hi")
    assert result.output == "fine" and len(llm_server.requests) == 2 and len(sleep.delays) == 1
    llm_server.script(http_error(status))
    with pytest.raises(ProviderError) as caught:
        await collect(make_model(llm_server).stream(ask()))
    assert (caught.value.code, caught.value.retryable, caught.value.status) == (code, True, status)


async def test_persistent_500_fails_after_max_attempts(llm_server):
    llm_server.script(*[http_error(500, message="kaput")] * 3, text(["never"]))
    events = await collect(make_agent(llm_server, sleep=RecordingSleep()).run_stream("Hi"))
    assert isinstance(events[-1], RunError)
    error = events[-1].error
    assert (error.code, error.retryable, error.status) == ("provider_error", True, 500) and "kaput" in error.message
    assert len(llm_server.requests) == 3


async def test_401_is_not_retried(llm_server):
    llm_server.script(http_error(401, message="invalid x-api-key"), text(["never"]))
    events = await collect(make_agent(llm_server).run_stream("Hi"))
    error = events[-1].error
    assert (error.code, error.retryable, error.status) == ("provider_error", False, 401)
    assert "refused the API key" in error.message and "invalid x-api-key" in error.message
    assert len(llm_server.requests) == 1


async def test_400_is_not_retried_and_keeps_the_provider_message(llm_server):
    llm_server.script(http_error(400, message="messages: at least one message is required"), text(["never"]))
    events = await collect(make_agent(llm_server).run_stream("Hi"))
    error = events[-1].error
    assert (error.code, error.retryable) == ("provider_error", False) and "at least one message" in error.message
    assert len(llm_server.requests) == 1


async def test_mid_stream_error_event_after_text_is_not_retried(llm_server):
    llm_server.script(stream_error(["Hello", " there"], error_type="overloaded_error", message="Overloaded"), text(["never"]))
    events = await collect(make_agent(llm_server, sleep=RecordingSleep()).run_stream("Hi"))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " there"]
    assert isinstance(events[-1], RunError) and events[-1].partial == "Hello there"
    assert (events[-1].error.code, events[-1].error.retryable) == ("overloaded", True)
    assert len(llm_server.requests) == 1


async def test_mid_stream_error_types_map_to_codes(llm_server):
    llm_server.script(stream_error([], error_type="rate_limit_error", message="slow down"),
                      stream_error(["x"], error_type="invalid_request_error", message="bad"))
    model = make_model(llm_server)
    with pytest.raises(ProviderError) as first:
        await collect(model.stream(ask()))
    with pytest.raises(ProviderError) as second:
        await collect(model.stream(ask()))
    assert (first.value.code, first.value.retryable) == ("rate_limited", True)
    assert (second.value.code, second.value.retryable) == ("provider_error", False)


async def test_dropped_connection_mid_stream_is_a_retryable_provider_error(llm_server):
    llm_server.script(drop(["Hel", "lo"]), text(["never"]))
    events = await collect(make_agent(llm_server, sleep=RecordingSleep()).run_stream("Hi"))
    assert isinstance(events[-1], RunError) and events[-1].partial == "Hello"
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_error", True)
    assert len(llm_server.requests) == 1  # text was streamed: no retry


async def test_connection_refused_is_retried_then_fails():
    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleep = RecordingSleep()
    agent = Agent(AnthropicModel("claude-sonnet-4-5", api_key="k", base_url=f"http://127.0.0.1:{port}"), retry=RetryPolicy(base_delay_secs=0.01), sleep=sleep)
    events = await collect(agent.run_stream("Hi"))
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_error", True)
    assert len(sleep.delays) == 2


@pytest.mark.parametrize("before_headers", [False, True])
async def test_cancelling_the_consumer_closes_the_connection(llm_server, before_headers):
    llm_server.script(hang([] if before_headers else ["Thinking"], before_headers=before_headers))
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for event in make_agent(llm_server).run_stream("Hi"):
            if isinstance(event, TextDelta):
                first_delta.set()

    task = asyncio.create_task(consume())
    if before_headers:
        assert await llm_server.wait_until(lambda: bool(llm_server.requests), timeout=5)
    else:
        await asyncio.wait_for(first_delta.wait(), 5)
    assert not llm_server.requests[0].disconnected
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await llm_server.wait_until(lambda: llm_server.requests[0].disconnected, timeout=1.0)


async def test_closing_the_stream_early_closes_the_connection(llm_server):
    llm_server.script(hang(["One", "Two"]))
    stream = make_model(llm_server).stream(ask())
    assert await stream.__anext__() == TextDelta("One")
    await stream.aclose()
    assert await llm_server.wait_until(lambda: llm_server.requests[0].disconnected, timeout=1.0)


def test_missing_api_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AgentConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-sonnet-4-5")


async def test_key_and_base_url_come_from_the_environment(llm_server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.base_url)
    llm_server.script(text(["ok"]))
    await collect(AnthropicModel("claude-sonnet-4-5").stream(ask()))
    headers = llm_server.requests[0].headers
    assert headers.get("x-api-key") == "env-key" or headers.get("authorization") == "Bearer env-key"


@pytest.mark.parametrize("base_url", ["https://api.anthropic.com", None])
async def test_non_loopback_base_url_is_refused(monkeypatch, base_url):
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    model = AnthropicModel("claude-sonnet-4-5", api_key="k", base_url=base_url)
    with pytest.raises(AgentConfigError, match="disabled while tests run"):
        await collect(model.stream(ask()))


async def test_circuit_breaker_opens_and_fails_fast(llm_server):
    llm_server.script(http_error(500), http_error(500))
    llm_server.default = text(["would succeed"])
    breaker = CircuitBreaker("anthropic-test", failure_threshold=2)
    agent = make_agent(llm_server, breaker=breaker, retry=RetryPolicy(max_attempts=1))
    for _ in range(2):
        events = await collect(agent.run_stream("Hi"))
        assert events[-1].error.code == "provider_error"
    assert breaker.state == "open"
    events = await collect(agent.run_stream("Hi"))
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_unavailable", True)
    assert len(llm_server.requests) == 2
