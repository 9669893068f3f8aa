"""Export a private conversation as Markdown or JSON (`nous-chat/1`), and import that JSON.

An import only stores: it never queues a run, and a message that was streaming is kept as stopped.
The file is validated whole before anything is written, and written in one transaction.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.db import transaction
from django.db.models import Case, DateTimeField, Value, When
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from chat.branches import NODE_ROLES
from chat.models import Conversation, Message, with_attachments
from chat.protocol import FrameError, storable
from chat.views import MAX_TITLE_CHARS, _own_conversation

FORMAT = "nous-chat/1"
EXPORTED_ROLES = (Message.Role.USER, Message.Role.ASSISTANT, Message.Role.ERROR, Message.Role.TOOL)
MAX_IMPORT_MESSAGES = 10_000
IMPORT_MAX_BYTES_DEFAULT = 5 * 1024 * 1024
MAX_FILENAME_CHARS = 60
TOP_FIELDS = {"format", "title", "settings", "usage", "exported_at", "messages"}
SETTINGS_FIELDS = {"model", "instructions", "temperature", "max_tokens"}
MESSAGE_FIELDS = {"role", "author", "content", "created_at", "status", "usage"}
USAGE_FIELDS = {"input_tokens", "output_tokens", "total_tokens"}
UPDATE_BATCH = 500
OPEN_FENCE = re.compile(r" {0,3}(`{3,}(?=[^`]*$)|~{3,})")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _messages(conversation: Conversation) -> list[Message]:
    q = with_attachments(Message.objects.filter(conversation=conversation, role__in=EXPORTED_ROLES, on_branch=True).select_related("author"))
    return list(q.order_by("id"))


def export_dict(conversation: Conversation) -> dict[str, Any]:
    data = conversation.to_dict()
    return {
        "format": FORMAT,
        "title": conversation.title,
        "settings": {k: data["settings"][k] for k in ("model", "instructions", "temperature", "max_tokens")},
        "usage": data["usage"],
        "exported_at": _iso(timezone.now()),
        "messages": [
            {k: m[k] for k in ("role", "author", "content", "created_at", "status", "usage")}
            for m in (message.to_dict() for message in _messages(conversation))
        ],
    }


def _fence(text: str, info: str = "") -> str:
    """A fenced block that `text` cannot close: one backtick longer than its longest run."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def _closed_fences(text: str) -> str:
    """`text` with a fence it left open (an answer stopped mid-code) closed, so the next message
    is not swallowed into the code block."""
    fence = None
    for line in text.splitlines():
        if fence is None:
            opened = OPEN_FENCE.match(line)
            if opened:
                fence = opened.group(1)
        elif re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            fence = None
    return text if fence is None else f"{text}\n{fence}"


def _md_line(text: str) -> str:
    """One line of plain text in Markdown: no markup, no HTML (a title is not markdown)."""
    text = " ".join(text.split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]#|!~])", r"\\\1", text)


def _md_time(iso: str) -> str:
    moment = parse_datetime(iso)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def export_markdown(conversation: Conversation) -> str:
    data = export_dict(conversation)
    usage = data["usage"]
    lines = [
        f"# {_md_line(conversation.title or 'Conversation')}",
        "",
        f"Model: {_md_line(conversation.model)} · {usage['input_tokens']} input / {usage['output_tokens']} output tokens"
        f" · exported {_md_time(data['exported_at'])}",
    ]
    for m in data["messages"]:
        author = {"assistant": "Assistant", "error": "Error", "tool": "Tool"}.get(m["role"], m["author"])
        content = m["content"]
        if m["role"] == Message.Role.TOOL:
            try:
                call = json.loads(content)
            except ValueError:
                call = None
            if isinstance(call, dict):
                name = call.get("name")
                if isinstance(name, str) and re.fullmatch(r"[\w.-]{1,64}", name):
                    author = f"Tool {name}"
                content = json.dumps(call, indent=2, ensure_ascii=False)
            body = _fence(content, "json")
        elif m["role"] == Message.Role.ERROR:
            body = _fence(content, "text")  # shown as text on the page too
        else:
            body = _closed_fences(content)  # already markdown, as written
        status = "" if m["status"] == Message.Status.COMPLETE else f" ({m['status']})"
        lines += ["", "---", "", f"### {_md_line(author)} · {_md_time(m['created_at'])}{status}", "", body]
    return "\n".join(lines) + "\n"


