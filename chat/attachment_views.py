"""Attachment endpoints: upload into one's own conversation, download or remove one's own file."""

from __future__ import annotations

from urllib.parse import quote

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods, require_POST

from chat.models import Attachment, Conversation
from chat.uploads import UploadRefused, max_upload_bytes, store_upload

# What multipart framing adds to a file at most (boundaries, headers, the CSRF field); a body
# larger than the biggest file plus this is refused before it is read.
MULTIPART_OVERHEAD_BYTES = 16 * 1024


def error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@require_POST
def upload(request: HttpRequest, conversation_id) -> HttpResponse:
    """`POST /chat/<id>/attachments/` (multipart `file`): 201 and the attachment, or 4xx `{error}` storing nothing."""
    if not request.user.is_authenticated:
        return error(401, "forbidden", "Log in to attach files")
    # Someone else's conversation is a 404, as for every page of it.
    if not Conversation.objects.filter(id=conversation_id, owner=request.user, kind=Conversation.Kind.CHAT).exists():
        return error(404, "not_found", "No such conversation")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_upload_bytes() + MULTIPART_OVERHEAD_BYTES:
        return error(413, "too_large", "The file is too large")
    upload = request.FILES.get("file")
    if upload is None:
        return error(400, "bad_request", "Send the file as the multipart field 'file'")
    if upload.size > max_upload_bytes():
        return error(413, "too_large", "The file is too large")
    try:
        attachment = store_upload(request.user, conversation_id, upload.name or "", upload.read())
    except UploadRefused as refused:
        return error(refused.status, refused.code, refused.message)
    return JsonResponse(attachment.to_dict(), status=201)


@require_http_methods(["GET", "HEAD", "DELETE"])
def attachment(request: HttpRequest, attachment_id) -> HttpResponse:
    """`GET /attachments/<id>/`: the owner's file (images inline, text as a download); `DELETE`: an unsent one."""
    if not request.user.is_authenticated:
        return error(404, "not_found", "No such attachment")
    found = Attachment.objects.filter(id=attachment_id, owner=request.user)
    if request.method == "DELETE":
        # Only an unsent upload: a sent one belongs to its message.
        deleted, _ = found.filter(message__isnull=True).delete()
        return HttpResponse(status=204) if deleted else error(404, "not_found", "No such unsent attachment")
    a = found.first()
    if a is None:
        return error(404, "not_found", "No such attachment")
    response = HttpResponse(bytes(a.data), content_type=a.content_type if a.is_image else "text/plain; charset=utf-8")
    disposition = "inline" if a.is_image else "attachment"
    response["Content-Disposition"] = f"{disposition}; filename*=UTF-8''{quote(a.name, safe='')}"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self'"
    response["Cache-Control"] = "private, max-age=3600"
    return response
