from django.contrib import admin

from rooms.models import Membership, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    readonly_fields = ["added_at"]


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
    search_fields = ["room__title", "room__slug", "user__username"]
    raw_id_fields = ["room", "user"]
