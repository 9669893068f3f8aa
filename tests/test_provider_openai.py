"""OpenAIModel: what only Chat Completions (and its local servers) has. What both providers must do is in tests/test_providers.py."""

from __future__ import annotations

import email.utils
import time

from agents import TextDelta, ToolCall, ToolDefinition
from agents.events import ResponseEnd
from agents.models._sdk_errors import parse_retry_after
from agents.models.base import ModelRequest
from agents.models.openai import OpenAIModel
from tests.loopback_llm import llm_server as llm_server  # the fixture
from tests.loopback_llm import text, tool_calls
from tests.test_providers import OPENAI, ask, collect


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
    await collect(OPENAI.make(llm_server).stream(ModelRequest(history, "Be brief.", settings, [clock])))
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
    local = OpenAIModel("llama3", provider="ollama", api_key="k", base_url=llm_server.base_url + "/v1")
    await collect(local.stream(ask(settings={"max_tokens": 12})))
    await collect(OPENAI.make(llm_server).stream(ask()))
    local, default = llm_server.bodies()
    assert local["max_tokens"] == 12 and "max_completion_tokens" not in local and local["model"] == "llama3"
    assert not {"max_tokens", "max_completion_tokens", "temperature", "top_p", "tools"} & set(default)
    assert default["messages"] == [{"role": "user", "content": "Hi"}]


async def test_tool_calls_are_accumulated_by_index(llm_server):
    calls = [("get_weather", {"city": "Paris", "days": 3}), ("clock", {}), ("broken", '{"city": "Par')]
    llm_server.script(tool_calls(calls, text=["Checking. "]))
    events = await collect(OPENAI.make(llm_server).stream(ask("Weather?")))
    assert [type(e) for e in events] == [TextDelta, ToolCall, ToolCall, ToolCall, ResponseEnd]
    weather, clock, broken = events[1:4]
    assert (weather.name, weather.arguments) == ("get_weather", {"city": "Paris", "days": 3})
    assert (clock.name, clock.arguments) == ("clock", {})
    assert (broken.arguments, broken.invalid_arguments) == ({}, '{"city": "Par')
    assert len({weather.id, clock.id, broken.id}) == 3
    assert events[-1].stop_reason == "tool_calls"


def test_retry_after_parsing():
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": future}) <= 31
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
