from django.contrib import admin

from chat.models import AgentRun, Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("role", "author", "status", "content", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "model", "input_tokens", "output_tokens", "updated_at")
    list_filter = ("model",)
    search_fields = ("title", "owner__username")
    inlines = [MessageInline]


@admin.register(AgentRun)
class AgentRunAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "status", "model", "worker", "created_at", "heartbeat_at", "error_code")
    list_filter = ("status", "model")
    readonly_fields = [f.name for f in AgentRun._meta.fields]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "created_at")
    list_filter = ("role", "status")
    search_fields = ("content",)
