"""Attachments: what an upload may be (type by content, size limits), and turning them into what the model reads.

A refused upload raises `UploadRefused` and stores nothing. Images are known by their magic bytes; text
by decoding as UTF-8 without NUL, under an allowed extension. The browser's content type is ignored.
"""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any, Iterable

from django.conf import settings
from django.utils import timezone

from agents.models.capabilities import accepts_images
from chat.models import Attachment
from chat.protocol import FrameError

TEXT_TYPE = "text/plain"
MAX_NAME_CHARS = 200
UNSENT_TTL = timedelta(days=1)
# Magic bytes -> content type; WebP is RIFF....WEBP, checked apart.
IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"))


class UploadRefused(Exception):
    """An upload is refused: answered with this HTTP status and `{error: {code, message}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def max_upload_bytes() -> int:
    return max(settings.NOUS_ATTACHMENT_MAX_IMAGE_BYTES, settings.NOUS_ATTACHMENT_MAX_TEXT_BYTES)


def sniff_image(data: bytes) -> str | None:
    """The image type the bytes start with, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in IMAGE_MAGIC if data.startswith(magic)), None)


def attachment_config(conversation: Any) -> dict[str, Any]:
    """What the page needs to offer uploads: where, which files, how many."""
    accept = [*settings.NOUS_ATTACHMENT_IMAGE_TYPES, *(f".{e}" for e in settings.NOUS_ATTACHMENT_TEXT_EXTENSIONS)]
    return {"upload_url": f"/chat/{conversation.id}/attachments/", "accept": ",".join(accept),
            "max_per_message": settings.NOUS_ATTACHMENTS_PER_MESSAGE}


def clean_name(name: str) -> str:
    """The file's base name without path, control characters or NUL, at most MAX_NAME_CHARS."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_NAME_CHARS - len(ext) - 1] + dot + ext) if dot and len(ext) < 16 else name[:MAX_NAME_CHARS]
    return name or "file"


def content_type_of(name: str, data: bytes) -> str:
    """The type the upload is stored as; `UploadRefused` (413 or 415) if it is not allowed."""
    image = sniff_image(data)
    if image is not None:
        if image not in settings.NOUS_ATTACHMENT_IMAGE_TYPES:
            raise UploadRefused(415, "unsupported_type", f"{image} images are not accepted")
        if len(data) > settings.NOUS_ATTACHMENT_MAX_IMAGE_BYTES:
            raise UploadRefused(413, "too_large", f"Images are limited to {_size(settings.NOUS_ATTACHMENT_MAX_IMAGE_BYTES)}")
        return image
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    allowed = [e.lower() for e in settings.NOUS_ATTACHMENT_TEXT_EXTENSIONS]
    if extension not in allowed:
        raise UploadRefused(415, "unsupported_type", "Attach images (PNG, JPEG, GIF, WebP) or text files ("
                      + ", ".join(allowed[:12]) + ", ...)")
    if len(data) > settings.NOUS_ATTACHMENT_MAX_TEXT_BYTES:
        raise UploadRefused(413, "too_large", f"Text files are limited to {_size(settings.NOUS_ATTACHMENT_MAX_TEXT_BYTES)}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadRefused(415, "unsupported_type", f"{name} is not a UTF-8 text file") from None
    if "\x00" in text:
        raise UploadRefused(415, "unsupported_type", f"{name} is not a text file (it contains NUL bytes)")
    return TEXT_TYPE


def store_upload(user: Any, conversation_id: Any, name: str, data: bytes) -> Attachment:
    """Check and store one upload, unsent; `UploadRefused` stores nothing."""
    name = clean_name(name)
    if not data:
        raise UploadRefused(400, "bad_request", "The file is empty")
    content_type = content_type_of(name, data)
    unsent = Attachment.objects.filter(conversation_id=conversation_id, owner=user, message__isnull=True).count()
    if unsent >= settings.NOUS_ATTACHMENTS_PER_MESSAGE:
        raise UploadRefused(400, "too_many", f"At most {settings.NOUS_ATTACHMENTS_PER_MESSAGE} attachments per message")
    return Attachment.objects.create(owner=user, conversation_id=conversation_id, name=name, content_type=content_type,
                                     size=len(data), data=data)


def prune_unsent(older_than: timedelta = UNSENT_TTL, dry_run: bool = False) -> int:
    """Delete uploads never sent within `older_than`; returns how many."""
    q = Attachment.objects.filter(message__isnull=True, created_at__lt=timezone.now() - older_than)
    if dry_run:
        return q.count()
    return q.delete()[1].get(Attachment._meta.label, 0)


def attachments_by_message(message_ids: list[int]) -> dict[int, list[Attachment]]:
    """The attachments (with their bytes) of these messages, by message id; no query for none."""
    found: dict[int, list[Attachment]] = {}
    if message_ids:
        for a in Attachment.objects.filter(message_id__in=message_ids).order_by("created_at"):
            found.setdefault(a.message_id, []).append(a)
    return found


def model_content(text: str, attachments: Iterable[Attachment]) -> str | list[dict[str, Any]]:
    """A user turn as the model reads it: text files fenced after the text, images as image parts."""
    texts, images = [text], []
    for a in attachments:
        if a.is_image:
            images.append({"type": "image", "media_type": a.content_type, "data": base64.b64encode(bytes(a.data)).decode()})
        else:
            body = bytes(a.data).decode("utf-8", "replace").removesuffix("\n")
            fence = "`" * max(3, _longest_backtick_run(body) + 1)
            texts.append(f"Attached file {a.name}:\n{fence}\n{body}\n{fence}")
    joined = "\n\n".join(t for t in texts if t)
    return [{"type": "text", "text": joined}, *images] if images else joined


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for c in text:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    return longest


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 and n % (1024 * 1024) == 0 else f"{n // 1024} KiB"


def claim_for_message(message: Any, user: Any, conversation_id: Any, ids: list[str], model: str) -> None:
    """Bind the sender's unsent uploads `ids` to `message`, inside the send's transaction.

    Raises `FrameError` with the send's `client_id` (the transaction then stores nothing): too
    many, not the sender's unsent uploads in this conversation (`not_found`), or images for a
    model that reads none.
    """
    if not ids:
        message._prefetched_objects_cache = {"attachments": []}  # to_dict shows "none" without a query
        return
    if len(ids) > settings.NOUS_ATTACHMENTS_PER_MESSAGE:
        raise FrameError("bad_request", f"At most {settings.NOUS_ATTACHMENTS_PER_MESSAGE} attachments per message", message.client_id)
    try:
        wanted = {uuid.UUID(i) for i in ids}
    except ValueError:
        raise FrameError("not_found", "No such attachment", message.client_id) from None
    if len(wanted) != len(ids):
        raise FrameError("bad_request", "An attachment is named twice", message.client_id)
    q = Attachment.objects.filter(id__in=wanted, owner=user, conversation_id=conversation_id, message__isnull=True)
    types = list(q.values_list("content_type", flat=True))
    if len(types) != len(wanted):
        raise FrameError("not_found", "No such attachment (it was sent already, removed, or is not yours)", message.client_id)
    if any(t.startswith("image/") for t in types) and not accepts_images(model, settings.NOUS_IMAGE_MODELS):
        raise FrameError("bad_request", f"{model} does not accept images", message.client_id)
    # Conditional: of two sends racing for one upload, one binds it and the other is refused.
    if q.update(message=message) != len(wanted):
        raise FrameError("not_found", "No such attachment (it was sent already)", message.client_id)
    message._prefetched_objects_cache = {"attachments": list(
        Attachment.objects.filter(message=message).defer("data").order_by("created_at"))}
