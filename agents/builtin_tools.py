"""Tools every agent may be given: the current date and time, and a calculator (no `eval`)."""

from __future__ import annotations

import ast
import datetime
import math
import operator
import zoneinfo
from typing import Any, Callable

from agents.tools import Tool

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1000  # |b| in a ** b
MAX_INT_BITS = 4096  # about 1,233 decimal digits: any larger result is refused

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def now(tz: datetime.tzinfo) -> datetime.datetime:
    """The current time in `tz` (tests replace it to fix the time)."""
    return datetime.datetime.now(tz)


def current_datetime(timezone: str = "UTC") -> str:
    """The current date and time.

    Args:
        timezone: An IANA time zone name, e.g. "Europe/Paris" or "America/New_York".
    """
    try:
        tz = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"Unknown time zone {timezone!r}; use an IANA name such as 'Europe/Paris'") from None
    moment = now(tz)
    return f"{moment.isoformat(timespec='seconds')} ({moment:%A %d %B %Y, %H:%M} {timezone})"


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the result.

    Args:
        expression: Numbers with + - * / // % ** and parentheses, e.g. "(2 + 3) * -4 ** 2".
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"The expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"Not an arithmetic expression: {expression!r}") from None
    try:
        value = _evaluate(tree.body)
    except ZeroDivisionError:
        raise ValueError("Division by zero") from None
    except OverflowError:
        raise ValueError("The result is too large") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("The result is not a finite number")
    return str(value)


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _bounded(_BINARY[type(node.op)](left, right))
    raise ValueError(f"Not allowed in an expression: {ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__}")


def _check_power(base: int | float, exponent: int | float) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"Exponents are limited to {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base).bit_length() * exponent > MAX_INT_BITS:
        raise ValueError("The result is too large")
    if base < 0 and not float(exponent).is_integer():
        raise ValueError("A negative number to a fractional power is not a real number")


def _bounded(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ValueError("The result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ValueError("The result is too large")
    return value


def builtin_tools() -> list[Tool]:
    """Fresh `Tool`s for the built-ins: `current_datetime` and `calculator`."""
    return [Tool(current_datetime), Tool(calculate, name="calculator")]
