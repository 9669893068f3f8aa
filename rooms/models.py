"""Rooms: several people and an AI participant. A room owns one conversation (one to one) that
holds its messages and runs, so rooms stand on the chat's run pipeline unchanged
(docs/rooms.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from chat.models import Conversation


class Room(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    title = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_rooms")
    is_private = models.BooleanField(default=False, help_text="Only members the owner added may enter")
    ai_active = models.BooleanField(default=True)
    ai_name = models.CharField(max_length=40, default="Nous", help_text="The AI answers when addressed by this name or @ai")
    # The AI's model and instructions are the conversation's (`conversation.model`, `.instructions`).
    conversation = models.OneToOneField(Conversation, on_delete=models.PROTECT, related_name="room")
    # A trigger arrived while the AI was answering: one follow-up run when that run ends.
    followup_pending = models.BooleanField(default=False)
    followup_trigger = models.ForeignKey("chat.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="rooms")

    def __str__(self) -> str:
        return self.title

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        conversation = self.conversation
        result = super().delete(*args, **kwargs)
        conversation.delete()
        return result

    def may_enter(self, user: Any) -> bool:
        """Open rooms admit any logged-in user; private ones the owner and the members added."""
        if not user.is_authenticated:
            return False
        if not self.is_private or self.owner_id == user.id:
            return True
        return Membership.objects.filter(room=self, user=user).exists()

    def to_dict(self) -> dict[str, Any]:
        """The room as PROTOCOL.md sends it (`session.ready`, `room.updated`)."""
        return {
            "id": self.slug,
            "slug": self.slug,
            "title": self.title,
            "owner": self.owner.get_username(),
            "is_private": self.is_private,
            "settings": {
                "ai_active": self.ai_active,
                "ai_name": self.ai_name,
                "model": self.conversation.model,
                "instructions": self.conversation.instructions,
            },
        }


class Membership(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"


def create_room(owner: Any, title: str, slug: str = "", is_private: bool = False, **ai: Any) -> Room:
    """A room with its conversation; `slug` from the title when empty, made unique with a suffix.

    `ai` may set `ai_active`, `ai_name`, `model` and `instructions`.
    """
    from django.db import IntegrityError, transaction
    from django.utils.crypto import get_random_string
    from django.utils.text import slugify

    base = slugify(slug or title)[:40] or "room"
    candidate = base
    for _ in range(5):
        try:
            with transaction.atomic():
                conversation = Conversation.objects.create(
                    owner=owner, kind=Conversation.Kind.ROOM, title=title,
                    model=ai.pop("model", "") or "", instructions=ai.pop("instructions", "") or "",
                )
                return Room.objects.create(slug=candidate, title=title, owner=owner, is_private=is_private,
                                           conversation=conversation, **ai)
        except IntegrityError:
            candidate = f"{base}-{get_random_string(4).lower()}"
    raise IntegrityError(f"no free slug for {base!r}")
