from django.contrib import admin

from rooms.models import Membership, Room


class MembershipInline(admin.TabularInline):
    """The members, read-only (added on the room's page; removable here): a form per member with
    a user widget would read each user and the user list again, row by row."""

    model = Membership
    extra = 0
    fields = readonly_fields = ["user", "added_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("room", "user")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "owner", "is_private", "ai_active", "created_at"]
    list_filter = ["is_private", "ai_active"]
    search_fields = ["title", "slug", "owner__username"]
    raw_id_fields = ["owner", "conversation"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["room", "user", "added_at"]
    list_select_related = ["room", "user"]
    search_fields = ["room__title", "room__slug", "user__username"]
    raw_id_fields = ["room", "user"]
