"""Conversations, their messages and the agent runs that answer them."""

from __future__ import annotations

import secrets
import uuid
from typing import Any, NotRequired, TypedDict

from django.conf import settings
from django.db import models
from django.db.models import Q


class Conversation(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat"  # one user's private conversation
        ROOM = "room"  # the messages and runs of a room (rooms.Room.conversation)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.CHAT)
    title = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=200, default="")
    instructions = models.TextField(blank=True, default="")
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Tool names that wait for a human's approval here; None: settings.NOUS_APPROVAL_TOOLS.
    approval_tools = models.JSONField(null=True, blank=True)
    # Model strings tried in order when `model` fails before any text (agents.chain).
    fallback_models = models.JSONField(default=list, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The chat list: a user's conversations, most recently active first.
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.model:
            self.model = settings.NOUS_DEFAULT_MODEL
        super().save(*args, **kwargs)

    def settings_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "instructions": self.instructions,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "approval_tools": self.approval_tools,
            "fallback_models": self.fallback_models,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "title": self.title,
            "settings": self.settings_dict(),
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                      "total_tokens": self.input_tokens + self.output_tokens},
        }


class MessageDict(TypedDict):
    id: str
    role: str
    content: str
    author: str
    created_at: str
    client_id: str | None
    status: str
    usage: dict[str, int] | None
    run_id: str | None
    provenance: dict[str, Any] | None
    parent_id: str | None
    branch: dict[str, Any] | None
    attachments: NotRequired[list[dict[str, Any]]]


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        SYSTEM = "system"
        ERROR = "error"
        TOOL = "tool"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"
        STOPPED = "stopped"
        FAILED = "failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    client_id = models.CharField(max_length=64, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    usage = models.JSONField(null=True, blank=True)
    run = models.ForeignKey("AgentRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # An answer's story: model, time to first token, duration, tokens, retries, how it ended.
    provenance = models.JSONField(null=True, blank=True)
    # Branches (chat.branches): the user or assistant message before this one on its branch (None
    # for the first, and in rooms, which stay linear); `on_branch` marks the selected path, and a
    # run's tool and error messages follow their answer. On any root-to-leaf path ids increase.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    on_branch = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A resend after a reconnect finds the stored message instead of adding a second one.
            models.UniqueConstraint(
                fields=["conversation", "client_id"], condition=Q(client_id__isnull=False), name="message_unique_client_id"
            )
        ]
        # History pages: `conversation = ? AND id < ? ORDER BY id DESC LIMIT 51`.
        indexes = [
            models.Index(fields=["conversation", "-id"], name="message_conversation_page"),
            # The selected branch's pages: `conversation = ? AND on_branch AND id < ? ORDER BY id DESC`.
            models.Index(fields=["conversation", "on_branch", "-id"], name="message_branch_page"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    def to_dict(self) -> MessageDict:
        """The message exactly as PROTOCOL.md describes it (plus `run_id`); `branch` is filled in by
        `chat.branches.annotate` for the messages that have siblings.

        `attachments` is there when they were loaded (`with_attachments`, or bound by the send);
        it never costs a query here, since frames are built in async code too.
        """
        if self.role == self.Role.USER:
            author = self.author.get_username() if self.author else "deleted user"
        else:
            author = self.role
        data: MessageDict = {
            "id": str(self.id),
            "role": self.role,
            "content": self.content,
            "author": author,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "client_id": self.client_id,
            "status": self.status,
            "usage": self.usage,
            "run_id": str(self.run_id) if self.run_id else None,
            "provenance": self.provenance,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "branch": None,
        }
        loaded = getattr(self, "_prefetched_objects_cache", {}).get("attachments")
        if loaded is not None:
            data["attachments"] = [a.to_dict() for a in loaded]
        return data


def with_attachments(q: models.QuerySet) -> models.QuerySet:
    """Messages with their attachments' metadata in one more query (not the bytes)."""
    return q.prefetch_related(models.Prefetch("attachments", queryset=Attachment.objects.defer("data").order_by("created_at")))


class AgentRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING = "waiting"  # paused on a tool call that waits for a human; holds no worker
        COMPLETED = "completed"
        STOPPED = "stopped"
        FAILED = "failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.WAITING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="runs")
    trigger_message = models.ForeignKey(Message, null=True, on_delete=models.SET_NULL, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # What the run runs with, copied when it is queued: a settings change meanwhile is for the next run.
    model = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, default="")
    model_settings = models.JSONField(default=dict, blank=True)
    context_messages = models.PositiveIntegerField(null=True, blank=True)  # None: NOUS_CONTEXT_MESSAGES
    approval_tools = models.JSONField(null=True, blank=True)  # None: NOUS_APPROVAL_TOOLS
    fallback_models = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)  # stored with the end, off the hot path
    worker = models.CharField(max_length=200, blank=True, default="")
    last_seq = models.PositiveIntegerField(default=0)
    stop_requested = models.BooleanField(default=False)
    stopped_by = models.CharField(max_length=150, blank=True, default="")  # who sent run.stop (or "operator")
    retries = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    usage = models.JSONField(null=True, blank=True)
    # Where a waiting run goes on from: the model's turns since the trigger, and the tool calls
    # of the last turn that have no result yet (chat.runs.transcript).
    paused_state = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            # One run at a time per conversation, held by the database, not by a Python check.
            models.UniqueConstraint(
                fields=["conversation"], condition=Q(status__in=["queued", "running", "waiting"]), name="one_active_run_per_conversation"
            )
        ]
        # The watchdog: `status IN ('queued','running')` scanned by age of heartbeat.
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="agentrun_status_heartbeat")]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"

    @property
    def duration_secs(self) -> float | None:
        if self.started_at is None:
            return None
        return ((self.finished_at or self.heartbeat_at or self.started_at) - self.started_at).total_seconds()

    @property
    def time_to_first_token_secs(self) -> float | None:
        if self.started_at is None or self.first_token_at is None:
            return None
        return (self.first_token_at - self.created_at).total_seconds()

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class ToolApproval(models.Model):
    """One tool call that waits for a human, bound to that exact call (its id and arguments)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="approvals")
    tool_call_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    arguments_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "tool_call_id"], name="approval_unique_call")]
        # The expiry sweep: `status = 'pending' AND expires_at < now`.
        indexes = [models.Index(fields=["status", "expires_at"], name="approval_status_expiry")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    def to_dict(self) -> dict[str, Any]:
        """An entry of `session.ready.pending_approvals` (PROTOCOL.md)."""
        return {
            "run_id": str(self.run_id),
            "tool_call": {"id": self.tool_call_id, "name": self.name, "arguments": self.arguments, "needs_approval": True},
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
        }


def new_share_token() -> str:
    return secrets.token_urlsafe(24)


class ShareLink(models.Model):
    """A read-only link to a private conversation (`/s/<token>/`), good until revoked."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="share_links")
    # Looked up as `token = ? AND revoked_at IS NULL` by the shared page: the unique index serves it.
    token = models.CharField(max_length=64, unique=True, default=new_share_token, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"share link of {self.conversation_id}{' (revoked)' if self.revoked_at else ''}"


class Attachment(models.Model):
    """A file uploaded into a conversation; unsent (`message` is None) until a `message.send` names it.

    The bytes live in the database, so every ASGI process and worker sees them without a shared disk.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)  # sniffed from the bytes, never the browser's word
    size = models.PositiveIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The send's claim and the upload's count: `conversation = ? AND owner = ? AND message IS NULL`;
        # the daily sweep of unsent ones scans the same partial index by age.
        indexes = [models.Index(fields=["conversation", "owner", "created_at"], condition=Q(message__isnull=True),
                                name="attachment_unsent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.content_type}, {self.size} bytes)"

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    def to_dict(self) -> dict[str, Any]:
        """An entry of a message's `attachments` (PROTOCOL.md)."""
        return {"id": str(self.id), "name": self.name, "content_type": self.content_type, "size": self.size,
                "url": f"/attachments/{self.id}/"}
