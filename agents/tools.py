"""Tools an agent may call: a function plus the definition the model sees."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from agents.errors import AgentConfigError
from agents.models.base import ToolDefinition
from agents.schema import function_schema, parse_docstring

# What both the Anthropic and the OpenAI API accept as a tool name.
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Decides whether a sensitive tool call may run: returns (approved, reason).
Approver = Callable[[Any], Awaitable[tuple[bool, str]]]


class ToolArgumentsError(ValueError):
    """The model's arguments do not fit the tool's signature; the tool did not run."""


@dataclass
class Tool:
    """A callable tool: a sync or async function and the definition the model sees.

    The name defaults to the function's, the description to its docstring, and the parameters'
    JSON schema is built from its signature and docstring (see `agents.schema`); an explicit
    `parameters` schema wins. `needs_approval` marks a sensitive tool that waits for a human.
    """

    function: Callable[..., Any]
    name: str = ""
    description: str = ""
    parameters: dict[str, Any] | None = None
    needs_approval: bool = False
    _signature: inspect.Signature = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or getattr(self.function, "__name__", "")
        if not TOOL_NAME.fullmatch(self.name):
            raise AgentConfigError(f"Bad tool name {self.name!r} for {self.function!r}: use 1 to 64 letters, digits, _ or -")
        if self.parameters is None:
            description, self.parameters = function_schema(self.function)
        else:
            description, _ = parse_docstring(inspect.getdoc(self.function) or "")
        self.description = self.description or description
        self._signature = inspect.signature(self.function)

    @property
    def definition(self) -> ToolDefinition:
        """What the model is told about this tool."""
        return ToolDefinition(self.name, self.description, self.parameters or {"type": "object", "properties": {}})

    async def call(self, arguments: dict[str, Any]) -> str:
        """Run the tool and return its result as text (JSON for non-strings).

        Raises `ToolArgumentsError` (without running the tool) if the arguments do not fit the
        signature. A sync function runs in a thread, so a slow one does not stall the event loop.
        """
        try:
            bound = self._signature.bind(**arguments)
        except TypeError as error:
            raise ToolArgumentsError(f"Bad arguments for tool {self.name!r}: {error}") from None
        if inspect.iscoroutinefunction(self.function):
            result = await self.function(*bound.args, **bound.kwargs)
        else:
            result = await asyncio.to_thread(self.function, *bound.args, **bound.kwargs)
            if inspect.isawaitable(result):
                result = await result
        return result if isinstance(result, str) else json.dumps(result, default=str)


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    needs_approval: bool = False,
) -> Any:
    """Decorator: `@tool` or `@tool(needs_approval=True)` turns a function into a `Tool`."""

    def wrap(fn: Callable[..., Any]) -> Tool:
        return Tool(fn, name or "", description or "", parameters, needs_approval)

    return wrap(function) if function is not None else wrap


def as_tools(tools: Iterable[Tool | Callable[..., Any]]) -> dict[str, Tool]:
    """Tools by name; a plain function is turned into a `Tool` as `@tool` would."""
    result: dict[str, Tool] = {}
    for item in tools:
        if not isinstance(item, Tool):
            if not callable(item):
                raise AgentConfigError(f"Not a tool or a function: {item!r}")
            item = Tool(item)
        if item.name in result:
            raise AgentConfigError(f"Two tools are named {item.name!r}")
        result[item.name] = item
    return result
