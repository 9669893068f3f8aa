"""What both SDK-backed models must do, against the loopback server (tests/loopback_llm.py), through the real SDKs.

Each test runs once per provider; what differs between them is in `Provider`. The cases only one
provider has are in tests/test_provider_anthropic.py and tests/test_provider_openai.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from agents import Agent, CircuitBreaker, Finished, RetryPolicy, RunError, TextDelta, ToolCall, ToolResult, tool
from agents.errors import AgentConfigError, ProviderError
from agents.events import ResponseEnd, Usage
from agents.models.anthropic import AnthropicModel
from agents.models.base import ModelRequest
from agents.models.openai import OpenAIModel
from tests.loopback_llm import RecordingSleep, drop, hang, http_error, malformed, stream_error, text, tool_call, tool_calls
from tests.loopback_llm import llm_server as llm_server  # the fixture

# The Anthropic SDK warns that this (test) model name is deprecated; that is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None


# A tool call as the tests see it: (call id, arguments sent, result text, is_error).
Call = tuple[str, dict[str, Any], str, bool]


def anthropic_tool_turn(body: dict[str, Any], calls: list[Call]) -> None:
    """The request after a tool round: one assistant message of tool_use blocks, one user message of tool_result blocks."""
    assert body["system"] == "Use tools." and body["tools"][0]["name"] == "get_weather"
    results = []
    for call_id, _, result, is_error in calls:
        block = {"type": "tool_result", "tool_use_id": call_id, "content": result}
        results.append({**block, "is_error": True} if is_error else block)
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": c[0], "name": "get_weather", "input": c[1]} for c in calls]},
        {"role": "user", "content": results},
    ]


def openai_tool_turn(body: dict[str, Any], calls: list[Call]) -> None:
    """The request after a tool round: one assistant message with tool_calls, then one `tool` message per result."""
    assert body["messages"][0] == {"role": "system", "content": "Use tools."}
    assert body["messages"][2:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": c[0], "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(c[1])}} for c in calls]},
        *[{"role": "tool", "tool_call_id": c[0], "content": c[2]} for c in calls],
    ]


@dataclass(frozen=True)
class Provider:
    """What differs between the providers in the tests they share."""

    name: str
    model_class: type
    model: str  # the model name asked for
    api_root: str  # appended to the loopback server's URL to make the SDK's base_url
    path: str  # where the SDK sends a request
    key_env: str
    base_url_env: str
    public_url: str  # the real endpoint, refused while tests run
    stop_reason: str  # of a plain text answer
    stream_fields: dict[str, Any]  # what a streaming request's body must hold
    mid_stream_error: tuple[str, str]  # an error type the API sends mid-stream, and the code it maps to
    key_sent: Callable[[dict[str, str]], str | None]  # the API key a request carried
    tool_turn: Callable[[dict[str, Any], list[Call]], None]  # checks the request that carries the tools' results
    tool_schemas: Callable[[dict[str, Any]], dict[str, Any]]  # the parameters' schema of each tool offered, by name

    def make(self, server=None, base_url: str | None = None, **kwargs: Any):
        if server is not None:
            base_url = server.base_url + self.api_root
        return self.model_class(self.model, api_key="k", base_url=base_url, **kwargs)


ANTHROPIC = Provider(
    name="anthropic",
    model_class=AnthropicModel,
    model="claude-sonnet-4-5",
    api_root="",
    path="/v1/messages",
    key_env="ANTHROPIC_API_KEY",
    base_url_env="ANTHROPIC_BASE_URL",
    public_url="https://api.anthropic.com",
    stop_reason="end_turn",
    stream_fields={"model": "claude-sonnet-4-5", "stream": True},
    mid_stream_error=("overloaded_error", "overloaded"),
    key_sent=lambda headers: headers.get("x-api-key") or bearer(headers),
    tool_turn=anthropic_tool_turn,
    tool_schemas=lambda body: {t["name"]: t["input_schema"] for t in body["tools"]},
)
OPENAI = Provider(
    name="openai",
    model_class=OpenAIModel,
    model="gpt-4o",
    api_root="/v1",
    path="/v1/chat/completions",
    key_env="OPENAI_API_KEY",
    base_url_env="OPENAI_BASE_URL",
    public_url="https://api.openai.com/v1",
    stop_reason="stop",
    stream_fields={"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}},
    mid_stream_error=("server_error", "provider_error"),
    key_sent=bearer,
    tool_turn=openai_tool_turn,
    tool_schemas=lambda body: {t["function"]["name"]: t["function"]["parameters"] for t in body["tools"]},
)


@pytest.fixture(params=[ANTHROPIC, OPENAI], ids=lambda p: p.name)
def provider(request) -> Provider:
    return request.param


def make_agent(provider: Provider, server, **kwargs) -> Agent:
    kwargs.setdefault("retry", RetryPolicy(base_delay_secs=0.01))
    return Agent(provider.make(server), **kwargs)


async def collect(stream) -> list:
    return [event async for event in stream]


def ask(prompt: str = "Hi", **kwargs) -> ModelRequest:
    return ModelRequest([{"role": "user", "content": prompt}], **kwargs)


async def test_streams_text_deltas_and_usage(provider, llm_server):
    llm_server.script(text(["Hel", "lo, ", "wor", "ld"], input_tokens=21, output_tokens=9))
    events = await collect(provider.make(llm_server).stream(ask()))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 4 and "".join(d.text for d in deltas) == "Hello, world"
    assert events[-1] == ResponseEnd(Usage(21, 9), provider.stop_reason)
    [request] = llm_server.requests
    assert request.path == provider.path and provider.key_sent(request.headers) == "k"
    assert {k: request.body.get(k) for k in provider.stream_fields} == provider.stream_fields


async def test_agent_streams_text_and_finishes(provider, llm_server):
    llm_server.script(text(["Bon", "jour", "!"], input_tokens=3, output_tokens=2))
    events = await collect(make_agent(provider, llm_server).run_stream("Hi"))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Bon", "jour", "!"]
    assert isinstance(events[-1], Finished) and events[-1].result.output == "Bonjour!"
    assert events[-1].result.usage == Usage(3, 2)


async def test_agent_runs_the_tool_and_sends_the_result_back(provider, llm_server):
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city's name.
        """
        return f"sunny in {city}"

    llm_server.script(tool_call("get_weather", {"city": "Paris"}, input_tokens=30, output_tokens=5),
                      text(["It is ", "sunny."], input_tokens=50, output_tokens=4))
    agent = make_agent(provider, llm_server, tools=[get_weather], instructions="Use tools.")
    events = await collect(agent.run_stream("Weather in Paris?"))
    call = next(e for e in events if isinstance(e, ToolCall))
    assert next(e for e in events if isinstance(e, ToolResult)).result == "sunny in Paris"
    assert isinstance(events[-1], Finished)
    assert events[-1].result.output == "It is sunny." and events[-1].result.usage == Usage(80, 9)
    assert len(llm_server.requests) == 2
    # The schema comes from the signature: a model that follows it sends the city.
    assert provider.tool_schemas(llm_server.requests[0].body) == {"get_weather": {
        "type": "object", "properties": {"city": {"type": "string", "description": "The city's name."}}, "required": ["city"]}}
    provider.tool_turn(llm_server.requests[1].body, [(call.id, {"city": "Paris"}, "sunny in Paris", False)])


