"""Room pages: the list (create, join), one room, and its members panel (private rooms)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from chat.protocol import FrameError
from chat.runs.actions import validated_settings
from rooms.consumers import revoke_access
from rooms.models import Membership, Room, create_room

# Rooms follow the chat's rule: a room you may not enter is a 404, never a 403, so that a private
# room's existence (or its slug) is not revealed to anyone outside it. The same goes for the
# owner-only member POSTs.


class RoomForm(forms.Form):
    title = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=40, required=False, help_text="Made from the title when empty")
    is_private = forms.BooleanField(required=False, label="Private (only members you add may enter)")
    model = forms.CharField(max_length=200, label="AI model")

    def clean_title(self) -> str:
        # NUL is the one character no database column stores; a form can still carry it (%00).
        title = " ".join(self.cleaned_data["title"].replace("\x00", "").split())
        if not title:
            raise forms.ValidationError("A room needs a title.")
        return title

    def clean_model(self) -> str:
        try:
            return validated_settings({"model": self.cleaned_data["model"]})["model"]
        except FrameError as error:
            raise forms.ValidationError(error.message) from None


def _rooms_of(user) -> list[Room]:
    return list(
        Room.objects.filter(Q(owner=user) | Q(memberships__user=user)).distinct().select_related("owner").order_by("-created_at")
    )


def _room_for(request: HttpRequest, slug: str) -> Room:
    room = get_object_or_404(Room.objects.select_related("owner", "conversation"), slug=slug)
    if not room.may_enter(request.user):
        raise Http404("No such room")
    return room


def _owned_room(request: HttpRequest, slug: str) -> Room:
    return get_object_or_404(Room.objects.select_related("owner", "conversation"), slug=slug, owner=request.user)


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = RoomForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            room = create_room(request.user, data["title"], slug=data["slug"], is_private=data["is_private"], model=data["model"])
            return redirect("rooms:room", slug=room.slug)
    else:
        form = RoomForm(initial={"model": settings.NOUS_DEFAULT_MODEL})
    mine = _rooms_of(request.user)
    mine_ids = {room.id for room in mine}
    open_rooms = Room.objects.filter(is_private=False).select_related("owner").order_by("-created_at")[:100]
    return render(request, "rooms/list.html", {
        "form": form,
        "mine": mine,
        "open_rooms": [(room, room.id in mine_ids) for room in open_rooms],
    })


@login_required
@require_POST
def join_room(request: HttpRequest, slug: str) -> HttpResponse:
    room = _room_for(request, slug)
    if room.owner_id != request.user.id:
        Membership.objects.get_or_create(room=room, user=request.user)
    return redirect("rooms:room", slug=room.slug)


@login_required
def room_page(request: HttpRequest, slug: str) -> HttpResponse:
    room = _room_for(request, slug)
    is_owner = room.owner_id == request.user.id
    if not is_owner and not room.is_private:
        # Visiting an open room is joining it: it shows under "rooms I am in" from now on.
        Membership.objects.get_or_create(room=room, user=request.user)
    members = None
    if is_owner and room.is_private:
        members = list(room.memberships.select_related("user").order_by("user__username"))
    return render(request, "rooms/room.html", {
        "room": room,
        "is_owner": is_owner,
        "members": members,
        "rooms": _rooms_of(request.user)[:50],
        "page_data": {
            "room": room.to_dict(),
            "ws_path": f"/ws/rooms/{room.slug}/",
            "username": request.user.get_username(),
            "is_owner": is_owner,
            "max_message_chars": settings.NOUS_MAX_MESSAGE_CHARS,
        },
    })


@login_required
@require_POST
def add_member(request: HttpRequest, slug: str) -> HttpResponse:
    room = _owned_room(request, slug)
    username = request.POST.get("username", "").replace("\x00", "").strip()
    user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first() if username else None
    if user is None:
        messages.error(request, f"There is no user called “{username}”." if username else "Enter a username to add.")
    elif user.id == room.owner_id:
        messages.info(request, "You own this room; you are always in it.")
    else:
        _, created = Membership.objects.get_or_create(room=room, user=user)
        if created:
            messages.success(request, f"{user.get_username()} can now enter this room.")
        else:
            messages.info(request, f"{user.get_username()} is already a member.")
    return redirect("rooms:room", slug=room.slug)


@login_required
@require_POST
def remove_member(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    room = _owned_room(request, slug)
    removed, _ = Membership.objects.filter(room=room, user__username=username).delete()
    if removed:
        # Their open sockets are closed with 4403 now, not at their next reconnect.
        async_to_sync(revoke_access)(room, username)
        messages.success(request, f"{username} was removed from this room.")
    else:
        messages.error(request, f"{username} is not a member of this room.")
    return redirect("rooms:room", slug=room.slug)
