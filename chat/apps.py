from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from chat.runs.admission import release_on_end
        from chat.runs.hooks import on_run_end
        from nous_site import checks  # noqa: F401  (registers the settings checks)

        on_run_end(release_on_end)  # first: a room's follow-up run then queues behind the freed slot
        if settings.REDIS_URL:  # every process of the deployment shares the providers' breakers
            from chat.runs.breaker_store import install_shared_breakers

            install_shared_breakers(settings.REDIS_URL)
