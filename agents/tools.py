"""Tools an agent may call: a function plus the definition the model sees."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from agents.models.base import ToolDefinition

# Decides whether a sensitive tool call may run: returns (approved, reason).
Approver = Callable[[Any], Awaitable[tuple[bool, str]]]


@dataclass
class Tool:
    """A callable tool. `needs_approval` marks a sensitive tool that waits for a human."""

    function: Callable[..., Any]
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    needs_approval: bool = False

    @property
    def definition(self) -> ToolDefinition:
        return ToolDefinition(self.name, self.description, self.parameters or {"type": "object", "properties": {}})

    async def call(self, arguments: dict[str, Any]) -> str:
        """Run the tool and return its result as text (JSON for non-strings)."""
        result = self.function(**arguments)
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
        return Tool(fn, name or fn.__name__, description or inspect.getdoc(fn) or "", parameters, needs_approval)

    return wrap(function) if function is not None else wrap
