from django.contrib import admin

from contact.models import ContactMessage


@admin.register(ContactMessage)
class ContactMessageAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "created_at", "user")
    search_fields = ("name", "email", "message")
    list_filter = (("created_at", admin.DateFieldListFilter),)
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("created_at",)
