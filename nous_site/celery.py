"""The Celery app: configured from Django settings (CELERY_*), tasks found in the apps."""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nous_site.settings")

app = Celery("nous_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Each worker process takes the runs handed over to it (chat/runs/handover.py).
app.steps["worker"].add("chat.runs.handover:RunTakerStep")


@worker_ready.connect
def _tune_worker(**kwargs: object) -> None:
    from nous_site.runtime import tune_interpreter

    tune_interpreter()
