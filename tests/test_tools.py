"""Tools: schemas from signatures, the tool loop and its limits, the built-ins, the `test:` model's tool calls."""

from __future__ import annotations

import datetime
import time
from typing import Any, Literal, Optional

import pytest

import agents.builtin_tools
from agents import Agent, AgentConfigError, Finished, RunError, TextDelta, Tool, ToolCall, ToolResult, tool
from agents.builtin_tools import MAX_EXPRESSION_CHARS, builtin_tools, calculate, current_datetime
from agents.events import ResponseEnd, Usage
from agents.models.base import ModelRequest, parse_tool_call
from agents.schema import function_schema, parse_docstring


class ScriptedModel:
    """A model that answers each call with the next scripted list of events, and keeps the requests."""

    __test__ = False
    provider = "scripted"
    name = "scripted"
    supported_settings: frozenset[str] = frozenset()

    def __init__(self, *responses: list[Any]) -> None:
        self.responses = list(responses)
        self.requests: list[ModelRequest] = []

    async def stream(self, request: ModelRequest):
        self.requests.append(request)
        events = self.responses.pop(0) if self.responses else [TextDelta("done")]
        for event in events:
            yield event
        yield ResponseEnd(Usage(1, 1), "tool_use" if any(isinstance(e, ToolCall) for e in events) else "end_turn")


async def collect(agent: Agent, prompt: str = "go") -> list[Any]:
    return [event async for event in agent.run_stream(prompt)]


def tool_messages(request: ModelRequest) -> list[dict[str, Any]]:
    return [m for m in request.messages if m["role"] == "tool"]


# -- schemas ---------------------------------------------------------------------------------------


def test_the_schema_comes_from_the_signature_hints_defaults_and_docstring():
    def search(
        query: str,
        limit: int = 10,
        ratio: float = 0.5,
        exact: bool = False,
        tags: list[str] | None = None,
        filters: dict[str, int] = {},  # noqa: B006 - a default the schema shows
        order: Literal["new", "old"] = "new",
        since: Optional[int] = None,  # noqa: UP045 - the old spelling must work too
        anything=None,
    ) -> str:
        """Search the notes.

        A second paragraph of the description.

        Args:
            query: What to look for.
            limit: At most this many
                results.
            order: Newest or oldest first.

        Returns:
            The matches.
        """
        return ""

    description, schema = function_schema(search)
    assert description == "Search the notes.\n\nA second paragraph of the description."
    assert schema == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for."},
            "limit": {"type": "integer", "description": "At most this many results.", "default": 10},
            "ratio": {"type": "number", "default": 0.5},
            "exact": {"type": "boolean", "default": False},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
            "filters": {"type": "object", "additionalProperties": {"type": "integer"}, "default": {}},
            "order": {"type": "string", "enum": ["new", "old"], "description": "Newest or oldest first.", "default": "new"},
            "since": {"type": ["integer", "null"], "default": None},
            "anything": {"default": None},
        },
        "required": ["query"],
    }


def test_sphinx_docstrings_describe_parameters_too():
    def f(city: str, days: int) -> None:
        """Forecast.

        :param city: The city.
        :param int days: How many days
            ahead.
        :returns: nothing
        """

    description, params = parse_docstring(f.__doc__ or "")
    assert description == "Forecast." and params == {"city": "The city.", "days": "How many days ahead."}


