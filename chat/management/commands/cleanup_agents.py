from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand
from django.utils import timezone

from chat.models import AgentRun, ToolApproval
from chat.runs import lifecycle
from chat.runs.watchdog import end_stale_runs, expire_approvals, sweep_slots
from chat.uploads import prune_unsent


def non_negative(value: str) -> float:
    secs = float(value)
    if secs < 0:
        raise ValueError(value)
    return secs


def summary(verb: str, queued: int, running: int) -> str:
    return f"Done! {verb} {queued + running} stale run(s) as failed: {running} running with no heartbeat, {queued} queued and never picked up."


class Command(BaseCommand):
    help = (
        "End agent runs as failed: running ones whose heartbeat is older than --stale-secs (their worker died; "
        "the partial text is kept and the sockets are told) and queued ones older than --queued-secs (no worker "
        "picked them up); delete uploads never sent within a day. Idempotent: a second pass finds nothing. Run on a "
        "schedule by Celery beat (README.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--stale-secs", type=non_negative, default=None,
                            help="heartbeat age that counts as dead (default NOUS_RUN_STALE_SECS)")
        parser.add_argument("--queued-secs", type=non_negative, default=None,
                            help="queue age that counts as lost (default NOUS_RUN_QUEUED_TIMEOUT_SECS)")
        parser.add_argument("--dry-run", action="store_true", help="list the runs that would be ended, change nothing")

    def handle(self, *args, **options):
        condition = lifecycle.stale_condition(options["stale_secs"], options["queued_secs"])
        if options["dry_run"]:
            counts = {AgentRun.Status.QUEUED: 0, AgentRun.Status.RUNNING: 0}
            for run in AgentRun.objects.filter(condition).order_by("created_at"):
                since = f"heartbeat {run.heartbeat_at:%Y-%m-%d %H:%M:%S}" if run.status == AgentRun.Status.RUNNING \
                    else f"queued {run.created_at:%Y-%m-%d %H:%M:%S}"
                self.stdout.write(f"would end {run.id} ({run.status}, {since})")
                counts[run.status] += 1
            due = ToolApproval.objects.filter(status=ToolApproval.Status.PENDING, expires_at__lte=timezone.now())
            for approval in due:
                self.stdout.write(f"would expire the approval of {approval.name} in run {approval.run_id}")
            return summary("Would end", counts[AgentRun.Status.QUEUED], counts[AgentRun.Status.RUNNING]) + \
                f" Would expire {due.count()} approval(s). Would delete {prune_unsent(dry_run=True)} unsent attachment(s)."
        ended = async_to_sync(end_stale_runs)(options["stale_secs"], options["queued_secs"])
        # A run that was never claimed has no start time: it was ended from `queued`.
        queued = AgentRun.objects.filter(id__in=ended, started_at__isnull=True).count()
        for run_id in ended:
            self.stdout.write(f"ended {run_id} as failed")
        # The fair queue: slots of dead processes come back, and the next waiting runs start.
        moved = async_to_sync(sweep_slots)()
        if moved:
            self.stdout.write(f"the fair queue moved on ({moved} slot(s) freed or taken)")
        # Tool calls nobody decided in time are rejected; their runs go on with that answer.
        resumed = async_to_sync(expire_approvals)()
        for run_id in resumed:
            self.stdout.write(f"expired the approvals of {run_id}; it goes on")
        return summary("Ended", queued, len(ended) - queued) + f" Expired the approvals of {len(resumed)} run(s)." \
            f" Deleted {prune_unsent()} unsent attachment(s)."
