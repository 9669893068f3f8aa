"""Hypothesis strategies for hostile client frames: every frame type of PROTOCOL.md, broken.

Every strategy here draws a frame the server must refuse (the fuzz tests assert an `error` for
each), so a refusal that silently starts to succeed is found as well as a crash. `foreign` holds
ids of objects the socket's user must not reach (another user's run and message).
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from chat.protocol import CLIENT_FRAMES, MAX_INT


@dataclass
class Foreign:
    run_id: str
    message_id: str


# Values of every JSON type; `wrong_value_for` picks those a field does not accept.
JSON_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(max_size=20),
    "int": st.integers(min_value=-(2**70), max_value=2**70),
    "float": st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not float(f).is_integer() or math.isinf(f)),
    "bool": st.booleans(),
    "null": st.none(),
    "list": st.lists(st.integers(), max_size=3),
    "dict": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
}
PYTHON_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "null": type(None), "list": list, "dict": dict}

# Strings no frame may carry, and strings that are hostile but storable.
UNSTORABLE = st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83d"])
HOSTILE_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd", "\u202e", "%00", "{{7*7}}"]),
)


def _accepts(types: Any, value: Any) -> bool:
    accepted = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):
        return bool in accepted
    return isinstance(value, accepted)

# Text no socket can take for a message id of its own (Python's int() reads any Unicode digit).
NOT_AN_ID = HOSTILE_TEXT.filter(lambda t: not any(c.isdigit() for c in t))


def wrong_value_for(types: Any) -> st.SearchStrategy[Any]:
    wrong = [s for name, s in JSON_VALUES.items() if not _accepts(types, PYTHON_TYPES[name]() if name != "null" else None)]
    return st.one_of(wrong)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def valid_base(kind: str, foreign: Foreign) -> dict[str, Any]:
    """A well-formed frame of `kind` (refused for other reasons) that mutations start from."""
    return {
        "message.send": {"content": "hello", "client_id": str(uuid.uuid4())},
        "run.stop": {"run_id": foreign.run_id},
        "run.resume": {"run_id": foreign.run_id, "after_seq": 0},
        "tool.decide": {"tool_call_id": "call_1", "approved": True},
        "typing": {"typing": True},
        "history.load": {"before": foreign.message_id},
        "settings.update": {"model": "test:"},
        "message.edit": {"id": foreign.message_id, "content": "edited"},
        "message.delete": {"id": foreign.message_id},
        "message.regenerate": {"message_id": foreign.message_id},
        "branch.select": {"message_id": foreign.message_id},
        "ai.toggle": {"active": True},
        "ping": {},
    }[kind] | {"type": kind}


@st.composite
def wrong_type_frame(draw: st.DrawFn, foreign: Foreign) -> str:
    kind = draw(st.sampled_from([k for k, fields in CLIENT_FRAMES.items() if fields]))
    frame = valid_base(kind, foreign)
    name = draw(st.sampled_from(sorted(CLIENT_FRAMES[kind])))
    frame[name] = draw(wrong_value_for(CLIENT_FRAMES[kind][name][0]))
    return json.dumps(frame)


@st.composite
def missing_field_frame(draw: st.DrawFn, foreign: Foreign) -> str:
    kind = draw(st.sampled_from([k for k, fields in CLIENT_FRAMES.items() if any(r for _, r in fields.values())]))
    frame = valid_base(kind, foreign)
    required = sorted(name for name, (_, req) in CLIENT_FRAMES[kind].items() if req)
    for name in draw(st.lists(st.sampled_from(required), min_size=1, unique=True)):
        del frame[name]
    # Extra fields are ignored, but never one that would put back what was taken out.
    extra = st.text(max_size=8).filter(lambda k: k != "type" and k not in CLIENT_FRAMES[kind])
    frame.update(draw(st.dictionaries(extra, HOSTILE_TEXT, max_size=3)))
    return json.dumps(frame)


@st.composite
def unstorable_text_frame(draw: st.DrawFn, foreign: Foreign) -> str:
    kind = draw(st.sampled_from([k for k, fields in CLIENT_FRAMES.items() if any(t is str for t, _ in fields.values())]))
    frame = valid_base(kind, foreign)
    name = draw(st.sampled_from(sorted(n for n, (t, _) in CLIENT_FRAMES[kind].items() if t is str)))
    frame[name] = draw(HOSTILE_TEXT) + draw(UNSTORABLE) + draw(HOSTILE_TEXT)
    return json.dumps(frame)  # surrogates go out escaped (\ud800), as a hostile client sends them


@st.composite
def out_of_range_frame(draw: st.DrawFn, foreign: Foreign) -> str:
    huge = st.integers(min_value=MAX_INT + 1, max_value=2**200)
    negative = st.integers(max_value=0, min_value=-(2**200))
    frame = draw(st.sampled_from([
        {"type": "run.resume", "run_id": foreign.run_id, "after_seq": draw(st.one_of(huge, huge.map(lambda n: -n)))},
        {"type": "history.load", "before": draw(st.one_of(huge, negative, huge.map(str), negative.map(str)))},
        {"type": "settings.update", "max_tokens": draw(st.one_of(huge, negative, st.integers(200_001, 10**9)))},
        {"type": "settings.update", "temperature": draw(st.one_of(
            st.floats(max_value=-0.001), st.floats(min_value=2.001), st.just(float("nan"))))},
    ]))
    return json.dumps(frame)  # NaN and Infinity go out as the bare words Python's parser accepts


@st.composite
def refused_by_meaning_frame(draw: st.DrawFn, foreign: Foreign) -> str:
    """Well-typed frames a chat must still refuse: empty or too long, foreign ids, odd orders."""
    frame = draw(st.sampled_from([
        {"type": "message.send", "content": draw(st.sampled_from(["", " ", "\n\t "])), "client_id": "c1"},
        {"type": "message.send", "content": "x" * 8001 + draw(HOSTILE_TEXT), "client_id": "c2"},
        {"type": "message.send", "content": "hi", "client_id": draw(st.sampled_from(["", "x" * 65]))},
        {"type": "run.stop"},  # no run in this conversation
        {"type": "run.stop", "run_id": draw(st.one_of(st.just(foreign.run_id), HOSTILE_TEXT))},
        {"type": "run.resume", "run_id": draw(st.one_of(st.just(foreign.run_id), HOSTILE_TEXT,
                                                        st.uuids().map(str))), "after_seq": draw(st.integers(-5, 5))},
        {"type": "tool.decide", "tool_call_id": draw(HOSTILE_TEXT), "approved": draw(st.booleans())},
        {"type": "history.load", "before": draw(st.one_of(st.just(foreign.message_id), HOSTILE_TEXT))},
        {"type": "settings.update"},
        {"type": "settings.update", "model": draw(st.one_of(HOSTILE_TEXT.filter(lambda m: ":" not in m),
                                                            st.sampled_from(["test:tps=-1", "test:words=99999999",
                                                                             "nope:x", ":", "test:bogus=1"])))},
        {"type": "settings.update", "instructions": "i" * 20_001},
        {"type": "message.edit", "id": foreign.message_id, "content": draw(HOSTILE_TEXT)},
        {"type": "message.delete", "id": draw(st.one_of(st.just(foreign.message_id), HOSTILE_TEXT))},
        {"type": "ai.toggle", "active": draw(st.booleans())},
        {"type": "message.edit", "id": foreign.message_id, "content": "edited", "client_id": "e1"},
        {"type": "message.regenerate", "message_id": draw(st.one_of(st.just(foreign.message_id), NOT_AN_ID)),
         "client_id": draw(st.sampled_from(["r1", "", "x" * 65]))},
        {"type": "branch.select", "message_id": draw(st.one_of(st.just(foreign.message_id), NOT_AN_ID,
                                                               st.integers(-5, 0)))},
    ]))
    return json.dumps(frame)


@st.composite
def malformed_text(draw: st.DrawFn) -> str:
    """Text that is not a JSON object with a known type."""
    return draw(st.one_of(
        st.text(max_size=50).filter(lambda t: not _is_object(t)),
        st.sampled_from(["null", "[]", "1", '"ping"', "{", '{"type": "ping"', "\ufeff{}", "{'type': 'ping'}"]),
        st.builds(lambda n: '{"type":"ping","x":' + deep(n) + "}", st.integers(2_000, 30_000)),
        st.builds(lambda n: deep(n), st.integers(2_000, 30_000)),
        st.builds(lambda t: json.dumps({"type": t}), HOSTILE_TEXT.filter(lambda t: t not in CLIENT_FRAMES)),
        st.builds(lambda pad: json.dumps({"type": "ping", "pad": "p" * pad}), st.integers(66_000, 200_000)),
    ))


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def refused_frames(foreign: Foreign) -> st.SearchStrategy[str]:
    """One text frame the chat socket must refuse with an `error`."""
    return st.one_of(
        wrong_type_frame(foreign), missing_field_frame(foreign), unstorable_text_frame(foreign),
        out_of_range_frame(foreign), refused_by_meaning_frame(foreign), malformed_text(),
    )
