"""OpenAIModel against a loopback server speaking Chat Completions' streaming chunks, through the real SDK."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time

import pytest

from agents import Agent, CircuitBreaker, Finished, RetryPolicy, RunError, TextDelta, ToolCall, ToolDefinition, ToolResult, tool
from agents.errors import AgentConfigError, ProviderError
from agents.events import ResponseEnd, Usage
from agents.models._sdk_errors import parse_retry_after
from agents.models.base import ModelRequest
from agents.models.openai import OpenAIModel
from tests.loopback_llm import RecordingSleep, drop, hang, http_error, stream_error, text, tool_call, tool_calls
from tests.loopback_llm import llm_server as llm_server  # the fixture


def make_model(server, provider: str = "openai", name: str = "gpt-4o") -> OpenAIModel:
    return OpenAIModel(name, provider=provider, api_key="k", base_url=server.base_url + "/v1")


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
    assert events[-1] == ResponseEnd(Usage(21, 9), "stop")
    [request] = llm_server.requests
    assert request.path == "/v1/chat/completions" and request.headers["authorization"] == "Bearer k"
    assert request.body["stream"] is True and request.body["stream_options"] == {"include_usage": True}


async def test_instructions_settings_tools_and_history_reach_the_body(llm_server):
    llm_server.script(text(["ok"]))
    history = [
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "name": "clock", "arguments": {"tz": "UTC"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "clock", "content": "12:00", "is_error": False},
        {"role": "assistant", "content": "It is noon."},
        {"role": "user", "content": "Thanks"},
    ]
    clock = ToolDefinition("clock", "Current time", {"type": "object", "properties": {"tz": {"type": "string"}}})
    settings = {"max_tokens": 77, "temperature": 0.3, "top_p": 0.5}
    await collect(make_model(llm_server).stream(ModelRequest(history, "Be brief.", settings, [clock])))
    body = llm_server.requests[0].body
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"]) == (0.3, 0.5, 77)
    assert "max_tokens" not in body
    assert body["tools"] == [{"type": "function", "function": {"name": "clock", "description": "Current time", "parameters": clock.parameters}}]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": '{"tz": "UTC"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        {"role": "assistant", "content": "It is noon."},
        {"role": "user", "content": "Thanks"},
    ]


async def test_local_servers_get_max_tokens_and_unset_settings_are_not_sent(llm_server):
    llm_server.script(text(["ok"]), text(["ok"]))
    await collect(make_model(llm_server, provider="ollama", name="llama3").stream(ask(settings={"max_tokens": 12})))
    await collect(make_model(llm_server).stream(ask()))
    local, default = llm_server.bodies()
    assert local["max_tokens"] == 12 and "max_completion_tokens" not in local and local["model"] == "llama3"
    assert not {"max_tokens", "max_completion_tokens", "temperature", "top_p", "tools"} & set(default)
    assert default["messages"] == [{"role": "user", "content": "Hi"}]


async def test_tool_calls_are_accumulated_by_index(llm_server):
    calls = [("get_weather", {"city": "Paris", "days": 3}), ("clock", {}), ("broken", '{"city": "Par')]
    llm_server.script(tool_calls(calls, text=["Checking. "]))
    events = await collect(make_model(llm_server).stream(ask("Weather?")))
    assert [type(e) for e in events] == [TextDelta, ToolCall, ToolCall, ToolCall, ResponseEnd]
    weather, clock, broken = events[1:4]
    assert (weather.name, weather.arguments) == ("get_weather", {"city": "Paris", "days": 3})
    assert (clock.name, clock.arguments) == ("clock", {})
    assert broken.arguments == {"_raw": '{"city": "Par'}
    assert len({weather.id, clock.id, broken.id}) == 3
    assert events[-1].stop_reason == "tool_calls"


async def test_agent_runs_the_tool_and_sends_the_result_back(llm_server):
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    llm_server.script(tool_call("get_weather", {"city": "Paris"}, input_tokens=30, output_tokens=5),
                      text(["It is ", "sunny."], input_tokens=50, output_tokens=4))
    events = await collect(make_agent(llm_server, tools=[get_weather], instructions="Use tools.").run_stream("Weather in Paris?"))
    call = next(e for e in events if isinstance(e, ToolCall))
    assert next(e for e in events if isinstance(e, ToolResult)).result == "sunny in Paris"
    assert isinstance(events[-1], Finished)
    assert events[-1].result.output == "It is sunny." and events[-1].result.usage == Usage(80, 9)
    second = llm_server.requests[1].body
    assert second["messages"][0] == {"role": "system", "content": "Use tools."}
    assert second["messages"][2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert second["messages"][3] == {"role": "tool", "tool_call_id": call.id, "content": "sunny in Paris"}


async def test_agents_run_concurrently_against_the_server(llm_server):
    llm_server.script(*[text(["same ", "answer"], delay=0.02)] * 3)
    started = time.monotonic()
    results = await asyncio.gather(*(make_agent(llm_server).run(f"q{i}") for i in range(3)))
    assert [r.output for r in results] == ["same answer"] * 3
    assert time.monotonic() - started < 1.0 and len(llm_server.requests) == 3


async def test_429_is_retried_after_the_retry_after_header(llm_server):
    sleep = RecordingSleep()
    llm_server.script(http_error(429, headers={"retry-after": "2"}), text(["ok"]))
    result = await make_agent(llm_server, sleep=sleep).run("Hi")
    assert result.output == "ok" and len(llm_server.requests) == 2 and sleep.delays == [2.0]


async def test_429_retry_after_ms_wins(llm_server):
    llm_server.script(http_error(429, headers={"retry-after-ms": "250", "retry-after": "1"}))
    with pytest.raises(ProviderError) as caught:
        await collect(make_model(llm_server).stream(ask()))
    assert (caught.value.code, caught.value.retryable, caught.value.retry_after) == ("rate_limited", True, 0.25)


def test_retry_after_parsing():
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": future}) <= 31
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(("status", "code"), [(529, "overloaded"), (500, "provider_error"), (408, "timeout")])
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


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_key_is_not_retried(llm_server, status):
    llm_server.script(http_error(status, message="Incorrect API key provided"), text(["never"]))
    events = await collect(make_agent(llm_server).run_stream("Hi"))
    error = events[-1].error
    assert (error.code, error.retryable, error.status) == ("provider_error", False, status)
    assert "refused the API key" in error.message and "Incorrect API key" in error.message
    assert len(llm_server.requests) == 1


async def test_404_is_not_retried_and_keeps_the_provider_message(llm_server):
    llm_server.script(http_error(404, message="The model `gpt-9` does not exist"), text(["never"]))
    events = await collect(make_agent(llm_server).run_stream("Hi"))
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_error", False)
    assert "gpt-9" in events[-1].error.message and len(llm_server.requests) == 1


async def test_mid_stream_error_chunk_after_text_is_not_retried(llm_server):
    llm_server.script(stream_error(["Hello", " there"], error_type="server_error", message="The server had an error"), text(["never"]))
    events = await collect(make_agent(llm_server, sleep=RecordingSleep()).run_stream("Hi"))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " there"]
    assert isinstance(events[-1], RunError) and events[-1].partial == "Hello there"
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_error", True)
    assert "The server had an error" in events[-1].error.message
    assert len(llm_server.requests) == 1


async def test_mid_stream_error_before_any_text_is_retried(llm_server):
    sleep = RecordingSleep()
    llm_server.script(stream_error([], error_type="overloaded_error", message="busy"), text(["ok"]))
    result = await make_agent(llm_server, sleep=sleep).run("Hi")
    assert result.output == "ok" and len(llm_server.requests) == 2 and len(sleep.delays) == 1


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
    agent = Agent(OpenAIModel("gpt-4o", api_key="k", base_url=f"http://127.0.0.1:{port}/v1"), retry=RetryPolicy(base_delay_secs=0.01), sleep=sleep)
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
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AgentConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o")


async def test_key_and_base_url_come_from_the_environment(llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url + "/v1")
    llm_server.script(text(["ok"]))
    await collect(OpenAIModel("gpt-4o").stream(ask()))
    assert llm_server.requests[0].headers["authorization"] == "Bearer env-key"


@pytest.mark.parametrize("base_url", ["https://api.openai.com/v1", "http://10.0.0.5:11434/v1", None])
async def test_non_loopback_base_url_is_refused(monkeypatch, base_url):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    model = OpenAIModel("gpt-4o", api_key="k", base_url=base_url)
    with pytest.raises(AgentConfigError, match="disabled while tests run"):
        await collect(model.stream(ask()))


async def test_circuit_breaker_opens_and_fails_fast(llm_server):
    llm_server.script(http_error(503), http_error(503))
    llm_server.default = text(["would succeed"])
    breaker = CircuitBreaker("openai-test", failure_threshold=2)
    agent = make_agent(llm_server, breaker=breaker, retry=RetryPolicy(max_attempts=1))
    for _ in range(2):
        events = await collect(agent.run_stream("Hi"))
        assert events[-1].error.code == "provider_error"
    assert breaker.state == "open"
    events = await collect(agent.run_stream("Hi"))
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_unavailable", True)
    assert len(llm_server.requests) == 2