async def test_several_calls_in_one_response_are_all_answered_in_the_wire_format(provider, llm_server):
    ran = []

    async def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        if city == "Atlantis":
            raise LookupError("no such city")
        return f"sunny in {city}"

    llm_server.script(tool_calls([("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Atlantis"}), ("get_weather", '{"city": ')]),
                      text(["Paris is sunny."]))
    agent = make_agent(provider, llm_server, tools=[get_weather], instructions="Use tools.")  # a plain async function
    events = await collect(agent.run_stream("Weather?"))
    calls = [e for e in events if isinstance(e, ToolCall)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.is_error for r in results] == [False, True, True]
    assert ran == ["Paris", "Atlantis"]  # the call with malformed arguments did not run
    assert isinstance(events[-1], Finished) and events[-1].result.output == "Paris is sunny."
    sent = [{"city": "Paris"}, {"city": "Atlantis"}, {}]
    provider.tool_turn(llm_server.requests[1].body, [(c.id, a, r.result, r.is_error) for c, a, r in zip(calls, sent, results, strict=True)])


async def test_agents_run_concurrently_against_the_server(provider, llm_server):
    # Each reply hangs after its first word: a client that sent one request at a time would
    # never see the second first word.
    llm_server.script(*[hang(["same "])] * 3)
    first_words = asyncio.Queue()

    async def consume(i: int) -> None:
        async for event in make_agent(provider, llm_server).run_stream(f"q{i}"):
            if isinstance(event, TextDelta):
                first_words.put_nowait(event.text)

    tasks = [asyncio.create_task(consume(i)) for i in range(3)]
    assert [await asyncio.wait_for(first_words.get(), 5) for _ in tasks] == ["same "] * 3
    assert len(llm_server.requests) == 3 and not any(r.completed for r in llm_server.requests)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    llm_server.script(*[text(["same ", "answer"])] * 3)
    results = await asyncio.gather(*(make_agent(provider, llm_server).run(f"q{i}") for i in range(3)))
    assert [r.output for r in results] == ["same answer"] * 3


