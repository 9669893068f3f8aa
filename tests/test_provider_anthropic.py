"""AnthropicModel: what only the Messages API has. What both providers must do is in tests/test_providers.py."""

from __future__ import annotations

import pytest

from agents import TextDelta, ToolCall, ToolDefinition
from agents.errors import ProviderError
from agents.events import ResponseEnd
from agents.models.anthropic import to_anthropic_messages
from agents.models.base import ModelRequest
from tests.loopback_llm import llm_server as llm_server  # the fixture
from tests.loopback_llm import stream_error, text, tool_call
from tests.test_providers import ANTHROPIC, ask, collect

# The SDK warns that this (test) model name is deprecated; that is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


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
    await collect(ANTHROPIC.make(llm_server).stream(ModelRequest(history, "Be brief.", settings, [clock])))
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
    await collect(ANTHROPIC.make(llm_server).stream(ask()))
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
    events = await collect(ANTHROPIC.make(llm_server).stream(ask("Weather?")))
    assert [type(e) for e in events] == [TextDelta, TextDelta, ToolCall, ResponseEnd]
    call = events[2]
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert call.arguments == {"city": "Paris", "days": 3, "units": "metric"}
    assert events[-1].stop_reason == "tool_use"


async def test_mid_stream_error_types_map_to_codes(llm_server):
    llm_server.script(stream_error([], error_type="rate_limit_error", message="slow down"),
                      stream_error(["x"], error_type="invalid_request_error", message="bad"))
    model = ANTHROPIC.make(llm_server)
    with pytest.raises(ProviderError) as first:
        await collect(model.stream(ask()))
    with pytest.raises(ProviderError) as second:
        await collect(model.stream(ask()))
    assert (first.value.code, first.value.retryable) == ("rate_limited", True)
    assert (second.value.code, second.value.retryable) == ("provider_error", False)
