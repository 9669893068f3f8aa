"""A function's signature and docstring -> the JSON schema a model sees for a tool.

Supported hints: str, int, float, bool, list[X], dict[str, X], Optional[X] / X | None, Literal[...],
nested; a parameter without a hint (or `Any`) accepts any JSON value. A parameter with a default is
optional and its default is shown. Parameter descriptions come from the docstring, in Google style
(`Args:` then `name: text`) or Sphinx style (`:param name: text`).
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any, Callable, Literal, Union

JsonSchema = dict[str, Any]

_SIMPLE: dict[Any, JsonSchema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    dict: {"type": "object"},
    type(None): {"type": "null"},
}
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_GOOGLE_PARAM = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[\w\[\], |]+\s+)?(\w+)\s*:\s*(.*)$")


def type_schema(hint: Any) -> JsonSchema:
    """The JSON schema of one type hint."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint in _SIMPLE:
        return dict(_SIMPLE[hint])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        values = list(args)
        kinds = {type(v) for v in values}
        schema: JsonSchema = {"enum": values}
        if len(kinds) == 1 and next(iter(kinds)) in _SIMPLE:
            schema = {**_SIMPLE[next(iter(kinds))], "enum": values}
        return schema
    if origin in (Union, types.UnionType):
        options = [type_schema(a) for a in args if a is not type(None)]
        nullable = type(None) in args
        if len(options) == 1 and not nullable:
            return options[0]
        if len(options) == 1 and set(options[0]) == {"type"}:
            return {"type": [options[0]["type"], "null"]}
        return {"anyOf": options + ([{"type": "null"}] if nullable else [])}
    if origin in (list, tuple, set, frozenset) or origin is typing.Sequence:
        schema = {"type": "array"}
        if args and args[0] is not Ellipsis:
            schema["items"] = type_schema(args[0])
        return schema
    if origin is dict or origin is typing.Mapping:
        schema = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            schema["additionalProperties"] = type_schema(args[1])
        return schema
    raise TypeError(f"Unsupported type hint for a tool parameter: {hint!r}")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into (description, {parameter: description})."""
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in inspect.cleandoc(doc or "").splitlines():
        sphinx = _SPHINX_PARAM.match(line)
        if sphinx:
            current, section = sphinx.group(1), "sphinx"
            params[current] = sphinx.group(2).strip()
            continue
        heading = _SECTION.match(line)
        if heading:
            section, current = heading.group(1).lower(), None
            continue
        if section in ("args", "arguments", "parameters", "params"):
            if line.strip() and not line.startswith((" ", "\t")):  # back at the margin: the section ended
                section, current = "other", None
                continue
            match = _GOOGLE_PARAM.match(line)
            if match and not line.startswith((" " * 8, "\t\t")):
                current = match.group(1)
                params[current] = match.group(2).strip()
            elif current and line.strip():  # a continuation line
                params[current] = f"{params[current]} {line.strip()}".strip()
        elif section == "sphinx" and current and line.startswith((" ", "\t")) and line.strip():
            params[current] = f"{params[current]} {line.strip()}"
        elif section is None:
            description.append(line)
    return "\n".join(description).strip(), params


def function_schema(function: Callable[..., Any]) -> tuple[str, JsonSchema]:
    """The description and the parameters' JSON schema (an object) of `function`."""
    description, docs = parse_docstring(inspect.getdoc(function) or "")
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # a hint that does not resolve: fall back to the raw annotations
        hints = getattr(function, "__annotations__", {})
    properties: dict[str, JsonSchema] = {}
    required: list[str] = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        schema = type_schema(hints.get(name, parameter.annotation))
        if name in docs and docs[name]:
            schema["description"] = docs[name]
        if parameter.default is parameter.empty:
            required.append(name)
        elif _is_json(parameter.default):
            schema["default"] = parameter.default
        properties[name] = schema
    parameters: JsonSchema = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return description, parameters


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool)) or (isinstance(value, (list, tuple, dict)) and not value)
