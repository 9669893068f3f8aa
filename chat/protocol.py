"""PROTOCOL.md as code: the client frames we accept and the server frames we send.

`parse_client_frame` validates what a socket receives; `check_frame` is what the tests run on
every frame they receive, so a frame that drifts from the contract fails a test.
"""

from __future__ import annotations

import json
from typing import Any


class FrameError(Exception):
    """A client frame is refused: answered with an `error` frame of this code."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref  # the refused frame's `client_id`, when it had a usable one


NUMBER = (int, float)
# The largest integer a browser holds exactly; any number field beyond it is refused.
MAX_INT = 2**53 - 1
# type -> {field: (accepted types, required)}
CLIENT_FRAMES: dict[str, dict[str, tuple[Any, bool]]] = {
    "message.send": {"content": (str, True), "client_id": (str, True), "attachments": (list, False)},
    "run.stop": {"run_id": (str, False)},
    "run.resume": {"run_id": (str, True), "after_seq": (int, True)},
    "tool.decide": {"tool_call_id": (str, True), "approved": (bool, True), "reason": (str, False)},
    "typing": {"typing": (bool, True)},
    "history.load": {"before": ((str, int), True)},
    "settings.update": {
        "model": (str, False),
        "instructions": (str, False),
        "temperature": ((*NUMBER, type(None)), False),
        "max_tokens": ((int, type(None)), False),
        "approval_tools": ((list, type(None)), False),
        "fallback_models": ((list, type(None)), False),
    },
    "message.edit": {"id": (str, True), "content": (str, True), "client_id": (str, False)},  # client_id: chats
    "message.regenerate": {"message_id": ((str, int), True), "client_id": (str, False)},
    "branch.select": {"message_id": ((str, int), True)},
    "message.delete": {"id": (str, True)},
    "ai.toggle": {"active": (bool, True)},
    "ping": {},
}


def parse_client_frame(text: str) -> dict[str, Any]:
    """Decode and validate one client frame; raise `FrameError("bad_request", ...)` if it is wrong."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise FrameError("bad_request", "Frames must be JSON objects, nested at most a few hundred levels") from None
    if not isinstance(frame, dict):
        raise FrameError("bad_request", "Frames must be JSON objects")
    try:
        _check_fields_of_client_frame(frame)
    except FrameError as error:
        error.ref = client_id_of(frame)
        raise
    return frame


def client_id_of(frame: dict[str, Any]) -> str | None:
    """The frame's `client_id` if it is one we can echo back as an error's `ref`."""
    client_id = frame.get("client_id")
    if isinstance(client_id, str) and 0 < len(client_id) <= 64 and storable(client_id):
        return client_id
    return None


def _check_fields_of_client_frame(frame: dict[str, Any]) -> None:
    kind = frame.get("type")
    if kind not in CLIENT_FRAMES:
        raise FrameError("bad_request", f"Unknown frame type {str(kind)[:40]!r}")
    for name, (types, required) in CLIENT_FRAMES[kind].items():
        if name not in frame:
            if required:
                raise FrameError("bad_request", f"{kind}: missing field {name!r}")
            continue
        value = frame[name]
        # bool is an int in Python; a field that wants a number must not accept true/false.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            raise FrameError("bad_request", f"{kind}: field {name!r} has the wrong type")
        if isinstance(value, str) and not storable(value):
            raise FrameError("bad_request", f"{kind}: field {name!r} contains a NUL byte or a lone surrogate")
        if isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
            raise FrameError("bad_request", f"{kind}: field {name!r} is out of range")


def check_attachment_ids(frame: dict[str, Any]) -> list[str]:
    """A `message.send`'s `attachments`: a short list of id strings (each checked when the send is stored)."""
    ids = frame.get("attachments") or []
    if len(ids) > 100 or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise FrameError("bad_request", "message.send: 'attachments' must be a list of attachment ids", client_id_of(frame))
    return ids