async def test_429_is_retried_after_the_retry_after_header(provider, llm_server):
    sleep = RecordingSleep()
    llm_server.script(http_error(429, headers={"retry-after": "2"}), text(["ok"]))
    result = await make_agent(provider, llm_server, sleep=sleep).run("Hi")
    assert result.output == "ok" and len(llm_server.requests) == 2 and sleep.delays == [2.0]


@pytest.mark.parametrize(("headers", "retry_after"), [({"retry-after": "0"}, 0.0), ({"retry-after-ms": "250", "retry-after": "1"}, 0.25)],
                         ids=["retry-after", "retry-after-ms-wins"])
async def test_429_error_carries_code_and_retry_after(provider, llm_server, headers, retry_after):
    llm_server.script(http_error(429, headers=headers))
    with pytest.raises(ProviderError) as caught:
        await collect(provider.make(llm_server).stream(ask()))
    error = caught.value
    assert (error.code, error.retryable, error.retry_after, error.status) == ("rate_limited", True, retry_after, 429)


@pytest.mark.parametrize(("status", "code"), [(529, "overloaded"), (500, "provider_error"), (503, "provider_error"), (408, "timeout")])
async def test_server_errors_are_retried_then_succeed(provider, llm_server, status, code):
    sleep = RecordingSleep()
    llm_server.script(http_error(status), text(["fine"]))
    result = await make_agent(provider, llm_server, sleep=sleep).run("Hi")
    assert result.output == "fine" and len(llm_server.requests) == 2 and len(sleep.delays) == 1
    llm_server.script(http_error(status))
    with pytest.raises(ProviderError) as caught:
        await collect(provider.make(llm_server).stream(ask()))
    assert (caught.value.code, caught.value.retryable, caught.value.status) == (code, True, status)


async def test_persistent_500_fails_after_max_attempts(provider, llm_server):
    llm_server.script(*[http_error(500, message="kaput")] * 3, text(["never"]))
    events = await collect(make_agent(provider, llm_server, sleep=RecordingSleep()).run_stream("Hi"))
    assert isinstance(events[-1], RunError)
    error = events[-1].error
    assert (error.code, error.retryable, error.status) == ("provider_error", True, 500) and "kaput" in error.message
    assert len(llm_server.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_key_is_not_retried(provider, llm_server, status):
    llm_server.script(http_error(status, message="Incorrect API key provided"), text(["never"]))
    events = await collect(make_agent(provider, llm_server).run_stream("Hi"))
    error = events[-1].error
    assert (error.code, error.retryable, error.status) == ("provider_error", False, status)
    assert "refused the API key" in error.message and "Incorrect API key" in error.message
    assert len(llm_server.requests) == 1


@pytest.mark.parametrize(("status", "message"), [(400, "messages: at least one message is required"), (404, "The model `gpt-9` does not exist")],
                         ids=["400", "404"])
async def test_a_bad_request_is_not_retried_and_keeps_the_provider_message(provider, llm_server, status, message):
    llm_server.script(http_error(status, message=message), text(["never"]))
    events = await collect(make_agent(provider, llm_server).run_stream("Hi"))
    error = events[-1].error
    assert (error.code, error.retryable, error.status) == ("provider_error", False, status) and message in error.message
    assert len(llm_server.requests) == 1


async def test_mid_stream_error_after_text_is_not_retried(provider, llm_server):
    error_type, code = provider.mid_stream_error
    llm_server.script(stream_error(["Hello", " there"], error_type=error_type, message="The server had an error"), text(["never"]))
    events = await collect(make_agent(provider, llm_server, sleep=RecordingSleep()).run_stream("Hi"))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " there"]
    assert isinstance(events[-1], RunError) and events[-1].partial == "Hello there"
    assert (events[-1].error.code, events[-1].error.retryable) == (code, True)
    assert "The server had an error" in events[-1].error.message
    assert len(llm_server.requests) == 1


