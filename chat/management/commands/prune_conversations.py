import re
from datetime import datetime, timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from chat.models import AgentRun, Conversation, Message

UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def duration(value: str) -> timedelta:
    """`90d`, `12h`, `30m`: a positive whole number and a unit."""
    match = re.fullmatch(r"([0-9]+)([dhm])", value.strip())
    if not match or int(match[1]) == 0:
        raise ValueError(value)
    return timedelta(**{UNITS[match[2]]: int(match[1])})


duration.__name__ = "duration (like 90d, 12h, 30m)"  # how argparse names it in its error


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def prunable(cutoff: datetime) -> QuerySet[Conversation]:
    """The conversations old enough to delete, as of `cutoff`."""
    # Chats only: a room owns its conversation (PROTECT) and is deleted with it, from its page.
    q = Conversation.objects.filter(kind=Conversation.Kind.CHAT)
    # Old by last activity: a send bumps updated_at; a message after the cutoff also counts.
    q = q.filter(updated_at__lt=cutoff)
    q = q.exclude(Exists(Message.objects.filter(conversation=OuterRef("pk"), created_at__gte=cutoff)))
    # Never one with a run queued or running: its worker would write into a deleted conversation.
    return q.exclude(Exists(AgentRun.objects.filter(conversation=OuterRef("pk"), status__in=AgentRun.ACTIVE)))


class Command(BaseCommand):
    help = (
        "Delete chat conversations (with their messages and runs) not active for longer than --older-than, "
        "in batches. A conversation with a queued or running run is never touched, nor a room's conversation "
        "(kind 'room': it belongs to its room). Idempotent. Run on a schedule by Celery beat (README.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=duration, required=True, help="inactivity that makes one old: 90d, 12h, 30m")
        parser.add_argument("--batch-size", type=positive, default=500, help="conversations deleted per transaction")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, change nothing")

    def handle(self, *args, **options):
        cutoff = timezone.now() - options["older_than"]
        batch_size = options["batch_size"]
        old = Conversation.objects.filter(kind=Conversation.Kind.CHAT, updated_at__lt=cutoff)
        busy = old.filter(runs__status__in=AgentRun.ACTIVE).distinct().count()
        if options["dry_run"]:
            q = prunable(cutoff)
            messages = Message.objects.filter(conversation__in=q).count()
            return f"Done! Would prune {q.count()} conversation(s) ({messages} message(s)); {busy} old one(s) kept: a run is active."

        conversations = messages = batches = 0
        while True:
            with transaction.atomic():
                # Locked first: a send into one of them waits, then finds it gone (or, if it got
                # in first, this conversation is no longer old and is left alone).
                ids = list(prunable(cutoff).select_for_update(skip_locked=True).values_list("id", flat=True)[:batch_size])
                if not ids:
                    break
                _, deleted = prunable(cutoff).filter(id__in=ids).delete()
            batches += 1
            conversations += deleted.get("chat.Conversation", 0)
            messages += deleted.get("chat.Message", 0)
            self.stdout.write(f"batch {batches}: {deleted.get('chat.Conversation', 0)} conversation(s)")
            if len(ids) < batch_size or not deleted.get("chat.Conversation", 0):
                break
        return (f"Done! Pruned {conversations} conversation(s) ({messages} message(s)) in {batches} batch(es); "
                f"{busy} old one(s) kept: a run is active.")