def storable(text: str) -> bool:
    """Text the database and a UTF-8 socket can carry: no NUL, no unpaired surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_tuple(types: Any) -> tuple[Any, ...]:
    return types if isinstance(types, tuple) else (types,)


MESSAGE_FIELDS = {"id": str, "role": str, "content": str, "author": str, "created_at": str, "client_id": (str, type(None)),
                  "status": str, "usage": (dict, type(None)), "parent_id": (str, type(None)), "branch": (dict, type(None))}
BRANCH_FIELDS = {"index": int, "count": int, "siblings": list}
USAGE_FIELDS = {"input_tokens": int, "output_tokens": int, "total_tokens": int}
ROLES = {"user", "assistant", "system", "error", "tool"}
STATUSES = {"complete", "streaming", "stopped", "failed"}
SERVER_FRAMES: dict[str, dict[str, Any]] = {
    "session.ready": {"messages": list, "has_more": bool, "active_run": (dict, type(None)),
                      "pending_approvals": list, "user": dict},
    "message.created": {"message": dict},
    "run.queued": {"run_id": str, "position": int},
    "run.started": {"run_id": str, "model": str},
    "run.delta": {"run_id": str, "seq": int, "text": str},
    "run.tool_call": {"run_id": str, "tool_call": dict},
    "run.tool_result": {"run_id": str, "tool_call_id": str, "result": str, "is_error": bool},
    "run.approval_required": {"run_id": str, "tool_call": dict, "expires_at": str},
    "run.completed": {"run_id": str, "message": dict, "usage": dict},
    "run.stopped": {"run_id": str, "message": dict},
    "run.failed": {"run_id": str, "error": dict, "message": dict},
    "conversation.updated": {"conversation": dict},
    "message.updated": {"message": dict},
    "message.deleted": {"id": str},
    "typing": {"user": str, "typing": bool},
    "presence": {"participants": list},
    "room.updated": {"room": dict},
    "history": {"messages": list, "has_more": bool},
    "branch.switched": {"messages": list, "has_more": bool, "leaf_id": (str, type(None))},
    "error": {"code": str, "message": str, "ref": (str, type(None))},
    "pong": {},
}
ERROR_CODES = {"bad_request", "too_long", "busy", "rate_limited", "forbidden", "not_found", "provider_error",
               "provider_unavailable", "timeout", "overloaded", "internal", "tool_loop", "context_length"}


def check_message(label: str, message: Any) -> None:
    _check_fields(label, message, MESSAGE_FIELDS)
    assert message["role"] in ROLES, f"{label}: bad role {message['role']!r}"
    assert message["status"] in STATUSES, f"{label}: bad status {message['status']!r}"
    branch = message["branch"]
    if branch is not None:
        _check_fields(f"{label} branch", branch, BRANCH_FIELDS)
        assert 1 <= branch["index"] <= branch["count"] == len(branch["siblings"]) > 1, f"{label}: bad branch {branch}"
        assert branch["siblings"][branch["index"] - 1] == message["id"], f"{label}: not among its siblings {branch}"


def check_frame(label: str, frame: Any) -> None:
    """Assert that a server frame matches PROTOCOL.md (after a JSON round trip)."""
    assert json.loads(json.dumps(frame)) == frame, f"{label}: not JSON-serialisable as is"
    kind = frame.get("type")
    assert kind in SERVER_FRAMES, f"{label}: unknown frame type {kind!r}: {frame}"
    _check_fields(f"{label} {kind}", frame, SERVER_FRAMES[kind])
    for message in frame.get("messages", []):
        check_message(f"{label} {kind}", message)
    if isinstance(frame.get("message"), dict):
        check_message(f"{label} {kind}", frame["message"])
    if kind == "run.delta":
        assert frame["seq"] >= 1 and frame["text"], f"{label}: empty or unnumbered delta {frame}"
    if kind == "run.completed":
        _check_fields(f"{label} usage", frame["usage"], USAGE_FIELDS)
    if kind in ("run.failed", "error"):
        code = frame["error"]["code"] if kind == "run.failed" else frame["code"]
        assert code in ERROR_CODES, f"{label}: unknown error code {code!r}"
    if kind == "session.ready":
        # A chat's session carries its conversation; a room's, the room and who is in it.
        fields = {"conversation": dict} if "conversation" in frame else {"room": dict, "participants": list}
        _check_fields(f"{label} session.ready", frame, fields)
    if kind in ("session.ready", "room.updated") and "room" in frame:
        _check_fields(f"{label} room", frame["room"], {"id": str, "title": str, "settings": dict})
        assert isinstance(frame["room"]["settings"].get("ai_active"), bool), f"{label}: room without ai_active"
    if kind == "session.ready" and frame["active_run"] is not None:
        _check_fields(f"{label} active_run", frame["active_run"], {"run_id": str, "seq": int, "content": str, "status": str})


def _check_fields(label: str, obj: Any, fields: dict[str, Any]) -> None:
    assert isinstance(obj, dict), f"{label}: expected an object, got {obj!r}"
    for name, types in fields.items():
        assert name in obj, f"{label}: missing field {name!r} in {obj}"
        assert isinstance(obj[name], types), f"{label}: field {name!r} is {type(obj[name]).__name__}: {obj}"
