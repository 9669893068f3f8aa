from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand

from chat.models import AgentRun
from chat.runs import lifecycle
from chat.runs.watchdog import end_stale_runs


class Command(BaseCommand):
    help = "End agent runs whose worker died (stale heartbeat) or that no worker picked up, as failed."

    def add_arguments(self, parser):
        parser.add_argument("--stale-secs", type=float, default=None, help="heartbeat age that counts as dead")
        parser.add_argument("--queued-secs", type=float, default=None, help="queue age that counts as lost")
        parser.add_argument("--dry-run", action="store_true", help="only list the runs that would be ended")

    def handle(self, *args, **options):
        condition = lifecycle.stale_condition(options["stale_secs"], options["queued_secs"])
        if options["dry_run"]:
            runs = AgentRun.objects.filter(condition)
            for run in runs:
                self.stdout.write(f"would end {run.id} ({run.status}, heartbeat {run.heartbeat_at})")
            return f"Done! {runs.count()} stale run(s) would be ended."
        ended = async_to_sync(end_stale_runs)(options["stale_secs"], options["queued_secs"])
        for run_id in ended:
            self.stdout.write(f"ended {run_id} as failed")
        return f"Done! Ended {len(ended)} stale run(s)."
