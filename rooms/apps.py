from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "rooms"

    def ready(self) -> None:
        from chat.runs.hooks import on_run_end
        from rooms.ai import start_followup_after

        on_run_end(start_followup_after)
