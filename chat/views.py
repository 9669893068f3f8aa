"""Chat pages: the conversation list (new, rename, delete) and one conversation."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from chat.models import Conversation
from chat.session import conversation_dict
from chat.uploads import attachment_config

MAX_TITLE_CHARS = 200


def _own_conversation(request: HttpRequest, conversation_id) -> Conversation:
    # Someone else's conversation is a 404, not a 403: its existence is not ours to reveal.
    return get_object_or_404(Conversation, id=conversation_id, owner=request.user, kind=Conversation.Kind.CHAT)


@login_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        conversation = Conversation.objects.create(owner=request.user)
        return redirect("chat:conversation", conversation_id=conversation.id)
    conversations = Conversation.objects.filter(owner=request.user, kind=Conversation.Kind.CHAT).order_by("-updated_at")
    return render(request, "chat/list.html", {"conversations": conversations})


@login_required
def conversation_page(request: HttpRequest, conversation_id) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    conversations = Conversation.objects.filter(owner=request.user, kind=Conversation.Kind.CHAT).order_by("-updated_at")[:50]
    return render(
        request,
        "chat/conversation.html",
        {
            "conversation": conversation,
            "conversations": conversations,
            "page_data": {
                "conversation": conversation_dict(conversation),
                "ws_path": f"/ws/chat/{conversation.id}/",
                "max_message_chars": settings.NOUS_MAX_MESSAGE_CHARS,
                "username": request.user.get_username(),
                "attachments": attachment_config(conversation),
            },
        },
    )


@login_required
@require_POST
def rename_conversation(request: HttpRequest, conversation_id) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    # NUL is the one character no database column stores; a form can still carry it (%00).
    title = " ".join(request.POST.get("title", "").replace("\x00", "").split())[:MAX_TITLE_CHARS]
    if title:
        conversation.title = title
        conversation.save(update_fields=["title", "updated_at"])
    next_url = request.POST.get("next", "")
    # A path on this site only; `redirect()` would also try a bare word ("0") as a view name.
    if next_url.startswith("/") and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(next_url)
    return redirect("chat:list")


@login_required
@require_POST
def delete_conversation(request: HttpRequest, conversation_id) -> HttpResponse:
    _own_conversation(request, conversation_id).delete()
    return redirect("chat:list")
