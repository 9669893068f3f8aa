"""The contact form (works without JavaScript), its confirmation, and the suggestions endpoint."""

from __future__ import annotations

import json
import math

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from contact import suggest
from contact.forms import MAX_MESSAGE_CHARS, ContactForm
from contact.models import ContactMessage

# The session remembers the last message sent, so the thanks page can name it (and only that one).
SESSION_KEY = "contact_message_id"
SUGGEST_DEBOUNCE_MS = 600


def contact_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ContactForm(request.POST)
        if form.is_valid():
            sent = form.save(commit=False)
            sent.user = request.user if request.user.is_authenticated else None
            sent.save()
            request.session[SESSION_KEY] = sent.pk
            return redirect("contact:thanks")
    else:
        initial = {}
        if request.user.is_authenticated:
            initial = {"name": request.user.get_full_name() or request.user.get_username(), "email": request.user.email}
        form = ContactForm(initial=initial)
    page_data = {
        "suggest_url": reverse("contact:suggest"),
        "min_chars": suggest.MIN_SUGGEST_CHARS,
        "debounce_ms": SUGGEST_DEBOUNCE_MS,
    }
    return render(request, "contact/form.html", {"form": form, "page_data": page_data})


def thanks_page(request: HttpRequest) -> HttpResponse:
    pk = request.session.get(SESSION_KEY)
    sent = ContactMessage.objects.filter(pk=pk).first() if isinstance(pk, int) else None
    return render(request, "contact/thanks.html", {"sent": sent})


def _error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@require_POST
async def suggest_view(request: HttpRequest) -> HttpResponse:
    """`{"message", "name"}` -> `{"suggestions": [...]}`: 0 to 3 strings, 200 even if the model failed."""
    # REMOTE_ADDR is the client as the ASGI server saw it (uvicorn's --proxy-headers behind a proxy).
    wait = suggest.limiter.hit(request.META.get("REMOTE_ADDR") or "unknown")
    if wait:
        response = _error("rate_limited", "Too many suggestion requests; try again shortly", 429)
        response["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        data = json.loads(request.body)
    except (ValueError, RequestDataTooBig):
        return _error("bad_request", "Expected a JSON body", 400)
    message = data.get("message") if isinstance(data, dict) else None
    name = data.get("name", "") if isinstance(data, dict) else ""
    if not isinstance(message, str) or not isinstance(name, str):
        return _error("bad_request", "Expected {\"message\": string, \"name\": string}", 400)
    if len(message) > MAX_MESSAGE_CHARS:
        return _error("message_too_long", f"A message has at most {MAX_MESSAGE_CHARS} characters", 400)
    message = message.replace("\x00", "").strip()
    if len(message) < suggest.MIN_SUGGEST_CHARS:
        return JsonResponse({"suggestions": []})
    return JsonResponse({"suggestions": await suggest.suggest(message, name.replace("\x00", ""))})
