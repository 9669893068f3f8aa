"""The admin, live: conversations with their numbers, runs that can be stopped or failed through
the same code as the sockets use, messages read-only. Every page runs a fixed number of queries
however many messages a conversation has (tests/test_admin.py)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.db.models import Case, Count, F, IntegerField, QuerySet, Value, When
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from chat.models import AgentRun, Attachment, Conversation, Message, ShareLink, ToolApproval
from chat.runs.dispatch import stop_run
from chat.runs.slots import slots
from chat.runs.watchdog import fail_runs

PREVIEW_MESSAGES = 20


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "kind", "model", "message_count", "total_tokens", "updated_at")
    list_filter = ("kind", "model", ("updated_at", admin.DateFieldListFilter))
    search_fields = ("title", "owner__username")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    readonly_fields = ("input_tokens", "output_tokens", "created_at", "updated_at", "newest_messages")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return super().get_queryset(request).annotate(n_messages=Count("messages"))

    @admin.display(description="messages", ordering="n_messages")
    def message_count(self, obj: Conversation) -> int:
        return obj.n_messages  # type: ignore[attr-defined]

    @admin.display(description="tokens", ordering=F("input_tokens") + F("output_tokens"))
    def total_tokens(self, obj: Conversation) -> int:
        return obj.input_tokens + obj.output_tokens

    @admin.display(description="messages (newest first)")
    def newest_messages(self, obj: Conversation) -> str:
        # Not an inline: a conversation of 5,000 messages shows a page of them, and the rest are a
        # link to the message list, which Django paginates.
        rows = Message.objects.filter(conversation=obj).select_related("author").order_by("-id")[:PREVIEW_MESSAGES]
        table = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (m.created_at.strftime("%Y-%m-%d %H:%M:%S"), m.to_dict()["author"], m.status, m.content[:300]) for m in rows))
        link = reverse("admin:chat_message_changelist") + f"?conversation__id__exact={obj.id}"
        return format_html('<table>{}</table><p><a href="{}">All messages of this conversation</a></p>', table, link)


class FairQueueFilter(admin.SimpleListFilter):
    """The runs waiting in the fair queue for a slot (their positions in the "queue" column)."""

    title = "fair queue"
    parameter_name = "fair_queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("waiting", "waiting for a slot")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AgentRun]) -> QuerySet[AgentRun]:
        if self.value() == "waiting":
            return queryset.filter(id__in=slots().waiting_now())
        return queryset


@admin.register(AgentRun)
class AgentRunAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "status", "queue_position", "model", "duration", "time_to_first_token",
                    "error_code", "worker", "created_at")
    list_filter = ("status", FairQueueFilter, "model", "error_code")
    list_select_related = ("conversation",)
    ordering = ("-created_at",)
    readonly_fields = [f.name for f in AgentRun._meta.fields]
    actions = ("stop_selected", "fail_selected")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentRun]:
        # The positions come from the slot store (memory or Redis), not from a query.
        waiting = slots().waiting_now()
        position = Case(*(When(id=run_id, then=Value(i)) for i, run_id in enumerate(waiting)), default=None,
                        output_field=IntegerField()) if waiting else Value(None, output_field=IntegerField())
        return super().get_queryset(request).annotate(fair_position=position)

    @admin.display(description="queue", ordering="fair_position")
    def queue_position(self, run: AgentRun) -> str:
        position = run.fair_position  # type: ignore[attr-defined]
        return "" if position is None else f"{position} ahead"

    @admin.display(description="duration")
    def duration(self, run: AgentRun) -> str:
        secs = run.duration_secs
        return "" if secs is None else f"{secs:.1f} s"

    @admin.display(description="first token")
    def time_to_first_token(self, run: AgentRun) -> str:
        secs = run.time_to_first_token_secs
        return "" if secs is None else f"{secs * 1000:.0f} ms"

    @admin.action(description="Stop the selected runs (their pages get run.stopped)")
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[AgentRun]) -> None:
        active = [str(i) for i in queryset.filter(status__in=AgentRun.ACTIVE).values_list("id", flat=True)]
        stopped = sum(async_to_sync(stop_run)(run_id, f"operator {request.user.get_username()}") for run_id in active)
        self.message_user(request, f"Stopped {stopped} of {len(active)} active runs.", messages.SUCCESS)

    @admin.action(description="Mark the selected stuck runs failed (their pages get run.failed)")
    def fail_selected(self, request: HttpRequest, queryset: QuerySet[AgentRun]) -> None:
        active = [str(i) for i in queryset.filter(status__in=AgentRun.ACTIVE).values_list("id", flat=True)]
        ended = async_to_sync(fail_runs)(active, None, "was ended by an operator")
        self.message_user(request, f"Marked {len(ended)} runs failed.", messages.SUCCESS)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "author", "status", "short_content", "created_at")
    list_filter = ("role", "status")
    search_fields = ("content",)
    list_select_related = ("conversation", "author")
    raw_id_fields = ("conversation", "author", "run")
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the history is what was said: read-only

    @admin.display(description="content")
    def short_content(self, message: Message) -> str:
        return message.content[:120]


@admin.register(ToolApproval)
class ToolApprovalAdmin(admin.ModelAdmin):
    """Tool calls waiting for (or given) a human's decision; decided in the page, not here."""

    list_display = ("name", "run", "status", "decided_by", "expires_at", "created_at")
    list_filter = ("status", "name")
    list_select_related = ("run", "decided_by")
    readonly_fields = [f.name for f in ToolApproval._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    list_display = ("conversation", "created_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("conversation",)
    raw_id_fields = ("conversation",)
    readonly_fields = ("token", "created_at")


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    # The bytes stay out of the lists and forms: the file is at its own URL, for its owner.
    list_display = ("name", "content_type", "size", "owner", "conversation", "message", "created_at")
    list_filter = ("content_type",)
    search_fields = ("name", "owner__username")
    exclude = ("data",)
    readonly_fields = ("owner", "conversation", "message", "name", "content_type", "size", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Attachment]:
        return super().get_queryset(request).defer("data").select_related("owner")
