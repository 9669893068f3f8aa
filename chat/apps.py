from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from nous_site import checks  # noqa: F401  (registers the settings checks)

        if settings.REDIS_URL:  # every process of the deployment shares the providers' breakers
            from chat.runs.breaker_store import install_shared_breakers

            install_shared_breakers(settings.REDIS_URL)