def test_a_decorated_tool_offers_its_parameters_to_the_model():
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    definition = get_weather.definition
    assert (definition.name, definition.description) == ("get_weather", "The weather in a city.")
    assert definition.parameters == {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_an_explicit_schema_wins():
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    @tool(parameters=schema, description="Find things.")
    def find(**kwargs: Any) -> str:
        """Ignored description."""
        return ""

    assert find.definition.parameters == schema and find.description == "Find things."
    assert Tool(lambda q: q, name="echo", parameters=schema).definition.parameters == schema


def test_an_unsupported_hint_is_refused_when_the_tool_is_made():
    def f(when: datetime.date) -> str:
        return ""

    with pytest.raises(TypeError, match="Unsupported type hint"):
        Tool(f)


async def test_plain_sync_and_async_functions_are_accepted_as_tools():
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    async def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    model = ScriptedModel([parse_tool_call("c1", "add", '{"a": 2, "b": 3}'), parse_tool_call("c2", "shout", '{"text": "hi"}')])
    events = await collect(Agent(model, tools=[add, shout]))
    assert [(r.name, r.result, r.is_error) for r in events if isinstance(r, ToolResult)] == [("add", "5", False), ("shout", "HI", False)]
    assert [t.name for t in model.requests[0].tools] == ["add", "shout"]
    assert model.requests[0].tools[0].parameters["required"] == ["a"]
    assert isinstance(events[-1], Finished)


@pytest.mark.parametrize("name", ["", "get weather", "x" * 65, "météo"])
def test_a_name_the_apis_refuse_is_refused_when_the_tool_is_made(name):
    with pytest.raises(AgentConfigError, match="Bad tool name"):
        Tool(lambda: "", name=name) if name else Tool(lambda: "")  # a lambda's own name is '<lambda>'


def test_two_tools_with_one_name_are_refused():
    def clock() -> str:
        return ""

    with pytest.raises(AgentConfigError, match="clock"):
        Agent("test:", tools=[clock, Tool(clock)])


# -- the tool loop ---------------------------------------------------------------------------------


async def test_malformed_arguments_become_an_error_result_and_the_tool_does_not_run():
    ran = []

    def get_weather(city: str = "Paris") -> str:  # a default: `{}` would fit the signature
        ran.append(city)
        return "sunny"

    call = parse_tool_call("c1", "get_weather", '{"city": "Par')
    assert (call.arguments, call.invalid_arguments) == ({}, '{"city": "Par')
    model = ScriptedModel([call], [TextDelta("Sorry.")])
    events = await collect(Agent(model, tools=[get_weather]))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.is_error and "not a JSON object" in result.result and ran == []
    assert tool_messages(model.requests[1])[0]["is_error"] is True  # the model is told
    assert isinstance(events[-1], Finished) and events[-1].result.output == "Sorry."


@pytest.mark.parametrize("arguments", ['["Paris"]', '"Paris"', "null"])
def test_arguments_that_are_json_but_not_an_object_are_malformed_too(arguments):
    assert parse_tool_call("c", "t", arguments).invalid_arguments == arguments


async def test_arguments_that_do_not_fit_the_signature_are_an_error_result():
    ran = []

    def get_weather(city: str) -> str:
        ran.append(city)
        return "sunny"

    model = ScriptedModel([parse_tool_call("c1", "get_weather", "{}"), parse_tool_call("c2", "get_weather", '{"town": "Paris"}')])
    events = await collect(Agent(model, tools=[get_weather]))
    results = [e for e in events if isinstance(e, ToolResult)]
    assert all(r.is_error and "Bad arguments for tool 'get_weather'" in r.result for r in results) and ran == []


async def test_a_raising_tool_gives_the_model_an_error_result_and_the_run_goes_on():
    def flaky(n: int) -> str:
        raise RuntimeError(f"disk full at {n}")

    model = ScriptedModel([parse_tool_call("c1", "flaky", '{"n": 3}')], [TextDelta("It failed, sorry.")])
    events = await collect(Agent(model, tools=[flaky]))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.is_error and result.result == "The tool raised RuntimeError: disk full at 3"
    assert tool_messages(model.requests[1]) == [
        {"role": "tool", "tool_call_id": "c1", "name": "flaky", "content": result.result, "is_error": True}]
    assert isinstance(events[-1], Finished) and events[-1].result.output == "It failed, sorry."


async def test_the_loop_stops_after_the_round_limit_with_tool_loop():
    calls = []

    def ping() -> str:
        calls.append(1)
        return "pong"

    model = ScriptedModel(*[[parse_tool_call(f"c{n}", "ping", "{}")] for n in range(10)])
    events = await collect(Agent(model, tools=[ping], max_tool_rounds=3))
    assert isinstance(events[-1], RunError)
    assert (events[-1].error.code, events[-1].error.retryable) == ("tool_loop", False)
    assert len(calls) == 3 and len(model.requests) == 4  # the 4th request for tools is not run


async def test_the_round_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("NOUS_MAX_TOOL_ROUNDS", "2")
    assert Agent("test:").max_tool_rounds == 2
    monkeypatch.delenv("NOUS_MAX_TOOL_ROUNDS")
    assert Agent("test:").max_tool_rounds == 8


async def test_text_of_every_round_is_kept_in_the_output():
    model = ScriptedModel([TextDelta("Let me check. "), parse_tool_call("c1", "clock", "{}")], [TextDelta("It is noon.")])
    result = await Agent(model, tools=[Tool(lambda: "12:00", name="clock")]).run("time?")
    assert result.output == "Let me check. It is noon."
    assert [m["role"] for m in result.new_messages] == ["user", "assistant", "tool", "assistant"]


# -- the test model ---------------------------------------------------------------------------------


async def test_the_test_model_calls_the_calculator_with_the_prompts_arithmetic():
    agent = Agent("test:tps=0,words=3,tools=calculator", tools=builtin_tools())
    events = await collect(agent, "What is (2 + 3) * -4 please?")
    call = next(e for e in events if isinstance(e, ToolCall))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert (call.name, call.arguments) == ("calculator", {"expression": "(2 + 3) * -4"})
    assert (result.result, result.is_error) == ("-20", False)
    assert isinstance(events[-1], Finished) and events[-1].result.output.startswith("calculator returned -20. ")


async def test_the_test_model_calls_several_tools_in_one_response_and_fills_their_schemas():
    seen = []

    def lookup(name: str, count: int, mode: Literal["a", "b"]) -> str:
        seen.append((name, count, mode))
        return "found"

    events = await collect(Agent("test:tps=0,words=2,tools=calculator+lookup", tools=[*builtin_tools(), lookup]), "no numbers")
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [c.name for c in calls] == ["calculator", "lookup"] and len({c.id for c in calls}) == 2
    assert calls[0].arguments == {"expression": "6 * 7"} and seen == [("no numbers", 1, "a")]
    assert [m["role"] for m in events[-1].result.new_messages] == ["user", "assistant", "tool", "tool", "assistant"]


async def test_the_test_model_can_keep_calling_tools_into_the_round_limit():
    events = await collect(Agent("test:tps=0,tools=calculator,tool_rounds=9", tools=builtin_tools()))
    assert sum(isinstance(e, ToolResult) for e in events) == 8
    assert isinstance(events[-1], RunError) and events[-1].error.code == "tool_loop"


async def test_a_long_prompt_does_not_stall_the_test_models_tool_arguments():
    started = time.perf_counter()
    events = await collect(Agent("test:tps=0,words=2,tools=calculator", tools=builtin_tools()), "1 " * 4000)
    assert time.perf_counter() - started < 0.5 and isinstance(events[-1], Finished)


@pytest.mark.parametrize("model", ["test:tool_rounds=x", "test:tool_rounds=-1", "test:tool_rounds=1000"])
def test_bad_tool_options_are_refused(model):
    with pytest.raises(AgentConfigError):
        Agent(model)


# -- built-ins ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "value"), [
    ("1 + 2 * 3", "7"), ("(1 + 2) * 3", "9"), ("-3 ** 2", "-9"), ("(-3) ** 2", "9"), ("7 / 2", "3.5"), ("7 // 2", "3"),
    ("-7 // 2", "-4"), ("7 % 3", "1"), ("2 ** -1", "0.5"), ("0.1 + 0.2", "0.30000000000000004"), ("+-+4", "-4"),
    ("2 ** 10 ** 2", str(2 ** 100)), ("1e3 * 2", "2000.0"), (" 42 ", "42"),
])
def test_the_calculator_does_arithmetic(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(("expression", "message"), [
    ("__import__('os').system('true')", "Not allowed"), ("x + 1", "Not allowed"), ("True + 1", "Not allowed"),
    ("[1, 2]", "Not allowed"), ("1 if 1 else 2", "Not allowed"), ("2 ** 1001", "Exponents are limited"),
    ("9 ** 9 ** 9", "Exponents are limited"), ("99 ** 999", "too large"), ("(2 ** 999) ** 5", "too large"),
    ("10.0 ** 400", "too large"), ("1e308 * 10", "not a finite number"), ("(-8) ** 0.5", "not a real number"),
    ("1 / 0", "Division by zero"), ("5 % 0", "Division by zero"), ("1 +", "Not an arithmetic expression"),
    ("1j * 2", "Not allowed"), ("1" * (MAX_EXPRESSION_CHARS + 1), "longer than"),
])
def test_the_calculator_refuses_what_is_not_bounded_arithmetic(expression, message):
    with pytest.raises(ValueError, match=message):
        calculate(expression)


def test_the_calculator_never_evaluates_python(monkeypatch):
    import builtins

    def no_eval(*args: Any) -> None:
        raise AssertionError("eval must not be used")

    monkeypatch.setattr(builtins, "eval", no_eval)
    assert calculate("6 * 7") == "42"


def test_the_current_datetime_tool_knows_time_zones(monkeypatch):
    fixed = datetime.datetime(2026, 3, 1, 12, 30, tzinfo=datetime.UTC)
    monkeypatch.setattr(agents.builtin_tools, "now", lambda tz: fixed.astimezone(tz))
    assert current_datetime() == "2026-03-01T12:30:00+00:00 (Sunday 01 March 2026, 12:30 UTC)"
    assert current_datetime("Europe/Paris").startswith("2026-03-01T13:30:00+01:00")
    with pytest.raises(ValueError, match="Unknown time zone"):
        current_datetime("Mars/Olympus")
    [clock, calculator] = builtin_tools()
    assert (clock.name, calculator.name) == ("current_datetime", "calculator")
    assert clock.definition.parameters["properties"]["timezone"]["default"] == "UTC"
    assert calculator.definition.parameters["required"] == ["expression"]
