"""Read-only share links: the owner creates and revokes them; `/s/<token>/` needs no login."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chat.exports import EXPORTED_ROLES
from chat.models import Conversation, Message, ShareLink
from chat.views import _own_conversation


def active_links(conversation: Conversation) -> list[ShareLink]:
    return list(ShareLink.objects.filter(conversation=conversation, revoked_at__isnull=True).order_by("created_at"))


def _back(conversation: Conversation) -> HttpResponse:
    return redirect(reverse("chat:conversation", args=[conversation.id]) + "?share=1#share-panel")


@login_required
@require_POST
def create_link(request: HttpRequest, conversation_id) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    ShareLink.objects.create(conversation=conversation)
    return _back(conversation)


@login_required
@require_POST
def revoke_link(request: HttpRequest, conversation_id, token: str) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    link = get_object_or_404(ShareLink, conversation=conversation, token=token)
    # Conditional, so a second revoke keeps the first moment.
    ShareLink.objects.filter(id=link.id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    return _back(conversation)


def shared_messages(conversation: Conversation) -> list[dict]:
    """What a reader of the link sees: no ids, runs or usage, and the owner only as "User"."""
    shown = []
    q = Message.objects.filter(conversation=conversation, role__in=EXPORTED_ROLES, on_branch=True).order_by("id")
    for m in q.values("role", "content", "status", "created_at"):
        shown.append({
            "role": m["role"],
            "author": "User" if m["role"] == Message.Role.USER else m["role"],
            "content": m["content"],
            "status": m["status"],
            "created_at": m["created_at"].isoformat().replace("+00:00", "Z"),
        })
    return shown


@require_GET
def shared_page(request: HttpRequest, token: str) -> HttpResponse:
    link = get_object_or_404(
        ShareLink.objects.select_related("conversation"),
        token=token, revoked_at__isnull=True, conversation__kind=Conversation.Kind.CHAT,
    )
    conversation = link.conversation
    response = render(request, "chat/shared.html", {
        "title": conversation.title or "Shared conversation",
        "page_data": {"title": conversation.title, "messages": shared_messages(conversation)},
    })
    # Revoking must end it at once: nothing may keep a copy, and the token stays out of Referer.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