def _filename(conversation: Conversation, ext: str) -> str:
    slug = slugify(conversation.title)[:MAX_FILENAME_CHARS].strip("-_") or "conversation"
    return f"{slug}-{str(conversation.id)[:8]}.{ext}"


def _attachment(response: HttpResponse, conversation: Conversation, ext: str) -> HttpResponse:
    # The slug is [a-z0-9_-] only, so the header needs no quoting rules beyond the quotes.
    response["Content-Disposition"] = f'attachment; filename="{_filename(conversation, ext)}"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def export_md(request: HttpRequest, conversation_id) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    response = HttpResponse(export_markdown(conversation), content_type="text/markdown; charset=utf-8")
    return _attachment(response, conversation, "md")


@login_required
@require_GET
def export_json(request: HttpRequest, conversation_id) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    response = JsonResponse(export_dict(conversation), json_dumps_params={"ensure_ascii": False, "indent": 1})
    return _attachment(response, conversation, "json")


# --- import ----------------------------------------------------------------------------------


class BadExport(ValueError):
    """A file that cannot be imported; the message is shown to the user."""


def _text(value: Any, where: str, max_chars: int, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise BadExport(f"{where} must be a string")
    if not storable(value):
        raise BadExport(f"{where} contains a NUL byte or invalid characters")
    if len(value) > max_chars:
        raise BadExport(f"{where} is longer than {max_chars} characters")
    if not allow_empty and not value:
        raise BadExport(f"{where} is empty")
    return value


def _count(value: Any, where: str) -> int:
    # bool is an int in Python, not in a token count.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise BadExport(f"{where} must be a non-negative integer")
    return value


def _usage(value: Any, where: str) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= USAGE_FIELDS:
        raise BadExport(f"{where} must be null or an object of {', '.join(sorted(USAGE_FIELDS))}")
    return {k: _count(v, f"{where}.{k}") for k, v in value.items()}


def _fields(value: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadExport(f"{where} must be an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise BadExport(f"{where}: unknown field {unknown[0]!r}")
    missing = sorted(required - set(value))
    if missing:
        raise BadExport(f"{where}: missing field {missing[0]!r}")
    return value


def _settings(value: Any) -> dict[str, Any]:
    from chat.runs.actions import validated_settings

    value = _fields(value, "settings", SETTINGS_FIELDS, set())
    changes: dict[str, Any] = {}
    if value.get("model") is not None:
        changes["model"] = _text(value["model"], "settings.model", 200)
    if value.get("instructions") is not None:
        changes["instructions"] = _text(value["instructions"], "settings.instructions", 20_000)
    temperature = value.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
            raise BadExport("settings.temperature must be a number or null")
        changes["temperature"] = temperature
    max_tokens = value.get("max_tokens")
    if max_tokens is not None:
        changes["max_tokens"] = _count(max_tokens, "settings.max_tokens")
    if "model" in changes:
        try:
            changes["model"] = validated_settings({"model": changes["model"]})["model"]
        except FrameError:
            # A model this server does not offer (another server's export): the default instead,
            # which the owner sees in the settings and can change.
            del changes["model"]
    rest = {k: v for k, v in changes.items() if k != "model"}
    if rest:
        try:
            validated_settings(rest)
        except FrameError as error:
            raise BadExport(f"settings: {error}") from None
    return changes


def _created_at(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    moment = parse_datetime(value) if isinstance(value, str) and len(value) <= 40 else None
    if moment is None:
        raise BadExport(f"{where} must be an ISO 8601 date and time")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def parse_export(raw: bytes) -> dict[str, Any]:
    """The conversation a `nous-chat/1` file describes, checked field by field, or BadExport."""
    try:
        data = json.loads(raw.decode("utf-8-sig"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise BadExport("The file is not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise BadExport("The file is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadExport(f"This is not a Nous Chat export (expected \"format\": \"{FORMAT}\")")
    _fields(data, "The file", TOP_FIELDS, {"format", "messages"})
    title = data.get("title")
    title = " ".join(_text("" if title is None else title, "title", 10 * MAX_TITLE_CHARS).split())[:MAX_TITLE_CHARS]
    usage = _usage(data.get("usage"), "usage") or {}
    _created_at(data.get("exported_at"), "exported_at")  # not kept, but a file with a bad one is not ours
    messages = data["messages"]
    if not isinstance(messages, list):
        raise BadExport("messages must be a list")
    if len(messages) > MAX_IMPORT_MESSAGES:
        raise BadExport(f"At most {MAX_IMPORT_MESSAGES:,} messages can be imported (this file has {len(messages):,})")
    max_chars = settings.NOUS_MAX_MESSAGE_CHARS * 4
    rows = []
    for n, m in enumerate(messages):
        where = f"messages[{n}]"
        m = _fields(m, where, MESSAGE_FIELDS, {"role", "content"})
        if m["role"] not in EXPORTED_ROLES:
            raise BadExport(f"{where}.role must be one of {', '.join(EXPORTED_ROLES)}")
        if m.get("author") is not None:
            _text(m["author"], f"{where}.author", 150)
        status = m.get("status", Message.Status.COMPLETE)
        if status not in Message.Status.values:
            raise BadExport(f"{where}.status must be one of {', '.join(Message.Status.values)}")
        rows.append({
            "role": m["role"],
            "content": _text(m["content"], f"{where}.content", max_chars),
            # Nothing runs for an imported message, so nothing could ever finish it.
            "status": Message.Status.STOPPED if status == Message.Status.STREAMING else status,
            "usage": _usage(m.get("usage"), f"{where}.usage"),
            "created_at": _created_at(m.get("created_at"), f"{where}.created_at"),
        })
    return {"title": title, "settings": _settings(data.get("settings") or {}), "usage": usage, "messages": rows}


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def store_import(owner: Any, parsed: dict[str, Any]) -> Conversation:
    """A new conversation of `owner` holding the parsed export; user messages are the owner's."""
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=owner, title=parsed["title"], input_tokens=parsed["usage"].get("input_tokens", 0),
            output_tokens=parsed["usage"].get("output_tokens", 0), **parsed["settings"],
        )
        # The author's name in the file is only text: the importer never speaks as another account.
        messages = Message.objects.bulk_create(
            Message(conversation=conversation, role=r["role"], content=r["content"], status=r["status"], usage=r["usage"],
                    author=owner if r["role"] == Message.Role.USER else None)
            for r in parsed["messages"]
        )
        # One branch: each user or assistant message under the one before it (chat.branches).
        nodes = [message for message in messages if message.role in NODE_ROLES]
        for previous, message in zip(nodes, nodes[1:], strict=False):
            message.parent_id = previous.id
        Message.objects.bulk_update(nodes[1:], ["parent"], batch_size=UPDATE_BATCH)
        # created_at is auto_now_add, which bulk_create fills with now: the exported times go in after.
        dated = [(message.id, r["created_at"]) for message, r in zip(messages, parsed["messages"], strict=True) if r["created_at"]]
        for start in range(0, len(dated), UPDATE_BATCH):
            batch = dated[start:start + UPDATE_BATCH]
            Message.objects.filter(id__in=[i for i, _ in batch]).update(
                created_at=Case(*(When(id=i, then=Value(moment)) for i, moment in batch), output_field=DateTimeField())
            )
    return conversation


class UploadLimit(FileUploadHandler):
    """Stops reading a file past the limit, so an oversized upload is never kept whole (on disk)."""

    def __init__(self, request: HttpRequest, max_bytes: int) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.too_big = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.max_bytes:
            self.too_big = True
            raise StopUpload(connection_reset=False)  # the rest of the body is read and dropped
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


# As Django's docs do for upload handlers: the handler goes in before the CSRF check reads the
# body, and the check then runs on the inner view.
@csrf_exempt
@login_required
@require_POST
def import_conversation(request: HttpRequest) -> HttpResponse:
    limit = UploadLimit(request, getattr(settings, "NOUS_IMPORT_MAX_BYTES", IMPORT_MAX_BYTES_DEFAULT))
    request.upload_handlers.insert(0, limit)
    return _import(request, limit)


@csrf_protect
def _import(request: HttpRequest, limit: UploadLimit) -> HttpResponse:
    upload = request.FILES.get("file")
    try:
        if limit.too_big or (upload is not None and upload.size > limit.max_bytes):
            raise BadExport(f"The file is larger than {limit.max_bytes // 1024:,} KB")
        if upload is None:
            raise BadExport("Choose a JSON export file to import")
        conversation = store_import(request.user, parse_export(upload.read(limit.max_bytes + 1)))
    except BadExport as error:
        conversations = Conversation.objects.filter(owner=request.user, kind=Conversation.Kind.CHAT).order_by("-updated_at")
        return render(request, "chat/list.html", {"conversations": conversations, "import_error": str(error)}, status=400)
    return redirect("chat:conversation", conversation_id=conversation.id)
