"""Celery tasks. Runs are acknowledged early (see CELERY_TASK_ACKS_LATE in settings): never re-run."""

from celery import shared_task

from chat.runs.executor import execute_run
from chat.runs.worker_loop import run_in_worker_loop


@shared_task(name="chat.execute_run", ignore_result=True)
def execute_run_task(run_id: str) -> None:
    """Execute one run on the worker process's shared event loop; this pool thread just waits."""
    run_in_worker_loop(execute_run, run_id)