async def test_mid_stream_error_before_any_text_is_retried(provider, llm_server):
    sleep = RecordingSleep()
    llm_server.script(stream_error([], error_type="overloaded_error", message="busy"), text(["ok"]))
    result = await make_agent(provider, llm_server, sleep=sleep).run("Hi")
    assert result.output == "ok" and len(llm_server.requests) == 2 and len(sleep.delays) == 1


async def test_dropped_connection_mid_stream_is_a_retryable_provider_error(provider, llm_server):
    llm_server.script(drop(["Hel", "lo"]), text(["never"]))
    events = await collect(make_agent(provider, llm_server, sleep=RecordingSleep()).run_stream("Hi"))
    assert isinstance(events[-1], RunError) and events[-1].partial == "Hello"
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_error", True)
    assert len(llm_server.requests) == 1  # text was streamed: no retry


async def test_connection_refused_is_retried_then_fails(provider):
    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleep = RecordingSleep()
    model = provider.make(base_url=f"http://127.0.0.1:{port}{provider.api_root}")
    events = await collect(Agent(model, retry=RetryPolicy(base_delay_secs=0.01), sleep=sleep).run_stream("Hi"))
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_error", True)
    assert len(sleep.delays) == 2


@pytest.mark.parametrize("before_headers", [False, True])
async def test_cancelling_the_consumer_closes_the_connection(provider, llm_server, before_headers):
    llm_server.script(hang([] if before_headers else ["Thinking"], before_headers=before_headers))
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for event in make_agent(provider, llm_server).run_stream("Hi"):
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
    assert await llm_server.wait_until(lambda: llm_server.requests[0].disconnected, timeout=5)


async def test_closing_the_stream_early_closes_the_connection(provider, llm_server):
    llm_server.script(hang(["One", "Two"]))
    stream = provider.make(llm_server).stream(ask())
    assert await stream.__anext__() == TextDelta("One")
    await stream.aclose()
    assert await llm_server.wait_until(lambda: llm_server.requests[0].disconnected, timeout=5)


def test_missing_api_key_is_a_config_error(provider, monkeypatch):
    monkeypatch.delenv(provider.key_env, raising=False)
    with pytest.raises(AgentConfigError, match=provider.key_env):
        provider.model_class(provider.model)


async def test_key_and_base_url_come_from_the_environment(provider, llm_server, monkeypatch):
    monkeypatch.setenv(provider.key_env, "env-key")
    monkeypatch.setenv(provider.base_url_env, llm_server.base_url + provider.api_root)
    llm_server.script(text(["ok"]))
    await collect(provider.model_class(provider.model).stream(ask()))
    assert provider.key_sent(llm_server.requests[0].headers) == "env-key"


@pytest.mark.parametrize("where", ["public", "private-network", "default"])
async def test_non_loopback_base_url_is_refused(provider, monkeypatch, where):
    monkeypatch.delenv(provider.base_url_env, raising=False)
    base_url = {"public": provider.public_url, "private-network": "http://10.0.0.5:11434/v1", "default": None}[where]
    with pytest.raises(AgentConfigError, match="disabled while tests run"):
        await collect(provider.make(base_url=base_url).stream(ask()))


@pytest.mark.parametrize("status", [500, 503])
async def test_circuit_breaker_opens_and_fails_fast(provider, llm_server, status):
    llm_server.script(http_error(status), http_error(status))
    llm_server.default = text(["would succeed"])
    breaker = CircuitBreaker(f"{provider.name}-test", failure_threshold=2)
    agent = make_agent(provider, llm_server, breaker=breaker, retry=RetryPolicy(max_attempts=1))
    for _ in range(2):
        events = await collect(agent.run_stream("Hi"))
        assert events[-1].error.code == "provider_error"
    assert await breaker.state() == "open"
    events = await collect(agent.run_stream("Hi"))
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_unavailable", True)
    assert len(llm_server.requests) == 2


async def test_429s_never_open_the_breaker_while_5xx_do(provider, llm_server):
    breaker = CircuitBreaker(f"{provider.name}-test", failure_threshold=2)
    agent = make_agent(provider, llm_server, breaker=breaker, retry=RetryPolicy(max_attempts=1))
    llm_server.script(*[http_error(429, headers={"retry-after": "1"})] * 3, text(["served"]))
    for _ in range(3):
        events = await collect(agent.run_stream("Hi"))
        assert events[-1].error.code == "rate_limited"
    assert await breaker.state() == "closed"
    assert (await agent.run("Hi")).output == "served"  # the request was sent, not refused by the breaker
    llm_server.script(http_error(502), http_error(502))
    for _ in range(2):
        await collect(agent.run_stream("Hi"))
    assert await breaker.state() == "open" and len(llm_server.requests) == 6


