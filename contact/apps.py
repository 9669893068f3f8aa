from django.apps import AppConfig


class ContactConfig(AppConfig):
    name = "contact"
    default_auto_field = "django.db.models.BigAutoField"