async def test_a_stall_mid_answer_fails_with_timeout_and_keeps_the_text(provider, llm_server):
    llm_server.script(hang(["Hel", "lo"]), text(["never"]))
    agent = Agent(provider.make(llm_server, read_timeout_secs=0.3), retry=RetryPolicy(base_delay_secs=0.01), sleep=RecordingSleep())
    started = time.monotonic()
    events = await asyncio.wait_for(collect(agent.run_stream("Hi")), 10)  # without a read timeout: the SDK's 10 minutes
    assert time.monotonic() - started < 3
    assert isinstance(events[-1], RunError) and events[-1].partial == "Hello"
    assert (events[-1].error.code, events[-1].error.retryable) == ("timeout", True)
    assert len(llm_server.requests) == 1  # text was streamed: not retried
    assert await llm_server.wait_until(lambda: llm_server.requests[0].disconnected, timeout=5)


@pytest.mark.parametrize("before_headers", [False, True], ids=["after-headers", "before-headers"])
async def test_a_stall_before_any_text_is_retried(provider, llm_server, before_headers):
    llm_server.script(hang(before_headers=before_headers), text(["ok"]))
    sleep = RecordingSleep()
    agent = Agent(provider.make(llm_server, read_timeout_secs=0.3), retry=RetryPolicy(base_delay_secs=0.01), sleep=sleep)
    started = time.monotonic()
    result = await asyncio.wait_for(agent.run("Hi"), 10)
    assert result.output == "ok" and len(llm_server.requests) == 2 and len(sleep.delays) == 1
    assert time.monotonic() - started < 3


def test_timeouts_come_from_the_environment_with_defaults(provider, monkeypatch):
    monkeypatch.delenv("NOUS_PROVIDER_CONNECT_TIMEOUT_SECS", raising=False)
    monkeypatch.delenv("NOUS_PROVIDER_READ_TIMEOUT_SECS", raising=False)
    model = provider.make(base_url="http://127.0.0.1:9")
    assert (model.connect_timeout_secs, model.read_timeout_secs) == (10.0, 60.0)
    monkeypatch.setenv("NOUS_PROVIDER_CONNECT_TIMEOUT_SECS", "2.5")
    monkeypatch.setenv("NOUS_PROVIDER_READ_TIMEOUT_SECS", "15")
    model = provider.make(base_url="http://127.0.0.1:9")
    assert (model.connect_timeout_secs, model.read_timeout_secs) == (2.5, 15.0)
    monkeypatch.setenv("NOUS_PROVIDER_READ_TIMEOUT_SECS", "soon")
    with pytest.raises(AgentConfigError, match="NOUS_PROVIDER_READ_TIMEOUT_SECS"):
        provider.make(base_url="http://127.0.0.1:9")


@pytest.mark.parametrize("data", ['{"type": "content_block_delta", "delta": ', '{"choices": 5, "delta": 5, "type": "content_block_delta"}', "[1, 2]"],
                         ids=["cut-short", "wrong-shape", "not-an-object"])
async def test_a_malformed_chunk_is_a_provider_error_retried_before_text(provider, llm_server, caplog, data):
    sleep = RecordingSleep()
    llm_server.script(malformed(data=data), text(["ok"]), malformed(["Hel", "lo"], data=data), text(["never"]))
    agent = make_agent(provider, llm_server, sleep=sleep)
    assert (await agent.run("Hi")).output == "ok" and len(sleep.delays) == 1
    events = await collect(agent.run_stream("Hi"))
    assert isinstance(events[-1], RunError) and events[-1].partial == "Hello"
    assert (events[-1].error.code, events[-1].error.retryable) == ("provider_error", True)
    assert "malformed" in events[-1].error.message and len(llm_server.requests) == 3
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]  # not our bug: no traceback


async def test_a_retry_after_beyond_the_cap_fails_at_once_with_rate_limited(provider, llm_server):
    sleep = RecordingSleep()
    llm_server.script(http_error(429, headers={"retry-after": "120"}), text(["never"]))
    agent = make_agent(provider, llm_server, sleep=sleep, retry=RetryPolicy(max_retry_after_secs=30))
    events = await collect(agent.run_stream("Hi"))
    error = events[-1].error
    assert (error.code, error.retry_after) == ("rate_limited", 120.0) and error.to_dict()["retry_after"] == 120.0
    assert sleep.delays == [] and len(llm_server.requests) == 1  # not waited for 30 s, then refused again
